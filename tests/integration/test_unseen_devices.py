"""A device the writer has not seen since the hub started (registered a moment ago, or before a
restart) has the signatures of its large uploads checked before the writer, like any other
device (``hub.ingest.pipeline._learn_key``): the writer's answers are the same either way, and
a forged upload still costs one check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from device_sim.device import SimDevice
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


async def test_a_just_registered_devices_first_large_upload_is_checked_before_the_writer(hub: Hub) -> None:
    await hub.merchant()
    await hub.account("s1", cash=10_000_000, card=CARD)
    device = await hub.pos()
    for _ in range(10):
        device.purchase(CARD, 10, NOON, offline=True)
    before = await hub.signature_checks()

    assert [r["status"] for r in await hub.send(device)] == ["accepted"] * 10

    assert await hub.signature_checks() - before == 10


async def test_after_a_restart_a_devices_first_large_upload_is_checked_before_the_writer(
    database: Database, tmp_path: Path,
) -> None:
    first = await start_hub(database, tmp_path / "hub")
    try:
        await first.merchant()
        await first.account("s1", cash=10_000_000, card=CARD)
        device = await first.pos()
        device.purchase(CARD, 10, NOON)
        assert [r["status"] for r in await first.send(device)] == ["accepted"]
    finally:
        await first.client.close()
    second = await start_hub(database, tmp_path / "hub")
    try:
        for _ in range(10):
            device.purchase(CARD, 10, NOON)
        before = await second.signature_checks()
        assert [r["status"] for r in await second.send(device)] == ["accepted"] * 10
        assert await second.signature_checks() - before == 10
    finally:
        await second.client.close()


async def test_a_forged_large_upload_from_an_unseen_device_costs_one_check(hub: Hub) -> None:
    await hub.merchant()
    await hub.account("s1", cash=10_000_000, card=CARD)
    device = await hub.pos()
    forger = SimDevice(device.device_id, "pos")  # the same device id, another key
    forged = [forger.purchase(CARD, 10, NOON) for _ in range(100)]
    before = await hub.signature_checks()

    answer = await hub.upload(device.device_id, forged)

    assert await hub.signature_checks() - before == 1
    assert [r.get("code") for r in answer["results"]] == ["bad_signature"] + ["not_processed"] * 99
    assert answer["next_seq"] == 1


async def test_an_unregistered_devices_large_upload_is_unknown_and_checks_nothing(hub: Hub) -> None:
    stranger = SimDevice("pos-404", "pos")
    events = [stranger.purchase(CARD, 10, NOON) for _ in range(10)]
    before = await hub.signature_checks()

    answer = await hub.upload(stranger.device_id, events)

    assert await hub.signature_checks() - before == 0
    assert [r.get("code") for r in answer["results"]] == ["unknown_device"] + ["not_processed"] * 9
