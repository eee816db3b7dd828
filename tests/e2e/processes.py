"""Helpers for tests that run real ``cardhub`` processes: start one in its own session, wait
until it answers, and list what is left of a data directory's processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl as ssl_module
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A directory for hubs' data outside pytest's own temporary root: a pytest session starting
    meanwhile takes the others' permissions off that root (0700), and the embedded server,
    which runs as another user when the tests run as root, then cannot reach its data."""
    path = Path(tempfile.mkdtemp(prefix="cardhub-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log_path: Path, *, env: dict[str, str] | None = None,
          prelude: str = "") -> subprocess.Popen[bytes]:
    """``cardhub ARGS`` as the leader of a new session (its own process group)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}
    command = [sys.executable, "-c", f"{prelude}from hub.cli import main; main()"]
    with log_path.open("ab") as log:
        return subprocess.Popen([*command, *args], env=env, stdout=log, stderr=log, start_new_session=True)


async def ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60,
                ssl: ssl_module.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                async with session.get(url + "/healthz", ssl=ssl) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no answer from {url}")


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def family(pids: list[int]) -> list[psutil.Process]:
    """The processes and all their descendants, as they are now."""
    found: list[psutil.Process] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found += [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


def running(processes: list[psutil.Process], data_dir: Path) -> list[str]:
    """What still runs of ``processes`` (zombies count as gone) and of any process whose
    command line names ``data_dir``."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {process.cmdline()}")
        except psutil.Error:
            pass
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(str(data_dir) in part for part in cmdline):
            left.append(f"{process.pid} {cmdline}")
    return left


def wait_gone(processes: list[psutil.Process], data_dir: Path, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := running(processes, data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
