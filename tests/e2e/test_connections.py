"""Connections (DESIGN §9), against a real ``cardhub serve`` with few open files: idle and
slow-header connections are closed after the timeout, and a hub out of descriptors answers a
swipe (``503`` with ``Retry-After``, or ``200``) within seconds instead of stalling, without
spinning the CPU."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import psutil
import pytest

from device_sim.device import SimDevice
from hub.bench.spawn import free_port
from hub.config import Settings
from hub.service.token_office import issue_from_data_dir
from hub.storage.store import EmbeddedPostgres

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"
CLI = [sys.executable, "-c", "from hub.cli import main; main()"]
OPEN_FILES = 256
IDLE_TIMEOUT_S = 4.0


class LimitedHub:
    """``cardhub serve`` started with ``RLIMIT_NOFILE`` = ``OPEN_FILES`` (soft and hard)."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir, self.port = tmp_path / "data", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "hub.log"
        env = {k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}
        env["CARDHUB_IDLE_TIMEOUT_SECONDS"] = str(IDLE_TIMEOUT_S)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_few_open_files,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(self.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise AssertionError("hub did not become ready: " + self.log()[-2000:])


def _few_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@pytest.fixture
def limited_hub(tmp_path: Path) -> Iterator[LimitedHub]:
    if os.environ.get("CARDHUB_DATABASE_URL"):
        pytest.skip("starts its own embedded PostgreSQL")
    hub = LimitedHub(tmp_path)
    yield hub
    if hub.proc.poll() is None:
        hub.proc.terminate()
        try:
            hub.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait()
    if (hub.data_dir / "pg" / "postmaster.pid").exists():  # stop a server the hub left behind
        embedded = EmbeddedPostgres(hub.data_dir / "pg")
        embedded.start()
        embedded.stop()


async def _seed(session: aiohttp.ClientSession, hub: LimitedHub) -> SimDevice:
    headers = {"Authorization": f"Bearer {issue_from_data_dir(Settings(data_dir=hub.data_dir), 'admin')}"}
    device = SimDevice("pos-1", "pos")
    for path, body in [
        ("/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}),
        ("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": device.public_key,
                         "merchant_id": "canteen-1"}),
        ("/v1/accounts", {"account_id": "s1", "name": "李雷", "category": "student"}),
        ("/v1/cards", {"card_uid": CARD, "account_id": "s1"}),
        ("/v1/accounts/s1/topups", {"amount": 100_000, "ref": "t1"}),
    ]:
        async with session.post(hub.url + path, json=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
    return device


async def _swipe(hub: LimitedHub, device: SimDevice) -> tuple[int, dict[str, str], dict]:
    """One single-event upload on a connection of its own."""
    if not device.pending:
        device.purchase(CARD, 10, NOON)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as session:
        async with session.post(f"{hub.url}/v1/devices/pos-1/events", json={"events": device.pending}) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200:
                device.acknowledge(body["results"])
            return resp.status, dict(resp.headers), body


def _closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """Reads until the hub closes the connection (True) or ``deadline`` passes (False)."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


async def test_a_hub_out_of_descriptors_answers_a_swipe_within_seconds_and_closes_idle_connections(
    limited_hub: LimitedHub,
) -> None:
    async with aiohttp.ClientSession() as session:
        await limited_hub.ready(session)
        device = await _seed(session, limited_hub)
    assert f"open-file limit {OPEN_FILES}" in limited_hub.log()
    idle = [socket.create_connection(("127.0.0.1", limited_hub.port)) for _ in range(OPEN_FILES + 64)]
    try:
        opened_at = time.monotonic()
        await asyncio.sleep(1.0)  # the hub accepts what its descriptors allow
        hub_cpu = psutil.Process(limited_hub.proc.pid)
        cpu_before = sum(hub_cpu.cpu_times()[:2])

        t0 = time.monotonic()
        status, headers, body = await _swipe(limited_hub, device)
        answered_s = time.monotonic() - t0

        assert answered_s < 5.0, answered_s
        assert status in (200, 503), (status, body)
        if status == 503:
            assert headers["Retry-After"] == "1" and headers["Content-Type"].startswith("application/problem+json")
            assert body["status"] == 503
        else:
            assert body["results"][0]["status"] == "accepted"
        assert "out of file descriptors" in limited_hub.log()

        deadline = opened_at + IDLE_TIMEOUT_S + 6.0
        still_open = [s for s in idle if not _closed_by_peer(s, deadline)]
        assert not still_open, f"{len(still_open)} idle connections still open after the timeout"
        waited_s = time.monotonic() - t0
        cpu_s = sum(hub_cpu.cpu_times()[:2]) - cpu_before
        assert cpu_s < 0.5 * waited_s, f"the hub used {cpu_s:.1f} s of CPU in {waited_s:.1f} s: it spins"
    finally:
        for s in idle:
            s.close()

    status, _, body = await _swipe(limited_hub, device)  # descriptors are free again
    assert (status, body["results"][0]["status"]) == (200, "accepted"), body


async def test_a_connection_that_sends_its_headers_slowly_is_closed_after_the_timeout(
    limited_hub: LimitedHub,
) -> None:
    async with aiohttp.ClientSession() as session:
        await limited_hub.ready(session)
    slow = socket.create_connection(("127.0.0.1", limited_hub.port))
    try:
        slow.sendall(b"POST /v1/devices/pos-1/events HTTP/1.1\r\nHost: hub\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < IDLE_TIMEOUT_S + 6.0:
            try:
                slow.sendall(b"X")  # one byte of a header every half second: never a whole head
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_peer(slow, time.monotonic() + 0.5):
                closed = True
                break
        elapsed_s = time.monotonic() - t0
        assert closed, "a slow-header connection was never closed"
        assert IDLE_TIMEOUT_S - 1.0 <= elapsed_s <= IDLE_TIMEOUT_S + 3.0, elapsed_s
    finally:
        slow.close()
