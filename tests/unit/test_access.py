"""When a rule admits a swipe: window edges, windows across midnight, weekdays."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from domain.access import Zone, admits
from domain.actors import CLI
from domain.errors import AlreadyExists, Invalid

SH = ZoneInfo("Asia/Shanghai")


def rule(days: list[str], start: str, stop: str) -> dict:
    return {"group": "g", "days": days, "from": start, "to": stop}


def at(text: str) -> datetime:  # 2026-11-23 is a Monday
    return datetime.fromisoformat(text).replace(tzinfo=SH)


@pytest.mark.parametrize(("when", "open_"), [
    ("2026-11-23T05:59:59.999", False), ("2026-11-23T06:00:00", True), ("2026-11-23T23:29:59.999", True),
    ("2026-11-23T23:30:00", False), ("2026-11-24T12:00:00", False),  # Tuesday: not a rule day
])
def test_window_from_inclusive_to_exclusive(when: str, open_: bool) -> None:
    assert admits(rule(["mon"], "06:00", "23:30"), at(when)) is open_


@pytest.mark.parametrize(("when", "open_"), [
    ("2026-11-27T21:59:00", False),  # Friday before the window
    ("2026-11-27T22:00:00", True),   # Friday night
    ("2026-11-28T05:59:59", True),   # Saturday morning: still Friday's window
    ("2026-11-28T06:00:00", False),
    ("2026-11-27T05:00:00", False),  # Friday morning belongs to Thursday's window: closed
    ("2026-11-28T22:30:00", False),  # Saturday night: not a rule day
])
def test_window_across_midnight_belongs_to_the_day_it_starts(when: str, open_: bool) -> None:
    assert admits(rule(["fri"], "22:00", "06:00"), at(when)) is open_


def test_sunday_night_window_runs_into_monday() -> None:
    assert admits(rule(["sun"], "23:00", "01:00"), at("2026-11-23T00:30:00"))
    assert not admits(rule(["mon"], "23:00", "01:00"), at("2026-11-23T00:30:00"))


def test_whole_day_and_weekday_in_the_hubs_time_zone() -> None:
    whole = rule(["mon"], "00:00", "24:00")
    assert admits(whole, at("2026-11-23T00:00:00")) and admits(whole, at("2026-11-23T23:59:59"))
    # Sunday 17:00 UTC is Monday 01:00 in Shanghai: a Monday rule opens
    utc = datetime.fromisoformat("2026-11-22T17:00:00+00:00")
    assert admits(whole, utc.astimezone(SH))


def test_zone_refuses_bad_and_repeated_rules() -> None:
    zone = Zone(zone="dorm-1", name="一号楼", anti_passback=True, actor=CLI)
    first = zone.add_rule("students", ["sun", "mon"], "06:00", "23:30", CLI)
    assert first["rule_id"] == "dorm-1-1" and first["days"] == ["mon", "sun"]
    with pytest.raises(AlreadyExists):
        zone.add_rule("students", ["mon", "sun"], "06:00", "23:30", CLI)
    for days, start, stop, field in ((["mon"], "06:00", "06:00", "to"), ([], "06:00", "07:00", "days"),
                                     (["monday"], "06:00", "07:00", "days"), (["mon"], "6:00", "07:00", "from"),
                                     (["mon"], "06:00", "24:01", "to")):
        with pytest.raises(Invalid) as caught:
            zone.add_rule("students", days, start, stop, CLI)
        assert caught.value.field == field
