"""Reads of a person are themselves audited (DESIGN §12): a route that reads one account's records
(its balance, transactions, cards, reads; the access log or audit events filtered by account or
card) records the read on the writer thread before it answers. If it cannot be recorded the
request fails — ``503`` from the one middleware — and nothing is answered: a read of a person
that leaves no trace is not allowed. A cardholder reading its own records records nothing."""

from __future__ import annotations

from aiohttp import web

from domain.reads import ReadOf
from hub.service.http import actor_of
from hub.service.keys import Principal
from hub.service.typedefs import WRITER


async def note_read(request: web.Request, caller: Principal, what: str, *, account: str | None = None,
                    card: str | None = None) -> None:
    """Records that ``caller`` read ``what`` of ``account`` (or of the account of ``card``),
    unless the caller is that account's cardholder (``authorize`` let no other cardholder in)."""
    if caller.role == "cardholder" or (account is None and card is None):
        return
    await request.app[WRITER].record_read(ReadOf(what, actor_of(caller), account_id=account, card_uid=card))
