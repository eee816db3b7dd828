"""Subsidy grants (DESIGN §11): an account's subsidy wallet as the grants it was credited in,
each ``[ref, remaining_fen, expires_at | None]``, kept in spending order — the grant that
expires first is spent first, grants without expiry last, ties by grant order.

A grant that expires stays in the list until it has expired, even when spent (its expiry is
then an event of 0 fen: every grant with an expiry ends in exactly one ``SubsidyExpired``, so
the view of grants to expire empties itself). A spent grant without expiry is dropped; a
give-back to a grant no longer in the list puts it back (the account's credit refs remember
its expiry). Pure functions over lists: an aggregate's event handlers call them."""

from __future__ import annotations

from datetime import datetime

Grant = list  # [ref: str, remaining_fen: int, expires_at: str | None]
Drawn = list[list]  # [[ref, fen], ...]: what a purchase took from which grant, in spending order

# The one grant of an account stored before grants (its whole subsidy, without expiry), and the
# grant that subsidy given back without a record of its grants goes to. No credit ref is empty.
LEGACY_REF = ""


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _key(expires_at: str | None) -> tuple[bool, datetime | None]:
    return (expires_at is None, None if expires_at is None else instant(expires_at))


def _before(a: str | None, b: str | None) -> bool:
    """Whether a grant expiring at ``a`` is spent strictly before one expiring at ``b``."""
    if a is None:
        return False
    return b is None or instant(a) < instant(b)


def insert(grants: list[Grant], ref: str, fen: int, expires_at: str | None) -> None:
    """Adds a grant after every grant spent before it or at the same time (ties by grant order)."""
    at = len(grants)
    while at > 0 and _before(expires_at, grants[at - 1][2]):
        at -= 1
    grants.insert(at, [ref, fen, expires_at])


def plan(grants: list[Grant], fen: int) -> Drawn:
    """Which grants a debit of ``fen`` subsidy takes from, first to expire first."""
    drawn: Drawn = []
    left = fen
    for ref, remaining, _ in grants:
        if left == 0:
            break
        if remaining > 0:
            taken = min(remaining, left)
            drawn.append([ref, taken])
            left -= taken
    assert left == 0, (fen, grants)
    return drawn


def take(grants: list[Grant], drawn: Drawn) -> None:
    for ref, fen in drawn:
        grant = find(grants, ref)
        assert grant is not None and grant[1] >= fen, (ref, fen, grants)
        grant[1] -= fen
        if grant[1] == 0 and grant[2] is None:
            grants.remove(grant)


def find(grants: list[Grant], ref: str) -> Grant | None:
    return next((g for g in grants if g[0] == ref), None)


def give(grants: list[Grant], ref: str, fen: int, expires_at: str | None) -> None:
    """Gives ``fen`` back to grant ``ref`` (back in the list, with ``expires_at``, if it left it)."""
    grant = find(grants, ref)
    if grant is None:
        insert(grants, ref, fen, expires_at)
    else:
        grant[1] += fen


def due(grants: list[Grant], now: datetime) -> list[Grant]:
    """The grants expired at ``now`` (``expires_at`` <= now): at the front, in spending order."""
    out = []
    for grant in grants:
        if grant[2] is None or instant(grant[2]) > now:
            break
        out.append(grant)
    return out


def give_back(drawn: Drawn | None, subsidy_fen: int, before_fen: int, after_fen: int) -> Drawn:
    """The grants that subsidy given back goes to, latest-expiring first: of a purchase that took
    ``subsidy_fen`` as ``drawn``, the cumulative subsidy given back grows from ``before_fen`` to
    ``after_fen``; each give-back is the difference of the two cumulative fillings, so refunds in
    parts give back exactly what one whole refund would. Without ``drawn`` (a purchase stored
    before grants) it goes to ``LEGACY_REF``."""
    if after_fen <= before_fen:
        return []
    if drawn is None:
        assert after_fen <= subsidy_fen
        return [[LEGACY_REF, after_fen - before_fen]]
    out: Drawn = []
    filled = 0
    for ref, fen in reversed(drawn):
        lo, hi = max(before_fen, filled), min(after_fen, filled + fen)
        if hi > lo:
            out.append([ref, hi - lo])
        filled += fen
    return out
