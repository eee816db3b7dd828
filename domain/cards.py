"""Cards: a chip UID bound to one account, active, lost (挂失) or cancelled (补卡 replaced).
A lost or cancelled card is on the hotlist."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Acted, Actor
from domain.errors import Conflict

ACTIVE, LOST, CANCELLED = "active", "lost", "cancelled"


class Card(Aggregate):
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

    @staticmethod
    def create_id(card_uid: str) -> object:
        return ids.card_id(card_uid)

    @event(Issued)
    def __init__(self, card_uid: str, account_id: str, actor: Actor) -> None:
        self.card_uid = card_uid
        self.account_id = account_id
        self.status = ACTIVE

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
