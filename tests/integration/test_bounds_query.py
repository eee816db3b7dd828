"""Query strings and path parameters at the edge (DESIGN §9): integers are ASCII digits in
their range, cursors are opaque and bounded, times and days are bounded, a control character
anywhere in a query string is refused, and a path id that cannot exist is 404 before any SQL.
Every refusal is a 4xx problem+json naming the parameter, and writes nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio

from hub.service.query import Cursor
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

# One seeded hub for the module: every case refuses, so none changes what the next one sees.
pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBLEM = "application/problem+json"
B64 = base64.urlsafe_b64encode

# Every query parameter of every route: (path, parameter, the other parameters it needs).
PARAMETERS: list[tuple[str, str, str]] = [
    *[("/v1/accounts/S001/transactions", p, "") for p in ("limit", "cursor", "from", "to")],
    *[("/v1/accounts/S001/reads", p, "") for p in ("limit", "cursor", "from", "to")],
    *[("/v1/audit/events", p, "") for p in ("limit", "cursor", "from", "to", "card", "device", "account")],
    *[("/v1/access-log", p, "") for p in ("limit", "cursor", "from", "to", "zone", "account", "card")],
    ("/v1/audit/leaves", "start", "end=1"), ("/v1/audit/leaves", "end", "start=0"),
    ("/v1/audit/proofs/inclusion", "index", "tree_size=1"), ("/v1/audit/proofs/inclusion", "tree_size", "index=0"),
    ("/v1/audit/proofs/consistency", "first", "second=1"), ("/v1/audit/proofs/consistency", "second", "first=1"),
    ("/v1/merchants/canteen-1/settlement", "date", ""), ("/v1/merchants/canteen-1/settlement", "format", ""),
    *[("/v1/stats/consumption", p, "") for p in ("from", "to", "by", "merchant")],
    ("/v1/stats/dashboard", "date", ""),
    ("/v1/devices/pos-1/hotlist", "since", ""), ("/v1/devices/gate-1/rules", "since", ""),
]
PAGED = ("/v1/accounts/S001/transactions", "/v1/accounts/S001/reads", "/v1/audit/events", "/v1/access-log")
# Routes with no query parameters: a NUL or an unknown parameter is refused all the same.
WITHOUT_PARAMETERS = [
    ("GET", "/v1/accounts/S001/balance"), ("GET", "/v1/audit/checkpoint"), ("GET", "/v1/zones/library/occupancy"),
    ("GET", "/v1/hub/key"), ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
    ("GET", "/dashboard"), ("GET", "/dashboard/dashboard.js"), ("POST", "/v1/devices/pos-1/events"),
    ("POST", "/v1/accounts"), ("POST", "/v1/cards/C0FFEE01/lost"),
]
BAD_INTEGERS = ["²", "١", "+1", " 1", "-0", "-1", "1e3", "1.0", "0x1", "9" * 5000, str(2**63), "1_0"]
FORGED_CURSORS = [
    "garbage!", "%%%", "A" * 5000, B64(str(2**70).encode()).decode(), B64(b"-5").decode(), B64(b"0").decode(),
    B64(b"007").decode(), B64("²".encode()).decode(), B64(b"\x00").decode(), "MTA",  # "10" without its padding
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hub(pg_server: Database, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    name = f"test_{uuid4().hex[:16]}"
    database = pg_server.create_database(name)
    seeded = await start_hub(database, Path(tmp_path_factory.mktemp("bounds")) / "hub")
    await _seed(seeded)
    yield seeded
    await seeded.client.close()
    pg_server.drop_database(name)


async def _seed(hub: Hub) -> None:
    await hub.merchant()
    await hub.pos()
    await hub.post("/v1/zones", {"zone": "library", "name": "图书馆", "anti_passback": True})
    await hub.account("S001", cash=1000, card="C0FFEE01")
    await hub.settle()


async def _position(hub: Hub) -> int:
    return (await hub.get("/healthz", role=None))["store_position"]


async def _refused(hub: Hub, method: str, url: str, field: str | None, *, status: int = 422) -> dict[str, Any]:
    resp = await hub.client.request(method, url, headers=hub.auth())
    body = await resp.json(content_type=None)
    assert resp.status == status, (url[:120], resp.status, body)
    assert resp.content_type == PROBLEM, url[:120]
    assert body["status"] == status and body["code"] == ("invalid" if status == 422 else "not_found"), body
    assert body.get("field") == field, (url[:120], body)
    return body


def _url(path: str, query: str, other: str) -> str:
    return f"{path}?{query}" + (f"&{other}" if other else "")


@pytest.mark.parametrize(("path", "name", "other"), PARAMETERS, ids=[f"{p}?{n}" for p, n, _ in PARAMETERS])
async def test_a_query_parameter_with_a_superscript_5000_digits_or_a_nul_is_refused_naming_it(
    hub: Hub, path: str, name: str, other: str,
) -> None:
    before = await _position(hub)
    for value in ("%C2%B2", "9" * 5000, "%00", "1%00", "%E2%80%AE1", "%0A"):  # ², 5,000 digits, NUL, U+202E, LF
        await _refused(hub, "GET", _url(path, f"{name}={value}", other), name)
    await _refused(hub, "GET", _url(path, f"{name}=1&{name}=2", other), name)  # given twice
    if path in PAGED and name == "cursor":
        for cursor in FORGED_CURSORS:
            await _refused(hub, "GET", _url(path, "cursor=" + cursor.replace("=", "%3D").replace("%%%", "%25%25%25"),
                                            other), "cursor")
    assert await _position(hub) == before


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/accounts/S001/transactions", "limit"), ("/v1/audit/leaves", "start"), ("/v1/devices/pos-1/hotlist", "since"),
    ("/v1/devices/gate-1/rules", "since"), ("/v1/audit/proofs/inclusion", "index"),
])
async def test_integers_are_ascii_digits_within_their_range(hub: Hub, path: str, name: str) -> None:
    before = await _position(hub)
    other = {"start": "end=1", "index": "tree_size=1"}.get(name, "")
    for value in BAD_INTEGERS:
        quoted = value.replace("+", "%2B").replace(" ", "%20").encode().decode()
        await _refused(hub, "GET", _url(path, f"{name}={quoted}", other), name)
    assert await _position(hub) == before


async def test_limit_is_from_1_to_1000(hub: Hub) -> None:
    for bad in ("0", "1001", "99999999999999999999"):
        await _refused(hub, "GET", f"/v1/accounts/S001/transactions?limit={bad}", "limit")
    for good in ("1", "1000"):
        assert (await hub.get(f"/v1/accounts/S001/transactions?limit={good}"))["items"]


async def test_a_cursor_is_what_the_hub_gave_and_pages_on(hub: Hub) -> None:
    await hub.post("/v1/accounts/S001/topups", {"amount": 5, "ref": "second"})
    await hub.settle()
    first = await hub.get("/v1/accounts/S001/transactions?limit=1")
    assert first["next"] is not None and Cursor.parse(first["next"]) > 0
    rest = await hub.get(f"/v1/accounts/S001/transactions?limit=1&cursor={first['next']}")
    assert rest["items"] and rest["items"] != first["items"]
    assert Cursor.encode(2**63 - 1) == B64(str(2**63 - 1).encode()).decode()
    for forged in (Cursor.encode(2**63), B64(str(2**70).encode()).decode(), B64(b"-1").decode()):
        with pytest.raises(ValueError, match="not a cursor this hub gave"):
            Cursor.parse(forged)


@pytest.mark.parametrize("value", [
    "2026-11-25T12:00:00", "2026-11-25", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "2026-02-30T00:00:00Z", "2026-11-25 12:00:00Z", "2" * 5000,
], ids=lambda v: v[:24])
async def test_times_are_rfc_3339_with_an_offset_in_the_years_2000_to_2099(hub: Hub, value: str) -> None:
    quoted = value.replace(" ", "%20")
    for path in ("/v1/accounts/S001/transactions", "/v1/audit/events", "/v1/access-log", "/v1/stats/consumption"):
        await _refused(hub, "GET", f"{path}?from={quoted}", "from")
        await _refused(hub, "GET", f"{path}?to={quoted}", "to")
    assert (await hub.get("/v1/audit/events?from=2026-11-25T12:00:00%2B08:00&to=2099-12-31T23:00:00Z"))["items"] == []


@pytest.mark.parametrize("value", ["1999-12-31", "2100-01-01", "0001-01-01", "2026-13-01", "20261125", "2026-1-5",
                                   "25.11.2026", "2" * 5000], ids=lambda v: v[:12])
async def test_a_date_is_yyyy_mm_dd_in_the_years_2000_to_2099(hub: Hub, value: str) -> None:
    await _refused(hub, "GET", f"/v1/merchants/canteen-1/settlement?date={value}", "date")
    await _refused(hub, "GET", f"/v1/stats/dashboard?date={value}", "date")


async def test_id_filters_use_the_id_patterns(hub: Hub) -> None:
    for path, name, value in [("/v1/audit/events", "card", "c0ffee01"), ("/v1/audit/events", "device", "pos 1"),
                              ("/v1/audit/events", "account", "S" * 33), ("/v1/access-log", "zone", "图书馆"),
                              ("/v1/access-log", "card", "C0FF"), ("/v1/stats/consumption", "merchant", "a/b"),
                              ("/v1/stats/consumption", "by", "week"), ("/v1/merchants/canteen-1/settlement",
                                                                        "format", "xml")]:
        await _refused(hub, "GET", f"{path}?{name}={value.replace(' ', '%20').replace('/', '%2F')}", name)
    assert (await hub.get("/v1/audit/events?card=C0FFEE01&device=pos-1&account=S001"))["items"] == []


async def test_an_unknown_query_parameter_is_refused_naming_it(hub: Hub) -> None:
    """A misspelt filter would otherwise answer the whole list as if it were filtered."""
    await _refused(hub, "GET", "/v1/access-log?acount=S001", "acount")
    await _refused(hub, "GET", "/v1/stats/dashboard?date=2026-11-25&lang=en", "lang")
    assert (await hub.get("/v1/access-log?account=&cursor="))["items"] == []  # empty is absent


@pytest.mark.parametrize(("method", "path"), WITHOUT_PARAMETERS, ids=[f"{m} {p}" for m, p in WITHOUT_PARAMETERS])
async def test_a_nul_in_the_query_string_of_a_route_without_parameters_is_refused(
    hub: Hub, method: str, path: str,
) -> None:
    before = await _position(hub)
    await _refused(hub, method, f"{path}?x=%00", "x")
    await _refused(hub, method, f"{path}?%00=1", None)
    await _refused(hub, method, f"{path}?a%E2%80%AE", None)
    await _refused(hub, method, f"{path}?%FF", None)  # not UTF-8
    await _refused(hub, method, f"{path}?x=1", "x")
    assert await _position(hub) == before


PATH_NAMES = {"accounts": "account_id", "cards": "card_uid", "devices": "device_id", "merchants": "merchant_id",
              "zones": "zone"}


@pytest.mark.parametrize(("method", "template"), [
    ("GET", "/v1/accounts/{}/balance"), ("GET", "/v1/accounts/{}/transactions"), ("GET", "/v1/accounts/{}/reads"),
    ("POST", "/v1/accounts/{}/topups"),
    ("POST", "/v1/accounts/{}/subsidies"), ("POST", "/v1/cards/{}/lost"), ("POST", "/v1/cards/{}/found"),
    ("POST", "/v1/devices/{}/revoke"), ("POST", "/v1/devices/{}/events"), ("GET", "/v1/devices/{}/hotlist"),
    ("GET", "/v1/devices/{}/rules"), ("GET", "/v1/merchants/{}/settlement"), ("GET", "/v1/zones/{}/occupancy"),
])
async def test_a_path_id_that_cannot_exist_is_404_before_any_sql(hub: Hub, method: str, template: str) -> None:
    before = await _position(hub)
    name = PATH_NAMES[template.split("/")[2]]
    for bad in ("S001%00", "%00", str(2**63) * 4, "x" * 5000, "%E2%80%AES001", "%C2%B2", "a%20b", "S001%0A"):
        await _refused(hub, method, template.format(bad), name, status=404)
    assert await _position(hub) == before
