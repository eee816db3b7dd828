"""A failing batch (DESIGN §9): the store's fault told from an upload's, the event at fault found, faults logged.

A batch that fails for any reason but an unreachable store is retried in halves, so
the other uploads commit and only the upload at fault fails; within it, the events before the
one at fault are stored and that one is ``rejected``/``invalid`` (the rest ``not_processed``).
An unreachable store fails the whole batch at once (``WriterFailed``: 503, nothing stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing import persistence

from domain.application import CampusCard, Item
from domain.facts import UploadResult

log = logging.getLogger(__name__)

FAULT_LOG_EVERY_S = 60.0  # one line per device and kind of fault per minute, not one per resend
FAULT_LOG_KEYS_MAX = 1024
_UNREACHABLE = (
    persistence.OperationalError, persistence.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
    OSError,
)


class WriterFailed(Exception):
    """The batch could not be committed; nothing of it was stored."""


@dataclass(slots=True)
class Isolated:
    """What committing the events of a failing part alone found."""

    results: list[UploadResult]  # of the events committed (up to a rejection, if one was decided)
    next_seq: int
    at: int  # the index in the part of the event at fault
    unreachable: Exception | None = None  # the store went away meanwhile: set, and nothing more was tried


def isolate(app: CampusCard, device_id: str, items: Sequence[Item], next_seq: int) -> Isolated:
    """Finds the event at fault among ``items`` (which failed together), on freshly loaded
    aggregates, by committing ever longer runs of the events before it (a binary search)."""
    lo, hi = 0, len(items)  # items[:lo] are committed; items[:hi] fail
    results: list[UploadResult] = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            outcome = app.record_swipes([(device_id, items[lo:mid])])[0]
        except Exception as again:  # noqa: BLE001 - the same classification as a batch
            if unreachable(again):
                return Isolated(results, next_seq, lo, again)
            hi = mid
            continue
        results.extend(outcome.results)
        next_seq = outcome.next_seq
        lo = mid
        if results and results[-1]["status"] == "rejected":
            break  # the events after a rejection are not processed anyway
    return Isolated(results, next_seq, lo)


def unreachable(exc: BaseException) -> bool:
    """Whether the store could not be reached (not the fault of any upload): the error or one
    it was raised from."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class FaultLog:
    """Logs a kind of fault once with its traceback, then at most once a minute with a count."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last logged, since)

    def upload(self, device_id: str, exc: Exception) -> None:
        self._log((device_id, type(exc).__name__), exc, f"an upload of device {device_id} could not be recorded "
                                                        f"({type(exc).__name__}: {exc}); answered as rejected")

    def store(self, exc: Exception, uploads: int) -> None:
        self._log(("", type(exc).__name__), exc, f"the event store is unreachable ({type(exc).__name__}: {exc}); "
                                                 f"{uploads} uploads answered 503")

    def _log(self, key: tuple[str, str], exc: Exception, message: str) -> None:
        now = time.monotonic()
        last = self._seen.get(key)
        if last is None:
            if len(self._seen) >= FAULT_LOG_KEYS_MAX:
                self._seen.clear()
            self._seen[key] = (now, 0)
            log.error("%s", message, exc_info=exc)
        elif now - last[0] >= FAULT_LOG_EVERY_S:
            self._seen[key] = (now, 0)
            log.error("%s (%d more like it in the last %.0f s)", message, last[1], now - last[0])
        else:
            self._seen[key] = (last[0], last[1] + 1)
