"""Deciding one swipe (DESIGN §1–2): what the hub answers and what money moves.

Pure functions over aggregates already loaded by the caller; they trigger events on
those aggregates and return the upload result. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from domain import limits, paycode
from domain.access import Zone, admits
from domain import grants
from domain.accounts import Account, Split
from domain.cards import ACTIVE, LOST, Card
from domain.devices import Device, Merchant, SwipeLog
from domain.facts import SignedEnvelope, SwipeFacts, SwipeResult, swipe_card
from domain.wire import Envelope

APPROVED, DECLINED = "approved", "declined"
MAX_CLOCK_SKEW = timedelta(minutes=5)  # DESIGN §9


@dataclass(slots=True)
class Referenced:
    """The stored purchase a reversal points at (same device, ``ref_seq``)."""

    envelope: SignedEnvelope
    result: SwipeResult
    facts: SwipeFacts


@dataclass(slots=True)
class SwipeContext:
    device: Device
    log: SwipeLog
    envelope: Envelope
    card: Card | None
    account: Account | None
    tz: ZoneInfo
    now: datetime  # the hub's clock when it decides (not the envelope's ``at``)
    referenced: Referenced | None = None
    zone: Zone | None = None  # the gate's zone (gate events only)
    merchant: Merchant | None = None  # the pos device's merchant (purchases), with its limits
    code: paycode.Checked | None = None  # a swipe paid with a payment code: its check (DESIGN §10)
    flags: list[str] = field(default_factory=list)
    code_reused: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        """Whether the code's ``(card, n)`` was taken before, as it stands before this swipe."""
        code = self.code
        self.code_reused = code is not None and code.n is not None and self.card is not None and (
            self.card.code_used(code.n))

    @property
    def card_uid(self) -> str | None:
        """The swipe's card: the envelope's, or the virtual card its payment code resolved to."""
        return self.card.card_uid if self.code is not None and self.card is not None else self.envelope.card

    @property
    def limits(self) -> limits.Limits | None:
        return self.merchant.limits if self.merchant is not None else None

    @property
    def local_day(self) -> str:
        return self.envelope.occurred_at.astimezone(self.tz).date().isoformat()


def card_decline_reason(ctx: SwipeContext) -> str | None:
    """Why an online swipe of this card is declined before any money or rule is looked at. A
    payment code (DESIGN §10): invalid, then expired, then the card's status (lost; revoked or
    cancelled: ``card_cancelled``), then its ``(card, n)`` taken before."""
    code = ctx.code
    if code is not None and code.reason == paycode.INVALID:
        return paycode.INVALID
    if ctx.card is None or ctx.account is None:
        return "card_unknown"
    if code is not None and code.reason is not None:
        return code.reason  # credential_expired
    if ctx.card.status != ACTIVE:
        return "card_lost" if ctx.card.status == LOST else "card_cancelled"
    if ctx.code_reused:
        return "credential_reused"
    if not ctx.account.is_valid_at(ctx.envelope.occurred_at):
        return "card_expired"
    return None


def _take_code(ctx: SwipeContext) -> None:
    """A code whose signatures verify uses up its ``(card, n)`` with the first stored swipe that
    carries it, online or offline, whatever that swipe's decision: a code is good for one attempt,
    so one declined (say for funds) cannot be replayed into an approval after a top-up."""
    code, card = ctx.code, ctx.card
    if code is not None and code.n is not None and card is not None and not ctx.code_reused:
        card.use_code(code.n, ctx.envelope.device, ctx.envelope.seq)


def decide(ctx: SwipeContext) -> tuple[SwipeResult, SwipeFacts]:
    """Returns (result, facts) for an envelope that passed the chain checks and moves money."""
    env = ctx.envelope
    if env.type == "purchase":
        decision, reason, split = _purchase(ctx)
    elif env.type == "reversal":
        decision, reason, split = _reversal(ctx)
    else:
        decision, reason, split = _gate(ctx)
    _flag_clock_skew(ctx)
    _take_code(ctx)
    # Built in this order, key by key, as the hub has always stored them: the audit log hashes the bytes.
    result = SwipeResult(seq=env.seq, status="accepted", decision=decision)
    if reason is not None:
        result["reason"] = reason
    if ctx.account is not None:
        result["balance"] = ctx.account.total_fen
    facts = SwipeFacts(
        account_id=ctx.account.account_id if ctx.account is not None else None,
        merchant_id=ctx.device.merchant_id,
        zone=ctx.device.zone,
        local_day=ctx.local_day,
        subsidy_fen=split.subsidy_fen if split else 0,
        cash_fen=split.cash_fen if split else 0,
        flags=ctx.flags,
        refunded_seq=env.ref_seq if env.type == "reversal" and split is not None else None,
    )
    # For statistics: who paid (cardholder category, not the person) and, on a refund,
    # when the voided purchase happened, so it is netted where it was counted.
    if ctx.account is not None:
        facts["category"] = ctx.account.category
    if facts["refunded_seq"] is not None and ctx.referenced is not None:
        facts["refunded_at"] = ctx.referenced.envelope["at"]
    if env.type == "purchase" and split is not None and split.drawn:
        facts["drawn"] = split.drawn  # the grants its subsidy came from, for a refund (DESIGN §11)
    if ctx.code is not None:
        facts["card"] = ctx.card_uid  # the virtual card the code resolved to, or None
    return result, facts


def _purchase(ctx: SwipeContext) -> tuple[str, str | None, Split | None]:
    env, account = ctx.envelope, ctx.account
    assert env.amount_fen is not None
    _flag_possible_duplicate(ctx)
    if env.offline:
        _flag_offline_card(ctx)
        if env.decision == APPROVED:
            _offline_limits(ctx)
        if env.decision != APPROVED or account is None:
            return env.decision or DECLINED, None, None
        if account.split_debit(env.amount_fen).total_fen > account.total_fen:
            ctx.flags.append("overdraft")
        split = account.debit(env.amount_fen, ctx.local_day, env.device, env.seq)
        return APPROVED, None, split
    reason = card_decline_reason(ctx)
    if reason is not None:
        return DECLINED, reason, None
    assert account is not None
    if ctx.limits is not None and env.amount_fen > ctx.limits["max_amount_fen"]:
        return DECLINED, "over_limit", None
    if account.would_exceed_daily_limit(env.amount_fen, ctx.local_day):
        return DECLINED, "daily_limit", None
    if account.total_fen < env.amount_fen:
        return DECLINED, "insufficient_funds", None
    return APPROVED, None, account.debit(env.amount_fen, ctx.local_day, env.device, env.seq)


def _reversal(ctx: SwipeContext) -> tuple[str, str | None, Split | None]:
    env, account, ref = ctx.envelope, ctx.account, ctx.referenced
    assert env.ref_seq is not None
    valid = (
        ref is not None
        and account is not None
        and ref.envelope["type"] == "purchase"
        and swipe_card(ref.envelope, ref.facts) == env.card
        and ref.result["decision"] == APPROVED
        and ref.facts["account_id"] == account.account_id
        and ref.facts["subsidy_fen"] + ref.facts["cash_fen"] > account.refunded_fen(env.device, env.ref_seq)
        and env.ref_seq not in ctx.log.reversed_seqs
    )
    if env.offline:
        _flag_offline_card(ctx)
        if env.decision != APPROVED:
            return env.decision or DECLINED, None, None
        if not valid:
            ctx.flags.append("reversal_invalid")
            return APPROVED, None, None
    elif not valid:
        return DECLINED, "reversal_invalid", None
    assert ref is not None and account is not None
    split = _rest(ref.facts, account.refunded_fen(env.device, env.ref_seq))
    account.refund(split, ctx.local_day, env.device, env.seq, env.ref_seq)
    account.expire_due(ctx.now)  # subsidy given back to a grant that has expired expires again
    return APPROVED, None, split


def _rest(facts: SwipeFacts, refunded_fen: int) -> Split:
    """What a reversal gives back of a purchase: all of it, less what refunds gave back before
    (DESIGN §11), subsidy and cash in the purchase's proportions, to the grants it came from."""
    subsidy_fen, total_fen = facts["subsidy_fen"], facts["subsidy_fen"] + facts["cash_fen"]
    subsidy_before = refunded_fen * subsidy_fen // total_fen
    given = grants.give_back(facts.get("drawn"), subsidy_fen, subsidy_before, subsidy_fen)
    return Split(subsidy_fen - subsidy_before, total_fen - refunded_fen - (subsidy_fen - subsidy_before), given)


def _gate(ctx: SwipeContext) -> tuple[str, str | None, Split | None]:
    """DESIGN §3. Online: the card, then the zone's rules for the account's groups at the
    envelope's local time, then anti-passback. Offline: what the device decided stands; where
    the hub would have declined, the event is flagged ``would_decline:<reason>``. An approved
    passage, online or offline, moves the account in or out of an anti-passback zone."""
    env = ctx.envelope
    hub_reason = card_decline_reason(ctx) or _access_reason(ctx)
    if env.offline:
        _flag_offline_card(ctx)
        decision = env.decision or DECLINED
        if hub_reason is not None and decision == APPROVED:
            ctx.flags.append(f"would_decline:{hub_reason}")
    elif hub_reason is not None:
        return DECLINED, hub_reason, None
    else:
        decision = APPROVED
    if decision == APPROVED and ctx.account is not None and ctx.zone is not None and ctx.zone.anti_passback:
        assert env.direction is not None
        ctx.account.pass_gate(ctx.zone.zone, env.direction, env.device, env.seq, env.raw["at"])
    return decision, None, None


def _access_reason(ctx: SwipeContext) -> str | None:
    assert ctx.account is not None
    rules = ctx.zone.rules_for(ctx.account.groups) if ctx.zone is not None else []
    if not rules:
        return "no_access"
    local = ctx.envelope.occurred_at.astimezone(ctx.tz)
    if not any(admits(rule, local) for rule in rules):
        return "outside_schedule"
    assert ctx.zone is not None
    if ctx.zone.anti_passback and ctx.envelope.direction == "in" and ctx.account.is_inside(ctx.zone.zone):
        return "anti_passback"
    return None


def _flag_clock_skew(ctx: SwipeContext) -> None:
    """DESIGN §9: an event dated more than 5 minutes after the hub's clock (any event) or before
    it (online events: an offline one may well be old) is flagged; it is still decided at its
    ``at``."""
    skew = ctx.envelope.occurred_at - ctx.now
    if skew > MAX_CLOCK_SKEW or (not ctx.envelope.offline and skew < -MAX_CLOCK_SKEW):
        ctx.flags.append("clock_skew")


def _offline_limits(ctx: SwipeContext) -> None:
    """DESIGN §11: an approved offline purchase stands (it happened), and is flagged
    ``offline_over_limit`` when it went beyond any of the merchant's limits. The card counts it
    towards its day at the merchant whether or not the merchant has limits, so limits set
    during a day see the whole day."""
    env, merchant_id = ctx.envelope, ctx.device.merchant_id
    assert env.amount_fen is not None and merchant_id is not None
    card_day_fen = env.amount_fen
    if ctx.card is not None:
        card_day_fen += ctx.card.offline_spent(merchant_id, ctx.local_day)
        ctx.card.spend_offline(merchant_id, ctx.local_day, env.amount_fen, env.device, env.seq)
    if ctx.limits is None:
        return
    period_from, period_fen = ctx.log.offline_period(env.raw["at"])
    since = limits.parse_stored_instant(period_from)
    offline_seconds = (env.occurred_at - since).total_seconds() if since is not None else 0.0
    if limits.beyond(ctx.limits, env.amount_fen, card_day_fen, period_fen + env.amount_fen, offline_seconds):
        ctx.flags.append("offline_over_limit")


def _flag_possible_duplicate(ctx: SwipeContext) -> None:
    """DESIGN §11: a purchase of the same card and amount as another purchase of this device
    within the previous 10 s (by the envelopes' ``at``), online or offline, is flagged; an
    online one is still decided as any other."""
    env = ctx.envelope
    assert env.amount_fen is not None
    if limits.is_duplicate(ctx.log.recent, limits.instant_ms(env.occurred_at), ctx.card_uid, env.amount_fen):
        ctx.flags.append("possible_duplicate")


def _flag_offline_card(ctx: SwipeContext) -> None:
    """What the hub would have declined an offline swipe for: its card unknown or on the hotlist;
    its payment code invalid, expired or reused (DESIGN §10)."""
    code = ctx.code
    if code is not None and code.reason is not None:
        ctx.flags.append(code.reason)  # credential_invalid, credential_expired
    if ctx.code_reused:
        ctx.flags.append("credential_reused")
    if ctx.card is None or ctx.account is None:
        if code is None:
            ctx.flags.append("card_unknown")
    elif ctx.card.is_hotlisted:
        ctx.flags.append("hotlisted_card")
