"""Bearer tokens (DESIGN §12), for admins: the issued tokens, newest first, and revocation,
which every route honours at once (the registry is told before the answer is sent)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hub.service import responses
from hub.service.http import authorize, json_response
from hub.service.query import PageQuery, documented, query
from hub.service.token_office import token_json
from hub.service.typedefs import POOL, SEAT, TOKENS
from projections import tokens_queries

routes = web.RouteTableDef()


@routes.get("/v1/tokens")
@documented("Issued bearer tokens, newest first (never the tokens themselves)", query=PageQuery,
            responses={200: responses.Tokens})
async def list_tokens(request: web.Request) -> web.Response:
    """``from`` and ``to`` filter on when a token was issued."""
    authorize(request, "admin")
    page = query(request, PageQuery)
    found = await tokens_queries.page(request.app[POOL], page.keyset, page.start, page.end)
    return json_response({"items": [_row_json(r) for r in found.rows], "next": page.next_cursor(found)})


@routes.post("/v1/tokens/{jti}/revoke")
@documented("Revoke a bearer token: every route answers it 401 from now on", responses={200: responses.TokenRecord, 409: None})
async def revoke_token(request: web.Request) -> web.Response:
    caller = authorize(request, "admin")
    jti = request.match_info["jti"]
    record, exp = await request.app[SEAT].active().writer.run(lambda app: _revoked(app.revoke_token(jti, caller.actor())))
    request.app[TOKENS].mark_revoked(jti, exp)
    return json_response(record)


def _revoked(token: Any) -> tuple[dict[str, Any], int]:
    return token_json(token), token.exp


def _row_json(row: Any) -> dict[str, Any]:
    return {
        "jti": row["jti"], "role": row["role"], "scope": row["scope"], "kid": row["kid"],
        "issued_at": row["issued_at"].isoformat(), "expires_at": row["expires_at"].isoformat(),
        "issued_by": json.loads(row["issued_by"]), "revoked_at": row["revoked_at"] and row["revoked_at"].isoformat(),
        "revoked_by": json.loads(row["revoked_by"]) if row["revoked_by"] is not None else None,
    }
