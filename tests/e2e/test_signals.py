"""SIGTERM or SIGINT to a hub's whole process group — what systemd, ``timeout`` and
``kill -- -PGID`` send — stops ``cardhub serve`` and ``cardhub demo`` within 10 s, with no
process of their data directory left: not the hub, its projections' child, nor PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from device_sim.device import SimDevice
from tests.e2e.processes import CLI, family, free_port, postmaster_pid, ready, start, wait_gone
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
STOP_WITHIN_S = 10


async def _stopped(process: subprocess.Popen[bytes], log: Path) -> int:
    """The exit status, or a failure that shows how far the hub's stop got (its log says each step)."""
    try:
        return await asyncio.to_thread(process.wait, STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"not stopped within {STOP_WITHIN_S} s; the hub's log ends:\n{log.read_text()[-3000:]}")


async def _some_uploads(url: str, data_dir: Path) -> int:
    token = subprocess.run([*CLI, "token", "issue", "--role", "admin", "--data-dir", str(data_dir)],
                           check=True, capture_output=True, text=True).stdout.strip()
    admin = {"Authorization": f"Bearer {token}"}
    pos = SimDevice("pos-1", "pos")
    async with aiohttp.ClientSession() as session:
        for path, body in [
            ("/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}),
            ("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": pos.public_key, "merchant_id": "canteen-1"}),
            ("/v1/accounts", {"account_id": "s1", "name": "李雷", "category": "student"}),
            ("/v1/cards", {"card_uid": "ABCDEF01", "account_id": "s1"}),
            ("/v1/accounts/s1/topups", {"amount": 100_000, "ref": "t1"}),
        ]:
            async with session.post(url + path, json=body, headers=admin) as resp:
                assert resp.status == 201, await resp.text()
        for n in range(20):
            pos.purchase("ABCDEF01", 100 + n, NOON + timedelta(seconds=n))
            async with session.post(f"{url}/v1/devices/pos-1/events", json={"events": pos.batch(1)}) as resp:
                answer = await resp.json()
            assert answer["results"][0]["status"] == "accepted", answer
            pos.acknowledge(answer["results"])
    return 20


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_to_the_process_group_stops_serve_and_everything_of_its_data_dir(
    run_dir: Path, sig: signal.Signals,
) -> None:
    tmp_path = run_dir
    data_dir, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    hub = start(["serve", "--data-dir", str(data_dir), "--port", str(port)], tmp_path / "hub.log")
    try:
        await ready(url, hub, tmp_path / "hub.log")
        await _some_uploads(url, data_dir)
        processes = family([hub.pid, postmaster_pid(data_dir)])
        assert len(processes) >= 3  # the hub, its projections' child, the postmaster (and its backends)
        sent = time.monotonic()
        os.killpg(hub.pid, sig)
        status = await _stopped(hub, tmp_path / "hub.log")
        left = wait_gone(processes, data_dir, STOP_WITHIN_S - (time.monotonic() - sent))
        assert status == 0, (tmp_path / "hub.log").read_text()[-3000:]
        assert not left, left
        assert time.monotonic() - sent < STOP_WITHIN_S
        assert not (data_dir / "pg" / "postmaster.pid").exists()
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()

    # Nothing acknowledged was lost: a restarted hub takes the same uploads as duplicates.
    hub = start(["serve", "--data-dir", str(data_dir), "--port", str(port)], tmp_path / "hub.log")
    try:
        await ready(url, hub, tmp_path / "hub.log")
        async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as resp:
            health = await resp.json()
        assert health["store_position"] >= 25  # 5 card-office events and 20 swipes
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, STOP_WITHIN_S) == 0


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
async def test_sigterm_to_the_demos_process_group_mid_run_leaves_nothing_running(
    run_dir: Path, sigint_ignored: bool,
) -> None:
    tmp_path = run_dir
    data_dir, port = tmp_path / "demo", free_port()
    prelude = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); " if sigint_ignored else ""
    demo = start(["demo", "--no-wait", "--accounts", "200", "--data-dir", str(data_dir), "--port", str(port)],
                 tmp_path / "demo.log", prelude=prelude)
    try:
        # The demo's hub writes its log into the data dir; wait until it answers, then a bit
        # into the simulated day.
        await ready(f"http://127.0.0.1:{port}", demo, tmp_path / "demo.log")
        await asyncio.sleep(2)
        assert demo.poll() is None, "the demo finished before it was signalled"
        processes = family([demo.pid, postmaster_pid(data_dir)])
        sent = time.monotonic()
        os.killpg(demo.pid, signal.SIGTERM)
        await _stopped(demo, data_dir / "hub.log")
        left = wait_gone(processes, data_dir, STOP_WITHIN_S - (time.monotonic() - sent))
        assert not left, (left, (data_dir / "hub.log").read_text()[-3000:])
        assert not (data_dir / "pg" / "postmaster.pid").exists()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
