"""The embedded PostgreSQL killed under load: while it is down every upload is answered
``503 store_unavailable`` within 2 s, the hub starts the server again, uploads are accepted
within 10 s of the kill and the views catch up within 10 s more; what was acknowledged is
stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import psycopg_pool.base
from eventsourcing.postgres import PostgresApplicationRecorder

from tests.e2e.devices import AMOUNT_FEN, DEVICES, START_CASH, Load, setup_devices, views_caught_up
from tests.e2e.processes import CLI, free_port, postmaster_pid, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture


def test_the_library_hooks_the_hub_bounds_are_there() -> None:
    """hub.storage.store.fast_reconnects and hub.ingest.recorder.bound_retries reach into psycopg_pool and eventsourcing."""
    assert hasattr(psycopg_pool.base.AttemptWithBackoff, "INITIAL_DELAY")
    assert hasattr(psycopg_pool.base.AttemptWithBackoff, "DELAY_BACKOFF")
    for name in ("select_events", "select_notifications", "max_notification_id"):
        assert hasattr(getattr(PostgresApplicationRecorder, name), "__wrapped__"), name


async def test_a_killed_postmaster_is_restarted_and_uploads_answer_503_fast_meanwhile(run_dir: Path) -> None:
    data_dir, port = run_dir / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = run_dir / "hub.log"
    hub = start(["serve", "--data-dir", str(data_dir), "--port", str(port)], log_path)
    try:
        await ready(url, hub, log_path)
        token = subprocess.run([*CLI, "token", "issue", "--role", "admin", "--data-dir", str(data_dir)],
                               check=True, capture_output=True, text=True).stdout.strip()
        admin = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            load = Load(url, await setup_devices(session, url, admin))
            senders = [asyncio.ensure_future(load.run(session, d)) for d in load.devices]
            while sum(map(len, load.acknowledged.values())) < 100:
                await asyncio.sleep(0.05)
            killed = time.monotonic()
            os.kill(postmaster_pid(data_dir), signal.SIGKILL)
            # (A commit the server made in its last millisecond may still be answered: the
            # outage is counted from the first upload refused after the kill.)
            while not any(sent > killed and status == 503 for sent, _, status, _ in load.answers):
                assert time.monotonic() - killed < 5, "no upload met the outage"
                await asyncio.sleep(0.01)
            refused = min(sent for sent, _, status, _ in load.answers if sent > killed and status == 503)
            while not any(sent > refused and code == "accepted" for sent, _, _, code in load.answers):
                assert time.monotonic() - killed < 15, "no upload accepted 15 s after the kill"
                await asyncio.sleep(0.05)
            first_accepted = min(sent + took for sent, took, _, code in load.answers if sent > refused and code == "accepted")
            await asyncio.sleep(1)  # some load after the recovery
            load.stop = True
            await asyncio.gather(*senders)
            caught_up = await views_caught_up(session, url)

            # The devices send what was never acknowledged until nothing is pending.
            load.stop = False
            for device in load.devices:
                while device.pending:
                    async with session.post(f"{url}/v1/devices/{device.device_id}/events",
                                            json={"events": device.batch(10)}) as resp:
                        answer = await resp.json(content_type=None)
                    assert resp.status == 200, answer  # the hub is back: nothing is refused any more
                    device.acknowledge(answer["results"])
                    for result in answer["results"]:
                        load.acknowledged.setdefault(device.device_id, {})[result["seq"]] = result
            await views_caught_up(session, url)
            balances = {}
            for i in range(DEVICES):
                async with session.get(f"{url}/v1/accounts/s{i}/balance", headers=admin) as resp:
                    balances[f"pos-{i}"] = (await resp.json())["total"]

        during = [(took, status, code) for sent, took, status, code in load.answers if refused <= sent < first_accepted]
        failures = [(took, status, code) for took, status, code in during if status != 200]
        print(f"\nkill -> first accepted {first_accepted - killed:.2f} s; views caught up {caught_up - first_accepted:.2f} s later;"
              f" {len(during)} uploads meanwhile, {len(failures)} answered 503, slowest {max(t for t, _, _ in during):.2f} s;"
              f" acknowledged {sum(map(len, load.acknowledged.values()))}")
        assert failures, "some uploads met the outage"
        assert all(status == 503 and code == "store_unavailable" for _, status, code in failures), failures
        assert max(took for took, _, _ in during) < 2.0, sorted(during)[-5:]
        assert first_accepted - killed < 10
        assert caught_up - first_accepted < 10
        for device in load.devices:
            seqs = load.acknowledged[device.device_id]
            assert sorted(seqs) == list(range(1, len(seqs) + 1))  # every seq acknowledged, in order
            assert all(r["decision"] == "approved" for r in seqs.values())
            # Stored exactly once: each purchase debited once, none lost, none twice.
            assert balances[device.device_id] == START_CASH - AMOUNT_FEN * len(seqs), device.device_id
        assert "embedded PostgreSQL is back after" in log_path.read_text()
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            assert await asyncio.to_thread(hub.wait, 10) == 0
        finally:
            if hub.poll() is None:
                hub.kill()
                hub.wait()
            Path("/tmp/faults-hub.log").write_text(log_path.read_text())
