"""The cardholder's account: two wallets (subsidy first, then cash), a daily limit,
a validity window, and the refs of every credit so that a retried top-up counts once.

DESIGN §11: the subsidy is kept as grants that may expire (``domain.grants``); refunds of
purchases give back to the wallets in the purchase's proportions; closure (销户) pays the cash
out, expires the subsidy and ends the account's use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import grants, ids, personal
from domain.actors import Acted, Actor
from domain.errors import Conflict, Invalid
from domain.facts import SignedEnvelope, SwipeFacts, swipe_card

CATEGORIES = ("student", "staff", "visitor")
CREDIT_KINDS = ("topup", "subsidy")
DAYS_KEPT = 3  # daily spending is kept for the last few local days only


@dataclass(frozen=True, slots=True)
class Split:
    """How a debit or refund divides between the wallets, in fen; ``drawn``: the grants a debit's
    subsidy came from, or a give-back's goes to (``domain.grants``)."""

    subsidy_fen: int
    cash_fen: int
    drawn: grants.Drawn | None = None

    @property
    def total_fen(self) -> int:
        return self.subsidy_fen + self.cash_fen


class Account(Aggregate):
    # The shape of a snapshot. 2: every snapshot has ``zones_inside`` (anti-passback, DESIGN §3).
    # 3: ``name`` is a ``personal.Stored`` (sealed), and ``erased_at`` is there (DESIGN §12).
    # 4: the subsidy as ``grants``, ``refunded`` purchases, ``refunds`` by ref, ``closed`` (§11).
    # 5: ``pin`` and ``pin_set_at``, the query PIN's sealed hash (§10).
    class_version = 5

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
        """2: its ``actor``; 3: ``expires_at`` (a subsidy's, or None; DESIGN §11)."""

        class_version = 3
        account_id: str
        kind: str
        amount_fen: int
        ref: str
        recorded_at: str
        actor: Actor | None
        expires_at: str | None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["expires_at"] = None

    class Refunded(Aggregate.Event):
        """A device's reversal giving a purchase back. 2: ``given``, the grants its subsidy goes to (None:
        stored before grants; it goes to ``grants.LEGACY_REF``)."""

        class_version = 2
        account_id: str
        subsidy_fen: int
        cash_fen: int
        day: str
        device: str
        seq: int
        ref_seq: int
        given: grants.Drawn | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["given"] = None

    class SubsidyExpired(Aggregate.Event):
        """What was left of a grant when it expired (by the hub's clock) or its account closed."""

        account_id: str
        ref: str
        amount_fen: int
        expires_at: str | None
        recorded_at: str

    class RefundIssued(Acted, Aggregate.Event):
        """A card-office refund of all or part of an approved purchase (DESIGN §11); ``given``:
        the grants its subsidy part goes to."""

        account_id: str
        device: str
        seq: int
        card_uid: str
        merchant_id: str | None
        purchase_at: str
        category: str
        amount_fen: int
        subsidy_fen: int
        cash_fen: int
        whole: bool
        remaining_fen: int
        reason: str
        ref: str
        recorded_at: str
        actor: Actor | None
        given: grants.Drawn

    class Closed(Acted, Aggregate.Event):
        """销户: the cash paid out; the subsidy expired by ``SubsidyExpired`` events before it
        (``expired_subsidy_fen`` repeats their sum: the books count those)."""

        account_id: str
        ref: str
        payout_fen: int
        expired_subsidy_fen: int
        closed_at: str
        cards_blocked: list[str]
        actor: Actor | None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot from before sealed names holds the name in clear (as its Opened event does)."""
        state["name"] = personal.from_stored(state["name"])
        state.setdefault("erased_at", None)

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A snapshot from before §11: its subsidy is one grant without expiry."""
        subsidy = state["subsidy_fen"]
        state["grants"] = [[grants.LEGACY_REF, subsidy, None]] if subsidy > 0 else []
        state["credit_refs"] = {ref: [*v[:2], None] for ref, v in state["credit_refs"].items()}
        state["refunded"] = {}
        state["refunds"] = {}
        state["closed"] = None

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A snapshot from before query PINs: the account has none."""
        state["pin"] = None
        state["pin_set_at"] = None

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
        self.credit_refs: dict[str, list[Any]] = {}  # ref -> [kind, amount_fen, expires_at]
        self.grants: list[grants.Grant] = []  # the subsidy wallet, in spending order
        self.refunded: dict[str, int] = {}  # "device:seq" -> fen refunded, refunded purchases only
        self.refunds: dict[str, dict[str, Any]] = {}  # ref -> the answer of the refund
        self.closed: dict[str, Any] | None = None  # the answer of the closure
        self.spent_by_day: dict[str, int] = {}  # local day (ISO) -> approved purchases, fen
        self.card_uids: list[str] = []
        self.zones_inside: list[str] = []  # anti-passback zones passed in and not out
        self.erased_at: str | None = None
        self.pin: personal.Sealed | None = None  # the query PIN's argon2id hash, sealed (DESIGN §10)
        self.pin_set_at: str | None = None

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

    def refuse_if_closed(self) -> None:
        """A closed account (or an erased one: only a closed account is erased) takes no credit,
        refund, new card or found card."""
        self.refuse_if_erased()
        if self.closed is not None:
            raise Conflict(f"account {self.account_id} was closed at {self.closed['closed_at']}", code="closed")

    def erase(self, erased_at: str, actor: Actor) -> None:
        """Only a closed account is erased (DESIGN §12)."""
        self.refuse_if_erased()
        if self.closed is None:
            raise Conflict(f"account {self.account_id} is not closed: close it first (POST"
                           f" /v1/accounts/{self.account_id}/close)", code="not_closed")
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

    # -- the query PIN (DESIGN §10) ----------------------------------------

    class PinSet(Aggregate.Event):
        """New with its actor (no older shape to upcast). ``pin``: the PIN's memory-hard hash
        (made by the hub, never here), sealed under the account's data key as the field "pin"
        (``personal``): never the PIN, and unreadable once the account is erased."""

        pin: personal.Sealed
        set_at: str
        actor: Actor

    def set_pin(self, sealed: personal.Sealed, set_at: str, actor: Actor,
                replacing: personal.Sealed | None = None) -> None:
        """Sets or changes the PIN; ``replacing``: the sealed hash the caller checked the old PIN
        against (a cardholder's change), refused if another change came first."""
        self.refuse_if_closed()
        if replacing is not None and self.pin != replacing:
            raise Conflict(f"the PIN of account {self.account_id} was changed meanwhile", code="pin_changed")
        self._pin_set(pin=sealed, set_at=set_at, actor=actor)

    @event(PinSet)
    def _pin_set(self, pin: personal.Sealed, set_at: str, actor: Actor) -> None:
        self.pin = pin
        self.pin_set_at = set_at

    # -- credits and expiring subsidies ------------------------------------

    def credit(self, kind: str, amount_fen: int, ref: str, recorded_at: str, actor: Actor,
               expires_at: str | None = None) -> bool:
        """Adds money to a wallet; returns False when ``ref`` was credited before (idempotent).
        ``expires_at``: a subsidy grant's expiry, after ``recorded_at``."""
        assert kind in CREDIT_KINDS, kind
        assert expires_at is None or kind == "subsidy", kind
        self.refuse_if_closed()
        if amount_fen <= 0:
            raise Invalid("amount must be > 0 fen", field="amount")
        previous = self.credit_refs.get(ref)
        if previous is not None:
            kind_was, amount_was, expiry_was = previous
            same_expiry = (expiry_was is None) == (expires_at is None) and (
                expires_at is None or grants.instant(expiry_was) == grants.instant(expires_at))
            if [kind_was, amount_was] != [kind, amount_fen] or not same_expiry:
                expiring = f" expiring at {expiry_was}" if expiry_was else ""
                raise Conflict(f"ref {ref!r} was already used for a {kind_was} of {amount_was} fen{expiring}",
                               field="ref")
            return False
        if expires_at is not None and grants.instant(expires_at) <= grants.instant(recorded_at):
            raise Invalid(f"expires_at {expires_at} is not in the future", field="expires_at")
        self._credited(
            account_id=self.account_id, kind=kind, amount_fen=amount_fen, ref=ref,
            recorded_at=recorded_at, actor=actor, expires_at=expires_at,
        )
        return True

    @event(Credited)
    def _credited(
        self, account_id: str, kind: str, amount_fen: int, ref: str, recorded_at: str, actor: Actor,
        expires_at: str | None,
    ) -> None:
        if kind == "subsidy":
            self.subsidy_fen += amount_fen
            grants.insert(self.grants, ref, amount_fen, expires_at)
        else:
            self.cash_fen += amount_fen
        self.credit_refs[ref] = [kind, amount_fen, expires_at]

    def expire_due(self, now: datetime) -> int:
        """Expires what is left of every grant whose ``expires_at`` <= ``now`` (the hub's clock),
        before anything is decided at ``now``; returns the number of events."""
        if not self.grants or self.grants[0][2] is None:
            return 0  # the common case, without parsing a time
        due = grants.due(self.grants, now)
        for ref, remaining, expires_at in due:
            self._subsidy_expired(account_id=self.account_id, ref=ref, amount_fen=remaining,
                                  expires_at=expires_at, recorded_at=now.isoformat())
        return len(due)

    @event(SubsidyExpired)
    def _subsidy_expired(self, account_id: str, ref: str, amount_fen: int, expires_at: str | None,
                         recorded_at: str) -> None:
        grant = grants.find(self.grants, ref)
        assert grant is not None and grant[1] == amount_fen, (ref, amount_fen, self.grants)
        self.grants.remove(grant)
        self.subsidy_fen -= amount_fen

    def _give(self, given: grants.Drawn | None, subsidy_fen: int) -> None:
        """Subsidy back to the grants it came from (None: stored before grants)."""
        for ref, fen in given if given is not None else grants.give_back(None, subsidy_fen, 0, subsidy_fen):
            known = self.credit_refs.get(ref)
            grants.give(self.grants, ref, fen, known[2] if known is not None else None)
        self.subsidy_fen += subsidy_fen

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
        """Takes a purchase; the split says which grants its subsidy came from (the event does
        not: its handler takes them in the same order)."""
        assert amount_fen > 0, amount_fen
        split = self.split_debit(amount_fen)
        drawn = grants.plan(self.grants, split.subsidy_fen) if split.subsidy_fen else None
        self._debited(
            account_id=self.account_id, subsidy_fen=split.subsidy_fen, cash_fen=split.cash_fen, day=day, device=device, seq=seq
        )
        return Split(split.subsidy_fen, split.cash_fen, drawn)

    @event("Debited")
    def _debited(
        self, account_id: str, subsidy_fen: int, cash_fen: int, day: str, device: str, seq: int
    ) -> None:
        self.subsidy_fen -= subsidy_fen
        self.cash_fen -= cash_fen
        if subsidy_fen:
            grants.take(self.grants, grants.plan(self.grants, subsidy_fen))
        self.spent_by_day[day] = self.spent_by_day.get(day, 0) + subsidy_fen + cash_fen
        for old in sorted(self.spent_by_day)[:-DAYS_KEPT]:
            del self.spent_by_day[old]

    def refunded_fen(self, device: str, seq: int) -> int:
        """What card-office refunds gave back of the purchase ``seq`` of ``device``."""
        return self.refunded.get(f"{device}:{seq}", 0)

    def refund(self, split: Split, day: str, device: str, seq: int, ref_seq: int) -> None:
        """Gives back a voided purchase to the wallets (and grants) it was taken from."""
        self._refunded(
            account_id=self.account_id, subsidy_fen=split.subsidy_fen, cash_fen=split.cash_fen, day=day,
            device=device, seq=seq, ref_seq=ref_seq, given=split.drawn or [],
        )

    @event(Refunded)
    def _refunded(
        self, account_id: str, subsidy_fen: int, cash_fen: int, day: str, device: str, seq: int, ref_seq: int,
        given: grants.Drawn | None,
    ) -> None:
        self._give(given, subsidy_fen)
        self.cash_fen += cash_fen
        if day in self.spent_by_day:
            self.spent_by_day[day] -= subsidy_fen + cash_fen

    # -- refunds and closure (DESIGN §11) ------------------------------------

    def refund_answered(self, ref: str, device: str, seq: int, amount_fen: int) -> dict[str, Any] | None:
        """The answer of the refund ``ref`` made before, or None; 409 if it refunded another
        purchase or amount."""
        previous = self.refunds.get(ref)
        if previous is not None and (previous["device"], previous["seq"], previous["amount"]) != (device, seq, amount_fen):
            raise Conflict(f"ref {ref!r} was already used for a refund of {previous['amount']} fen of"
                           f" {previous['device']} seq {previous['seq']}", field="ref")
        return previous

    def refund_purchase(self, envelope: SignedEnvelope, facts: SwipeFacts, reversed_: bool, amount_fen: int,
                        reason: str, ref: str, recorded_at: str, actor: Actor) -> dict[str, Any]:
        """Refunds ``amount_fen`` of an approved purchase of this account (its stored envelope and
        facts; ``reversed_``: the device voided it) under a new ``ref`` (``refund_answered``). Back
        to the wallets in the purchase's proportions: cumulative subsidy back = floor(refunded ×
        subsidy / purchase), so a whole refund gives back exactly what was taken. Returns the answer."""
        assert ref not in self.refunds, ref
        device, seq = envelope["device"], envelope["seq"]
        self.refuse_if_closed()
        if ref in self.credit_refs:
            raise Conflict(f"ref {ref!r} was already used for a {self.credit_refs[ref][0]}", field="ref")
        purchase_fen = facts["subsidy_fen"] + facts["cash_fen"]
        before = self.refunded_fen(device, seq)
        remaining = 0 if reversed_ else purchase_fen - before
        if amount_fen > remaining:
            raise Conflict(f"{remaining} fen of purchase {device} seq {seq} remain to be refunded;"
                           f" {amount_fen} fen asked", field="amount", code="over_remaining")
        subsidy_before = before * facts["subsidy_fen"] // purchase_fen
        subsidy_after = (before + amount_fen) * facts["subsidy_fen"] // purchase_fen
        self._refund_issued(
            account_id=self.account_id, device=device, seq=seq, card_uid=swipe_card(envelope, facts),
            merchant_id=facts["merchant_id"], purchase_at=envelope["at"], category=self.category,
            amount_fen=amount_fen, subsidy_fen=subsidy_after - subsidy_before,
            cash_fen=amount_fen - (subsidy_after - subsidy_before), whole=amount_fen == remaining,
            remaining_fen=remaining - amount_fen, reason=reason, ref=ref, recorded_at=recorded_at, actor=actor,
            given=grants.give_back(facts.get("drawn"), facts["subsidy_fen"], subsidy_before, subsidy_after),
        )
        return self.refunds[ref]

    @event(RefundIssued)
    def _refund_issued(self, account_id: str, device: str, seq: int, card_uid: str, merchant_id: str | None,
                       purchase_at: str, category: str, amount_fen: int, subsidy_fen: int, cash_fen: int,
                       whole: bool, remaining_fen: int, reason: str, ref: str, recorded_at: str, actor: Actor | None,
                       given: grants.Drawn) -> None:
        self._give(given, subsidy_fen)
        self.cash_fen += cash_fen
        key = f"{device}:{seq}"
        self.refunded[key] = self.refunded.get(key, 0) + amount_fen
        self.refunds[ref] = {"device": device, "seq": seq, "amount": amount_fen, "subsidy": subsidy_fen,
                             "cash": cash_fen, "remaining": remaining_fen, "ref": ref, "reason": reason}

    def close(self, ref: str, cards: list[str], closed_at: datetime, actor: Actor) -> tuple[dict[str, Any], bool]:
        """销户: expires every grant, pays the cash out; ``cards``: the cards the caller blocks.
        Returns the answer and whether it is new (the same ref again answers as it did)."""
        if self.closed is not None:
            if self.closed["ref"] != ref:
                raise Conflict(f"account {self.account_id} was closed at {self.closed['closed_at']} under ref"
                               f" {self.closed['ref']!r}", code="closed")
            return self.closed, False
        self.refuse_if_erased()
        if self.cash_fen < 0:
            raise Conflict(f"account {self.account_id} owes {-self.cash_fen} fen (an offline overdraft): the card"
                           " office collects it with a top-up before closing", code="negative_balance")
        expired = self.subsidy_fen
        at = closed_at.isoformat()
        for ref_, remaining, expires_at in list(self.grants):
            self._subsidy_expired(account_id=self.account_id, ref=ref_, amount_fen=remaining,
                                  expires_at=expires_at, recorded_at=at)
        self._closed(account_id=self.account_id, ref=ref, payout_fen=self.cash_fen, expired_subsidy_fen=expired,
                     closed_at=at, cards_blocked=cards, actor=actor)
        return self.closed, True  # type: ignore[return-value]

    @event(Closed)
    def _closed(self, account_id: str, ref: str, payout_fen: int, expired_subsidy_fen: int, closed_at: str,
                cards_blocked: list[str], actor: Actor | None) -> None:
        self.cash_fen -= payout_fen
        self.closed = {"account_id": account_id, "closed_at": closed_at, "payout": payout_fen,
                       "expired_subsidy": expired_subsidy_fen, "cards_blocked": cards_blocked, "ref": ref}

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
