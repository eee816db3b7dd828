"""Who read a person's records (DESIGN §12), read by ``projections.reads_queries``.

The cardholder reads its own account's; admins and auditors any account's — and since the list
of who looked at a person is itself about that person, their reading it is recorded like any
other read of the account (``reads``), before the answer (which shows it once the view has
applied it, within a second)."""

from __future__ import annotations

from aiohttp import web

from hub.service import responses
from hub.service.http import json_response
from hub.service.personal import account_page
from hub.service.query import PageQuery, documented
from projections import reads_queries

READS_READERS = ("admin", "auditor", "cardholder")
routes = web.RouteTableDef()


@routes.get("/v1/accounts/{account_id}/reads")
@documented("Who read this account's records, newest first", query=PageQuery, responses={200: responses.Reads, 404: None})
async def reads(request: web.Request) -> web.Response:
    page, found = await account_page(request, READS_READERS, "reads", reads_queries.reads)
    items = [{"at": r["at"].isoformat(), "role": r["role"], "what": r["what"]} for r in found.rows]
    return json_response({"items": items, "next": page.next_cursor(found)})
