"""PostgreSQL failover under Patroni (DESIGN §13): two PostgreSQL 15 nodes with synchronous
replication and one etcd, a ``cardhub serve`` on the multi-host URL with
``target_session_attrs=read-write``, devices uploading; the primary's postmaster is killed.
Patroni promotes the synchronous standby, the hub finds it by itself (no restart), uploads meet
``503`` meanwhile and nothing else, every acknowledged event is stored on the new primary exactly
once, and ``cardhub audit verify`` proves a checkpoint saved before the crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.devices import Load, send_what_is_pending, setup_devices, stored_swipes, views_caught_up
from tests.e2e.patroni_cluster import Cluster, Node, ensure_installed
from tests.e2e.processes import CLI, free_port, ready, run_dir, start  # noqa: F401 - run_dir is a fixture

pytestmark = pytest.mark.timeout(240)
ACKED_BEFORE_KILL = 200
PROMOTION_S = 30  # Patroni's own bound here: the leader key's ttl (10 s) plus its loops, with room for a loaded machine
GAP_S = 30


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    ensure_installed()
    cluster = Cluster.create()
    yield cluster
    cluster.stop()


async def test_the_hub_rides_a_patroni_failover_without_losing_an_acknowledged_event(cluster: Cluster, run_dir: Path) -> None:
    began = time.monotonic()
    primary = await asyncio.to_thread(cluster.start)
    standby = next(node for node in cluster.nodes if node is not primary)
    await asyncio.to_thread(cluster.create_database, primary, "cardhub")
    data_dir, port = run_dir / "data", free_port()
    url, log_path = f"http://127.0.0.1:{port}", run_dir / "hub.log"
    env = {**os.environ, "CARDHUB_DATABASE_URL": cluster.url("cardhub"), "CARDHUB_CHECKPOINT_SECONDS": "1"}
    hub = start(["serve", "--data-dir", str(data_dir), "--port", str(port)], log_path, env=env)
    try:
        await ready(url, hub, log_path)
        cluster_up = time.monotonic() - began
        admin = {"Authorization": f"Bearer {_cli(env, 'token', 'issue', '--role', 'admin', '--data-dir', str(data_dir)).strip()}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            load = Load(url, await setup_devices(session, url, admin))
            senders = [asyncio.ensure_future(load.run(session, d)) for d in load.devices]
            while sum(map(len, load.acknowledged.values())) < ACKED_BEFORE_KILL:
                await asyncio.sleep(0.05)
            checkpoint = run_dir / "checkpoint.json"
            async with session.get(url + "/v1/audit/checkpoint", headers=admin) as resp:
                assert resp.status == 200
                checkpoint.write_text(json.dumps(await resp.json()))

            killed = time.monotonic()
            os.kill(primary.postmaster_pid(), signal.SIGKILL)
            promoted = await _promotion(standby, killed)
            first_accepted = await _first_accepted(load, killed)
            await asyncio.sleep(1)  # some load on the new primary
            load.stop = True
            await asyncio.gather(*senders)
            await send_what_is_pending(session, load)
            await views_caught_up(session, url, timeout_s=30)
            async with session.get(url + "/healthz") as resp:
                health = await resp.json()

        assert hub.poll() is None, "the hub carried on by itself"
        acknowledged = {(device, seq) for device, seqs in load.acknowledged.items() for seq in seqs}
        stored = await asyncio.to_thread(stored_swipes, standby.url("cardhub"))
        refused = [(status, code) for sent, _, status, code in load.answers if sent >= killed and status != 200]
        gap = first_accepted - killed
        verify = subprocess.run([*CLI, "audit", "verify", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir)],
                                env=env, capture_output=True, text=True, timeout=120)
        print(f"\npatroni failover: cluster and hub up in {cluster_up:.1f} s; promoted {promoted - killed:.2f} s after the kill;"
              f" gap (kill -> first accepted) {gap:.2f} s; devices saw {sum(s == 503 for s, _ in refused)} 503s"
              f" ({len(refused)} refusals in all); acknowledged {len(acknowledged)}, stored {len(stored)}"
              f" ({len(stored) - len(set(stored))} twice); whole test {time.monotonic() - began:.1f} s")
        assert health["status"] == "ok", health
        assert all(status == 503 and code == "store_unavailable" for status, code in refused), refused[:10]
        assert len(stored) == len(set(stored)), "an event stored twice"
        assert set(stored) == acknowledged, (sorted(acknowledged - set(stored))[:5], sorted(set(stored) - acknowledged)[:5])
        assert gap < GAP_S
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            assert await asyncio.to_thread(hub.wait, 15) == 0, log_path.read_text()[-4000:]
        finally:
            if hub.poll() is None:
                hub.kill()
                hub.wait()


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([*CLI, *args], env=env, check=True, capture_output=True, text=True, timeout=60).stdout


async def _promotion(standby: Node, killed: float) -> float:
    while not await asyncio.to_thread(standby.is_, "primary"):
        assert time.monotonic() - killed < PROMOTION_S, f"Patroni did not promote {standby.name}: {standby.status()}"
        await asyncio.sleep(0.05)
    return time.monotonic()


async def _first_accepted(load: Load, killed: float) -> float:
    """When the first upload sent after the kill was accepted (its answer's arrival)."""
    while not (times := [sent + took for sent, took, _, code in load.answers if sent > killed and code == "accepted"]):
        assert time.monotonic() - killed < GAP_S, "no upload accepted after the failover"
        await asyncio.sleep(0.05)
    return min(times)
