"""The runner's hooks into eventsourcing's subscription (9.5's ``ListenNotifySubscription``), with fallbacks.

Each reads or replaces one of the library's private parts; if that part is not there, the hook
logs a warning and the runner goes on as the library would, only slower
(``tests/integration/test_runner_hooks.py`` fails instead; eventsourcing is pinned below 9.6).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.persistence import ShutDown  # the library's queue shutdown (a backport before 3.13)
from eventsourcing.projection import ApplicationSubscription

log = logging.getLogger(__name__)


def _fetched_but_unprocessed(subscription: ApplicationSubscription[Any]) -> Callable[[], bool]:
    """Whether the subscription holds events it has fetched and not yet handed on.

    Reads the library's subscription buffers (eventsourcing 9.5: ``ListenNotifySubscription``);
    if they are not there, every event is written on its own, which is correct, only slower."""
    inner = subscription.subscription
    if not all(hasattr(inner, a) for a in ("_notifications", "_notifications_index", "_notifications_queue")):
        log.warning("projection batching disabled: unknown subscription type %r", type(inner))
        return lambda: False

    def has_more() -> bool:
        return (
            inner._notifications_index < len(inner._notifications)
            or inner._notifications_queue.qsize() > 0
        )

    return has_more


class _CoalescingEvent(threading.Event):
    """The subscription's "notified" flag, which lets a few more commits arrive before the
    pull: under a trickle of single swipes the library reads the store once per NOTIFY,
    a query for every two or three events."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if woke:
            time.sleep(self.delay_s)
        return woke


def _next_within(subscription: ApplicationSubscription[Any]) -> Callable[[float], Notification | None]:
    """The subscription's next notification, or None when none arrives within the timeout (so
    an idle runner can retry a failed projection). Waits on the library's queue of fetched
    pages (eventsourcing 9.5's ``ListenNotifySubscription``), then lets its ``__next__`` hand the
    notification out; if that queue is not there, waits as long as the library does."""
    inner = subscription.subscription
    if not all(hasattr(inner, a) for a in ("_notifications", "_notifications_index", "_notifications_queue",
                                           "_has_been_stopped")):
        log.warning("idle retries disabled: unknown subscription type %r", type(inner))
        return lambda timeout: next(inner)

    def next_within(timeout: float) -> Notification | None:
        if inner._notifications_index == len(inner._notifications) and not inner._has_been_stopped:
            try:
                page = inner._notifications_queue.get(timeout=timeout)
            except queue.Empty:
                return None
            except ShutDown:  # stopped: the library's __next__ ends the iteration
                return next(inner)
            inner._notifications_queue.task_done()
            inner._notifications, inner._notifications_index = page, 0
        return next(inner)

    return next_within


def _coalesce_pulls(subscription: ApplicationSubscription[Any], delay_s: float) -> None:
    """Gives the library's pull thread a coalescing flag (eventsourcing 9.5's
    ``ListenNotifySubscription._has_been_notified``); if it is not there, pulls stay as they are."""
    inner = subscription.subscription
    old = getattr(inner, "_has_been_notified", None)
    if not isinstance(old, threading.Event):
        log.warning("pull coalescing disabled: unknown subscription type %r", type(inner))
        return
    inner._has_been_notified = _CoalescingEvent(delay_s)
    old.set()  # the pull thread may be waiting on the old flag: wake it to take the new one
