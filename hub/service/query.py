"""Query strings and path parameters at the edge (DESIGN §6, §9), and the declared shape of
every route, which ``hub.service.openapi`` turns into the document.

Every route's handler is ``@documented``: its query Struct, body Struct, answers and whether
it takes a token. The middleware calls ``check_request`` before the handler, so every query
string is decoded once with ``msgspec.convert`` and every path parameter is checked against
its id pattern before any SQL:

- a control or bidi character anywhere in the query string (raw ``%00`` or decoded) → 422;
- a query parameter the route does not take, or given twice → 422 naming it (query Structs
  forbid unknown fields: a misspelt filter such as ``?acount=`` would otherwise silently
  answer the whole list; the dashboard's script sends only ``date``);
- an empty parameter (``?cursor=``) is the same as an absent one;
- integers are ASCII digits (``²``, ``١``, ``+1``, `` 1``, ``-0``, ``1e3`` are refused, and
  more than 19 digits) within their declared range;
- a path parameter that does not match its id pattern → **404** (no record can have that id;
  DESIGN §6 "unknown ids → 404"), for every route.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web

from domain.wire import RFC3339_RE
from hub.service.schemas import AccountId, CardUid, DeviceId, Jti, MerchantId, Zone
from projections.queries import Keyset, Page

T = TypeVar("T")
Q = TypeVar("Q", bound="Query")
Handler = Callable[..., Any]

MAX_POSITION = 2**63 - 1  # bigint: notification ids, versions, leaf indices
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
DIGITS_RE = re.compile(r"[0-9]{1,19}")
# aiohttp 3.14 added typed request keys (and warns on str keys); the project allows aiohttp >= 3.10.
QUERY_KEY: Any = web.RequestKey("query", object) if hasattr(web, "RequestKey") else "cardhub.query"

# Path parameter → its id type (hub.service.schemas); a route whose path names another is a bug.
PATH_TYPES: dict[str, Any] = {
    "account_id": AccountId, "device_id": DeviceId, "card_uid": CardUid, "merchant_id": MerchantId,
    "zone": Zone, "jti": Jti,
}

Limit = Annotated[int, msgspec.Meta(ge=1, le=1000, description="page size, 1–1000")]
Position = Annotated[int, msgspec.Meta(ge=0, le=MAX_POSITION)]
Size = Annotated[int, msgspec.Meta(ge=1, le=MAX_POSITION)]


class Instant(datetime):
    """An RFC 3339 date-time with an offset in the years 2000–2099 (``domain.wire.RFC3339_RE``)."""

    SCHEMA = {"type": "string", "format": "date-time", "maxLength": 35,
              "description": "RFC 3339 with an offset, years 2000–2099"}

    @classmethod
    def parse(cls, text: str) -> Instant:
        if len(text) > 35 or not RFC3339_RE.fullmatch(text):
            raise ValueError("must be an RFC 3339 date-time with an offset")
        instant = cls.fromisoformat(text.upper().replace("Z", "+00:00"))
        if not 2000 <= instant.year <= 2099:
            raise ValueError("must fall in the years 2000–2099")
        return instant


class Day(date):
    """A calendar day ``YYYY-MM-DD`` in the years 2000–2099."""

    SCHEMA = {"type": "string", "format": "date", "description": "YYYY-MM-DD, years 2000–2099"}
    RE = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}")

    @classmethod
    def parse(cls, text: str) -> Day:
        if not cls.RE.fullmatch(text):
            raise ValueError("must be YYYY-MM-DD in the years 2000–2099")
        return cls.fromisoformat(text)


class Cursor(int):
    """An opaque keyset cursor: the position a page stopped at, as only this hub writes it."""

    SCHEMA = {"type": "string", "maxLength": 28, "pattern": "^[A-Za-z0-9_-]{1,28}={0,2}$",
              "description": "opaque; the `next` of the previous page"}

    @classmethod
    def encode(cls, position: int) -> str:
        return base64.urlsafe_b64encode(str(position).encode()).decode()

    @classmethod
    def parse(cls, text: str) -> Cursor:
        if len(text) > 28:
            raise ValueError("not a cursor this hub gave")
        try:
            digits = base64.urlsafe_b64decode(text.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("not a cursor this hub gave") from None
        if not DIGITS_RE.fullmatch(digits.decode("latin-1")) or digits.startswith(b"0"):
            raise ValueError("not a cursor this hub gave")
        position = int(digits)
        if position > MAX_POSITION or cls.encode(position) != text:
            raise ValueError("not a cursor this hub gave")
        return cls(position)


_CUSTOM = (Instant, Day, Cursor)


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ in _CUSTOM and isinstance(value, str):
        return type_.parse(value)  # type: ignore[attr-defined]
    raise NotImplementedError(f"no decoder for {type_}")


def schema_hook(type_: type) -> dict[str, Any]:
    """JSON schemas of the custom query types, for ``msgspec.json.schema_components``."""
    if type_ in _CUSTOM:
        return dict(type_.SCHEMA)  # type: ignore[attr-defined]
    raise NotImplementedError(f"no schema for {type_}")


class Query(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of the query Structs: every field is optional or has a default unless required."""


class NoQuery(Query):
    """A route that takes no query parameters."""


NO_QUERY = NoQuery()


class KeysetQuery(Query):
    """``limit`` and ``cursor`` of a list (DESIGN §6), newest first: a list with no time to filter on."""

    limit: Limit = 100
    cursor: Cursor | None = None

    @property
    def before(self) -> int:
        """Rows strictly before this position (``notification_id``) make the page."""
        return MAX_POSITION if self.cursor is None else int(self.cursor)

    @property
    def keyset(self) -> Keyset:
        """The page asked for, as the views' queries take it (``projections.queries.fetch_page``)."""
        return Keyset(self.before, self.limit)

    def next_cursor(self, page: Page) -> str | None:
        """The cursor of the page after ``page``, None when it was the last."""
        return None if page.next_before is None else Cursor.encode(page.next_before)


class PageQuery(KeysetQuery):
    """``limit``, ``cursor``, ``from`` and ``to`` of a list (DESIGN §6), newest first."""

    start: Instant | None = msgspec.field(default=None, name="from")
    end: Instant | None = msgspec.field(default=None, name="to")


@dataclass(frozen=True)
class Body:
    """An answer that is not ``application/json``, or that has no body (``content_type`` None)."""

    content_type: str | None
    schema: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """What a handler declares: the document is generated from these and the router."""

    summary: str
    responses: Mapping[int, Any]
    query: type[Query] = NoQuery
    body: Any = None
    auth: bool = True
    store: bool = True  # reads the database or goes through the writer: may answer 503
    content: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # extra content types per status

    @functools.cached_property
    def int_fields(self) -> frozenset[str]:
        return _int_fields(self.query)


OPERATIONS: dict[Handler, Operation] = {}


def documented(summary: str, *, responses: Mapping[int, Any], query: type[Query] = NoQuery, body: Any = None,
               auth: bool = True, store: bool = True,
               content: Mapping[int, Mapping[str, Any]] | None = None) -> Callable[[T], T]:
    """Declares a handler's query, body and answers (status → response Struct, ``Body`` or None
    for a problem). Problems of auth (401, 403), the store (503), the body (400, 413, 422), the
    query (422) and the path (404) are added by ``hub.service.openapi`` from these flags."""
    operation = Operation(summary, responses, query, body, auth, store, content or {})

    def register(handler: T) -> T:
        OPERATIONS[handler] = operation  # type: ignore[index]
        return handler

    return register


def check_request(request: web.Request) -> None:
    """Called by the middleware before every handler: raises ``hub.service.http.Problem``."""
    if request.raw_path.find("?") >= 0 and _bad_text(request):
        raise _problem(422, "invalid", "the query string holds a control character or bytes that are not UTF-8",
                      field=_bad_name(request))
    operation = OPERATIONS.get(request.match_info.handler)
    if operation is None:
        return  # no route (404, 405): the router's own answer
    for name, value in request.match_info.items():
        if not _path_check(name)(value) or CONTROL_RE.search(value):
            raise _problem(404, "not_found", f"{name}: no such id", field=name)
    if operation.query is NoQuery and not request.query:
        request[QUERY_KEY] = NO_QUERY  # the upload path: no decoding to do
    else:
        request[QUERY_KEY] = decode_query(request.query, operation)


@functools.cache
def _path_check(name: str) -> Callable[[str], bool]:
    """The id type's own bounds (``hub.service.schemas``), as msgspec checks them, compiled once:
    ``msgspec.convert`` per request costs ~1.4 µs, this ~0.2 µs."""
    info = msgspec.inspect.type_info(PATH_TYPES[name])
    info = info.type if isinstance(info, msgspec.inspect.Metadata) else info
    assert isinstance(info, msgspec.inspect.StrType), name
    pattern = re.compile(info.pattern) if info.pattern is not None else None
    low, high = info.min_length or 0, info.max_length if info.max_length is not None else 1 << 62

    def check(value: str) -> bool:
        return low <= len(value) <= high and (pattern is None or pattern.search(value) is not None)

    return check


def decode_query(query: Any, operation: Operation) -> Query:
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in query.items():
        if name in seen:
            raise _problem(422, "invalid", f"{name}: given more than once", field=name)
        seen.add(name)
        if value == "":
            continue
        if name in operation.int_fields and not DIGITS_RE.fullmatch(value):
            raise _problem(422, "invalid", f"{name}: must be an integer of ASCII digits", field=name)
        values[name] = value
    try:
        return msgspec.convert(values, operation.query, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        message = str(exc)
        name = _error_field(message)
        raise _problem(422, "invalid", f"{name}: {message}" if name else message, field=name) from None


def _problem(status: int, code: str, detail: str, *, field: str | None) -> Exception:
    from hub.service.http import Problem  # hub.service.http's middleware imports this module

    return Problem(status, code, detail, field=field)


def query(request: web.Request, query_type: type[Q]) -> Q:
    """The route's decoded query, as its ``@documented`` query Struct."""
    decoded = request[QUERY_KEY]
    assert isinstance(decoded, query_type), f"the route declares {type(decoded).__name__}, not {query_type.__name__}"
    return decoded


_AT_RE = re.compile(r"at `\$\.([^`]*)`")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]*)`")
_MISSING_RE = re.compile(r"missing required field `([^`]*)`")


def _error_field(message: str) -> str | None:
    for pattern in (_AT_RE, _UNKNOWN_RE, _MISSING_RE):
        match = pattern.search(message)
        if match:
            return match.group(1)
    return None


def _bad_text(request: web.Request) -> bool:
    if CONTROL_RE.search(request.raw_path.partition("?")[2]):
        return True
    return any(_bad(name) or _bad(value) for name, value in request.query.items())


def _bad(text: str) -> bool:
    return CONTROL_RE.search(text) is not None or "\ufffd" in text  # U+FFFD: bytes that were not UTF-8


def _bad_name(request: web.Request) -> str | None:
    """The parameter whose value is at fault, when its name is clean."""
    for name, value in request.query.items():
        if _bad(value) and not _bad(name):
            return name
    return None


def _int_fields(query_type: type[Query]) -> frozenset[str]:
    info = msgspec.inspect.type_info(query_type)
    names = set()
    for f in info.fields:  # type: ignore[attr-defined]
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        kinds = tuple(k.type if isinstance(k, msgspec.inspect.Metadata) else k for k in kinds)
        if any(isinstance(k, msgspec.inspect.IntType) for k in kinds):
            names.add(f.encode_name)
    return frozenset(names)


# The query Structs of the routes.

class AuditEventsQuery(PageQuery):
    card: CardUid | None = None
    device: DeviceId | None = None
    account: AccountId | None = None


class AccessLogQuery(PageQuery):
    zone: Zone | None = None
    account: AccountId | None = None
    card: CardUid | None = None


class LeavesQuery(Query):
    start: Position
    end: Size


class InclusionQuery(Query):
    index: Position
    tree_size: Size


class ConsistencyQuery(Query):
    first: Size
    second: Size


class SinceQuery(Query):
    """A device's last hotlist or rules version."""

    since: Position | None = None


class SettlementQuery(Query):
    date: Day | None = None
    format: Literal["json", "csv"] | None = None


class ConsumptionQuery(Query):
    start: Instant | None = msgspec.field(default=None, name="from")
    end: Instant | None = msgspec.field(default=None, name="to")
    by: Literal["merchant", "device", "hour", "meal", "category", "day"] = "merchant"
    merchant: MerchantId | None = None


class DashboardQuery(Query):
    date: Day | None = None
