"""The HTTP boundary: RFC 9457 problems, the one error middleware, strict bodies, and auth."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from domain.errors import AlreadyExists, Conflict, DomainError, Invalid, NotFound
from hub.keys import Principal, TokenError, read_token
from hub.query import check_request
from hub.typedefs import HUB_KEY
from hub.writer import Overloaded, WriterFailed

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBLEM_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = "1"
_STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404, AlreadyExists: 409, Conflict: 409, Invalid: 422,
}
_FIELD_RE = re.compile(r"at `\$\.?([^`]*)`")


class Problem(Exception):
    """An error answer: raised anywhere in a handler, rendered by the middleware."""

    def __init__(
        self, status: int, code: str, detail: str, *, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers = headers or {}


def problem_response(problem: Problem) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(problem.status),
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if problem.field is not None:
        body["field"] = problem.field
    return web.Response(
        status=problem.status, text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_TYPE, headers=problem.headers,
    )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a problem+json answer; no stack trace reaches a client."""
    try:
        check_request(request)  # the query string and path parameters, before any handler
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except DomainError as exc:
        status = _STATUS_BY_ERROR.get(type(exc), 422)
        return problem_response(Problem(status, exc.code, exc.detail, field=exc.field))
    except Overloaded:
        return problem_response(Problem(
            503, "overloaded", "the hub is at capacity; keep the events and send them again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ))
    except WriterFailed:
        return problem_response(Problem(
            503, "store_unavailable", "the batch could not be stored; nothing was written, send it again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        detail = exc.text if exc.status == 413 else (exc.reason or "")
        return problem_response(Problem(exc.status, code, detail or exc.reason))
    except Exception:  # the one place that catches everything: log it, answer 500
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "internal", "internal error; it has been logged"))


async def read_body(request: web.Request, body_type: type[T]) -> T:
    """Decodes a JSON body strictly: unknown fields, wrong types and floats are refused."""
    raw = await request.read()
    if not raw:
        raise Problem(400, "malformed", "a JSON body is required")
    try:
        return msgspec.json.decode(raw, type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _FIELD_RE.search(message)
        field = match.group(1) if match else None
        raise Problem(422, "invalid", message, field=field) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed", f"malformed JSON: {exc}") from None


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthenticated", "send Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": "Bearer"})
    try:
        return read_token(request.app[HUB_KEY], token.strip())
    except TokenError as exc:
        raise Problem(401, "unauthenticated", f"invalid token: {exc}",
                      headers={"WWW-Authenticate": "Bearer"}) from None


def authorize(
    request: web.Request, *roles: str, account: str | None = None, merchant: str | None = None
) -> Principal:
    """The caller, if its role is one of ``roles``; a scoped role must match the record.

    ``cardholder`` passes only for its own ``account``, ``merchant`` for its own ``merchant``."""
    principal = authenticate(request)
    allowed = principal.role in roles
    if principal.role == "cardholder":
        allowed = allowed and account is not None and principal.scope == account
    elif principal.role == "merchant":
        allowed = allowed and merchant is not None and principal.scope == merchant
    if not allowed:
        raise Problem(403, "forbidden", f"role {principal.role} may not do this")
    return principal
