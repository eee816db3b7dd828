"""The command line: one-line errors with a non-zero exit, a busy port, and\nwhat ``cardhub demo --no-wait`` leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil

from hub.service.keys import read_token
from hub.service.token_keys import TokenKeyring
from tests.e2e.processes import free_port, ready, start, wait_gone
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=60)


def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(tmp_path: Path) -> None:
    missing = run("token", "issue", "--role", "admin", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no token key" in missing.stderr
    unscoped = run("token", "issue", "--role", "merchant", "--data-dir", str(tmp_path))
    assert unscoped.returncode == 2 and "--scope" in unscoped.stderr and unscoped.stdout == ""
    bad_url = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                             env={"CARDHUB_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": ""},
                             timeout=60, check=False)
    assert bad_url.returncode == 2 and bad_url.stderr.strip().startswith("cardhub: cannot connect to PostgreSQL")
    bad_zone = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              env={"CARDHUB_TIMEZONE": "Mars/Olympus", "PATH": ""}, timeout=60, check=False)
    assert bad_zone.returncode == 2 and "CARDHUB_TIMEZONE" in bad_zone.stderr


def _demo(tmp_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``cardhub demo --no-wait`` on a small campus, its temporary directory made in ``tmp_dir``."""
    return subprocess.run([*CLI, "demo", "--no-wait", "--accounts", "100", *args], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_dir)}, timeout=180, check=False)


def _demo_dirs(tmp_dir: Path) -> list[Path]:
    return sorted(tmp_dir.glob("cardhub-demo-*"))


def _hints_for_a_running_hub(out: str) -> list[str]:
    return [line for line in out.splitlines() if "curl" in line or "Dashboard" in line or "token issue" in line]


def test_demo_no_wait_removes_its_temporary_directory_and_prints_no_hints_for_the_stopped_hub(run_dir: Path) -> None:
    done = _demo(run_dir, "--port", "0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert _demo_dirs(run_dir) == []
    assert _hints_for_a_running_hub(done.stdout) == []
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("The hub is stopped and its data removed") and "--keep" in last


async def test_demo_keep_keeps_its_data_and_says_how_to_serve_it_again(run_dir: Path) -> None:
    done = await asyncio.to_thread(_demo, run_dir, "--port", "0", "--keep")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert _hints_for_a_running_hub(done.stdout) == []
    (kept,) = _demo_dirs(run_dir)
    assert (kept / "hub.key").exists() and (kept / "pg" / "PG_VERSION").exists()
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("The hub is stopped. To serve its data again: cardhub serve "), last
    serve = last.split("cardhub ", 1)[1].split()
    assert serve[:3] == ["serve", "--data-dir", str(kept)]
    port = free_port()
    hub = start([*serve[:3], "--port", str(port)], run_dir / "again.log")
    try:
        await ready(f"http://127.0.0.1:{port}", hub, run_dir / "again.log")
    finally:
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, 10) == 0


def _listening(port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    return listener


def test_a_busy_port_is_one_line_and_exit_2_for_serve_and_demo_before_anything_starts(run_dir: Path) -> None:
    port = free_port()
    with _listening(port):
        serve = run("serve", "--port", str(port), "--data-dir", str(run_dir / "data"))
        demo = _demo(run_dir, "--port", str(port))
    for done in (serve, demo):
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(f"cardhub: port {port} on 127.0.0.1 is in use") and done.stderr.count("\n") == 1
        assert "--port" in done.stderr
    assert not (run_dir / "data" / "pg").exists()  # no PostgreSQL was started for nothing
    assert _demo_dirs(run_dir) == []  # the demo made no temporary directory
    assert demo.stdout == ""


async def test_a_port_taken_while_serve_starts_its_database_is_exit_2_with_nothing_left_running(run_dir: Path) -> None:
    data_dir, port, log_path = run_dir / "data", free_port(), run_dir / "hub.log"
    hub = start(["serve", "--port", str(port), "--data-dir", str(data_dir)], log_path)
    seen: set[psutil.Process] = set()
    try:
        while "starting embedded PostgreSQL" not in log_path.read_text():
            assert hub.poll() is None, log_path.read_text()
            await asyncio.sleep(0.02)
        with _listening(port):
            while hub.poll() is None:  # the hub, its projections' child, PostgreSQL, as they come and go
                with contextlib.suppress(psutil.Error):
                    seen.update(psutil.Process(hub.pid).children(recursive=True))
                await asyncio.sleep(0.02)
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
    lines = log_path.read_text().strip().splitlines()
    assert hub.returncode == 2 and lines[-1] == (
        f"cardhub: port {port} on 127.0.0.1 is in use: stop what listens there, or pass another --port")
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line], lines
    assert not wait_gone(list(seen), data_dir, 10)
    assert not (data_dir / "pg" / "postmaster.pid").exists()


async def test_serve_logs_one_access_line_per_request_with_the_jti_and_never_the_token(run_dir: Path) -> None:
    data_dir, port, log_path = run_dir / "data", free_port(), run_dir / "hub.log"
    hub = start(["serve", "--port", str(port), "--data-dir", str(data_dir)], log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        await ready(url, hub, log_path)
        token = run("token", "issue", "--role", "auditor", "--data-dir", str(data_dir)).stdout.strip()
        jti = read_token(TokenKeyring(data_dir), token).jti
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            async with session.get(f"{url}/v1/audit/events?card=C0FFEE01&limit=3") as resp:
                assert resp.status == 200
    finally:
        os.kill(hub.pid, signal.SIGTERM)
        hub.wait(timeout=30)
    log = log_path.read_text()
    [line] = [line for line in log.splitlines() if "/v1/audit/events" in line]
    assert line.endswith(f"cardhub.access: GET /v1/audit/events?card&limit 200 {line.split()[-3]} auditor {jti}")
    assert token not in log and token.split(".")[2] not in log and "C0FFEE01" not in log
