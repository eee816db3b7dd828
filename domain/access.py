"""Access control (DESIGN §3): zones, their rules, and when a rule admits a swipe.

A rule admits members of ``group`` on ``days`` from ``from`` (inclusive) to ``to``
(exclusive), local time of the hub. A window whose ``to`` is not after its ``from``
(22:00–06:00) runs across midnight and belongs to the day it starts on: a ``fri`` rule
22:00–06:00 admits Friday 23:00 and Saturday 05:59, not Friday 05:00. ``to`` may be
``24:00`` (to the end of the day).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Acted, Actor
from domain.errors import AlreadyExists, Invalid

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
DAY_MINUTES = 24 * 60


def minutes(text: str, field: str, *, end: bool = False) -> int:
    """``HH:MM`` as minutes after midnight; ``24:00`` is allowed as an end."""
    if end and text == "24:00":
        return DAY_MINUTES
    match = _HHMM.fullmatch(text)
    if match is None:
        raise Invalid("must be HH:MM (00:00–23:59" + (", or 24:00)" if end else ")"), field=field)
    return int(match[1]) * 60 + int(match[2])


def admits(rule: dict[str, Any], local: datetime) -> bool:
    """Whether ``rule`` is open at ``local`` (an aware datetime in the hub's time zone)."""
    start, stop = minutes(rule["from"], "from"), minutes(rule["to"], "to", end=True)
    now = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    if start < stop:
        return today in rule["days"] and start <= now < stop
    return (today in rule["days"] and now >= start) or (yesterday in rule["days"] and now < stop)


class Zone(Aggregate):
    """A set of gates with its access rules and its anti-passback setting."""

    class Created(Acted, Aggregate.Created):
        zone: str
        name: str
        anti_passback: bool
        actor: Actor | None

    class RuleAdded(Acted, Aggregate.Event):
        zone: str
        rule_id: str
        group: str
        days: list[str]
        start: str
        stop: str
        actor: Actor | None

    @staticmethod
    def create_id(zone: str) -> object:
        return ids.zone_id(zone)

    @event(Created)
    def __init__(self, zone: str, name: str, anti_passback: bool, actor: Actor) -> None:
        self.zone = zone
        self.name = name
        self.anti_passback = anti_passback
        self.rules: list[dict[str, Any]] = []

    def add_rule(self, group: str, days: list[str], start: str, stop: str, actor: Actor) -> dict[str, Any]:
        if not days or any(d not in DAYS for d in days):
            raise Invalid(f"days: a non-empty subset of {', '.join(DAYS)}", field="days")
        if minutes(start, "from") == minutes(stop, "to", end=True):
            raise Invalid("to: must differ from from (00:00–24:00 is the whole day)", field="to")
        days = [d for d in DAYS if d in days]  # one spelling per rule
        for rule in self.rules:
            if (rule["group"], rule["days"], rule["from"], rule["to"]) == (group, days, start, stop):
                raise AlreadyExists(f"zone {self.zone} already has this rule ({rule['rule_id']})")
        self._rule_added(zone=self.zone, rule_id=f"{self.zone}-{len(self.rules) + 1}", group=group, days=days,
                         start=start, stop=stop, actor=actor)
        return self.rules[-1]

    @event(RuleAdded)
    def _rule_added(self, zone: str, rule_id: str, group: str, days: list[str], start: str, stop: str,
                    actor: Actor) -> None:
        self.rules.append({"rule_id": rule_id, "zone": zone, "group": group, "days": days,
                           "from": start, "to": stop})

    def rules_for(self, groups: list[str]) -> list[dict[str, Any]]:
        return [r for r in self.rules if r["group"] in groups]
