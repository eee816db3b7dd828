"""Cards: a chip UID bound to one account, active, lost (挂失) or cancelled (补卡 replaced).
A lost or cancelled card is on the hotlist.

A virtual card (DESIGN §10) is a card too (``kind`` virtual): a phone's Ed25519 key certified
by the hub (``cert``), named by its owner (``label``); it may also be lost and found, and is
revoked for good (``revoked``, on the hotlist). It keeps the counters ``n`` of the payment codes
it paid with (``CodeUsed``), so that no code pays twice."""

from __future__ import annotations

import bisect
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Acted, Actor
from domain.errors import Conflict

ACTIVE, LOST, CANCELLED, REVOKED = "active", "lost", "cancelled", "revoked"
PHYSICAL, VIRTUAL = "physical", "virtual"
DAYS_KEPT = 3  # offline spending is kept for the last few local days only
CODES_KEPT = 256  # the latest counters of used codes kept one by one; below them, ``n_floor``


class Card(Aggregate):
    # The shape of a snapshot. 2: ``offline_fen``, local day → merchant → fen (DESIGN §11).
    # 3: ``kind`` and, for virtual cards, ``public_key``, ``label``, ``cert``, ``valid_until``,
    # and the used codes' counters ``used_n`` (sorted) and ``n_floor`` (DESIGN §10).
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A card snapshotted before offline limits: no offline spending counted."""
        state.setdefault("offline_fen", {})

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A card snapshotted before virtual cards was a chip card."""
        state.update(kind=PHYSICAL, public_key=None, label=None, cert=None, valid_until=None, used_n=[], n_floor=-1)

    class Issued(Acted, Aggregate.Created):
        card_uid: str
        account_id: str
        actor: Actor | None

    class VirtualIssued(Aggregate.Created):
        """A virtual card registered for a phone's key (new with its actor: no older shape)."""

        card_uid: str
        account_id: str
        public_key: str
        label: str
        cert: dict[str, str]
        valid_until: str
        actor: Actor

        def apply(self, aggregate: Any) -> None:
            aggregate.kind = VIRTUAL
            aggregate.public_key, aggregate.label = self.public_key, self.label
            aggregate.cert, aggregate.valid_until = self.cert, self.valid_until

    class Revoked(Aggregate.Event):
        """A virtual card revoked (its phone removed): on the hotlist for good."""

        actor: Actor

    class CodeUsed(Aggregate.Event):
        """A payment code of the virtual card was taken by a swipe (that device's seq), in the same
        save: its counter ``n`` never pays again."""

        n: int
        device: str
        seq: int

    class ReportedLost(Acted, Aggregate.Event):
        actor: Actor | None

    class Found(Acted, Aggregate.Event):
        actor: Actor | None

    class Cancelled(Acted, Aggregate.Event):
        """By the command that issued the card replacing it (补卡), or that closed its account (销户)."""

        actor: Actor | None

    class SpentOffline(Aggregate.Event):
        """An approved offline purchase of the card, counted towards its day at the merchant
        (``max_card_day``); driven by a swipe, it names the device and seq, as Account.Debited does."""

        merchant_id: str
        local_day: str
        amount_fen: int
        device: str
        seq: int

    @staticmethod
    def create_id(card_uid: str) -> object:
        return ids.card_id(card_uid)

    @event(Issued)
    def __init__(self, card_uid: str, account_id: str, actor: Actor) -> None:
        self.card_uid = card_uid
        self.account_id = account_id
        self.status = ACTIVE
        self.offline_fen: dict[str, dict[str, int]] = {}
        self.kind = PHYSICAL
        self.public_key: str | None = None
        self.label: str | None = None
        self.cert: dict[str, str] | None = None
        self.valid_until: str | None = None
        self.used_n: list[int] = []
        self.n_floor = -1  # every n <= n_floor counts as used

    @classmethod
    def issue_virtual(cls, card_uid: str, account_id: str, public_key: str, label: str, cert: dict[str, str],
                      actor: Actor) -> Card:
        assert cert["card"] == card_uid and cert["key"] == public_key, "the cert is of another card or key"
        return cls._create(cls.VirtualIssued, id=ids.card_id(card_uid), card_uid=card_uid, account_id=account_id,
                           public_key=public_key, label=label, cert=cert, valid_until=cert["valid_until"],
                           actor=actor)

    @property
    def is_virtual(self) -> bool:
        return self.kind == VIRTUAL

    @property
    def is_live(self) -> bool:
        """Active or lost: may be used again (not cancelled, not revoked)."""
        return self.status in (ACTIVE, LOST)

    def code_used(self, n: int) -> bool:
        """Whether a payment code with counter ``n`` was taken before."""
        if n <= self.n_floor:
            return True
        i = bisect.bisect_left(self.used_n, n)
        return i < len(self.used_n) and self.used_n[i] == n

    def use_code(self, n: int, device: str, seq: int) -> None:
        assert self.is_virtual and not self.code_used(n), (self.card_uid, n)
        self._code_used(n=n, device=device, seq=seq)

    @event(CodeUsed)
    def _code_used(self, n: int, device: str, seq: int) -> None:
        bisect.insort(self.used_n, n)
        while len(self.used_n) > CODES_KEPT:  # the oldest counters: every one below counts as used
            self.n_floor = max(self.n_floor, self.used_n.pop(0))

    def revoke(self, actor: Actor) -> None:
        if not self.is_virtual:
            raise Conflict(f"card {self.card_uid} is not a virtual card", code="not_virtual")
        if not self.is_live:
            raise Conflict(f"card {self.card_uid} is {self.status}, not active or lost")
        self._revoked(actor=actor)

    @event(Revoked)
    def _revoked(self, actor: Actor) -> None:
        self.status = REVOKED

    def offline_spent(self, merchant_id: str, local_day: str) -> int:
        """Fen of the card's approved offline purchases at the merchant in that local day."""
        return self.offline_fen.get(local_day, {}).get(merchant_id, 0)

    def spend_offline(self, merchant_id: str, local_day: str, amount_fen: int, device: str, seq: int) -> None:
        self._spent_offline(merchant_id=merchant_id, local_day=local_day, amount_fen=amount_fen, device=device, seq=seq)

    @event(SpentOffline)
    def _spent_offline(self, merchant_id: str, local_day: str, amount_fen: int, device: str, seq: int) -> None:
        day = self.offline_fen.setdefault(local_day, {})
        day[merchant_id] = day.get(merchant_id, 0) + amount_fen
        for old in sorted(self.offline_fen)[:-DAYS_KEPT]:
            del self.offline_fen[old]

    @property
    def is_hotlisted(self) -> bool:
        return self.status != ACTIVE

    def report_lost(self, actor: Actor) -> None:
        if self.status != ACTIVE:
            raise Conflict(f"card {self.card_uid} is {self.status}, not active")
        self._reported_lost(actor=actor)

    @event(ReportedLost)
    def _reported_lost(self, actor: Actor) -> None:
        self.status = LOST

    def report_found(self, actor: Actor) -> None:
        if self.status != LOST:
            raise Conflict(f"card {self.card_uid} is {self.status}, not lost")
        self._found(actor=actor)

    @event(Found)
    def _found(self, actor: Actor) -> None:
        self.status = ACTIVE

    def cancel(self, actor: Actor) -> None:
        """Replaced by a new card (补卡): never usable again."""
        if self.status != LOST:
            raise Conflict(f"card {self.card_uid} is {self.status}; only a lost card is replaced")
        self._cancelled(actor=actor)

    def cancel_for_closure(self, actor: Actor) -> bool:
        """Its account is closed (销户): an active or lost card is cancelled (and so on the
        hotlist); returns False for one cancelled (or, virtual, revoked) before."""
        if not self.is_live:
            return False
        self._cancelled(actor=actor)
        return True

    @event(Cancelled)
    def _cancelled(self, actor: Actor) -> None:
        self.status = CANCELLED
