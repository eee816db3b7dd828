"""The writer's application (``hub.ingest.application``): the domain's use cases and tables,
saved in chunks, snapshots from the objects just saved, the pipeline's hints; on the library's
in-memory store. (A failed save's eviction: tests/integration/test_isolation.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.wire import parse_envelope, public_key_b64
from hub.ingest.application import MAX_EVENTS_PER_SAVE, IngestCampusCard

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


def _campus() -> tuple[IngestCampusCard, SimDevice]:
    app = IngestCampusCard(env={"AGGREGATE_CACHE_MAXSIZE": "1000", "AGGREGATE_CACHE_FASTFORWARD": "n"})
    pos = SimDevice("pos-1", "pos")
    app.register_merchant("canteen-1", "第一食堂", "dining", actor=CLI)
    app.register_device("pos-1", "pos", pos.public_key, merchant_id="canteen-1", actor=CLI)
    app.open_account("s1", "韩梅梅", "student", [], actor=CLI)
    app.issue_card(CARD, "s1", actor=CLI)
    app.credit("s1", "topup", 10**9, "t1", actor=CLI)
    return app, pos


def _send(app: IngestCampusCard, device_id: str, raws: list[dict]) -> int:
    [outcome] = app.record_swipes([(device_id, [Item(parse_envelope(raw)) for raw in raws])])
    return outcome.next_seq


def test_the_writers_application_is_the_domains_under_the_same_name() -> None:
    """The library names an application's tables after it, and a subclass after itself."""
    assert IngestCampusCard.name == CampusCard.name == "cardhub"


def test_a_large_batch_is_saved_in_chunks_and_snapshotted_from_what_was_saved() -> None:
    app, pos = _campus()
    for _ in range(1200):
        pos.purchase(CARD, 1, NOON)
    assert _send(app, "pos-1", pos.pending) == 1201
    log_id = ids.swipe_log_id("pos-1")
    swipes_per_save = MAX_EVENTS_PER_SAVE // 2  # a swipe and its debit
    # The log's version at the end of the saves that crossed 500 and 1000 (the library's own
    # path would re-read the log at 500 and 1000 instead).
    assert [s.originator_version for s in app.snapshots.get(log_id)] == [
        1 + 4 * swipes_per_save, 1 + 8 * swipes_per_save]


def test_the_hints_follow_each_upload_and_keep_no_unknown_device() -> None:
    app, pos = _campus()
    pos.purchase(CARD, 1, NOON)
    pos.purchase(CARD, 1, NOON)
    _send(app, "pos-1", pos.pending)
    assert app.next_seqs == {"pos-1": 3}
    assert public_key_b64(app.device_keys["pos-1"]) == pos.public_key
    stranger = SimDevice("pos-9", "pos")
    assert _send(app, "pos-9", [stranger.purchase(CARD, 1, NOON)]) == 1
    assert set(app.next_seqs) == set(app.device_keys) == {"pos-1"}
