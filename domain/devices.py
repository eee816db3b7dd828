"""Merchants, devices, and each device's chain of signed swipes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids, limits
from domain.actors import Acted, Actor
from domain.errors import Conflict
from domain.facts import SignedEnvelope, SwipeFacts, SwipeResult, swipe_card
from domain.limits import Limits
from domain.wire import GENESIS_PREV

MERCHANT_CATEGORIES = ("dining", "supermarket", "laundry", "other")
DEVICE_KINDS = ("pos", "gate")


class Merchant(Aggregate):
    # The shape of a snapshot. 2: ``limits`` and ``limits_version`` (DESIGN §11).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A merchant snapshotted before offline limits had none."""
        state.setdefault("limits", None)
        state.setdefault("limits_version", 0)

    class Registered(Acted, Aggregate.Created):
        merchant_id: str
        name: str
        category: str
        actor: Actor | None

    class LimitsSet(Aggregate.Event):
        """New with its actor (no older shape to upcast). ``version`` counts the merchant's
        limits from 1: what devices are told (``GET /v1/devices/{id}/limits``)."""

        merchant_id: str
        max_amount_fen: int
        max_card_day_fen: int
        max_device_total_fen: int
        max_offline_seconds: int
        version: int
        actor: Actor

    @staticmethod
    def create_id(merchant_id: str) -> object:
        return ids.merchant_id(merchant_id)

    @event(Registered)
    def __init__(self, merchant_id: str, name: str, category: str, actor: Actor) -> None:
        self.merchant_id = merchant_id
        self.name = name
        self.category = category
        self.limits: Limits | None = None  # none set: no purchase is over a limit
        self.limits_version = 0

    def set_limits(self, new: Limits, actor: Actor) -> None:
        self._limits_set(merchant_id=self.merchant_id, **new, version=self.limits_version + 1, actor=actor)

    @event(LimitsSet)
    def _limits_set(self, merchant_id: str, max_amount_fen: int, max_card_day_fen: int, max_device_total_fen: int,
                    max_offline_seconds: int, version: int, actor: Actor) -> None:
        self.limits = Limits(max_amount_fen=max_amount_fen, max_card_day_fen=max_card_day_fen,
                             max_device_total_fen=max_device_total_fen, max_offline_seconds=max_offline_seconds)
        self.limits_version = version


class Device(Aggregate):
    class Registered(Acted, Aggregate.Created):
        device_id: str
        kind: str
        public_key: str
        merchant_id: str | None
        zone: str | None
        location: str | None
        actor: Actor | None

    class Revoked(Acted, Aggregate.Event):
        actor: Actor | None

    @staticmethod
    def create_id(device_id: str) -> object:
        return ids.device_id(device_id)

    @event(Registered)
    def __init__(
        self,
        device_id: str,
        kind: str,
        public_key: str,
        merchant_id: str | None,
        zone: str | None,
        location: str | None,
        actor: Actor,
    ) -> None:
        self.device_id = device_id
        self.kind = kind
        self.public_key = public_key
        self.merchant_id = merchant_id
        self.zone = zone
        self.location = location
        self.revoked = False

    def revoke(self, actor: Actor) -> None:
        if self.revoked:
            raise Conflict(f"device {self.device_id} is already revoked")
        self._revoked(actor=actor)

    @event(Revoked)
    def _revoked(self, actor: Actor) -> None:
        self.revoked = True


class SwipeLog(Aggregate):
    """A device's chain: the envelope of ``seq`` is stored at version ``seq + 1``, so the
    event store itself refuses a second envelope for a stored seq (deterministic ids).

    It also keeps what the offline limits and the duplicate check read (DESIGN §11), all derived
    from its own ``Recorded`` events: ``contact_at``, the ``at`` of its latest online event (its
    last upload, on its own clock); the current offline period (the offline events since then),
    from ``period_from`` with ``period_fen`` of approved offline purchases; and ``recent``, ``[at_ms, card, amount_fen]`` of its latest
    purchases within 10 s of one another."""

    # The shape of a snapshot. 2: ``contact_at``, ``period_from``, ``period_fen``, ``recent``.
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A log snapshotted before offline limits: its last contact is unknown, so its next
        offline event starts a period of its own (as a device that never uploaded)."""
        state.setdefault("contact_at", None)
        state.setdefault("period_from", None)
        state.setdefault("period_fen", 0)
        state.setdefault("recent", [])

    class Recorded(Aggregate.Event):
        """One stored swipe; its state is hashed into the audit log (shapes: ``domain.facts``)."""

        envelope: SignedEnvelope
        event_hash: str
        result: SwipeResult
        facts: SwipeFacts
        recorded_at: str

    class Opened(Acted, Aggregate.Created):
        """Opened by the command that registers the device, with its actor."""

        device_id: str
        actor: Actor | None

    @staticmethod
    def create_id(device_id: str) -> object:
        return ids.swipe_log_id(device_id)

    @event(Opened)
    def __init__(self, device_id: str, actor: Actor) -> None:
        self.device_id = device_id
        self.next_seq = 1
        self.head_hash = GENESIS_PREV
        self.reversed_seqs: list[int] = []
        self.contact_at: str | None = None
        self.period_from: str | None = None
        self.period_fen = 0
        self.recent: list[list[Any]] = []

    def record(
        self,
        envelope: SignedEnvelope,
        event_hash: str,
        result: SwipeResult,
        facts: SwipeFacts,
        recorded_at: str,
    ) -> None:
        """Appends a swipe that passed the chain checks, with the hub's result."""
        assert envelope["seq"] == self.next_seq, (envelope["seq"], self.next_seq)
        assert envelope["prev"] == self.head_hash
        self._recorded(
            envelope=envelope, event_hash=event_hash, result=result, facts=facts,
            recorded_at=recorded_at,
        )

    @event(Recorded)
    def _recorded(
        self,
        envelope: SignedEnvelope,
        event_hash: str,
        result: SwipeResult,
        facts: SwipeFacts,
        recorded_at: str,
    ) -> None:
        self.next_seq = envelope["seq"] + 1
        self.head_hash = event_hash
        if facts["refunded_seq"] is not None:
            self.reversed_seqs.append(facts["refunded_seq"])
        at = limits.parse_stored_instant(envelope["at"])
        if at is not None:
            self._note(envelope, result, facts, at)

    def _note(self, envelope: SignedEnvelope, result: SwipeResult, facts: SwipeFacts, at: datetime) -> None:
        """The offline period and the recent purchases after this swipe (see the class)."""
        purchase = envelope["type"] == "purchase"
        if envelope.get("offline"):
            self.period_from, self.period_fen = self.offline_period(envelope["at"])
            if purchase and result["decision"] == "approved":
                self.period_fen += envelope.get("amount", 0)
        else:  # an online event is an upload: the device is in contact, no period under way
            self.contact_at, self.period_from, self.period_fen = envelope["at"], None, 0
        if purchase:
            self.recent = limits.kept_recent(self.recent, limits.instant_ms(at), swipe_card(envelope, facts),
                                             envelope.get("amount", 0))

    def offline_period(self, at_text: str) -> tuple[str, int]:
        """The start and the approved offline fen so far of the period an offline event dated
        ``at_text`` belongs to: the offline events since the device's latest online event are one
        period (a backlog uploaded in several batches too), from that event's ``at`` — its last
        upload, on the device's own clock. A device never online starts its period at its first
        offline event. Only the signed envelopes decide it, so anyone can recompute the flags."""
        if self.period_from is not None:
            return self.period_from, self.period_fen
        return self.contact_at or at_text, 0
