"""Consumption statistics (DESIGN §6) over HTTP on the real PostgreSQL: each figure equals a
direct fold over the same swipes, in the hub's time zone, and only the right callers see it."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim.device import SimDevice
from domain.wire import parse_rfc3339
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

SHANGHAI = ZoneInfo("Asia/Shanghai")
CST = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 25, tzinfo=CST)
BYS = ("merchant", "device", "hour", "meal", "category", "day")
MEALS = (("breakfast", "06:00", "09:30"), ("lunch", "10:30", "13:30"), ("dinner", "16:30", "19:30"))


def window(day: datetime, days: int = 1) -> str:
    start, end = day.isoformat(), (day + timedelta(days=days)).isoformat()
    return f"from={start.replace('+', '%2B')}&to={end.replace('+', '%2B')}"


async def stats(hub: Hub, query: str, role: str = "admin", scope: str | None = None) -> dict[str, Any]:
    return await hub.get(f"/v1/stats/consumption?{query}", role=role, scope=scope)


def by_key(answer: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {g["key"]: (g["count"], g["amount"], g["cards"]) for g in answer["groups"]}


@pytest.fixture
async def canteen(hub: Hub) -> SimDevice:
    await hub.merchant("canteen-1")
    await hub.merchant("market", category="supermarket")
    device = await hub.pos("pos-1", "canteen-1")
    await hub.account("s1", cash=100_000, card="CAFE0001")
    await hub.account("t1", cash=100_000, card="CAFE0002", category="staff", groups=["staff"])
    return device


async def test_meal_periods_and_days_follow_the_hub_time_zone(hub: Hub, canteen: SimDevice) -> None:
    at = [
        ("2026-11-25T06:00:00+08:00", 100),  # breakfast starts (inclusive)
        ("2026-11-25T01:29:59.999Z", 200),   # 09:29:59.999 local: still breakfast
        ("2026-11-25T09:30:00+08:00", 300),  # breakfast ended (exclusive): other
        ("2026-11-25T05:30:00Z", 400),       # 13:30 local: lunch ended, other
        ("2026-11-25T18:00:00+08:00", 500),  # dinner
        ("2026-11-25T15:59:59Z", 600),       # 23:59:59 local, still the 25th
        ("2026-11-25T16:00:00Z", 700),       # midnight local: the 26th, other
    ]
    for when, amount in at:
        canteen.purchase("CAFE0001", amount, parse_rfc3339(when))
    assert {r["decision"] for r in await hub.send(canteen)} == {"approved"}
    await hub.settle()
    meals = await stats(hub, f"{window(DAY)}&by=meal")
    assert by_key(meals) == {"breakfast": (2, 300, 1), "other": (3, 1300, 1), "dinner": (1, 500, 1)}
    assert [g["key"] for g in meals["groups"]] == ["breakfast", "dinner", "other"]
    assert meals["total"] == {"count": 6, "amount": 2100, "cards": 1}
    days = await stats(hub, f"{window(DAY, 2)}&by=day")
    assert by_key(days) == {"2026-11-25": (6, 2100, 1), "2026-11-26": (1, 700, 1)}
    hours = await stats(hub, f"{window(DAY)}&by=hour")
    assert by_key(hours)["09:00"] == (2, 500, 1) and by_key(hours)["23:00"] == (1, 600, 1)


async def test_a_reversal_nets_out_in_the_hour_of_the_purchase_it_voids(hub: Hub, canteen: SimDevice) -> None:
    canteen.purchase("CAFE0001", 1200, datetime(2026, 11, 25, 13, 29, tzinfo=CST))
    canteen.purchase("CAFE0002", 800, datetime(2026, 11, 25, 13, 29, tzinfo=CST))
    canteen.reversal("CAFE0001", 1, datetime(2026, 11, 25, 13, 31, tzinfo=CST))
    canteen.reversal("CAFE0001", 1, datetime(2026, 11, 25, 13, 32, tzinfo=CST))  # twice: declined
    results = await hub.send(canteen)
    assert [r["decision"] for r in results] == ["approved", "approved", "approved", "declined"]
    await hub.settle()
    assert by_key(await stats(hub, f"{window(DAY)}&by=meal")) == {"lunch": (1, 800, 1)}
    assert by_key(await stats(hub, f"{window(DAY)}&by=category")) == {"staff": (1, 800, 1)}
    assert (await stats(hub, f"{window(DAY)}&by=merchant"))["total"] == {"count": 1, "amount": 800, "cards": 1}


async def test_declined_and_unknown_card_swipes_are_not_sales(hub: Hub, canteen: SimDevice) -> None:
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=CST)
    canteen.purchase("CAFE0001", 500_000, noon)  # insufficient funds
    canteen.purchase("DEADBEEF", 500, noon)  # unknown card, online: declined
    canteen.purchase("DEADBEEF", 500, noon, offline=True)  # offline approved: recorded, moves no money
    await hub.send(canteen)
    await hub.settle()
    assert (await stats(hub, f"{window(DAY)}&by=merchant")) == {
        "from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat(), "by": "merchant",
        "groups": [], "total": {"count": 0, "amount": 0, "cards": 0},
    }


async def test_a_merchant_sees_only_its_own_numbers(hub: Hub, canteen: SimDevice) -> None:
    till = await hub.pos("till-1", "market")
    canteen.purchase("CAFE0001", 1000, datetime(2026, 11, 25, 12, 0, tzinfo=CST))
    till.purchase("CAFE0001", 3000, datetime(2026, 11, 25, 12, 5, tzinfo=CST))
    await hub.send(canteen)
    await hub.send(till)
    await hub.settle()
    own = await stats(hub, f"{window(DAY)}&by=device", role="merchant", scope="market")
    assert own["merchant"] == "market" and by_key(own) == {"till-1": (1, 3000, 1)}
    explicit = await stats(hub, f"{window(DAY)}&by=meal&merchant=market", role="merchant", scope="market")
    assert explicit["total"]["amount"] == 3000
    status, problem = await hub.request("GET", f"/v1/stats/consumption?{window(DAY)}&merchant=canteen-1",
                                        role="merchant", scope="market")
    assert status == 403 and problem["code"] == "forbidden"
    assert (await stats(hub, f"{window(DAY)}&by=merchant"))["total"]["amount"] == 4000


async def test_a_manager_sees_aggregates_and_never_an_account(hub: Hub, canteen: SimDevice) -> None:
    canteen.purchase("CAFE0001", 1000, datetime(2026, 11, 25, 12, 0, tzinfo=CST))
    await hub.send(canteen)
    await hub.settle()
    for by in BYS:
        answer = await stats(hub, f"{window(DAY)}&by={by}", role="manager")
        assert "s1" not in str(answer) and "CAFE0001" not in str(answer)
        assert answer["groups"] == [] and answer["total"] == {"count": 1, "amount": 1000, "cards": 1}  # one card
    for role in ("manager", "admin"):
        board = await hub.get("/v1/stats/dashboard?date=2026-11-25", role=role)
        assert "s1" not in str(board) and "CAFE0001" not in str(board)
        assert board["total"] == {"count": 1, "amount": 1000, "cards": 1}
    assert board["merchants"][0] == {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining",
                                     "count": 1, "amount": 1000, "cards": 1}  # the admin's: exact
    assert board["per_minute"] == [{"merchant_id": "canteen-1", "minute": 720, "count": 1, "amount": 1000}]
    assert board["meals"] == [{"merchant_id": "canteen-1", "meal": "lunch", "count": 1, "amount": 1000, "cards": 1}]
    for path in ("/v1/accounts/s1/balance", "/v1/accounts/s1/transactions", "/v1/audit/events"):
        assert (await hub.request("GET", path, role="manager"))[0] == 403


async def _three_merchants(hub: Hub) -> None:
    """canteen-1 sold to 6 cards, canteen-2 to 5 of them, the market to 2 others, all at lunch."""
    await hub.merchant("canteen-1")
    await hub.merchant("canteen-2")
    await hub.merchant("market", category="supermarket")
    tills = [await hub.pos(f"pos-{m}", m) for m in ("canteen-1", "canteen-2", "market")]
    for i in range(8):
        await hub.account(f"s{i}", cash=100_000, card=f"CAFE{i:04X}")
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=CST)
    for till, cards in zip(tills, (range(6), range(5), (6, 7)), strict=True):
        for i in cards:
            till.purchase(f"CAFE{i:04X}", 100 + i, noon + timedelta(minutes=i))
        await hub.send(till)
    await hub.settle()


async def test_a_manager_sees_groups_of_fewer_than_5_cards_merged_into_other(hub: Hub) -> None:
    await _three_merchants(hub)
    exact = await stats(hub, f"{window(DAY)}&by=merchant", role="admin")
    assert by_key(exact) == {"canteen-1": (6, 615, 6), "canteen-2": (5, 510, 5), "market": (2, 213, 2)}
    managed = await stats(hub, f"{window(DAY)}&by=merchant", role="manager")
    # the market alone would be "other" with 2 cards: the smallest other group (canteen-2) joins it
    assert by_key(managed) == {"canteen-1": (6, 615, 6), "other": (7, 723, 7)}
    assert [g["key"] for g in managed["groups"]] == ["canteen-1", "other"]
    assert managed["total"] == exact["total"] == {"count": 13, "amount": 1338, "cards": 8}
    assert by_key(await stats(hub, f"{window(DAY)}&by=meal", role="manager")) == {"lunch": (13, 1338, 8)}
    assert by_key(await stats(hub, f"{window(DAY)}&by=device&merchant=market", role="manager")) == {}
    board = await hub.get("/v1/stats/dashboard?date=2026-11-25", role="manager")
    assert [(m["merchant_id"], m["count"], m["cards"]) for m in board["merchants"]] == [
        ("canteen-1", 6, 6), ("other", 7, 7)]
    assert [(m["merchant_id"], m["meal"], m["cards"]) for m in board["meals"]] == [
        ("canteen-1", "lunch", 6), ("other", "lunch", 7)]
    assert [w["device_id"] for w in board["windows"]] == ["pos-canteen-1"]
    assert {p["merchant_id"] for p in board["per_minute"]} == {"canteen-1"}
    assert board["categories"] == [{"key": "student", "count": 13, "amount": 1338, "cards": 8}]
    assert board["total"] == exact["total"]
    admin = await hub.get("/v1/stats/dashboard?date=2026-11-25", role="admin")
    assert [m["merchant_id"] for m in admin["merchants"]] == ["canteen-1", "canteen-2", "market"]
    assert len(admin["windows"]) == 3


async def test_a_manager_sees_exact_groups_of_a_partial_hour_merged_by_the_same_rule(hub: Hub) -> None:
    await _three_merchants(hub)  # purchases at 12:00 + i minutes; the market's at 12:06 and 12:07
    span = "from=2026-11-25T11:59:59%2B08:00&to=2026-11-25T04:06:30Z"  # 12:06:30 local: one market card
    assert by_key(await stats(hub, f"{span}&by=merchant")) == {
        "canteen-1": (6, 615, 6), "canteen-2": (5, 510, 5), "market": (1, 106, 1)}
    managed = await stats(hub, f"{span}&by=merchant", role="manager")
    assert by_key(managed) == {"canteen-1": (6, 615, 6), "other": (6, 616, 6)}
    assert managed["total"] == {"count": 12, "amount": 1231, "cards": 7}
    assert by_key(await stats(hub, "from=2026-11-25T12:02:00%2B08:00&to=2026-11-25T12:05:30%2B08:00",
                              role="manager")) == {}  # 4 cards in all


@pytest.mark.parametrize(("query", "status", "field"), [
    ("by=week", 422, "by"),
    ("from=2026-11-25T12:30:00%2B08:00&to=2026-11-25T12:30:00%2B08:00", 422, "to"),  # an empty range
    ("to=2026-11-25T12:00:00", 422, "to"),  # no offset
    ("from=2026-11-25T12:00:00%2B08:00&to=2026-11-25T11:00:00%2B08:00", 422, "to"),
    ("merchant=nowhere", 404, None),
])
async def test_bad_queries_get_a_problem_naming_the_field(hub: Hub, query: str, status: int, field: str | None) -> None:
    code, problem = await hub.request("GET", f"/v1/stats/consumption?{query}")
    assert code == status and problem["status"] == status
    assert problem.get("field") == field


async def test_statistics_need_a_token_of_a_role_that_reads_them(hub: Hub) -> None:
    assert (await hub.request("GET", "/v1/stats/consumption", role=None))[0] == 401
    for role, scope in (("cardholder", "s1"), ("operator", None)):
        assert (await hub.request("GET", "/v1/stats/consumption", role=role, scope=scope))[0] == 403
        assert (await hub.request("GET", "/v1/stats/dashboard", role=role, scope=scope))[0] == 403


# --- the law: every statistic is a fold over the swipes the hub approved ---

_example = itertools.count()
# Minutes of the local day, dense around meal and day boundaries.
MINUTES = st.one_of(st.sampled_from([0, 359, 360, 569, 570, 629, 630, 809, 810, 989, 990, 1169, 1170, 1439]),
                    st.integers(0, 1439))
SWIPE = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 3000), MINUTES,
                  st.sampled_from([0, 8, -5]), st.integers(0, 9))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(swipes=st.lists(SWIPE, min_size=1, max_size=25))
async def test_every_statistic_equals_a_fold_over_the_approved_swipes(hub: Hub, swipes: list[tuple[int, ...]]) -> None:
    n = next(_example)
    day = DAY + timedelta(days=3 * n)  # each example on days of its own
    devices = await _campus(hub, n)
    sent, outcomes = await _upload(hub, devices, n, day, [(*swipe[:3], timedelta(minutes=swipe[3]), *swipe[4:])
                                                           for swipe in swipes])
    expected = _fold(sent, outcomes, n)
    for by in BYS:
        answer = await stats(hub, f"{window(day - timedelta(days=1), 3)}&by={by}")
        assert by_key(answer) == expected[by], by
        assert answer["total"] == expected["total"]


# Seconds from the start of a day, over two days: dense at hours, meals and midnight.
SECONDS = st.one_of(st.sampled_from([0, 1, 3599, 3600, 3601, 43199, 43200, 86399, 86400, 86401, 129600]),
                    st.integers(0, 2 * 86400 - 1))
EXACT_SWIPE = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 3000), SECONDS,
                        st.sampled_from([0, 8, -5]), st.integers(0, 9))


def _instant(day: datetime, at: list[datetime]) -> st.SearchStrategy[datetime]:
    """A bound at second precision: a swipe's own instant, a second either side, or anywhere."""
    near = st.sampled_from(at).flatmap(lambda t: st.sampled_from([t - timedelta(seconds=1), t, t + timedelta(seconds=1)]))
    anywhere = st.integers(-3600, 2 * 86400 + 3600).map(lambda s: day + timedelta(seconds=s))
    return st.one_of(near, anywhere)


def _query_instant(instant: datetime) -> str:
    return instant.astimezone(timezone(timedelta(hours=-3))).isoformat().replace("+", "%2B")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(swipes=st.lists(EXACT_SWIPE, min_size=1, max_size=20), data=st.data())
async def test_statistics_between_any_two_instants_equal_a_fold_over_the_swipes_in_them(
        hub: Hub, swipes: list[tuple[int, ...]], data: st.DataObject) -> None:
    n = next(_example)
    day = DAY + timedelta(days=3 * n)
    devices = await _campus(hub, n)
    sent, outcomes = await _upload(hub, devices, n, day, [(*swipe[:3], timedelta(seconds=swipe[3]), *swipe[4:])
                                                           for swipe in swipes])
    at = [parse_rfc3339(envelope["at"]) for _, envelope in sent if envelope["type"] == "purchase"]
    for _ in range(3):
        start, end = sorted((data.draw(_instant(day, at)), data.draw(_instant(day, at))))
        end = max(end, start + timedelta(seconds=1))
        expected = _fold(sent, outcomes, n, start, end)
        for by in BYS:
            answer = await stats(hub, f"from={_query_instant(start)}&to={_query_instant(end)}&by={by}")
            assert by_key(answer) == expected[by], (by, start, end)
            assert answer["total"] == expected["total"], (by, start, end)


Sent = list[tuple[SimDevice, dict[str, Any]]]
Outcomes = dict[tuple[str, int], dict[str, Any]]


async def _upload(hub: Hub, devices: list[SimDevice], n: int, day: datetime,
                  swipes: list[tuple[Any, ...]]) -> tuple[Sent, Outcomes]:
    """(device, card, fen, after ``day``, clock offset in hours, reverse) each: a purchase, and when
    ``reverse`` < 3 a reversal a minute later of this or an earlier purchase of the device (maybe
    invalid). Uploads them, waits for the views; what was sent, and the hub's answers."""
    sent: Sent = []
    for device_index, card_index, amount, after, offset, reverse in swipes:
        device = devices[device_index]
        at = (day + after).astimezone(timezone(timedelta(hours=offset)))
        sent.append((device, device.purchase(f"E{n:05d}{card_index:03d}", amount, at)))
        if reverse < 3 and device.last_seq - reverse >= 1:
            sent.append((device, device.reversal(f"E{n:05d}{card_index:03d}", device.last_seq - reverse,
                                                 at + timedelta(minutes=1))))
    outcomes: Outcomes = {}
    for device in (d for d in devices if d.pending):
        for result in await hub.send(device):
            outcomes[(device.device_id, result["seq"])] = result
    await hub.settle()
    return sent, outcomes


async def _campus(hub: Hub, n: int) -> list[SimDevice]:
    for m in range(2):
        await hub.merchant(f"m{n}-{m}", category="dining")
    devices = [await hub.pos(f"p{n}-{d}", f"m{n}-{d % 2}") for d in range(3)]
    for c in range(3):
        staff = c == 2
        await hub.account(f"a{n}-{c}", cash=20_000, card=f"E{n:05d}{c:03d}",
                          category="staff" if staff else "student", groups=["x"])
    return devices


def _fold(sent: Sent, outcomes: Outcomes, n: int,
          start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Approved purchases at their local time, net of approved reversals at their purchase's; only
    those whose purchase was at an instant in ``[start, end)`` when given."""
    purchases: dict[tuple[str, int], dict[str, Any]] = {}
    lines: list[tuple[dict[str, Any], int, int]] = []  # (the purchase, ±1, ±fen)
    for device, envelope in sent:
        result = outcomes[(device.device_id, envelope["seq"])]
        if envelope["type"] == "purchase":
            purchases[(device.device_id, envelope["seq"])] = envelope
        if result["decision"] != "approved":
            continue
        if envelope["type"] == "purchase":
            lines.append((envelope, 1, envelope["amount"]))
        else:
            voided = purchases[(device.device_id, envelope["ref_seq"])]
            lines.append((voided, -1, -voided["amount"]))
    groups: dict[str, dict[str, list[int]]] = {by: defaultdict(lambda: [0, 0]) for by in BYS}
    net: dict[tuple[str, str, str], int] = defaultdict(int)  # (by, key, card) → net count
    net_total: dict[str, int] = defaultdict(int)
    if start is not None and end is not None:
        lines = [line for line in lines if start <= parse_rfc3339(line[0]["at"]) < end]
    for envelope, count, fen in lines:
        local = parse_rfc3339(envelope["at"]).astimezone(SHANGHAI)
        clock = local.strftime("%H:%M")
        meal = next((name for name, start, stop in MEALS if start <= clock < stop), "other")
        card_index = int(envelope["card"][-3:])
        keys = {"merchant": f"m{n}-{int(envelope['device'].rsplit('-', 1)[1]) % 2}", "device": envelope["device"],
                "hour": f"{local.hour:02d}:00", "meal": meal, "category": "staff" if card_index == 2 else "student",
                "day": local.date().isoformat()}
        for by, key in keys.items():
            groups[by][key][0] += count
            groups[by][key][1] += fen
            net[(by, key, envelope["card"])] += count
        net_total[envelope["card"]] += count
    expected: dict[str, Any] = {}
    for by in BYS:
        expected[by] = {
            key: (c, f, len({card for (b, k, card), v in net.items() if b == by and k == key and v > 0}))
            for key, (c, f) in groups[by].items() if c or f
        }
    total_count = sum(c for _, c, _ in lines)
    total_fen = sum(f for _, _, f in lines)
    expected["total"] = {"count": total_count, "amount": total_fen,
                         "cards": sum(1 for v in net_total.values() if v > 0)}
    return expected
