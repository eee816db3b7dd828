"""Isolation in the writer (DESIGN §9): an upload that cannot be recorded fails alone — the
other uploads of its micro-batch are stored and answered — and the cache keeps nothing that
was not stored. The failures are real: a trigger in PostgreSQL, an envelope the domain cannot
decide; and one device resending it for seconds does not cost another device a single 503."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from device_sim.device import SimDevice
from domain.application import CampusCard
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
YEAR_0001 = datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"
VICTIM_CARD = "ABCDEF02"
MARKER = "DEAD0000BEEF"  # a card uid: the trigger refuses every stored row that mentions it
TRIGGER = f"""
CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF position(convert_to('{MARKER}', 'UTF8') in NEW.state) > 0 THEN
    RAISE EXCEPTION 'refused by the test''s trigger';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_marked BEFORE INSERT ON {CampusCard.name}_events
  FOR EACH ROW EXECUTE FUNCTION refuse_marked();
"""


async def _upload(hub: Hub, device: SimDevice, events: list[dict[str, Any]]) -> tuple[int, Any]:
    resp = await hub.client.post(f"/v1/devices/{device.device_id}/events", json={"events": events})
    return resp.status, await resp.json(content_type=None)


async def _swipe_for(hub: Hub, devices: list[SimDevice], seconds: float) -> list[tuple[int, Any]]:
    """Each device sends single online swipes back to back for ``seconds``; every answer."""
    answers: list[tuple[int, Any]] = []
    stop_at = time.monotonic() + seconds

    async def loop(device: SimDevice) -> None:
        while time.monotonic() < stop_at:
            device.purchase(CARD, 10, NOON)
            status, body = await _upload(hub, device, device.pending)
            answers.append((status, body))
            if status == 200:
                device.acknowledge(body["results"])

    await asyncio.gather(*(loop(d) for d in devices))
    return answers


async def _resend_for(hub: Hub, device: SimDevice, events: list[dict[str, Any]], seconds: float) -> list[tuple[int, Any]]:
    answers: list[tuple[int, Any]] = []
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        answers.append(await _upload(hub, device, events))
    return answers


async def test_an_upload_the_store_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(
    hub: Hub, database: Database,
) -> None:
    await hub.merchant()
    await hub.account("s1", cash=10_000_000, card=CARD)
    await hub.account("s2", cash=10_000, card=VICTIM_CARD)
    poisoner = await hub.pos("pos-poison")
    others = [await hub.pos(f"pos-{n}") for n in range(4)]
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(TRIGGER)
    poisoner.purchase(VICTIM_CARD, 100, NOON)
    poisoner.purchase(VICTIM_CARD, 100, NOON)
    poisoner.purchase(MARKER, 100, NOON)  # an unknown card: declined, and its record is refused
    poison = list(poisoner.pending)

    swiped, resent = await asyncio.gather(_swipe_for(hub, others, 3.0), _resend_for(hub, poisoner, poison, 3.0))

    assert len(swiped) > 20 and len(resent) > 5, (len(swiped), len(resent))
    assert {status for status, _ in swiped} == {200}
    assert all(r["status"] == "accepted" for _, body in swiped for r in body["results"])
    assert {status for status, _ in resent} == {200}
    first = resent[0][1]["results"]
    assert [r["status"] for r in first] == ["accepted", "accepted", "rejected"], first
    for _, body in resent[1:]:
        assert [r["status"] for r in body["results"]] == ["duplicate", "duplicate", "rejected"], body
    for _, body in resent:
        poisoned = body["results"][2]
        assert (poisoned["seq"], poisoned["code"]) == (3, "invalid") and "could not record" in poisoned["detail"]
        assert body["next_seq"] == 3
    # Nothing that was refused stays in the cache: the next online swipe of the victim's card,
    # decided on the writer's cached account, sees exactly the two stored debits.
    checker = await hub.pos("pos-check")
    checker.purchase(VICTIM_CARD, 1, NOON)
    (result,) = await hub.send(checker)
    assert (result["status"], result["balance"]) == ("accepted", 10_000 - 200 - 1)
    assert (await hub.balance("s2"))["total"] == 10_000 - 200 - 1
    assert (await hub.balance("s1"))["total"] == 10_000_000 - 10 * len(swiped)


async def test_while_one_device_resends_a_year_0001_envelope_another_device_is_never_refused(hub: Hub) -> None:
    await hub.merchant()
    await hub.account("s1", cash=10_000_000, card=CARD)
    poisoner = await hub.pos("pos-poison")
    other = await hub.pos("pos-other")
    poison = [poisoner.purchase(CARD, 100, YEAR_0001)]

    swiped, resent = await asyncio.gather(_swipe_for(hub, [other], 5.0), _resend_for(hub, poisoner, poison, 5.0))

    assert len(swiped) > 20 and len(resent) > 20, (len(swiped), len(resent))
    assert [status for status, _ in swiped] == [200] * len(swiped)
    assert all(r["status"] == "accepted" for _, body in swiped for r in body["results"])
    for status, body in resent:
        assert status == 200, body
        assert [(r["status"], r["code"]) for r in body["results"]] == [("rejected", "invalid")], body
    assert (await hub.balance("s1"))["total"] == 10_000_000 - 10 * len(swiped)


async def test_a_forged_thousand_event_upload_costs_one_signature_check(hub: Hub) -> None:
    await hub.merchant()
    await hub.account("s1", cash=10_000_000, card=CARD)
    device = await hub.pos()
    device.purchase(CARD, 10, NOON)
    assert [r["status"] for r in await hub.send(device)] == ["accepted"]  # the hub now knows its key
    forger = SimDevice(device.device_id, "pos", last_seq=device.last_seq, prev=device.prev)  # another key
    forged = [forger.purchase(CARD, 10, NOON) for _ in range(1000)]
    before = await hub.signature_checks()

    answer = await hub.upload(device.device_id, forged)

    assert await hub.signature_checks() - before == 1
    codes = [r.get("code") for r in answer["results"]]
    assert codes == ["bad_signature"] + ["not_processed"] * 999
    assert answer["next_seq"] == 2


async def test_a_device_over_its_share_of_the_queue_is_refused_and_no_other_device_is(
    database: Database, tmp_path: Path,
) -> None:
    hub = await start_hub(database, tmp_path / "hub", queue_max_events=2000)  # 500 events per device
    try:
        await hub.merchant()
        await hub.account("s1", cash=10_000_000, card=CARD)
        flooder = await hub.pos("pos-flood")
        other = await hub.pos("pos-other")
        for _ in range(1600):
            flooder.purchase(CARD, 1, NOON)
        chunks = [flooder.pending[i:i + 400] for i in range(0, 1600, 400)]

        async def single() -> list[tuple[int, Any]]:
            answers = []
            for _ in range(10):
                other.purchase(CARD, 10, NOON)
                status, body = await _upload(hub, other, other.pending)
                answers.append((status, body))
                if status == 200:
                    other.acknowledge(body["results"])
            return answers

        flood_answers, singles = await asyncio.gather(
            asyncio.gather(*(hub.client.post("/v1/devices/pos-flood/events", json={"events": c}) for c in chunks)),
            single(),
        )

        refused = [resp for resp in flood_answers if resp.status == 503]
        assert refused, [resp.status for resp in flood_answers]
        for resp in refused:
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json(content_type=None))["code"] == "overloaded"
        assert [status for status, _ in singles] == [200] * 10
        assert all(body["results"][0]["status"] == "accepted" for _, body in singles)
    finally:
        await hub.client.close()
