"""One upload's way in (DESIGN §2, §8, §9): admit → parse → verify → enqueue for the writer.

The handler (``hub.service.routes.devices``) checks the upload's size and answers; everything
between the decoded body and the committed outcome happens here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.application import Item, UploadOutcome
from domain.recording import check_credential
from domain.wire import Envelope, InvalidEnvelope, parse_envelope, public_key_from_b64
from hub.ingest.application import IngestCampusCard
from hub.ingest.metrics import IngestMetrics
from hub.ingest.verifying import Verifiers, check_in_order
from hub.ingest.writer import IngestWriter

INLINE_VERIFY_MAX = 4  # smaller uploads are verified on the event loop, larger ones by ``Verifiers``
# A device's registered public key (base64), or None: not registered, or the store cannot say now.
KeyLookup = Callable[[str], Awaitable[str | None]]


async def upload(writer: IngestWriter, application: IngestCampusCard, verifiers: Verifiers, metrics: IngestMetrics,
                 device_id: str, raws: Sequence[Any], registered_key: KeyLookup) -> UploadOutcome:
    """Records one device's upload and returns its outcome, committed. An overloaded hub
    refuses (``Overloaded``) before parsing or verifying anything. ``registered_key``: where a
    device's key is read when the writer has not seen the device yet (``_learn_key``)."""
    writer.admit(len(raws), device_id)
    try:
        items = await _prepare(application, verifiers, metrics, device_id, raws, registered_key)
    except BaseException:
        writer.release(len(raws), device_id)
        raise
    return await writer.upload(device_id, items)


def _parse(value: Any) -> Item:
    """One event of the (already well-formed JSON) upload; a bad one is an ``invalid`` result."""
    try:
        return Item(parse_envelope(value))
    except InvalidEnvelope as exc:
        return Item(exc)


async def _prepare(application: IngestCampusCard, verifiers: Verifiers, metrics: IngestMetrics,
                   device_id: str, raws: Sequence[Any], registered_key: KeyLookup) -> list[Item]:
    """Parses an upload's envelopes and checks their signatures before the writer sees them,
    off its critical path: on the event loop for a small upload; for a large one, parsed in a
    verifier thread and checked in a verifier process (``hub.ingest.verifying``), so that one
    device's large uploads do not hold up everyone's small ones."""
    if len(raws) <= INLINE_VERIFY_MAX:
        items, checked = _parse_and_verify(application, device_id, raws)
    else:
        if device_id not in application.device_keys:
            await _learn_key(application, registered_key, device_id)
        loop = asyncio.get_running_loop()
        items, checked = await loop.run_in_executor(verifiers.threads, _parse_and_verify, application, device_id,
                                                    raws, verifiers)
    metrics.signature_checks.inc(checked)
    return items


async def _learn_key(application: IngestCampusCard, registered_key: KeyLookup, device_id: str) -> None:
    """Reads the key of a device the writer has not seen since the hub started (a device's key
    never changes). Else the writer checks every signature of the device's first upload itself,
    in the way of every single swipe: at lunch (``cardhub bench --scenario lunch``) 40 tills
    back on the network kept it checking theirs for the whole phase, a quarter of the time of
    its bulk chunks. A small upload does not wait for the read: the writer checks its few
    signatures and learns the key then."""
    key = await registered_key(device_id)
    if key is None:
        return
    try:
        application.device_keys.setdefault(device_id, public_key_from_b64(key))
    except ValueError:  # not a key (never stored so): the writer decides, as for any device
        return


def _parse_and_verify(application: IngestCampusCard, device_id: str, raws: Sequence[Any],
                      verifiers: Verifiers | None = None) -> tuple[list[Item], int]:
    items = [_parse(raw) for raw in raws]
    key = application.device_keys.get(device_id)
    if key is None:  # a device the writer has not seen yet: the writer checks, in the same order
        return items, 0
    return items, _verify_in_order(items, key, application.next_seqs.get(device_id, 1), application.hub_key,
                                   verifiers)


def _verify_in_order(items: Sequence[Item], key: Ed25519PublicKey, next_seq: int,
                     hub_key: Ed25519PublicKey | None, verifiers: Verifiers | None = None) -> int:
    """Checks signatures in the upload's (``seq``) order, up to the first event that will be
    rejected: a bad signature or an invalid envelope; the writer answers the events after it
    ``not_processed`` without checking them (DESIGN §9: a forged upload costs one verification).
    Events below the device's last known ``next_seq`` are resends: the writer finds them by
    comparing with the stored envelope and verifies only one that differs (DESIGN §8: hash
    before signature). Sets each checked item's ``sig_ok``, and checks the payment code of one that
    carries one (``code``, DESIGN §10: two more signatures, kept off the writer's thread too);
    returns how many envelopes it checked. With ``verifiers`` the envelopes' own signatures are
    checked there, in one round trip."""
    due: list[tuple[Item, Envelope]] = []
    for item in items:
        envelope = item.envelope
        if not isinstance(envelope, Envelope):
            break
        if envelope.seq >= next_seq:
            due.append((item, envelope))
    pairs = [(e.sig, e.signing_input) for _, e in due]
    answers = verifiers.check(key.public_bytes_raw(), pairs) if verifiers is not None else check_in_order(key, pairs)
    for (item, envelope), ok in zip(due, answers, strict=False):  # up to the first that failed
        item.sig_ok = ok
        if ok and envelope.credential is not None:
            item.code = check_credential(envelope, hub_key)
    return len(answers)
