"""DESIGN §9 on everything that comes in a body or an envelope, against the real hub: text
without control or bidirectional characters, whole-string ids, amount and year ranges, strict
JSON, and the ``clock_skew`` flag. Every refused input answers a 4xx problem (or a rejected,
``invalid`` result naming the field) and writes nothing: ``/healthz``'s store position stays."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio

from device_sim.device import SimDevice
from domain.wire import GENESIS_PREV, sign_envelope
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

# A refused input writes nothing, so the refusals share one hub (one event loop for the module);
# the cases that write get a fresh one.
pytestmark = pytest.mark.asyncio(loop_scope="module")

CST = timezone(timedelta(hours=8))
CARD = "ABCDEF01"
BAD_TEXT = {"nul": "\x00", "rlo": "\u202e", "newline": "\n"}  # appended to a good value
AMOUNTS = {"zero": 0, "2^31": 2**31, "2^53-1": 2**53 - 1, "2^63": 2**63, "1.5": 1.5, "1.0": 1.0,
           "string": "100", "true": True, "2^64": 2**64}


async def store_position(hub: Hub) -> int:
    return (await hub.get("/healthz", role=None))["store_position"]


async def post_raw(hub: Hub, path: str, raw: bytes, *, admin: bool = True) -> tuple[int, str, Any]:
    headers = {"Content-Type": "application/json", **(hub.auth() if admin else {})}
    resp = await hub.client.post(path, data=raw, headers=headers)
    return resp.status, resp.content_type, await resp.json(content_type=None)


async def refused(hub: Hub, path: str, body: Any, *, status: int = 422, field: str | None = None,
                  admin: bool = True) -> dict[str, Any]:
    """Posts ``body`` (bytes as they are, anything else as JSON): a problem, and nothing stored."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    before = await store_position(hub)
    got, content_type, problem = await post_raw(hub, path, raw, admin=admin)
    assert (got, content_type) == (status, "application/problem+json"), (got, problem)
    assert problem["status"] == status and problem["code"] == ("malformed" if status == 400 else "invalid")
    if field is not None:
        assert problem["field"] == field and field in problem["detail"], problem
    assert await store_position(hub) == before
    return problem


async def rejected(hub: Hub, device_id: str, envelope: dict[str, Any], field: str) -> dict[str, Any]:
    """Uploads one envelope: ``rejected``/``invalid`` with a detail naming ``field``, nothing stored."""
    before = await store_position(hub)
    answer = await hub.upload(device_id, [envelope])
    (result,) = answer["results"]
    assert (result["status"], result["code"]) == ("rejected", "invalid"), result
    assert result["detail"].startswith(f"{field}: "), result
    assert await store_position(hub) == before
    return result


async def seed(hub: Hub) -> SimDevice:
    """A merchant, a POS, a zone and an account with a card and money: what the bodies refer to."""
    await hub.merchant()
    pos = await hub.pos()
    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号宿舍", "anti_passback": False})
    await hub.account("s1", cash=100_000, card=CARD)
    return pos


@pytest.fixture(scope="module")
def shared_database(pg_server: Database) -> Iterator[Database]:
    name = f"test_{uuid4().hex[:16]}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(shared_database: Database, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Hub, SimDevice]]:
    h = await start_hub(shared_database, tmp_path_factory.mktemp("bounds") / "hub")
    pos = await seed(h)
    yield h, pos
    await h.client.close()


@pytest.fixture
def hub(shared: tuple[Hub, SimDevice]) -> Hub:
    """The shared hub: only for inputs it must refuse."""
    return shared[0]


@pytest.fixture
def campus(shared: tuple[Hub, SimDevice]) -> SimDevice:
    return shared[1]


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(database: Database, tmp_path: Path) -> AsyncIterator[tuple[Hub, SimDevice]]:
    """A hub of its own, seeded, for the cases that write."""
    h = await start_hub(database, tmp_path / "hub")
    pos = await seed(h)
    yield h, pos
    await h.client.close()


def good_bodies(pos: SimDevice) -> dict[str, tuple[str, dict[str, Any]]]:
    """One valid body per route, each with fields the cases below spoil one at a time."""
    other = SimDevice("pos-2", "pos")
    return {
        "merchant": ("/v1/merchants", {"merchant_id": "canteen-2", "name": "第二食堂", "category": "dining"}),
        "device": ("/v1/devices", {"device_id": "pos-2", "kind": "pos", "public_key": other.public_key,
                                   "merchant_id": "canteen-1", "location": "第一食堂 4号窗口"}),
        "account": ("/v1/accounts", {"account_id": "s2", "name": "韩梅梅", "category": "student",
                                     "groups": ["students"], "daily_limit": 5000,
                                     "valid_from": "2026-09-01T00:00:00+08:00",
                                     "valid_until": "2030-07-01T00:00:00+08:00"}),
        "card": ("/v1/cards", {"card_uid": "ABCDEF02", "account_id": "s2"}),
        "topup": ("/v1/accounts/s1/topups", {"amount": 500, "ref": "cash-7"}),
        "subsidy": ("/v1/accounts/s1/subsidies", {"amount": 500, "ref": "sub-7"}),
        "zone": ("/v1/zones", {"zone": "library", "name": "图书馆", "anti_passback": True}),
        "rule": ("/v1/access-rules", {"zone": "dorm-1", "group": "students", "days": ["mon"],
                                      "from": "06:00", "to": "23:30"}),
    }


# (case, route, field as sent, field as named in the answer)
TEXT_FIELDS = [
    ("account_id", "account", "account_id", "account_id"),
    ("name", "account", "name", "name"),
    ("group", "account", "groups", "groups[0]"),
    ("rule group", "rule", "group", "group"),
    ("ref", "topup", "ref", "ref"),
    ("device_id", "device", "device_id", "device_id"),
    ("merchant_id", "merchant", "merchant_id", "merchant_id"),
    ("merchant name", "merchant", "name", "name"),
    ("location", "device", "location", "location"),
    ("public_key", "device", "public_key", "public_key"),
    ("zone", "zone", "zone", "zone"),
    ("zone name", "zone", "name", "name"),
    ("rule zone", "rule", "zone", "zone"),
    ("card_uid", "card", "card_uid", "card_uid"),
    ("card account_id", "card", "account_id", "account_id"),
    ("valid_from", "account", "valid_from", "valid_from"),
    ("valid_until", "account", "valid_until", "valid_until"),
    ("from", "rule", "from", "from"),
    ("to", "rule", "to", "to"),
    ("days", "rule", "days", "days[0]"),
]


async def test_the_good_bodies_are_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    """The baseline of every case below: each body as it stands is accepted."""
    for _, (path, body) in good_bodies(campus).items():
        await hub.post(path, body)


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize(("route", "name", "named"), [case[1:] for case in TEXT_FIELDS],
                         ids=[case[0] for case in TEXT_FIELDS])
async def test_a_control_or_bidi_character_in_a_text_field_is_refused_naming_it(
    hub: Hub, campus: SimDevice, route: str, name: str, named: str, bad: str,
) -> None:
    path, body = good_bodies(campus)[route]
    value = body[name]
    spoilt = [value[0] + bad, *value[1:]] if isinstance(value, list) else value + bad
    await refused(hub, path, {**body, name: spoilt}, field=named)


@pytest.mark.parametrize(("route", "name", "value"), [
    ("account", "name", ""), ("account", "name", "名" * 201), ("device", "location", ""),
    ("device", "location", "窗" * 201), ("zone", "name", ""), ("merchant", "name", "x" * 201),
])
async def test_names_and_locations_are_1_to_200_characters(
    hub: Hub, campus: SimDevice, route: str, name: str, value: str,
) -> None:
    path, body = good_bodies(campus)[route]
    await refused(hub, path, {**body, name: value}, field=name)


async def test_a_trailing_newline_does_not_make_a_second_account(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    await refused(hub, "/v1/accounts", {"account_id": "s1\n", "name": "李雷", "category": "student"},
                  field="account_id")
    assert (await hub.balance("s1"))["total"] == 100_000


@pytest.mark.parametrize("amount", AMOUNTS.values(), ids=AMOUNTS.keys())
@pytest.mark.parametrize("route", ["topup", "subsidy"])
async def test_a_credit_out_of_1_to_100_000_000_fen_or_not_an_integer_is_refused(
    hub: Hub, campus: SimDevice, route: str, amount: Any,
) -> None:
    path, body = good_bodies(campus)[route]
    await refused(hub, path, {**body, "amount": amount}, field="amount")


async def test_a_credit_of_exactly_100_000_000_fen_is_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    answer = await hub.post("/v1/accounts/s1/topups", {"amount": 100_000_000, "ref": "the-most"})
    assert answer["balance"]["cash"] == 100_100_000
    await refused(hub, "/v1/accounts/s1/topups", {"amount": 100_000_001, "ref": "too-much"}, field="amount")


@pytest.mark.parametrize("limit", [v for k, v in AMOUNTS.items() if k != "zero"],
                         ids=[k for k in AMOUNTS if k != "zero"])
async def test_a_daily_limit_out_of_0_to_100_000_000_fen_is_refused(hub: Hub, campus: SimDevice, limit: Any) -> None:
    path, body = good_bodies(campus)["account"]
    await refused(hub, path, {**body, "daily_limit": limit}, field="daily_limit")


async def test_a_daily_limit_of_0_and_of_100_000_000_is_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    path, body = good_bodies(campus)["account"]
    assert (await hub.post(path, {**body, "daily_limit": 0}))["daily_limit"] == 0
    assert (await hub.post(path, {**body, "account_id": "s3", "daily_limit": 100_000_000}))["daily_limit"] == 100_000_000
    await refused(hub, path, {**body, "account_id": "s4", "daily_limit": -1}, field="daily_limit")


OUT_OF_YEARS = {
    "0001": "0001-01-01T00:00:00+08:00", "1999": "1999-12-31T23:59:59Z", "2100": "2100-01-01T00:00:00Z",
    "9999": "9999-12-31T23:59:59+00:00", "2100 in UTC": "2099-12-31T23:59:59-01:00",
    "1999 in UTC": "2000-01-01T07:59:59+08:00", "no offset": "2026-11-25T12:00:00",
    "date only": "2026-11-25", "hour 24": "2026-11-25T24:00:00Z", "offset +24:00": "2026-11-25T12:00:00+24:00",
    "arabic digits": "٢٠٢٦-11-25T12:00:00Z",
}


@pytest.mark.parametrize("when", OUT_OF_YEARS.values(), ids=OUT_OF_YEARS.keys())
@pytest.mark.parametrize("name", ["valid_from", "valid_until"])
async def test_an_account_validity_outside_2000_to_2099_or_without_an_offset_is_refused(
    hub: Hub, campus: SimDevice, name: str, when: str,
) -> None:
    path, body = good_bodies(campus)["account"]
    await refused(hub, path, {**body, "valid_from": None, "valid_until": None, name: when}, field=name)


# -- envelopes -----------------------------------------------------------------


def envelope(device: SimDevice, **change: Any) -> dict[str, Any]:
    """A signed first envelope of ``device``, a purchase now, with ``change`` applied."""
    base = {"v": 1, "device": device.device_id, "seq": 1, "prev": GENESIS_PREV,
            "at": datetime.now(CST).isoformat(timespec="milliseconds"), "type": "purchase",
            "card": CARD, "amount": 100}
    return sign_envelope({**base, **change}, device.key)


async def test_the_good_envelope_is_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    before = await store_position(hub)
    (result,) = (await hub.upload(campus.device_id, [envelope(campus)]))["results"]
    assert (result["status"], result["decision"]) == ("accepted", "approved")
    assert await store_position(hub) > before


ENVELOPE_TEXT = ["device", "card", "at", "prev", "type", "sig"]


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize("name", ENVELOPE_TEXT)
async def test_a_control_or_bidi_character_in_an_envelope_field_is_invalid_naming_it(
    hub: Hub, campus: SimDevice, name: str, bad: str,
) -> None:
    signed = envelope(campus)
    spoilt = sign_envelope({**signed, name: signed[name] + bad}, campus.key) if name != "sig" else \
        {**signed, "sig": signed["sig"] + bad}
    result = await rejected(hub, campus.device_id, spoilt, name)
    assert f"U+{ord(bad):04X}" in result["detail"], result


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize(("name", "good"), [("direction", "in"), ("decision", "approved")])
async def test_a_control_or_bidi_character_in_a_gate_or_offline_field_is_invalid_naming_it(
    hub: Hub, campus: SimDevice, name: str, good: str, bad: str,
) -> None:
    fields = ({"type": "gate", "amount": None, "direction": good + bad} if name == "direction"
              else {"offline": True, "decision": good + bad})
    spoilt = envelope(campus, **fields)
    spoilt = sign_envelope({k: v for k, v in spoilt.items() if v is not None}, campus.key)
    await rejected(hub, campus.device_id, spoilt, name)


@pytest.mark.parametrize("amount", [*AMOUNTS.values(), 10_000_001], ids=[*AMOUNTS.keys(), "10,000,001"])
async def test_an_envelope_amount_out_of_1_to_10_000_000_fen_is_invalid(hub: Hub, campus: SimDevice, amount: Any) -> None:
    await rejected(hub, campus.device_id, envelope(campus, amount=amount), "amount")


async def test_an_envelope_of_10_000_000_fen_is_decided(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    (result,) = (await hub.upload(campus.device_id, [envelope(campus, amount=10_000_000)]))["results"]
    assert (result["status"], result["reason"]) == ("accepted", "insufficient_funds")


@pytest.mark.parametrize("version", [1.0, True, 2**53, 2**64, "1"], ids=["1.0", "true", "2^53", "2^64", "string"])
async def test_an_envelope_version_other_than_the_integer_1_is_invalid(hub: Hub, campus: SimDevice, version: Any) -> None:
    await rejected(hub, campus.device_id, envelope(campus, v=version), "v")


@pytest.mark.parametrize("seq", [2**53, 2**63, 1.0, 0, -1], ids=["2^53", "2^63", "1.0", "0", "-1"])
async def test_an_envelope_seq_out_of_range_is_invalid(hub: Hub, campus: SimDevice, seq: Any) -> None:
    await rejected(hub, campus.device_id, envelope(campus, seq=seq), "seq")


@pytest.mark.parametrize("when", OUT_OF_YEARS.values(), ids=OUT_OF_YEARS.keys())
async def test_an_envelope_at_outside_2000_to_2099_utc_or_without_an_offset_is_invalid(
    hub: Hub, campus: SimDevice, when: str,
) -> None:
    await rejected(hub, campus.device_id, envelope(campus, at=when), "at")


async def test_a_bad_envelope_fails_alone_and_the_next_upload_is_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    await rejected(hub, campus.device_id, envelope(campus, at="0001-01-01T00:00:00+08:00"), "at")
    (result,) = (await hub.upload(campus.device_id, [envelope(campus)]))["results"]
    assert result["status"] == "accepted"


# -- JSON ------------------------------------------------------------------------


def nested(depth: int) -> str:
    """Arrays nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


UPLOAD_MALFORMED = {
    "20,000 deep": (b'{"events": [' + nested(19_998).encode() + b"]}", "nested deeper than 32"),
    "33 deep": (b'{"events": [' + nested(31).encode() + b"]}", "nested deeper than 32"),
    "33 deep in an object": (b'{"events": [{"card": ' + nested(30).encode() + b"}]}", "nested deeper than 32"),
    "duplicate events": (b'{"events": [], "events": []}', 'duplicate key "events"'),
    "non-UTF-8": (b'{"events": [{"card": "\xff\xfe"}]}', "not UTF-8"),
    "NaN": (b'{"events": [{"amount": NaN}]}', "NaN"),
    "Infinity": (b'{"events": [{"amount": Infinity}]}', "Infinity"),
    "-Infinity": (b'{"events": [{"amount": -Infinity}]}', "-Infinity"),
    "lone surrogate": (b'{"events": [{"card": "\\ud800"}]}', "surrogate"),
    "UTF-16": ('{"events": []}'.encode("utf-16"), "not UTF-8"),
    "truncated": (b'{"events": [', "malformed JSON"),
}


@pytest.mark.parametrize(("raw", "what"), UPLOAD_MALFORMED.values(), ids=UPLOAD_MALFORMED.keys())
async def test_a_malformed_upload_is_400_saying_what(hub: Hub, campus: SimDevice, raw: bytes, what: str) -> None:
    problem = await refused(hub, f"/v1/devices/{campus.device_id}/events", raw, status=400, admin=False)
    assert what in problem["detail"], problem


async def test_a_duplicate_key_inside_an_envelope_is_400(hub: Hub, campus: SimDevice) -> None:
    signed = json.dumps(envelope(campus))
    twice = signed.replace('"amount": 100', '"amount": 100, "amount": 9000000')
    assert twice != signed
    problem = await refused(hub, f"/v1/devices/{campus.device_id}/events", f'{{"events": [{twice}]}}'.encode(),
                            status=400, admin=False)
    assert 'duplicate key "amount"' in problem["detail"]


async def test_32_levels_pass_the_json_check_and_the_event_is_invalid(hub: Hub, campus: SimDevice) -> None:
    """The bound is 32: an upload nested exactly 32 deep is well-formed JSON; its event is not
    an envelope."""
    raw = b'{"events": [' + nested(30).encode() + b"]}"
    before = await store_position(hub)
    status, _, answer = await post_raw(hub, f"/v1/devices/{campus.device_id}/events", raw, admin=False)
    assert status == 200, answer
    assert answer["results"][0]["code"] == "invalid" and answer["results"][0]["detail"].startswith("envelope: ")
    assert await store_position(hub) == before


async def test_a_huge_integer_in_an_envelope_is_invalid_not_malformed(hub: Hub, campus: SimDevice) -> None:
    signed = json.dumps(envelope(campus))
    huge = signed.replace('"amount": 100', '"amount": ' + "9" * 5000)
    before = await store_position(hub)
    status, _, answer = await post_raw(hub, f"/v1/devices/{campus.device_id}/events",
                                       f'{{"events": [{huge}]}}'.encode(), admin=False)
    assert status == 200 and answer["results"][0]["detail"].startswith("amount: ")
    assert await store_position(hub) == before


ADMIN_MALFORMED = {
    "20,000 deep": (b'{"amount": ' + nested(20_000).encode() + b', "ref": "r"}', "nested deeper than 32"),
    "33 deep": (b'{"amount": ' + nested(32).encode() + b', "ref": "r"}', "nested deeper than 32"),
    "duplicate amount": (b'{"amount": 1, "ref": "r", "amount": 100000000000}', 'duplicate key "amount"'),
    "non-UTF-8": (b'{"amount": 1, "ref": "\xc3\x28"}', "not UTF-8"),
    "NaN": (b'{"amount": NaN, "ref": "r"}', "NaN"),
    "Infinity": (b'{"amount": Infinity, "ref": "r"}', "Infinity"),
    "lone surrogate": (b'{"amount": 1, "ref": "\\udc00"}', "surrogate"),
    "empty": (b"", "body is required"),
}


@pytest.mark.parametrize(("raw", "what"), ADMIN_MALFORMED.values(), ids=ADMIN_MALFORMED.keys())
async def test_a_malformed_admin_body_is_400_saying_what(hub: Hub, campus: SimDevice, raw: bytes, what: str) -> None:
    problem = await refused(hub, "/v1/accounts/s1/topups", raw, status=400)
    assert what in problem["detail"], problem


async def test_32_levels_in_an_admin_body_are_a_422_naming_the_field(hub: Hub, campus: SimDevice) -> None:
    await refused(hub, "/v1/accounts/s1/topups", b'{"amount": ' + nested(31).encode() + b', "ref": "r"}',
                  field="amount")


async def test_a_surrogate_pair_escape_is_one_character_and_accepted(fresh: tuple[Hub, SimDevice]) -> None:
    hub, _ = fresh
    status, _, answer = await post_raw(hub, "/v1/merchants", b'{"merchant_id": "cafe", "name": "\\ud83c\\udf5c",'
                                       b' "category": "dining"}')
    assert (status, answer["name"]) == (201, "\U0001f35c")


@pytest.mark.parametrize(("route", "name"), [("topup", "amount"), ("subsidy", "amount"), ("account", "daily_limit")])
async def test_an_integer_of_5000_digits_is_a_422_naming_the_field(
    hub: Hub, campus: SimDevice, route: str, name: str,
) -> None:
    path, body = good_bodies(campus)[route]
    raw = json.dumps({**body, name: 0}, ensure_ascii=False).replace(f'"{name}": 0', f'"{name}": {"9" * 5000}')
    await refused(hub, path, raw.encode(), field=name)


# -- clock_skew ------------------------------------------------------------------


async def _swipe_flags(hub: Hub, pos: SimDevice, at: datetime, *, offline: bool) -> tuple[dict[str, Any], list[str]]:
    pos.purchase(CARD, 100, at, offline=offline, decision="approved" if offline else None)
    (result,) = await hub.send(pos)
    await hub.settle()
    item = next(i for i in (await hub.get("/v1/accounts/s1/transactions"))["items"] if i.get("seq") == result["seq"])
    assert item["at"] == at.isoformat(timespec="milliseconds")
    return result, item["flags"]


@pytest.mark.parametrize(("case", "skew", "offline", "flagged"), [
    ("future offline", timedelta(hours=3), True, True),
    ("future online", timedelta(minutes=6), False, True),
    ("past online", -timedelta(hours=2), False, True),
    ("past offline", -timedelta(days=3), True, False),
    ("online within 5 minutes", -timedelta(minutes=4), False, False),
    ("offline within 5 minutes ahead", timedelta(minutes=4), True, False),
])
async def test_an_event_far_from_the_hub_clock_is_flagged_clock_skew_and_still_decided(
    fresh: tuple[Hub, SimDevice], case: str, skew: timedelta, offline: bool, flagged: bool,
) -> None:
    hub, campus = fresh
    result, flags = await _swipe_flags(hub, campus, datetime.now(UTC).astimezone(CST) + skew, offline=offline)
    assert (result["status"], result["decision"], result["balance"]) == ("accepted", "approved", 99_900)
    assert ("clock_skew" in flags) is flagged, (case, flags)


async def test_a_skewed_online_swipe_is_decided_at_its_at(fresh: tuple[Hub, SimDevice]) -> None:
    hub, campus = fresh
    """The daily limit counts the local day of ``at``: yesterday's spending does not count today."""
    await hub.post("/v1/accounts", {"account_id": "s5", "name": "王伟", "category": "staff", "daily_limit": 150})
    await hub.post("/v1/cards", {"card_uid": "ABCDEF05", "account_id": "s5"})
    await hub.post("/v1/accounts/s5/topups", {"amount": 1000, "ref": "cash-s5"})
    now = datetime.now(UTC).astimezone(CST)
    campus.purchase("ABCDEF05", 100, now - timedelta(days=1))
    campus.purchase("ABCDEF05", 100, now)
    campus.purchase("ABCDEF05", 100, now)
    decisions = [(r["decision"], r.get("reason")) for r in await hub.send(campus)]
    assert decisions == [("approved", None), ("approved", None), ("declined", "daily_limit")]
