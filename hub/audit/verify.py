"""``cardhub audit verify`` (DESIGN §4): re-checks everything from the event store alone.

One REPEATABLE READ snapshot of the database is read: the events, the live views and their
tracking positions, the latest checkpoint. Every event is hashed into a fresh Merkle tree;
every device envelope's signature and chain is checked against the device's registered key;
the books identity of §1 is summed; every projection is replayed into a scratch schema up to
the position its live view had in the snapshot, and the two are compared row by row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import InfrastructureFactory, Notification, Tracking
from eventsourcing.utils import Environment
from psycopg import sql
from psycopg.rows import dict_row
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from domain import merkle
from domain.accounts import Account
from domain.application import CampusCard
from domain.devices import Device, SwipeLog
from domain.wire import (
    CHECKPOINT_PREFIX,
    GENESIS_PREV,
    event_hash,
    leaf_bytes,
    public_key_from_b64,
    verify_document,
    verify_envelope,
)
from hub.storage.store import Database
from projections.base import View, flush_together
from projections.catalogue import PROJECTIONS, VIEW_POOL
from projections.failures import one_line
from projections.queries import EVENTS_TABLE

console = Console()
NOT_REPLAYED = {"audit_checkpoints"}  # signed by the hub, not derived from events
FLUSH_EVERY = 2000


class VerifyError(Exception):
    """The check could not run (bad checkpoint file, no key): one line, exit status 2."""


@dataclass
class Check:
    name: str
    count: int = 0
    unit: str = ""
    problem: str | None = None  # the first thing found wrong
    detail: str = ""

    def fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, unit: str = "") -> Check:
        check = Check(name, unit=unit)
        self.checks.append(check)
        return check

    @property
    def ok(self) -> bool:
        return all(c.problem is None for c in self.checks)


def verify(
    database: Database, hub_key: Ed25519PublicKey, saved_checkpoint: dict[str, Any] | None = None,
    projection_settings: dict[str, str] | None = None,
) -> Report:
    report = Report()
    signatures = report.add("device signatures", "envelopes")
    chains = report.add("device chains (seq, prev, hash)", "devices")
    leaves = report.add("Merkle tree over the event store", "events")
    checkpoint_check = report.add("latest checkpoint: hub signature and root", "leaves")
    saved_check = report.add("saved checkpoint: signature, root, consistency", "leaves") if saved_checkpoint else None
    books = report.add("books: credits = Σ balances + purchases − reversals", "fen")
    replayed = report.add("replay: every projection applies every event", "projections")

    app = CampusCard(env=database.eventsourcing_env())
    snapshot = psycopg.connect(database.url, row_factory=dict_row, autocommit=False)
    scratch_schema = f"cardhub_verify_{os.getpid()}"
    replay: _Replay | None = None
    try:
        snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        positions = {
            cls.name: _position(snapshot, f"{cls.name}_tracking") for cls, _ in PROJECTIONS
        }
        latest = snapshot.execute(
            "SELECT tree_size, root_hash, issued_at, sig FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        total = snapshot.execute(f"SELECT count(*) AS n FROM {EVENTS_TABLE}").fetchone()["n"]
        wanted_roots = {c["tree_size"] for c in (latest, saved_checkpoint) if c}
        replay = _Replay(database, scratch_schema, positions, projection_settings or {})
        roots, sums = _scan(snapshot, app, replay, total, wanted_roots, signatures, chains, leaves)
        replay.flush()
        replayed.count = len(PROJECTIONS)
        for name, problem in replay.failed.items():
            replayed.fail(f"{name}: {problem}")
        _check_missing(snapshot, leaves)

        _check_checkpoint(latest, roots, hub_key, checkpoint_check, leaves.count)
        if saved_checkpoint is not None and saved_check is not None:
            _check_saved(snapshot, saved_checkpoint, latest, roots, hub_key, saved_check)
        _check_books(sums, replay, books)
        for cls, view_class in PROJECTIONS:
            for table in _replayed_tables(view_class):
                check = report.add(f"view {cls.name}: {table} = replay", "rows")
                _compare(snapshot, replay.connection, table, scratch_schema, check)
    finally:
        snapshot.rollback()
        snapshot.close()
        if replay is not None:
            replay.close()
        app.close()
        _drop_schema(database, scratch_schema)
    return report


def _position(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) AS p FROM {} WHERE application_name = %s").format(
            sql.Identifier(table)), (CampusCard.name,),
    ).fetchone()
    return int(row["p"]) if row else 0


class _Replay:
    """The projections, writing into a scratch schema, each stopping where its live view was."""

    def __init__(self, database: Database, schema: str, positions: dict[str, int], settings: dict[str, str]) -> None:
        self.connection = psycopg.connect(database.url, row_factory=dict_row, autocommit=True)
        self.connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        env = {**database.eventsourcing_env(), **VIEW_POOL, "POSTGRES_SCHEMA": schema}
        self.projections = []
        for cls, view_class in PROJECTIONS:
            view = InfrastructureFactory.construct(Environment(cls.name, env)).tracking_recorder(view_class)
            self.projections.append((cls(view, settings), positions[cls.name]))
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
        for projection, _ in self.projections:
            projection.view.datastore.close()
        self.connection.close()

    def view(self, name: str) -> Any:
        return next(p.view for p, _ in self.projections if p.name == name)


@dataclass
class _Sums:
    credits: int = 0
    purchases: int = 0
    reversals: int = 0


def _scan(
    snapshot: psycopg.Connection[Any], app: CampusCard, replay: _Replay, total: int, wanted_roots: set[int],
    signatures: Check, chains: Check, leaves: Check,
) -> tuple[dict[int, bytes], _Sums]:
    keys: dict[str, Ed25519PublicKey] = {}
    heads: dict[str, tuple[int, str]] = {}  # device → (last seq, its event hash)
    frontier = merkle.Frontier()
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT} if 0 in wanted_roots else {}
    sums = _Sums()
    with _progress(total) as advance:
        for notification in _events(snapshot):
            frontier.append(merkle.leaf_hash(leaf_bytes(
                str(notification.originator_id), notification.originator_version, notification.topic,
                notification.state)))
            leaves.count += 1
            if frontier.size in wanted_roots:
                roots[frontier.size] = frontier.root()
            advance()
            try:
                domain_event = app.mapper.to_domain_event(notification)
            except Exception as exc:  # noqa: BLE001 - a damaged event is a finding, not a crash
                leaves.fail(f"notification {notification.id}: stored state cannot be decoded ({exc})")
                continue
            replay.apply(notification, domain_event)
            if isinstance(domain_event, Device.Registered):
                keys[domain_event.device_id] = public_key_from_b64(domain_event.public_key)
            elif isinstance(domain_event, Account.Credited):
                sums.credits += domain_event.amount_fen
            elif isinstance(domain_event, SwipeLog.Recorded):
                _check_swipe(notification, domain_event, keys, heads, signatures, chains, sums)
    chains.count = len(heads)
    return roots, sums


def _check_swipe(
    notification: Notification, event: Any, keys: dict[str, Ed25519PublicKey], heads: dict[str, tuple[int, str]],
    signatures: Check, chains: Check, sums: _Sums,
) -> None:
    envelope = event.envelope
    device = envelope.get("device")
    where = f"notification {notification.id} ({device} seq {envelope.get('seq')})"
    signatures.count += 1
    key = keys.get(device)
    if key is None or not verify_envelope(envelope, key):
        signatures.fail(f"{where}: signature does not verify" + ("" if key else ": device never registered"))
    last_seq, last_hash = heads.get(device, (0, GENESIS_PREV))
    digest = event_hash(envelope)
    if envelope.get("seq") != last_seq + 1 or notification.originator_version != envelope.get("seq", 0) + 1:
        chains.fail(f"{where}: expected seq {last_seq + 1}")
    elif envelope.get("prev") != last_hash:
        chains.fail(f"{where}: prev is not the hash of seq {last_seq}")
    elif event.event_hash != digest:
        chains.fail(f"{where}: stored hash differs from the envelope's")
    heads[device] = (envelope.get("seq", last_seq + 1), digest)
    facts, result = event.facts, event.result
    if result.get("decision") == "approved" and facts.get("account_id") is not None:
        moved = facts.get("subsidy_fen", 0) + facts.get("cash_fen", 0)
        if envelope["type"] == "purchase":
            sums.purchases += moved
        elif envelope["type"] == "reversal":
            sums.reversals += moved


def _events(conn: psycopg.Connection[Any]) -> Iterator[Notification]:
    with conn.cursor(name="cardhub_verify_events") as curs:
        curs.itersize = 5000
        curs.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state"
            f" FROM {EVENTS_TABLE} ORDER BY notification_id"
        )
        for row in curs:
            yield Notification(id=row["notification_id"], originator_id=row["originator_id"],
                               originator_version=row["originator_version"], topic=row["topic"],
                               state=bytes(row["state"]))


def _check_missing(snapshot: psycopg.Connection[Any], check: Check) -> None:
    """Events the audit log recorded that the event store no longer has (deleted rows)."""
    row = snapshot.execute(
        f"SELECT count(*) OVER () AS n, l.leaf_index, l.notification_id FROM audit_leaves l"
        f" LEFT JOIN {EVENTS_TABLE} e USING (notification_id) WHERE e.notification_id IS NULL"
        " ORDER BY l.leaf_index LIMIT 1"
    ).fetchone()
    if row:
        check.fail(f"{row['n']} event(s) of the audit log missing from the event store, the first: "
                   f"leaf {row['leaf_index']}, notification {row['notification_id']}")


def _check_checkpoint(latest: Any, roots: dict[int, bytes], key: Ed25519PublicKey, check: Check, events: int) -> None:
    if latest is None:
        check.fail("no checkpoint has been issued")
        return
    check.count = latest["tree_size"]
    if not verify_document(CHECKPOINT_PREFIX, dict(latest), key):
        check.fail(f"checkpoint {latest['tree_size']}: the signature is not the hub's")
    elif latest["tree_size"] not in roots:
        check.fail(f"checkpoint covers {latest['tree_size']} events; the event store has only {events}")
    elif roots[latest["tree_size"]].hex() != latest["root_hash"]:
        check.fail(f"checkpoint {latest['tree_size']}: root {latest['root_hash'][:16]}…, the event store gives "
                   f"{roots[latest['tree_size']].hex()[:16]}…")


def _check_saved(
    snapshot: psycopg.Connection[Any], saved: dict[str, Any], latest: Any, roots: dict[int, bytes],
    key: Ed25519PublicKey, check: Check,
) -> None:
    size = saved["tree_size"]
    check.count = size
    if not verify_document(CHECKPOINT_PREFIX, saved, key):
        check.fail("the saved checkpoint's signature is not the hub's")
        return
    if size not in roots:
        check.fail(f"the saved checkpoint covers {size} events; the event store has fewer")
        return
    if roots[size].hex() != saved["root_hash"]:
        check.fail(f"the event store's first {size} events no longer give the saved root")
        return
    if latest is None or latest["tree_size"] < size:
        return
    # The same, as a third party would check it: a consistency proof from the hub's stored
    # tree, verified against the two signed roots.
    proof = _with_nodes(snapshot, lambda get: merkle.consistency_proof(size, latest["tree_size"], get)) \
        if size > 0 else []
    if size > 0 and not merkle.verify_consistency(
        size, latest["tree_size"], bytes.fromhex(saved["root_hash"]), bytes.fromhex(latest["root_hash"]), proof,
    ):
        check.fail(f"the consistency proof {size} → {latest['tree_size']} does not verify")
    check.detail = f"→ {latest['tree_size']}"


def _with_nodes(conn: psycopg.Connection[Any], compute: Callable[[Callable[[int, int], bytes]], Any]) -> Any:
    wanted = merkle.nodes_read(compute)
    rows = conn.execute(
        "SELECT level, node_index, hash FROM audit_nodes"
        " WHERE (level, node_index) IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))",
        ([lv for lv, _ in wanted], [ix for _, ix in wanted]),
    ).fetchall()
    nodes = {(r["level"], r["node_index"]): bytes(r["hash"]) for r in rows}
    return compute(lambda level, index: nodes.get((level, index), bytes(32)))


def _check_books(sums: _Sums, replay: _Replay, check: Check) -> None:
    row = replay.connection.execute(sql.SQL(
        "SELECT coalesce(sum(subsidy_fen + cash_fen), 0) AS total FROM {}.balances"
    ).format(sql.Identifier(replay.view("ledger").datastore.schema))).fetchone()
    balances = int(row["total"]) if row else 0
    check.count = sums.credits
    check.detail = (f"¥{sums.credits / 100:,.2f} = ¥{balances / 100:,.2f} + ¥{sums.purchases / 100:,.2f}"
                    f" − ¥{sums.reversals / 100:,.2f}")
    if sums.credits != balances + sums.purchases - sums.reversals:
        check.fail(f"off by {sums.credits - (balances + sums.purchases - sums.reversals)} fen: {check.detail}")


def _replayed_tables(view_class: type[View]) -> list[str]:
    return [name for name in view_class.tables if name not in NOT_REPLAYED]


def _primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (f"public.{table}",),
    ).fetchall()
    return [r["attname"] for r in rows]


def _compare(live: psycopg.Connection[Any], scratch: psycopg.Connection[Any], table: str, schema: str,
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


def _drop_schema(database: Database, schema: str) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class _progress:
    def __init__(self, total: int) -> None:
        self.progress = Progress(TextColumn("verifying events"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.task = self.progress.add_task("events", total=total)
        self.n = 0

    def __enter__(self) -> Callable[[], None]:
        self.progress.__enter__()

        def advance() -> None:
            self.n += 1
            if self.n % 1000 == 0:
                self.progress.update(self.task, completed=self.n)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, completed=self.n)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]


def print_report(report: Report) -> None:
    table = Table(title="cardhub audit verify")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("result")
    for check in report.checks:
        count = f"{check.count:,} {check.unit}".strip()
        if check.problem is None:
            result = "[green]OK[/]" + (f"  {check.detail}" if check.detail else "")
        else:
            result = f"[red]MISMATCH[/]  {check.problem}"
        table.add_row(check.name, count, result)
    console.print(table)
    console.print("[green]all checks passed[/]" if report.ok else "[red]verification FAILED[/]")


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"--checkpoint {path}: {exc}") from None
    if not isinstance(data, dict) or not {"tree_size", "root_hash", "issued_at", "sig"} <= data.keys() \
            or not isinstance(data["tree_size"], int) or data["tree_size"] < 0:
        raise VerifyError(f"--checkpoint {path}: not a checkpoint from GET /v1/audit/checkpoint")
    return data
