"""Reads of a person are themselves audited (DESIGN §12): a route that reads one account's records
(its balance, transactions, cards, reads; the access log or audit events filtered by account or
card) records the read on the writer thread before it answers. If it cannot be recorded the
request fails — ``503`` from the one middleware — and nothing is answered: a read of a person
that leaves no trace is not allowed. A cardholder reading its own records records nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web

from domain.reads import ReadOf
from hub.service.http import Problem, authorize
from hub.service.keys import Principal
from hub.service.query import KeysetQuery, PageQuery, query
from hub.service.typedefs import POOL, SEAT
from projections.queries import Connection, Keyset, Page

# A view's query of one page of an account's records; None when there is no such account.
AccountPage = Callable[[Connection, str, Keyset, datetime | None, datetime | None], Awaitable[Page | None]]


async def note_read(request: web.Request, caller: Principal, what: str, *, account: str | None = None,
                    card: str | None = None) -> None:
    """Records that ``caller`` read ``what`` of ``account`` (or of the account of ``card``),
    unless the caller is that account's cardholder (``authorize`` let no other cardholder in)."""
    if caller.role == "cardholder" or (account is None and card is None):
        return
    await request.app[SEAT].active().writer.record_read(ReadOf(what, caller.actor(), account_id=account, card_uid=card))


async def account_page(request: web.Request, roles: tuple[str, ...], what: str, fetch: AccountPage,
                       query_type: type[KeysetQuery] = PageQuery) -> tuple[KeysetQuery, Page]:
    """A page of the records of the path's account, for a caller with one of ``roles`` (a
    cardholder only for its own), the read recorded first: ``404`` for an unknown account.
    ``query_type``: the route's, a ``KeysetQuery`` for a list without ``from`` and ``to``."""
    account_id = request.match_info["account_id"]
    caller = authorize(request, *roles, account=account_id)
    page = query(request, query_type)
    start, end = (page.start, page.end) if isinstance(page, PageQuery) else (None, None)
    await note_read(request, caller, what, account=account_id)
    async with request.app[POOL].acquire() as conn:
        found = await fetch(conn, account_id, page.keyset, start, end)
    if found is None:
        raise Problem(404, "not_found", f"account {account_id} not found")
    return page, found
