"""Who read a person's records (DESIGN §12), read by ``projections.reads_queries``.

The cardholder reads its own account's; admins and auditors any account's — and since the list
of who looked at a person is itself about that person, their reading it is recorded like any
other read of the account (``reads``), before the answer (which shows it once the view has
applied it, within a second)."""

from __future__ import annotations

from aiohttp import web

from hub.service import responses
from hub.service.http import Problem, authorize, json_response
from hub.service.personal import note_read
from hub.service.query import PageQuery, documented, query
from hub.service.typedefs import POOL
from projections import reads_queries

READS_READERS = ("admin", "auditor", "cardholder")
routes = web.RouteTableDef()


@routes.get("/v1/accounts/{account_id}/reads")
@documented("Who read this account's records, newest first", query=PageQuery, responses={200: responses.Reads, 404: None})
async def reads(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    caller = authorize(request, *READS_READERS, account=account_id)
    page = query(request, PageQuery)
    await note_read(request, caller, "reads", account=account_id)
    async with request.app[POOL].acquire() as conn:
        found = await reads_queries.reads(conn, account_id, page.keyset, page.start, page.end)
    if found is None:
        raise Problem(404, "not_found", f"account {account_id} not found")
    items = [{"at": r["at"].isoformat(), "role": r["role"], "what": r["what"]} for r in found.rows]
    return json_response({"items": items, "next": page.next_cursor(found)})
