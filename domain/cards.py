"""Cards: a chip UID bound to one account, active, lost (挂失) or cancelled (补卡 replaced).
A lost or cancelled card is on the hotlist."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Acted, Actor
from domain.errors import Conflict

ACTIVE, LOST, CANCELLED = "active", "lost", "cancelled"
DAYS_KEPT = 3  # offline spending is kept for the last few local days only


class Card(Aggregate):
    # The shape of a snapshot. 2: ``offline_fen``, local day → merchant → fen (DESIGN §11).
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A card snapshotted before offline limits: no offline spending counted."""
        state.setdefault("offline_fen", {})

    class Issued(Acted, Aggregate.Created):
        card_uid: str
        account_id: str
        actor: Actor | None

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
        hotlist); returns False for one cancelled before."""
        if self.status == CANCELLED:
            return False
        self._cancelled(actor=actor)
        return True

    @event(Cancelled)
    def _cancelled(self, actor: Actor) -> None:
        self.status = CANCELLED
