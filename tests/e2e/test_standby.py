"""A standby hub (DESIGN §13): a second ``cardhub serve`` on the database of an active hub, with
the active hub's ``hub.key`` and ``token.key``, stands by — ``/healthz`` says ``"role":
"standby"`` and names the active hub, reads are answered, uploads and commands get ``503
standby`` with ``Retry-After``, the projections are the active hub's. When the active hub's
machine dies (its process group SIGKILLed under load), the standby takes over within 5 s, from
the store: a card reported lost through the old hub after the standby started is declined at
the new one, and every acknowledged swipe is stored exactly once."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from device_sim.device import SimDevice
from hub.service.token_keys import RETIRED_FILE, TOKEN_KEY_FILE
from hub.service.keys import KEY_FILE
from hub.storage.store import Database
from tests.e2e.devices import NOON, Load, post_created, send_what_is_pending, setup_devices, stored_swipes, views_caught_up
from tests.e2e.processes import CLI, free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

TAKEOVER_S = 5.0  # DESIGN §13
ACKED_BEFORE_KILL = 300
LOST_CARD = "ABCDEF09"


@pytest.fixture
def external(database: Database) -> Iterator[dict[str, str]]:
    yield {**os.environ, "CARDHUB_DATABASE_URL": database.url, "CARDHUB_CHECKPOINT_SECONDS": "1"}


def share_keys(active: Path, standby: Path) -> None:
    """What an operator copies to the standby's machine (deploy/README.md)."""
    standby.mkdir(mode=0o700)
    for name in (KEY_FILE, TOKEN_KEY_FILE, RETIRED_FILE):
        if (active / name).exists():
            shutil.copy2(active / name, standby / name)


@pytest.mark.timeout(180)
async def test_the_standby_takes_over_within_5_s_from_the_store(
    database: Database, external: dict[str, str], run_dir: Path,
) -> None:
    one, two = run_dir / "one", run_dir / "two"
    a_url, b_url = f"http://127.0.0.1:{(a_port := free_port())}", f"http://127.0.0.1:{(b_port := free_port())}"
    a = start(["serve", "--data-dir", str(one), "--port", str(a_port)], run_dir / "one.log", env=external)
    b = None
    try:
        await ready(a_url, a, run_dir / "one.log")
        admin = {"Authorization": f"Bearer {_cli(external, 'token', 'issue', '--role', 'admin', '--data-dir', str(one))}"}
        share_keys(one, two)
        b = start(["serve", "--data-dir", str(two), "--port", str(b_port)], run_dir / "two.log", env=external)
        await ready(b_url, b, run_dir / "two.log")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            health = await _health(session, b_url)
            assert health["role"] == "standby" and health["writer_queue"] == 0, health
            assert f"cardhub pid {a.pid} since " in health["active"], health
            assert (await _health(session, a_url))["role"] == "active"
            assert await _metric(session, a_url, "cardhub_active") == 1
            assert await _metric(session, b_url, "cardhub_active") == 0

            load = Load(a_url, await setup_devices(session, a_url, admin))
            till = await _lost_card(session, a_url, admin)
            await _standby_answers(session, b_url, admin, load.devices[0], external, str(two))

            senders = [asyncio.ensure_future(load.run(session, d)) for d in load.devices]
            while sum(map(len, load.acknowledged.values())) < ACKED_BEFORE_KILL:
                await asyncio.sleep(0.05)
            killed = time.monotonic()
            os.killpg(a.pid, signal.SIGKILL)  # the machine dies: the hub and its projections' process
            load.url = b_url  # the devices' next address (a virtual IP or DNS in a deployment)
            first_accepted = await _first_accepted(load, killed)
            await asyncio.sleep(1)  # some load on the new active hub
            load.stop = True
            await asyncio.gather(*senders)
            await send_what_is_pending(session, load)
            lost = await _purchase(session, b_url, till)
            await views_caught_up(session, b_url, timeout_s=30)
            health = await _health(session, b_url)
            active_metric = await _metric(session, b_url, "cardhub_active")

        acknowledged = {(device, seq) for device, seqs in load.acknowledged.items() for seq in seqs}
        stored = [s for s in await asyncio.to_thread(stored_swipes, database.url) if s[0] != till.device_id]
        after = [(status, code) for sent, _, status, code in load.answers if sent >= killed and status != 200]
        verify = subprocess.run([*CLI, "audit", "verify", "--data-dir", str(two)],
                                env=external, capture_output=True, text=True, timeout=120)
        print(f"\nstandby takeover: kill -> first accepted at the standby {first_accepted - killed:.2f} s;"
              f" devices saw {sum(s == 503 for s, _ in after)} 503s and {sum(s == 0 for s, _ in after)} lost"
              f" connections; acknowledged {len(acknowledged)}, stored {len(stored)}"
              f" ({len(stored) - len(set(stored))} twice)")
        assert lost["status"] == "accepted" and lost["decision"] == "declined" and lost["reason"] == "card_lost", lost
        assert first_accepted - killed < TAKEOVER_S
        assert all(status == 0 or (status, code) == (503, "standby") for status, code in after), after[:10]
        assert len(stored) == len(set(stored)), "an event stored twice"
        assert set(stored) == acknowledged, (sorted(acknowledged - set(stored))[:5], sorted(set(stored) - acknowledged)[:5])
        assert health["role"] == "active" and "active" not in health and health["status"] == "ok", health
        assert active_metric == 1
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        for hub in (a, b):
            if hub is not None and hub.poll() is None:
                hub.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(hub.wait, 15)
                finally:
                    if hub.poll() is None:
                        hub.kill()
                        hub.wait()
    assert b.returncode == 0, (run_dir / "two.log").read_text()[-4000:]


async def _lost_card(session: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> SimDevice:
    """A till whose card is reported lost through the active hub, after the standby started."""
    till = SimDevice("pos-9", "pos")
    await post_created(session, url + "/v1/devices", {"device_id": till.device_id, "kind": "pos",
                                                     "public_key": till.public_key, "merchant_id": "canteen-1"}, admin)
    await post_created(session, url + "/v1/accounts", {"account_id": "s9", "name": "韩梅梅", "category": "student"}, admin)
    await post_created(session, url + "/v1/cards", {"card_uid": LOST_CARD, "account_id": "s9"}, admin)
    await post_created(session, url + "/v1/accounts/s9/topups", {"amount": 10_000, "ref": "t9"}, admin)
    assert (await _purchase(session, url, till))["decision"] == "approved"
    async with session.post(f"{url}/v1/cards/{LOST_CARD}/lost", headers=admin) as resp:
        assert resp.status == 200, await resp.text()
    return till


async def _purchase(session: aiohttp.ClientSession, url: str, till: SimDevice) -> dict:
    till.purchase(LOST_CARD, 100, NOON)
    async with session.post(f"{url}/v1/devices/{till.device_id}/events", json={"events": till.batch(1)}) as resp:
        assert resp.status == 200, await resp.text()
        (result,) = (await resp.json())["results"]
    till.acknowledge([result])
    return result


async def _standby_answers(session: aiohttp.ClientSession, url: str, admin: dict[str, str], device: SimDevice,
                           env: dict[str, str], data_dir: str) -> None:
    """Reads are answered; an upload or a command is 503 standby with Retry-After, and not stored."""
    device.purchase("ABCDEF00", 100, NOON)  # kept pending: the load sends it to the active hub
    async with session.post(f"{url}/v1/devices/{device.device_id}/events", json={"events": device.batch(1)}) as resp:
        problem = await resp.json(content_type=None)
        assert resp.status == 503 and problem["code"] == "standby", problem
        assert resp.headers["Retry-After"] == "1" and resp.content_type == "application/problem+json"
    async with session.post(url + "/v1/accounts/s0/topups", json={"amount": 100, "ref": "standby"}, headers=admin) as resp:
        assert resp.status == 503 and (await resp.json(content_type=None))["code"] == "standby"
    token = await asyncio.to_thread(_cli, env, "token", "issue", "--role", "cardholder", "--scope", "s0", "--data-dir", data_dir)
    cardholder = {"Authorization": f"Bearer {token}"}
    async with session.get(url + "/v1/accounts/s0/balance", headers=cardholder) as resp:
        assert resp.status == 200, await resp.text()
    for path in ("/v1/hub/key", f"/v1/devices/{device.device_id}/hotlist", "/v1/audit/checkpoint", "/v1/stats/dashboard"):
        async with session.get(url + path, headers=admin) as resp:
            assert resp.status == 200, (path, await resp.text())
    # An admin's read of a person is recorded (Access.Read, DESIGN §12), which only the active hub can.
    async with session.get(url + "/v1/accounts/s0/balance", headers=admin) as resp:
        assert resp.status == 503 and (await resp.json(content_type=None))["code"] == "standby"


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([*CLI, *args], env=env, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


async def _health(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/healthz") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    (value,) = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


async def _first_accepted(load: Load, killed: float) -> float:
    """When the first upload sent after the kill was accepted (its answer's arrival)."""
    while not (times := [sent + took for sent, took, _, code in load.answers if sent > killed and code == "accepted"]):
        assert time.monotonic() - killed < 3 * TAKEOVER_S, "no upload accepted after the takeover"
        await asyncio.sleep(0.05)
    return min(times)
