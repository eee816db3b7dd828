"""Starting a hub as a child process (``demo``, ``bench``) and waiting until it answers; whether
its port is free."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from hub.config import ConfigError

READY_TIMEOUT_S = 90
WAITING_NOTICE_AFTER = 5  # attempts, 0.2 s apart: nothing is said of a hub answering within a second


async def wait_ready(url: str, hub: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if hub.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise ConfigError(f"the hub exited: {tail[0] if tail else 'see ' + str(log_path)}")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise ConfigError(f"the hub did not answer within {READY_TIMEOUT_S} s; see {log_path}")


LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def check_port(host: str, port: int, hint: str = "") -> None:
    """Raises a one-line ConfigError when a server could not listen on host:port now. Binds as
    aiohttp's server does (asyncio, SO_REUSEADDR: a stopped hub's connections in TIME_WAIT do
    not make its port busy)."""

    async def probe() -> None:
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port, reuse_address=True)
        server.close()
        await server.wait_closed()

    try:
        asyncio.run(probe())
    except OSError as exc:
        raise cannot_listen(host, port, exc, hint) from None


def cannot_listen(host: str, port: int, exc: OSError, hint: str = "") -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"port {port} on {host} is in use: stop what listens there, or pass another --port{hint}")
    reason = os.strerror(exc.errno) if exc.errno in LISTEN_ERRNOS else str(exc)
    return ConfigError(f"cannot listen on {host}:{port}: {reason}")


async def wait_answering(url: str, timeout_s: float) -> None:
    """Until a hub answers at ``url`` (any HTTP answer: it listens once it is started), at most
    ``timeout_s``; then a ConfigError."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for attempt in itertools.count():
            try:
                async with session.get(url + "/healthz"):
                    return
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    raise ConfigError(f"no hub answers at {url}: start one (cardhub serve), or pass its --url") from None
            if attempt == WAITING_NOTICE_AFTER:
                print(f"waiting for the hub at {url} to answer (at most {timeout_s:g} s)", file=sys.stderr)
            await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
