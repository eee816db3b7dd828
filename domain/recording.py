"""Device ingest (DESIGN §2, §8), mixed into the Application (``CampusCard``, whose
``_in_one_save``, ``clock``, ``tz``, ``hub_key`` and ``events`` it uses): every event of every
upload of a micro-batch checked against its device's chain, decided (``domain.swipes``) against
one workspace, and stored in one transaction.

A purchase or gate may carry a virtual card's payment code (``credential``, DESIGN §10) instead
of a card: the code is checked (``domain.paycode``; by the caller already, off the writer's
thread, where it can) and resolved to its virtual card, which must exist and hold the code's key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain import ids, paycode
from domain.accounts import Account
from domain.cards import Card
from domain.devices import Device, SwipeLog
from domain.facts import Rejection, UploadResult
from domain.swipes import Referenced, SwipeContext, decide
from domain.wire import Envelope, InvalidEnvelope, public_key_from_b64
from domain.workspace import Workspace

TYPES_BY_KIND = {"pos": ("purchase", "reversal"), "gate": ("gate",)}
_NOT_A_CODE = paycode.Checked(paycode.INVALID)


@dataclass(slots=True)
class Item:
    """One event of an upload: parsed (or why not), and whether its signature was checked.
    ``sig_ok`` is None when the caller did not verify; the writer then verifies if needed.
    ``code``: its payment code checked (``check_code``), or None when not yet (or none)."""

    envelope: Envelope | InvalidEnvelope
    sig_ok: bool | None = None
    code: paycode.Checked | None = None


@dataclass(slots=True)
class UploadOutcome:
    results: list[UploadResult]
    next_seq: int


def check_credential(envelope: Envelope, hub_key: Ed25519PublicKey | None) -> paycode.Checked:
    """The envelope's payment code checked at its ``at`` (pure: any thread may do it)."""
    assert envelope.credential is not None
    assert hub_key is not None, "an application that records payment codes is given the hub's public key"
    return paycode.check_code(envelope.credential, hub_key, envelope.occurred_at)


class SwipeRecorder:
    clock: Callable[[], datetime]
    tz: ZoneInfo
    hub_key: Ed25519PublicKey | None
    events: Any
    _in_one_save: Callable[[Callable[[Workspace], Any]], Any]

    def record_swipes(self, uploads: Sequence[tuple[str, Sequence[Item]]]) -> list[UploadOutcome]:
        """Decides every event of every upload against one workspace and stores the whole
        batch in one transaction. If the save fails nothing is stored and the caller must
        answer no upload as accepted."""
        recorded: dict[tuple[str, int], Referenced] = {}
        return self._in_one_save(  # type: ignore[no-any-return]
            lambda workspace: [self._record_upload(workspace, recorded, d, items) for d, items in uploads])

    def _record_upload(
        self, workspace: Workspace, recorded: dict[tuple[str, int], Referenced], device_id: str,
        items: Sequence[Item],
    ) -> UploadOutcome:
        results: list[UploadResult] = []
        device: Device | None = workspace.find(ids.device_id(device_id))
        log: SwipeLog | None = workspace.find(ids.swipe_log_id(device_id))
        for item in items:
            if results and results[-1]["status"] == "rejected":
                results.append(_rejected(item, "not_processed"))
                continue
            if device is None or log is None:
                results.append(_rejected(item, "unknown_device"))
                continue
            results.append(self._record_one(workspace, recorded, device, log, item))
        return UploadOutcome(results=results, next_seq=log.next_seq if log else 1)

    def _record_one(
        self, workspace: Workspace, recorded: dict[tuple[str, int], Referenced], device: Device,
        log: SwipeLog, item: Item,
    ) -> UploadResult:
        refused = self._refusal(recorded, device, log, item)
        if refused is not None:
            return refused
        env = item.envelope
        assert isinstance(env, Envelope)
        ctx = self._context(workspace, recorded, device, log, item, env)
        result, facts = decide(ctx)
        log.record(env.raw, env.hash, result, facts, ctx.now.isoformat())
        recorded[(device.device_id, env.seq)] = Referenced(env.raw, result, facts)
        # the swipe, one account event (rarely more: an expiry of what it gave back), offline one card
        # event (its offline spending), and for a payment code one more (the code used)
        workspace.changed((3 if env.offline else 2) + (env.credential is not None))
        return result

    def _refusal(self, recorded: dict[tuple[str, int], Referenced], device: Device, log: SwipeLog,
                 item: Item) -> UploadResult | None:
        """The answer to an event that is not decided: a resend (``duplicate``) or a rejection."""
        env = item.envelope
        if isinstance(env, InvalidEnvelope):
            return _rejected(item, "invalid", detail=str(env))
        if env.device != device.device_id:
            return _rejected(item, "invalid", detail="device: does not match the upload path")
        if env.type not in TYPES_BY_KIND[device.kind]:
            return _rejected(item, "invalid", detail=f"type: a {device.kind} device does not send {env.type}")
        if env.seq < log.next_seq:
            stored = recorded.get((device.device_id, env.seq)) or self._stored_swipe(device.device_id, env.seq)
            assert stored is not None, (device.device_id, env.seq)
            if stored.envelope == env.raw:
                duplicate = stored.result.copy()
                duplicate["status"] = "duplicate"
                return duplicate
            if not self._signature_ok(device, item):
                return _rejected(item, "bad_signature")
            return _rejected(item, "seq_conflict")
        if device.revoked:
            return _rejected(item, "revoked_device")
        if not self._signature_ok(device, item):
            return _rejected(item, "bad_signature")
        if env.seq > log.next_seq:
            return _rejected(item, "seq_gap")
        if env.prev != log.head_hash:
            return _rejected(item, "chain_broken")
        return None

    def _context(self, workspace: Workspace, recorded: dict[tuple[str, int], Referenced], device: Device,
                 log: SwipeLog, item: Item, env: Envelope) -> SwipeContext:
        """What deciding the event needs: its card (by uid, or by its payment code), account,
        zone, merchant, and for a reversal the purchase it voids."""
        code: paycode.Checked | None = None
        if env.credential is None:
            assert env.card is not None
            card: Card | None = workspace.find(ids.card_id(env.card))
        else:
            code, card = self._card_by_code(workspace, item, env)
        account: Account | None = workspace.find(ids.account_id(card.account_id)) if card else None
        now = self.clock()
        if account is not None:
            workspace.changed(account.expire_due(now))  # DESIGN §11: before deciding
        ctx = SwipeContext(device=device, log=log, envelope=env, card=card, account=account, tz=self.tz, now=now,
                           code=code)
        if env.type == "gate" and device.zone is not None:
            ctx.zone = workspace.find(ids.zone_id(device.zone))
        if env.type == "purchase" and device.merchant_id is not None:
            ctx.merchant = workspace.find(ids.merchant_id(device.merchant_id))
        if env.type == "reversal":
            assert env.ref_seq is not None
            ctx.referenced = recorded.get((device.device_id, env.ref_seq)) or self._stored_swipe(
                device.device_id, env.ref_seq
            )
        return ctx

    def _card_by_code(self, workspace: Workspace, item: Item, env: Envelope) -> tuple[paycode.Checked, Card | None]:
        """The code checked, and its virtual card: the cert's ``card``, which must be a virtual card
        holding the cert's key; else the code is invalid and resolves to no card."""
        code = item.code if item.code is not None else check_credential(env, self.hub_key)
        if code.card_uid is None:
            return code, None
        card: Card | None = workspace.find(ids.card_id(code.card_uid))
        if card is None or not card.is_virtual or card.public_key != code.key:
            return _NOT_A_CODE, None
        return code, card

    def _signature_ok(self, device: Device, item: Item) -> bool:
        if item.sig_ok is None:
            assert isinstance(item.envelope, Envelope)
            item.sig_ok = item.envelope.verify(self._device_key(device))
        return item.sig_ok

    def _device_key(self, device: Device) -> Ed25519PublicKey:
        """The device's public key, decoded from its registration (a subclass may keep them)."""
        return public_key_from_b64(device.public_key)

    def _stored_swipe(self, device_id: str, seq: int) -> Referenced | None:
        """One read, for the rare resend or reversal: the swipe stored for ``seq``."""
        for stored in self.events.get(ids.swipe_log_id(device_id), gt=seq, lte=seq + 1):
            if isinstance(stored, SwipeLog.Recorded):
                return Referenced(stored.envelope, stored.result, stored.facts)
        return None


def rejected(item: Item, code: str, detail: str | None = None) -> Rejection:
    """The result of an event that is not stored (DESIGN §2), with its ``seq`` where known."""
    return _rejected(item, code, detail)


def _rejected(item: Item, code: str, detail: str | None = None) -> Rejection:
    env = item.envelope
    seq = env.seq if isinstance(env, Envelope) else _raw_seq(env)
    result = Rejection(seq=seq, status="rejected", code=code)
    if detail is not None:
        result["detail"] = detail
    return result


def _raw_seq(error: InvalidEnvelope) -> int | None:
    seq = error.raw.get("seq") if isinstance(error.raw, dict) else None
    return seq if type(seq) is int else None
