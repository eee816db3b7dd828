"""The projection runner reaches into eventsourcing's subscription (``hub.runner.hooks``:
the buffers of fetched pages, the pull thread's "notified" flag). Were the library to rename
them, the runner would fall back, silently but for a log line, to writing each event alone and
waiting as long as the library does; this test fails instead. (eventsourcing is pinned below
its next minor version in pyproject.toml.)"""

from __future__ import annotations

import logging
import queue
import threading
import time
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.projection import ApplicationSubscription

from domain.application import CampusCard
from hub.runner.hooks import _coalesce_pulls, _CoalescingEvent, _fetched_but_unprocessed, _next_within
from hub.service.app import application_env
from hub.storage.store import Database


def test_the_runners_hooks_into_the_librarys_subscription_are_attached(
    database: Database, caplog: pytest.LogCaptureFixture,
) -> None:
    app = CampusCard(env=application_env(database))
    try:
        with ApplicationSubscription(app, gt=0) as subscription:
            _check_hooks(subscription, app, caplog)
    finally:
        app.close()


def _check_hooks(subscription: ApplicationSubscription, app: CampusCard, caplog: pytest.LogCaptureFixture) -> None:
    inner = subscription.subscription
    # What the runner reads and replaces, with the types it relies on.
    assert isinstance(inner._notifications, list)
    assert isinstance(inner._notifications_index, int)
    assert isinstance(inner._notifications_queue, queue.Queue)
    assert isinstance(inner._has_been_notified, threading.Event)
    assert isinstance(inner._has_been_stopped, bool)
    with caplog.at_level(logging.WARNING, logger="hub.runner.hooks"):
        has_more = _fetched_but_unprocessed(subscription)
        next_within = _next_within(subscription)
        _coalesce_pulls(subscription, 0.001)
    assert not caplog.records, caplog.text  # no "... disabled: unknown subscription type"
    assert isinstance(inner._has_been_notified, _CoalescingEvent)  # the pull thread waits on ours

    assert next_within(0.05) is None  # idle: it returns (the fallback would wait for an event)
    assert not has_more()
    ids = app.recorder.insert_events([StoredEvent(uuid4(), 1, "t", b"{}")])
    assert ids
    deadline = time.monotonic() + 10
    while not has_more():  # fetched by the pull thread, not yet handed on (the fallback: never)
        assert time.monotonic() < deadline, "the subscription never fetched the event"
        time.sleep(0.01)
    notification = next_within(5)
    assert notification is not None and notification.id == ids[0]
    assert not has_more()
