"""The writer's recorder keeps the library's guarantees: one event per (aggregate, version),
notification ids in insertion order, and subscribers notified."""

from __future__ import annotations

from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.application import CampusCard
from hub.ingest.recorder import ArrayInsertRecorder
from hub.service.app import application_env
from hub.storage.store import Database


def test_array_insert_refuses_a_second_event_for_a_version_and_keeps_the_order(database: Database) -> None:
    app = CampusCard(env=application_env(database))
    try:
        recorder = app.recorder
        assert isinstance(recorder, ArrayInsertRecorder)
        a, b = uuid4(), uuid4()
        events = [StoredEvent(a, 1, "t", b"1"), StoredEvent(b, 1, "t", b"2"), StoredEvent(a, 2, "t", b"3")]
        ids = recorder.insert_events(events)
        assert ids is not None and list(ids) == sorted(ids) and len(ids) == 3
        with pytest.raises(IntegrityError):
            recorder.insert_events([StoredEvent(b, 2, "t", b"4"), StoredEvent(a, 2, "t", b"again")])
        notifications = recorder.select_notifications(start=None, limit=10)
        assert [(n.originator_id, n.originator_version, n.state) for n in notifications] == [
            (a, 1, b"1"), (b, 1, b"2"), (a, 2, b"3")]  # nothing of the refused batch was stored
        assert [n.id for n in notifications] == list(ids)
    finally:
        app.close()
