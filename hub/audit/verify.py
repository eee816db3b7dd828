"""``cardhub audit verify`` (DESIGN §4): re-checks everything from the event store alone.

One REPEATABLE READ snapshot of the database is read: the events, the live views and their
tracking positions, the latest checkpoint. Every event is hashed into a fresh Merkle tree;
every device envelope's signature and chain is checked against the device's registered key;
the books identity of §11 is summed; every projection is replayed into a scratch schema up to
the position its live view had in the snapshot, and the two are compared row by row.
This module reads the snapshot and runs the checks in order; they are ``hub.audit.signed``,
``hub.audit.books`` and ``hub.audit.replay``, and ``hub.audit.report`` shows what they found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import Notification
from psycopg import sql
from psycopg.rows import dict_row

from domain import merkle
from domain.accounts import Account
from domain.application import CampusCard
from domain.devices import Device, SwipeLog
from domain.wire import leaf_bytes, public_key_from_b64
from hub.audit.actors import Actors
from hub.audit.books import Sums, check_books
from hub.audit.replay import Replay, compare, drop_schema, replayed_tables
from hub.audit.report import Check, Report, progress_bar
from hub.audit.signed import check_checkpoint, check_saved, check_swipe, latest_checkpoint
from hub.storage.budget import VERIFY, pool_env
from hub.storage.store import Database
from projections.catalogue import PROJECTIONS
from projections.ledger import LedgerProjection
from projections.queries import EVENTS_TABLE


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
    books = report.add("books (§11): credits = balances + net purchases − refunds + payouts + expired", "fen")
    actors = Actors(report.add("actors: command events by the actor's role", "events"))
    replayed = report.add("replay: every projection applies every event", "projections")

    # The Application only decodes events (its mapper): it creates nothing and never connects.
    app = CampusCard(env={**database.eventsourcing_env(), **pool_env(VERIFY, 1), "CREATE_TABLE": "n"})
    snapshot = psycopg.connect(database.url, row_factory=dict_row, autocommit=False, application_name=VERIFY)
    scratch_schema = f"cardhub_verify_{os.getpid()}"
    replay: Replay | None = None
    try:
        snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        positions = {
            cls.name: _position(snapshot, f"{cls.name}_tracking") for cls, _ in PROJECTIONS
        }
        latest = latest_checkpoint(snapshot)
        total = snapshot.execute(f"SELECT count(*) AS n FROM {EVENTS_TABLE}").fetchone()["n"]
        wanted_roots = {c["tree_size"] for c in (latest, saved_checkpoint) if c}
        replay = Replay(database, scratch_schema, positions, projection_settings or {})
        roots, sums = _scan(snapshot, app, replay, total, wanted_roots, positions[LedgerProjection.name],
                            signatures, chains, leaves, actors)
        actors.finish()
        replay.flush()
        replayed.count = len(PROJECTIONS)
        for name, problem in replay.failed.items():
            replayed.fail(f"{name}: {problem}")
        _check_missing(snapshot, leaves)

        check_checkpoint(latest, roots, hub_key, checkpoint_check, leaves.count)
        if saved_checkpoint is not None and saved_check is not None:
            check_saved(snapshot, saved_checkpoint, latest, roots, hub_key, saved_check)
        check_books(sums, replay, books)
        for cls, view_class in PROJECTIONS:
            for table in replayed_tables(view_class):
                check = report.add(f"view {cls.name}: {table} = replay", "rows")
                compare(snapshot, replay.connection, table, scratch_schema, check)
    finally:
        snapshot.rollback()
        snapshot.close()
        if replay is not None:
            replay.close()
        app.close()
        drop_schema(database, scratch_schema)
    return report


def _position(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(notification_id), 0) AS p FROM {} WHERE application_name = %s").format(
            sql.Identifier(table)), (CampusCard.name,),
    ).fetchone()
    return int(row["p"]) if row else 0


def _scan(
    snapshot: psycopg.Connection[Any], app: CampusCard, replay: Replay, total: int, wanted_roots: set[int],
    ledger_at: int, signatures: Check, chains: Check, leaves: Check, actors: Actors,
) -> tuple[dict[int, bytes], Sums]:
    """Reads every event once; the books' balances take the moves of the events after
    ``ledger_at``, the ledger's position (``Sums.add_pending``)."""
    keys: dict[str, Ed25519PublicKey] = {}
    heads: dict[str, tuple[int, str]] = {}  # device → (last seq, its event hash)
    frontier = merkle.Frontier()
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT} if 0 in wanted_roots else {}
    sums = Sums()
    with progress_bar(total) as advance:
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
            actors.add(notification, domain_event)
            if notification.id > ledger_at:
                sums.add_pending(domain_event)
            if isinstance(domain_event, Device.Registered):
                keys[domain_event.device_id] = public_key_from_b64(domain_event.public_key)
            elif isinstance(domain_event, Account.Credited | Account.RefundIssued | Account.SubsidyExpired
                            | Account.Closed):
                sums.add_account_event(domain_event)
            elif isinstance(domain_event, SwipeLog.Recorded):
                check_swipe(notification, domain_event, keys, heads, signatures, chains)
                sums.add_swipe(domain_event)
    chains.count = len(heads)
    return roots, sums


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
