"""Every projection replayed into a scratch schema, and each of its tables compared with the live one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.persistence import Notification, Tracking
from psycopg import sql
from psycopg.rows import dict_row

from domain.application import CampusCard
from hub.audit.report import Check
from hub.storage.budget import VERIFY, pool_env
from hub.storage.store import Database
from projections.base import View, flush_together
from projections.catalogue import PROJECTIONS, open_views
from projections.failures import one_line

NOT_REPLAYED = {"audit_checkpoints"}  # signed by the hub, not derived from events
FLUSH_EVERY = 2000


class Replay:
    """The projections, writing into a scratch schema, each stopping where its live view was."""

    def __init__(self, database: Database, schema: str, positions: dict[str, int], settings: dict[str, str]) -> None:
        self.connection = psycopg.connect(database.url, row_factory=dict_row, autocommit=True, application_name=VERIFY)
        self.connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        views = open_views({**database.eventsourcing_env(), **pool_env(VERIFY, 1), "POSTGRES_SCHEMA": schema})
        self.projections = [(cls(views[cls.name], settings), positions[cls.name]) for cls, _ in PROJECTIONS]
        self.pending = 0
        self.failed: dict[str, str] = {}  # projection → why its replay stopped

    def apply(self, notification: Notification, domain_event: Any) -> None:
        tracking = Tracking(CampusCard.name, notification.id)
        for projection, position in self.projections:
            if notification.id <= position and projection.name not in self.failed:
                try:
                    projection.process_stored(notification, domain_event, tracking)
                except Exception as exc:  # noqa: BLE001 - a projection that fails on an event is a finding
                    self.failed[projection.name] = f"notification {notification.id}: {one_line(exc)}"
        self.pending += 1
        if self.pending >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        for projection, exc in flush_together(
            [projection for projection, _ in self.projections if projection.name not in self.failed]
        ):
            self.failed[projection.name] = f"writing its view: {one_line(exc)}"
        self.pending = 0

    def close(self) -> None:
        self.projections[0][0].view.datastore.close()  # the views' one datastore
        self.connection.close()

    def view(self, name: str) -> Any:
        return next(p.view for p, _ in self.projections if p.name == name)


def replayed_tables(view_class: type[View]) -> list[str]:
    return [name for name in view_class.tables if name not in NOT_REPLAYED]


def _primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (f"public.{table}",),
    ).fetchall()
    return [r["attname"] for r in rows]


def compare(live: psycopg.Connection[Any], scratch: psycopg.Connection[Any], table: str, schema: str,
            check: Check) -> None:
    """Merges the two tables in primary-key order (bytewise, so Python and PostgreSQL agree)."""
    key = _primary_key(live, table)
    order = sql.SQL(", ").join(sql.SQL("{} COLLATE \"C\"").format(sql.Identifier(k)) if _is_text(live, table, k)
                               else sql.Identifier(k) for k in key)
    query = sql.SQL("SELECT * FROM {}.{} ORDER BY {}")
    live_rows = _stream(live, query.format(sql.Identifier("public"), sql.Identifier(table), order), f"live_{table}")
    with scratch.transaction():
        replay_rows = _stream(scratch, query.format(sql.Identifier(schema), sql.Identifier(table), order),
                              f"replay_{table}")
        a, b = next(live_rows, None), next(replay_rows, None)
        while a is not None or b is not None:
            ka = tuple(a[k] for k in key) if a is not None else None
            kb = tuple(b[k] for k in key) if b is not None else None
            if ka == kb:
                check.count += 1
                if a != b:
                    diff = [f"{c} {a[c]!r} in the view, {b[c]!r} replayed" for c in a if a[c] != b.get(c)]
                    check.fail(f"{_key(key, ka)}: " + "; ".join(diff))
                a, b = next(live_rows, None), next(replay_rows, None)
            elif kb is None or (ka is not None and ka < kb):
                check.fail(f"{_key(key, ka)}: in the view but not in the replay")
                a = next(live_rows, None)
            else:
                check.fail(f"{_key(key, kb)}: replayed but missing from the view")
                b = next(replay_rows, None)


def _is_text(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s AND column_name = %s", (table, column),
    ).fetchone()
    return bool(row) and row["data_type"] == "text"


def _stream(conn: psycopg.Connection[Any], query: sql.Composed, name: str) -> Iterator[dict[str, Any]]:
    with conn.cursor(name=name) as curs:
        curs.itersize = 5000
        curs.execute(query)
        yield from curs


def _key(columns: list[str], values: tuple[Any, ...] | None) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(columns, values or (), strict=False))


def drop_schema(database: Database, schema: str) -> None:
    with psycopg.connect(database.url, autocommit=True, application_name=VERIFY) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
