"""The cardholder's account: two wallets (subsidy first, then cash), a daily limit,
a validity window, and the refs of every credit so that a retried top-up counts once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids, personal
from domain.actors import Acted, Actor
from domain.errors import Conflict, Invalid

CATEGORIES = ("student", "staff", "visitor")
CREDIT_KINDS = ("topup", "subsidy")
DAYS_KEPT = 3  # daily spending is kept for the last few local days only


@dataclass(frozen=True, slots=True)
class Split:
    """How a debit or refund divides between the wallets, in fen."""

    subsidy_fen: int
    cash_fen: int

    @property
    def total_fen(self) -> int:
        return self.subsidy_fen + self.cash_fen


class Account(Aggregate):
    # The shape of a snapshot. 2: every snapshot has ``zones_inside`` (anti-passback, DESIGN §3).
    # 3: ``name`` is a ``personal.Stored`` (sealed), and ``erased_at`` is there (DESIGN §12).
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot without a class version: taken before gates, the account was inside no
        zone; taken since, by a hub before class versions, it has its zones already."""
        state.setdefault("zones_inside", [])

    # Command events record their actor (class version 2); swipe-driven ones (Debited, Refunded,
    # Passed) name their device and keep the shape they had (domain.actors).
    class Opened(Acted, Aggregate.Created):
        """2: its ``actor``; 3: ``name`` sealed under the account's data key (``personal.Sealed``)."""

        class_version = 3
        account_id: str
        name: personal.Stored
        category: str
        groups: list[str]
        daily_limit_fen: int | None
        valid_from: str | None
        valid_until: str | None
        actor: Actor | None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """An account opened before names were sealed: its name is in the event in clear."""
            state["name"] = personal.from_stored(state["name"])

    class CardAssigned(Acted, Aggregate.Event):
        """By the command that issues the card."""

        card_uid: str
        actor: Actor | None

    class Credited(Acted, Aggregate.Event):
        account_id: str
        kind: str
        amount_fen: int
        ref: str
        recorded_at: str
        actor: Actor | None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot from before sealed names holds the name in clear (as its Opened event does)."""
        state["name"] = personal.from_stored(state["name"])
        state.setdefault("erased_at", None)

    @staticmethod
    def create_id(account_id: str) -> object:
        return ids.account_id(account_id)

    @event(Opened)
    def __init__(
        self,
        account_id: str,
        name: personal.Stored,
        category: str,
        groups: list[str],
        daily_limit_fen: int | None,
        valid_from: str | None,
        valid_until: str | None,
        actor: Actor,
    ) -> None:
        self.account_id = account_id
        self.name = name
        self.category = category
        self.groups = groups
        self.daily_limit_fen = daily_limit_fen
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.subsidy_fen = 0
        self.cash_fen = 0
        self.credit_refs: dict[str, list[object]] = {}  # ref -> [kind, amount_fen]
        self.spent_by_day: dict[str, int] = {}  # local day (ISO) -> approved purchases, fen
        self.card_uids: list[str] = []
        self.zones_inside: list[str] = []  # anti-passback zones passed in and not out
        self.erased_at: str | None = None

    def assign_card(self, card_uid: str, actor: Actor) -> None:
        self._card_assigned(card_uid=card_uid, actor=actor)

    @event(CardAssigned)
    def _card_assigned(self, card_uid: str, actor: Actor) -> None:
        self.card_uids.append(card_uid)

    @property
    def total_fen(self) -> int:
        return self.subsidy_fen + self.cash_fen

    # -- erasure of personal data (DESIGN §12) ---------------------------

    def refuse_if_erased(self) -> None:
        """An erased account takes no new card, no found card and no credit."""
        if self.erased_at is not None:
            raise Conflict(f"account {self.account_id} was erased at {self.erased_at}", code="erased")

    def erase(self, active_cards: list[str], erased_at: str, actor: Actor) -> None:
        """Only a closed account is erased (DESIGN §12). Until closure (§11) is built, closed
        means: no active card and both wallets at zero."""
        self.refuse_if_erased()
        until = ("until account closure (DESIGN §11) is built, an account is erased only with no active card"
                 " and a zero balance")
        if active_cards:
            raise Conflict(f"account {self.account_id} has an active card {active_cards[0]}: {until}",
                           code="not_closed")
        if self.subsidy_fen or self.cash_fen:
            raise Conflict(f"account {self.account_id} holds {self.subsidy_fen} fen subsidy and {self.cash_fen}"
                           f" fen cash: {until}", code="not_closed")
        self._erased(account_id=self.account_id, erased_at=erased_at, actor=actor)

    class Erased(Aggregate.Event):
        """New with its actor (no older shape to upcast)."""

        account_id: str
        erased_at: str
        actor: Actor

    @event(Erased)
    def _erased(self, account_id: str, erased_at: str, actor: Actor) -> None:
        """Records that the data key was destroyed; the event holds no personal data."""
        self.erased_at = erased_at
        self.name = None

    # -- credits ---------------------------------------------------------

    def credit(self, kind: str, amount_fen: int, ref: str, recorded_at: str, actor: Actor) -> bool:
        """Adds money to a wallet; returns False when ``ref`` was credited before (idempotent)."""
        assert kind in CREDIT_KINDS, kind
        self.refuse_if_erased()
        if amount_fen <= 0:
            raise Invalid("amount must be > 0 fen", field="amount")
        previous = self.credit_refs.get(ref)
        if previous is not None:
            if previous != [kind, amount_fen]:
                raise Conflict(
                    f"ref {ref!r} was already used for a {previous[0]} of {previous[1]} fen",
                    field="ref",
                )
            return False
        self._credited(
            account_id=self.account_id, kind=kind, amount_fen=amount_fen, ref=ref,
            recorded_at=recorded_at, actor=actor,
        )
        return True

    @event(Credited)
    def _credited(
        self, account_id: str, kind: str, amount_fen: int, ref: str, recorded_at: str, actor: Actor
    ) -> None:
        if kind == "subsidy":
            self.subsidy_fen += amount_fen
        else:
            self.cash_fen += amount_fen
        self.credit_refs[ref] = [kind, amount_fen]

    # -- purchases and reversals ----------------------------------------

    def is_valid_at(self, at: datetime) -> bool:
        if self.valid_from is not None and at < datetime.fromisoformat(self.valid_from):
            return False
        return not (self.valid_until is not None and at >= datetime.fromisoformat(self.valid_until))

    def would_exceed_daily_limit(self, amount_fen: int, day: str) -> bool:
        if self.daily_limit_fen is None:
            return False
        return self.spent_by_day.get(day, 0) + amount_fen > self.daily_limit_fen

    def split_debit(self, amount_fen: int) -> Split:
        """Subsidy first, then cash; cash may go negative (offline overdraft)."""
        from_subsidy = min(max(self.subsidy_fen, 0), amount_fen)
        return Split(subsidy_fen=from_subsidy, cash_fen=amount_fen - from_subsidy)

    def debit(self, amount_fen: int, day: str, device: str, seq: int) -> Split:
        assert amount_fen > 0, amount_fen
        split = self.split_debit(amount_fen)
        self._debited(
            account_id=self.account_id, subsidy_fen=split.subsidy_fen, cash_fen=split.cash_fen, day=day, device=device, seq=seq
        )
        return split

    @event("Debited")
    def _debited(
        self, account_id: str, subsidy_fen: int, cash_fen: int, day: str, device: str, seq: int
    ) -> None:
        self.subsidy_fen -= subsidy_fen
        self.cash_fen -= cash_fen
        self.spent_by_day[day] = self.spent_by_day.get(day, 0) + subsidy_fen + cash_fen
        for old in sorted(self.spent_by_day)[:-DAYS_KEPT]:
            del self.spent_by_day[old]

    def refund(self, split: Split, day: str, device: str, seq: int, ref_seq: int) -> None:
        """Gives back a voided purchase to the wallets it was taken from."""
        self._refunded(
            account_id=self.account_id, subsidy_fen=split.subsidy_fen, cash_fen=split.cash_fen, day=day,
            device=device, seq=seq, ref_seq=ref_seq,
        )

    @event("Refunded")
    def _refunded(
        self, account_id: str, subsidy_fen: int, cash_fen: int, day: str, device: str, seq: int, ref_seq: int
    ) -> None:
        self.subsidy_fen += subsidy_fen
        self.cash_fen += cash_fen
        if day in self.spent_by_day:
            self.spent_by_day[day] -= subsidy_fen + cash_fen

    # -- gates -------------------------------------------------------------

    def is_inside(self, zone: str) -> bool:
        """In an anti-passback zone: passed ``in`` and not ``out`` since."""
        return zone in self.zones_inside

    def pass_gate(self, zone: str, direction: str, device: str, seq: int, at: str) -> None:
        self._passed(account_id=self.account_id, zone=zone, direction=direction, device=device, seq=seq, at=at)

    @event("Passed")
    def _passed(self, account_id: str, zone: str, direction: str, device: str, seq: int, at: str) -> None:
        inside = [z for z in self.zones_inside if z != zone]
        self.zones_inside = [*inside, zone] if direction == "in" else inside
