"""What was signed: each device's envelopes and chain, the hub's checkpoints and their consistency."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import Notification

from domain import merkle
from domain.wire import CHECKPOINT_PREFIX, GENESIS_PREV, event_hash, verify_document, verify_envelope
from hub.audit.report import Check
from projections.audit import tree_reader


class VerifyError(Exception):
    """The check could not run (bad checkpoint file, no key): one line, exit status 2."""


def check_swipe(
    notification: Notification, event: Any, keys: dict[str, Ed25519PublicKey], heads: dict[str, tuple[int, str]],
    signatures: Check, chains: Check,
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


def check_checkpoint(latest: Any, roots: dict[int, bytes], key: Ed25519PublicKey, check: Check, events: int) -> None:
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


def check_saved(
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
    try:
        proof = _with_nodes(snapshot, lambda get: merkle.consistency_proof(size, latest["tree_size"], get)) \
            if size > 0 else []
    except KeyError:
        check.fail(f"the stored tree lacks a node or leaf of the consistency proof {size} → {latest['tree_size']}")
        return
    if size > 0 and not merkle.verify_consistency(
        size, latest["tree_size"], bytes.fromhex(saved["root_hash"]), bytes.fromhex(latest["root_hash"]), proof,
    ):
        check.fail(f"the consistency proof {size} → {latest['tree_size']} does not verify")
    check.detail = f"→ {latest['tree_size']}"


def _with_nodes(conn: psycopg.Connection[Any], compute: Callable[[merkle.GetNode], Any]) -> Any:
    """The computation over the stored tree; KeyError if a node or leaf it reads is gone."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return compute(tree_reader(cursor, None, merkle.nodes_read(compute)))


def latest_checkpoint(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The signed checkpoint of the largest tree, as ``GET /v1/audit/checkpoint`` answers it;
    None before the first (or in a database the hub never ran on)."""
    try:
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute("SELECT tree_size, root_hash, issued_at, sig FROM audit_checkpoints"
                                 " ORDER BY tree_size DESC LIMIT 1").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return dict(row) if row else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"--checkpoint {path}: {exc}") from None
    if not isinstance(data, dict) or not {"tree_size", "root_hash", "issued_at", "sig"} <= data.keys() \
            or not isinstance(data["tree_size"], int) or data["tree_size"] < 0:
        raise VerifyError(f"--checkpoint {path}: not a checkpoint from GET /v1/audit/checkpoint")
    return data
