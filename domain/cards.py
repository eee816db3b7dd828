"""Cards: a chip UID bound to one account, active, lost (挂失) or cancelled (补卡 replaced).
A lost or cancelled card is on the hotlist."""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.errors import Conflict

ACTIVE, LOST, CANCELLED = "active", "lost", "cancelled"


class Card(Aggregate):
    @staticmethod
    def create_id(card_uid: str) -> object:
        return ids.card_id(card_uid)

    @event("Issued")
    def __init__(self, card_uid: str, account_id: str) -> None:
        self.card_uid = card_uid
        self.account_id = account_id
        self.status = ACTIVE

    @property
    def is_hotlisted(self) -> bool:
        return self.status != ACTIVE

    def report_lost(self) -> None:
        if self.status != ACTIVE:
            raise Conflict(f"card {self.card_uid} is {self.status}, not active")
        self._reported_lost()

    @event("ReportedLost")
    def _reported_lost(self) -> None:
        self.status = LOST

    def report_found(self) -> None:
        if self.status != LOST:
            raise Conflict(f"card {self.card_uid} is {self.status}, not lost")
        self._found()

    @event("Found")
    def _found(self) -> None:
        self.status = ACTIVE

    def cancel(self) -> None:
        """Replaced by a new card (补卡): never usable again."""
        if self.status != LOST:
            raise Conflict(f"card {self.card_uid} is {self.status}; only a lost card is replaced")
        self._cancelled()

    @event("Cancelled")
    def _cancelled(self) -> None:
        self.status = CANCELLED
