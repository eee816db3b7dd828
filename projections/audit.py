"""The audit log (DESIGN §4): every stored event, in the global sequence, as a leaf of an
RFC 9162 Merkle tree, and an index of device envelopes for auditors.

Leaf *i* is the *i*-th stored event (notification ids may skip numbers where a transaction
rolled back, so ``audit_leaves`` maps leaf indexes to notification ids). ``audit_nodes`` keeps
the hash of every complete subtree of 16 leaves or more — node (level, index) covers leaves
[index·2^level, (index+1)·2^level), level ≥ ``merkle.STORED_FROM`` — so any root or proof is
O(log n) rows and a few dozen stored events away (``tree_reader``); the projection keeps only
the tree's right edge in memory and writes each batch's leaves and nodes with its tracking
record, exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventsourcing.persistence import Notification, Tracking
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from domain import merkle
from domain.devices import SwipeLog
from domain.facts import swipe_card
from domain.wire import leaf_bytes, parse_rfc3339
from projections.base import BatchingProjection, View
from projections.queries import EVENTS_TABLE


def stored_leaf_hash(originator_id: Any, version: int, topic: str, state: bytes) -> bytes:
    """The Merkle leaf hash of one stored event (DESIGN §4)."""
    return merkle.leaf_hash(leaf_bytes(str(originator_id), version, topic, bytes(state)))


def tree_reader(curs: Cursor[Any], schema: str | None, wanted: Iterable[merkle.Node]) -> merkle.GetNode:
    """``get`` over the nodes ``wanted``, read with two queries: the stored ones from
    ``audit_nodes``, the leaves of the lower ones from the event store (``merkle.split_reads``).
    ``schema`` holds the audit tables (None: the connection's search path). A node that is
    not there — a damaged log — raises KeyError when it is read."""
    nodes, leaves = merkle.split_reads(wanted)
    where = SQL("{}.").format(Identifier(schema)) if schema else SQL("")
    stored: dict[merkle.Node, bytes] = {}
    if nodes:
        curs.execute(SQL("SELECT level, node_index, hash FROM {where}audit_nodes WHERE (level, node_index)"
                         " IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))").format(where=where),
                     ([level for level, _ in nodes], [index for _, index in nodes]))
        stored = {(r["level"], r["node_index"]): bytes(r["hash"]) for r in curs.fetchall()}
    hashes: dict[int, bytes] = {}
    if leaves:
        curs.execute(SQL("SELECT l.leaf_index, e.originator_id, e.originator_version, e.topic, e.state"
                         " FROM {where}audit_leaves l JOIN {events} e USING (notification_id)"
                         " WHERE l.leaf_index = ANY(%s::bigint[])").format(where=where, events=Identifier(EVENTS_TABLE)),
                     (leaves,))
        hashes = {r["leaf_index"]: stored_leaf_hash(r["originator_id"], r["originator_version"], r["topic"], r["state"])
                  for r in curs.fetchall()}
    return merkle.reader(stored, hashes)


class AuditView(View):
    tables = {
        "audit_leaves": "CREATE TABLE IF NOT EXISTS {schema}.audit_leaves ("
            " leaf_index bigint PRIMARY KEY, notification_id bigint NOT NULL UNIQUE)",
        "audit_nodes": "CREATE TABLE IF NOT EXISTS {schema}.audit_nodes ("
            " level smallint NOT NULL, node_index bigint NOT NULL, hash bytea NOT NULL,"
            " PRIMARY KEY (level, node_index))",
        "audit_swipes": "CREATE TABLE IF NOT EXISTS {schema}.audit_swipes ("
            " notification_id bigint PRIMARY KEY, device_id text NOT NULL, seq bigint NOT NULL,"
            " card_uid text, account_id text, occurred_at timestamptz NOT NULL)",
        # Signed by the hub, not derived from events: not part of the replayed views.
        "audit_checkpoints": "CREATE TABLE IF NOT EXISTS {schema}.audit_checkpoints ("
            " tree_size bigint PRIMARY KEY, root_hash text NOT NULL, issued_at text NOT NULL, sig text NOT NULL)",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS audit_swipes_by_card ON {schema}.audit_swipes (card_uid, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS audit_swipes_by_device ON {schema}.audit_swipes (device_id, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS audit_swipes_by_account"
        " ON {schema}.audit_swipes (account_id, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS audit_swipes_by_time ON {schema}.audit_swipes (occurred_at)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A swipe paid with an invalid payment code names no card (DESIGN §10): a view made before allows none.
        self.sql_create_statements.append(self.sql(
            "ALTER TABLE {schema}.audit_swipes ALTER COLUMN card_uid DROP NOT NULL"))
        # Nodes below merkle.STORED_FROM, written by hubs before it: read by none, replayed by none.
        self.sql_create_statements.append(self.sql(
            f"DELETE FROM {{schema}}.audit_nodes WHERE level < {merkle.STORED_FROM}"))
        self.add_leaves = self.sql(
            "INSERT INTO {schema}.audit_leaves (leaf_index, notification_id)"
            " SELECT * FROM unnest(%(index)b::bigint[], %(notification_id)b::bigint[])"
        )
        self.add_nodes = self.sql(
            "INSERT INTO {schema}.audit_nodes (level, node_index, hash)"
            " SELECT * FROM unnest(%(level)b::smallint[], %(index)b::bigint[], %(hash)b::bytea[])"
        )
        self.add_swipes = self.sql(
            "INSERT INTO {schema}.audit_swipes (notification_id, device_id, seq, card_uid, account_id, occurred_at)"
            " SELECT * FROM unnest(%(notification_id)b::bigint[], %(device_id)b::text[], %(seq)b::bigint[],"
            " %(card_uid)b::text[], %(account_id)b::text[], %(occurred_at)b::timestamptz[])"
        )

    def load_frontier(self) -> merkle.Frontier:
        """The right edge of the stored tree, to go on appending."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.sql("SELECT coalesce(max(leaf_index) + 1, 0) AS size FROM {schema}.audit_leaves"))
            row = curs.fetchone()
            size = int(row["size"]) if row else 0
            get = tree_reader(curs, self.datastore.schema, merkle.frontier_nodes(size))
            return merkle.Frontier.from_nodes(size, get)


class AuditProjection(BatchingProjection[AuditView]):
    name = "audit"

    def __init__(self, view: AuditView, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(view, settings)
        self.frontier = view.load_frontier()
        self._leaves: list[tuple[int, int]] = []
        self._nodes: list[tuple[int, int, bytes]] = []
        self._swipes: list[tuple[Any, ...]] = []

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # pragma: no cover
        raise TypeError("the audit projection needs the stored event: use process_stored")

    def process_stored(self, notification: Notification, domain_event: Any, tracking: Tracking) -> None:
        index = self.frontier.size
        self._nodes.extend(node for node in self.frontier.append(stored_leaf_hash(
            notification.originator_id, notification.originator_version, notification.topic, notification.state,
        )) if node[0] >= merkle.STORED_FROM)
        self._leaves.append((index, notification.id))
        if isinstance(domain_event, SwipeLog.Recorded):
            envelope = domain_event.envelope
            self._swipes.append((notification.id, envelope["device"], envelope["seq"], swipe_card(envelope, domain_event.facts),
                                 domain_event.facts["account_id"], parse_rfc3339(envelope["at"])))
        self.stage(tracking)

    def stage_batch(self) -> None:
        if self._leaves:
            self._staged.append((self.view.add_leaves, {
                "index": [i for i, _ in self._leaves], "notification_id": [n for _, n in self._leaves]}))
        if self._nodes:
            self._staged.append((self.view.add_nodes, {
                "level": [n[0] for n in self._nodes], "index": [n[1] for n in self._nodes],
                "hash": [n[2] for n in self._nodes]}))
        if self._swipes:
            columns = list(zip(*self._swipes, strict=True))
            self._staged.append((self.view.add_swipes, dict(zip(
                ("notification_id", "device_id", "seq", "card_uid", "account_id", "occurred_at"),
                (list(c) for c in columns), strict=True))))
        self._leaves, self._nodes, self._swipes = [], [], []
