"""The HTTP boundary: RFC 9457 problems, the one error middleware, strict bodies, and auth."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from domain.actors import Actor
from domain.errors import AlreadyExists, Conflict, DomainError, Forbidden, Invalid, NotFound
from hub.ingest.isolation import WriterFailed
from hub.ingest.lanes import Overloaded
from hub.service.keys import Principal, TokenError, TokenExpired, TokenRevoked, read_token
from hub.service.query import OPERATIONS, check_request
from hub.service.schemas import OPERATOR_MAX_CREDIT_FEN, SAFE_TEXT
from hub.service.seat import Standby
from hub.service.typedefs import POOL, SEAT, TOKEN_KEYS, TOKENS
from hub.storage.store import STORE_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBLEM_TYPE = "application/problem+json"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # what a standby answers (DESIGN §13)
RETRY_AFTER_SECONDS = "1"
CARD_OFFICE = ("admin", "operator")  # the roles of the card office's commands (DESIGN §5)
_STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404, AlreadyExists: 409, Conflict: 409, Invalid: 422, Forbidden: 403,
}
# msgspec names the field at fault "at `$.field`", or, for the top level's fields, as
# "missing required field `field`" and "unknown field `field`".
_FIELD_RE = re.compile(r"at `\$\.?([^`]*)`|(?:required|unknown) field `([^`]*)`$")
MAX_JSON_DEPTH = 32  # DESIGN §9: deeper nesting is malformed
_NESTED = (dict, list)
_ESCAPED_SURROGATE_RE = re.compile(rb"\\u[dD][89a-fA-F]")  # any surrogate, high or low
# aiohttp 3.14 added typed request keys (and warns on str keys); the project allows aiohttp >= 3.10.
PRINCIPAL_KEY: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "cardhub.principal"


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


class _StoreFault:
    """One log line when the store becomes unreachable and one when it answers again, not a
    traceback per request in between."""

    since: float | None = None
    answered = 0

    def failed(self, exc: BaseException) -> None:
        self.answered += 1
        if self.since is None:
            self.since = time.monotonic()
            text = str(exc).strip()
            log.error("store unavailable (%s: %s): answering 503 until it is back",
                      type(exc).__name__, text.splitlines()[0] if text else "")

    def recovered(self) -> None:
        assert self.since is not None
        log.warning("store available again after %.1f s (%d requests answered 503)",
                    time.monotonic() - self.since, self.answered)
        self.since, self.answered = None, 0


_store_fault = _StoreFault()
STORE_UNAVAILABLE = Problem(
    503, "store_unavailable", "the event store is unavailable; nothing was written, send it again",
    headers={"Retry-After": RETRY_AFTER_SECONDS},
)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a problem+json answer; no stack trace reaches a client."""
    try:
        check_request(request)  # the query string and path parameters, before any handler
        if request.method not in READ_METHODS and request.match_info.http_exception is None and request.app[SEAT].standby:
            raise Standby(request.app[SEAT].holder)  # uploads and commands go to the active hub (DESIGN §13)
        operation = OPERATIONS.get(request.match_info.handler)
        if operation is not None and operation.auth:
            request[PRINCIPAL_KEY] = await bearer(request)
        response = await handler(request)
        if _store_fault.since is not None and response.status < 400:
            _store_fault.recovered()
        return response
    except Problem as problem:
        return problem_response(problem)
    except DomainError as exc:
        status = _STATUS_BY_ERROR.get(type(exc), 422)
        return problem_response(Problem(status, exc.code, exc.detail, field=exc.field))
    except Standby as exc:
        return problem_response(Problem(
            503, "standby", f"this hub is a standby ({exc} writes to the database); nothing was written: "
            "send it to the active hub, or again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ))
    except Overloaded:
        return problem_response(Problem(
            503, "overloaded", "the hub is at capacity; keep the events and send them again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ))
    except WriterFailed as exc:
        _store_fault.failed(exc)
        return problem_response(Problem(
            503, "store_unavailable", "the batch could not be stored; nothing was written, send it again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ))
    except STORE_ERRORS as exc:
        _store_fault.failed(exc)
        return problem_response(STORE_UNAVAILABLE)
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
    """Decodes a JSON body strictly: malformed JSON (``decode_json``) is ``400``; unknown
    fields, wrong types, floats and values out of bounds are ``422`` naming the field."""
    value = decode_json(await request.read())
    try:
        return msgspec.convert(value, body_type, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _FIELD_RE.search(message)
        field = (match.group(1) or match.group(2)) if match else None
        raise Problem(422, "invalid", explain_patterns(message), field=field) from None


class _Malformed(ValueError):
    """JSON that the standard decoder takes but DESIGN §9 does not."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise _Malformed(f"duplicate key {json.dumps(duplicate)}")
    return obj


def _constant(name: str) -> Any:
    raise _Malformed(f"{name} is not a JSON number")


def _long_int(digits: str) -> int:
    """An integer past Python's conversion limit: out of every range anyway, so any huge value
    serves, and the field is refused by its bounds (422 or ``invalid``), not the whole body."""
    return int(digits) if len(digits) < 4000 else 2**64


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
_LONG_INT_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_int=_long_int)


def decode_json(raw: bytes) -> Any:
    """A request body as Python values, or ``400 malformed`` saying what (DESIGN §9): not UTF-8,
    not JSON, a duplicate key at any level, NaN or Infinity, nesting deeper than 32, a lone
    surrogate. The standard library's C decoder with one hook per object: it sees every key,
    which msgspec does not (it keeps the last of duplicates)."""
    if not raw:
        raise Problem(400, "malformed", "a JSON body is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "malformed", f"malformed JSON: not UTF-8 (byte {exc.start})") from None
    try:
        try:
            value = _DECODER.decode(text)
        except ValueError as exc:
            if isinstance(exc, _Malformed | json.JSONDecodeError):
                raise
            value = _LONG_INT_DECODER.decode(text)  # an integer of thousands of digits
    except _Malformed as exc:
        raise Problem(400, "malformed", f"malformed JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "malformed", f"malformed JSON: {exc}") from None
    except RecursionError:  # the C decoder's own bound, far above ours
        raise Problem(400, "malformed", f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise Problem(400, "malformed", f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    if b"\\u" in raw and _ESCAPED_SURROGATE_RE.search(raw) and _has_lone_surrogate(value):
        raise Problem(400, "malformed", "malformed JSON: a lone surrogate escape (not a character)")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (the body itself is level 1)."""
    level, depth = [value] if type(value) in _NESTED else [], 1
    while level:
        if depth > limit:
            return True
        level = [child for node in level for child in (node.values() if type(node) is dict else node)
                 if type(child) in _NESTED]
        depth += 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def explain_patterns(message: str) -> str:
    """msgspec names a failed pattern by its regex; say what the text-safety one means."""
    return message.replace(f"matching regex {SAFE_TEXT!r}", "without control or bidirectional characters")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


async def bearer(request: web.Request) -> Principal:
    """The caller of a route that takes a token (DESIGN §5, §12): signed by a token key of this
    hub, not expired, issued and not revoked; else ``401`` saying which."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("send Authorization: Bearer <token>")
    try:
        principal = read_token(request.app[TOKEN_KEYS], token.strip())
        await request.app[TOKENS].check(request.app[POOL], principal)
    except (TokenExpired, TokenRevoked) as exc:
        raise _unauthenticated(f"{exc}: sign in again with a new one") from None
    except TokenError as exc:
        raise _unauthenticated(f"invalid token: {exc}") from None
    return principal


def authenticate(request: web.Request) -> Principal:
    """The caller, as the middleware found it (``bearer``) for a route ``@documented`` with a token."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is None:
        raise _unauthenticated("send Authorization: Bearer <token>")
    return principal


def authorize(
    request: web.Request, *roles: str, account: str | None = None, merchant: str | None = None,
    zone: str | None = None,
) -> Principal:
    """The caller, if its role is one of ``roles``; a scoped role must match the record.

    ``cardholder`` passes only for its own ``account``, ``merchant`` for its own ``merchant``,
    ``warden`` for a ``zone`` of its own."""
    principal = authenticate(request)
    allowed = principal.role in roles
    if principal.role == "cardholder":
        allowed = allowed and account is not None and principal.scope == account
    elif principal.role == "merchant":
        allowed = allowed and merchant is not None and principal.scope == merchant
    elif principal.role == "warden":
        allowed = allowed and zone is not None and zone in principal.zones
    if not allowed:
        raise Problem(403, "forbidden", f"role {principal.role} may not do this")
    return principal


def card_caller(request: web.Request) -> tuple[Actor, str | None]:
    """The caller of a command on a card: the card office (no owner), or a cardholder for the
    cards of its own account (the owner), checked on the writer, which alone knows a card's
    account (403 for another's card, and for an unknown one, alike)."""
    caller = authenticate(request)
    if caller.role == "cardholder":
        assert caller.scope is not None  # a cardholder's token names its account (hub.service.keys)
        return caller.actor(), caller.scope
    return authorize(request, *CARD_OFFICE).actor(), None


def refuse_operator_over(caller: Principal, amount_fen: int, verb: str) -> None:
    """DESIGN §12: an ``operator`` credits or refunds at most ``OPERATOR_MAX_CREDIT_FEN`` in one
    command; above, it is an admin's (``403``). ``verb``: what the command does (credit, refund)."""
    if caller.role == "operator" and amount_fen > OPERATOR_MAX_CREDIT_FEN:
        raise Problem(403, "forbidden", f"an operator may {verb} at most {OPERATOR_MAX_CREDIT_FEN:,} fen"
                      f" (¥{OPERATOR_MAX_CREDIT_FEN // 100:,}) in one command; {amount_fen:,} fen needs an admin")
