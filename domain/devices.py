"""Merchants, devices, and each device's chain of signed swipes."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Acted, Actor
from domain.errors import Conflict
from domain.facts import SignedEnvelope, SwipeFacts, SwipeResult
from domain.wire import GENESIS_PREV

MERCHANT_CATEGORIES = ("dining", "supermarket", "laundry", "other")
DEVICE_KINDS = ("pos", "gate")


class Merchant(Aggregate):
    class Registered(Acted, Aggregate.Created):
        merchant_id: str
        name: str
        category: str
        actor: Actor | None

    @staticmethod
    def create_id(merchant_id: str) -> object:
        return ids.merchant_id(merchant_id)

    @event(Registered)
    def __init__(self, merchant_id: str, name: str, category: str, actor: Actor) -> None:
        self.merchant_id = merchant_id
        self.name = name
        self.category = category


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
    event store itself refuses a second envelope for a stored seq (deterministic ids)."""

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
