"""A view is a tracking recorder that owns some tables and writes them with its tracking."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg.sql import SQL, Composed, Identifier

Statement = tuple[Composed, dict[str, Any]]


class View(PostgresTrackingRecorder):
    """Subclasses give their CREATE statements with ``{schema}``. The library names the
    tracking table after the projection: ``<projection name>_tracking``."""

    tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in self.tables:
            self.sql_create_statements.append(self.sql(statement))

    def sql(self, text: str) -> Composed:
        return SQL(text).format(schema=Identifier(self.datastore.schema))  # type: ignore[arg-type]

    def write(self, tracking: Tracking, statements: Iterable[Statement] = ()) -> None:
        """Applies the statements and the tracking record in one transaction.

        Views can always be rebuilt from the event store, and the tracking record commits
        with the rows it covers, so a view transaction need not wait for its fsync:
        after a crash the view and its tracking are behind together, never apart."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SET LOCAL synchronous_commit TO OFF"))
            for statement, params in statements:
                curs.execute(statement, params, prepare=True)
            self._insert_tracking(curs, tracking)


TView = TypeVar("TView", bound=View)


class BatchingProjection(Projection[TView], Generic[TView]):
    """Stages the statements of consecutive events and writes them in one transaction with
    the tracking record of the last one: when ``max_batch`` events are staged, or as soon
    as the subscription has no further event already fetched (so a lone swipe is applied at
    once, and a burst in a few large transactions).

    ``has_more`` is set by whoever runs the projection; by default every event is written
    on its own."""

    max_batch: ClassVar[int] = 1000
    # With nothing fetched, wait this long for more before writing: at a trickle of single
    # swipes this turns one view transaction per event into one per few events, for a lag
    # of at most a few milliseconds.
    linger_s: ClassVar[float] = 0.003

    def __init__(self, view: TView) -> None:
        super().__init__(view)
        self.has_more: Callable[[], bool] = lambda: False
        self._staged: list[Statement] = []
        self._events = 0
        self._last: Tracking | None = None

    def stage(self, tracking: Tracking, statements: Iterable[Statement] = ()) -> None:
        self._staged.extend(statements)
        self._last = tracking
        self._events += 1
        if self._events >= self.max_batch or not self._more_soon():
            self.flush()

    def _more_soon(self) -> bool:
        deadline = time.monotonic() + self.linger_s
        while not self.has_more():
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.linger_s / 6)
        return True

    def flush(self) -> None:
        if self._last is None:
            return
        self.view.write(self._last, self._staged)
        self._staged, self._events, self._last = [], 0, None
