"""A small Chrome DevTools Protocol client over aiohttp: a headless Chromium and its one page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 5.0
POLL_S = 0.1
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0")


class CdpError(Exception):
    pass


class Browser:
    """Start with ``Browser.launch``; always ``close`` (it kills the browser's process group)."""

    def __init__(self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self.proc, self.session, self.ws = proc, session, ws
        self._next_id = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, executable: str, user_data_dir: Path, *, width: int = 1280,
                     height: int = 1800) -> Browser:
        user_data_dir.mkdir(parents=True, exist_ok=True)
        with (user_data_dir.parent / "chromium.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                executable, *FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
                "about:blank", stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        session = aiohttp.ClientSession()
        try:
            port = await _devtools_port(proc, user_data_dir / "DevToolsActivePort")
            ws_url = await _page_ws_url(session, port)
            ws = await session.ws_connect(ws_url, max_msg_size=64 * 1024 * 1024)
        except BaseException:
            await session.close()
            await _kill(proc)
            raise
        browser = cls(proc, session, ws)
        await browser.send("Page.enable")
        await browser.send("Runtime.enable")
        return browser

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()
        await self.session.close()
        await _kill(self.proc)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = message.json()
            if "id" in data:
                future = self._replies.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                for waiter in self._waiters.pop(data.get("method", ""), []):
                    if not waiter.done():
                        waiter.set_result(data.get("params", {}))
        for future in self._replies.values():
            if not future.done():
                future.set_exception(CdpError("the browser closed the DevTools connection"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        await self.ws.send_json({"id": self._next_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``event``; ask for it before the command that causes it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event, []).append(future)
        return future

    async def navigate(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"navigate to {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, COMMAND_TIMEOUT_S)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float) -> Any:
        """Polls ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s} s: {expression}")
            await asyncio.sleep(POLL_S)

    async def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=2 if mobile else 1, mobile=mobile)

    async def screenshot(self, path: Path) -> None:
        """A PNG of the whole page, not just the viewport."""
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))


async def _devtools_port(proc: asyncio.subprocess.Process, port_file: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise CdpError(f"chromium exited with status {proc.returncode} before it listened")
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        if lines and lines[0].isdigit():
            return int(lines[0])
        await asyncio.sleep(POLL_S)
    raise CdpError(f"chromium wrote no {port_file.name} within {START_TIMEOUT_S} s")


async def _page_ws_url(session: aiohttp.ClientSession, port: int) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        await asyncio.sleep(POLL_S)
    raise CdpError("chromium opened no page target")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Ends the browser and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), KILL_TIMEOUT_S)
