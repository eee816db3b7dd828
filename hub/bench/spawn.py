"""Starting a hub as a child process (``demo``, ``bench``) and waiting until it answers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from hub.config import ConfigError

READY_TIMEOUT_S = 90


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


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
