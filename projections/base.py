"""A view is a tracking recorder that owns some tables and writes them with its tracking."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier, Literal

Statement = tuple[Composed, dict[str, Any]]

# The database is down or the connection broke (the library wraps psycopg's errors in its
# own): not a projection's fault, so the runner stops and is started again (hub.runner.projector).
# Anything else a projection's code or statements raise is that projection's failure.
STORE_FAULTS: tuple[type[BaseException], ...] = (
    persistence.OperationalError, persistence.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
)


def clean_text(text: str) -> str:
    """Text PostgreSQL can store: NUL, which ``text`` refuses, and lone surrogates, which UTF-8
    cannot encode, become U+FFFD. Events stored by hubs older than the edge's checks may hold
    either (DESIGN §9); the event store keeps them as they are, a view shows the replacement."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):  # a column of a batch: its values are of one type (or None)
        first = next((v for v in value if v is not None), None)
        if isinstance(first, str):
            return [v if v is None else clean_text(v) for v in value]
        if isinstance(first, list):
            return [_clean(v) for v in value]
    return value


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    """A statement's parameters with every string (in arrays too) made storable."""
    return {name: _clean(value) for name, value in params.items()}


class View(PostgresTrackingRecorder):
    """Subclasses give their tables, name → CREATE TABLE statement (``audit verify`` compares
    each one with its replay), and their indexes, with ``{schema}``. The library names the
    tracking table after the projection: ``<projection name>_tracking``. Batches go to
    PostgreSQL as arrays with ``%b`` placeholders: psycopg dumps arrays in binary several
    times faster than in text (measured: timestamptz 0.16 vs 2.98 µs a value)."""

    tables: ClassVar[Mapping[str, str]] = {}
    indexes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, statement in cls.tables.items():
            if not statement.startswith(f"CREATE TABLE IF NOT EXISTS {{schema}}.{name} ("):
                raise TypeError(f"{cls.__name__}.tables[{name!r}] does not create {name}: {statement[:60]!r}")

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        for statement in (*self.tables.values(), *self.indexes):
            self.sql_create_statements.append(self.sql(statement))

    def sql(self, text: str) -> Composed:
        return SQL(text).format(schema=Identifier(self.datastore.schema))  # type: ignore[arg-type]

    def widen_to_numeric(self, table: str, columns: tuple[str, ...]) -> None:
        """Migrates a view made by an older hub, whose money columns were ``bigint`` (which sums
        of hostile amounts overflowed), to ``numeric`` in place, once: at start, for the columns
        still ``bigint``. (A rewrite of the table, under its lock; the rows stay as they are.)"""
        schema = self.datastore.schema
        for column in columns:
            self.sql_create_statements.append(SQL(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = {schema_text}"
                " AND table_name = {table_text} AND column_name = {column_text} AND data_type = 'bigint') THEN"
                " ALTER TABLE {schema}.{table} ALTER COLUMN {column} TYPE numeric; END IF; END $$"
            ).format(schema_text=Literal(schema), table_text=Literal(table), column_text=Literal(column),
                     schema=Identifier(schema), table=Identifier(table), column=Identifier(column)))

    def write(self, tracking: Tracking, statements: Iterable[Statement] = (), curs: Cursor[Any] | None = None) -> None:
        """Applies the statements and the tracking record in one transaction: ``curs``'s, when
        given (the runner writes every view of a flush in one), else one of its own."""
        if curs is None:
            with self.transaction() as own:
                self.write(tracking, statements, own)
            return
        for statement, params in statements:
            curs.execute(statement, clean_params(params), prepare=True)
        self._insert_tracking(curs, tracking)

    @contextmanager
    def transaction(self) -> Iterator[Cursor[Any]]:
        """A transaction for view writes. Views can always be rebuilt from the event store, and
        a tracking record commits with the rows it covers, so it need not wait for its fsync:
        after a crash a view and its tracking are behind together, never apart."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SET LOCAL synchronous_commit TO OFF"))
            yield curs


TView = TypeVar("TView", bound=View)


class BatchingProjection(Projection[TView], Generic[TView]):
    """Stages the statements of consecutive events; ``flush`` writes them in one transaction
    with the tracking record of the last one. Whoever runs the projection decides when to
    flush (``hub.runner.shared`` does when the subscription has nothing more already fetched)."""

    def __init__(self, view: TView, settings: Mapping[str, str] | None = None) -> None:
        """``settings``: the hub's settings a projection may depend on (``CARDHUB_*``)."""
        super().__init__(view)
        self._staged: list[Statement] = []
        self._last: Tracking | None = None
        self._handlers: dict[type, Callable[..., None]] = {}
        self._dispatcher = _dispatcher(self)

    def process_stored(self, notification: Notification, domain_event: Any, tracking: Tracking) -> None:
        """Called by the runner for each event; projections that need the stored bytes
        (the audit log) override this, the others handle the decoded event.

        A ``singledispatchmethod`` ``process_event`` is looked up once per event class: on
        Python 3.11 every attribute access of one builds a wrapper (``update_wrapper``), and
        at 1,000 swipes/s those were about a tenth of the projections' process."""
        if self._dispatcher is None:
            self.process_event(domain_event, tracking)
            return
        handler = self._handlers.get(type(domain_event))
        if handler is None:
            handler = self._handlers[type(domain_event)] = self._dispatcher(type(domain_event))
        handler(self, domain_event, tracking)

    def stage(self, tracking: Tracking, statements: Iterable[Statement] = ()) -> None:
        self._staged.extend(statements)
        self._last = tracking

    def stage_batch(self) -> None:
        """Projections that sum a flush's rows in memory stage their statements here."""

    def flush(self, curs: Cursor[Any] | None = None) -> None:
        self.write_staged(curs)
        self.written()

    def write_staged(self, curs: Cursor[Any] | None = None) -> None:
        """Writes what is staged, keeping it staged until ``written``: if the transaction
        rolls back, it can be written again."""
        self.stage_batch()
        if self._last is not None:
            self.view.write(self._last, self._staged, curs)

    def written(self) -> None:
        """The transaction that wrote the staged statements has committed."""
        self._staged, self._last = [], None


def _dispatcher(projection: BatchingProjection[Any]) -> Callable[[type], Callable[..., None]] | None:
    """The ``dispatch`` of the projection's ``process_event`` when that is a ``singledispatchmethod``
    (the library's subclass registers its deferred handlers on first access), else None."""
    method = next((vars(c)["process_event"] for c in type(projection).__mro__ if "process_event" in vars(c)), None)
    if not isinstance(method, functools.singledispatchmethod):
        return None
    getattr(projection, "process_event")  # noqa: B009 - the access that registers deferred handlers
    return method.dispatcher.dispatch


def flush_together(
    projections: Sequence[BatchingProjection[Any]],
) -> list[tuple[BatchingProjection[Any], Exception]]:
    """Every projection's staged writes, with their tracking records, in one transaction (the
    views share one database), so they also advance together.

    A failing statement aborts the whole transaction: the projection whose writes raised is
    left out and the transaction is tried again without it, at most once per projection.
    Returns the projections left out, each with its error; their staged writes were not
    written (drop them). Store faults (``STORE_FAULTS``) and failures outside any projection's
    writes (the commit) are raised: they are no projection's doing."""
    failed: list[tuple[BatchingProjection[Any], Exception]] = []
    remaining = list(projections)
    while remaining:
        writing: BatchingProjection[Any] | None = None
        try:
            with remaining[0].view.transaction() as curs:
                for writing in remaining:  # noqa: B007 - names the projection whose writes raise
                    writing.write_staged(curs)
                writing = None
        except STORE_FAULTS:
            raise
        except Exception as exc:  # noqa: BLE001 - a projection's failure, returned to the runner which records it
            if writing is None:
                raise
            failed.append((writing, exc))
            remaining.remove(writing)
            continue
        for projection in remaining:
            projection.written()
        break
    return failed
