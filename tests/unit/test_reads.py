"""Reads of a person (``domain.reads``): each read by an actor of one kind of an account's records
is an ``Access.Read``; within the same second of the hub's clock it is recorded once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import ids
from domain.actors import CLI, token_actor
from domain.application import CampusCard
from domain.reads import Access, ReadOf

ADMIN = token_actor("admin", None, "jti-1")
AUDITOR = token_actor("auditor", None, "jti-2")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 4, 0, 0, 100_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _campus() -> tuple[CampusCard, Clock]:
    clock = Clock()
    app = CampusCard(clock=clock)
    app.open_account("s1", "韩梅梅", "student", [], actor=CLI)
    app.open_account("s2", "李雷", "student", [], actor=CLI)
    app.issue_card("C0FFEE01", "s2", actor=CLI)
    return app, clock


def _reads(app: CampusCard, account_id: str) -> list[tuple[str, str, str]]:
    return [(e.actor["role"], e.what, e.at) for e in app.events.get(ids.access_id(account_id))
            if isinstance(e, Access.Read)]


def test_reads_by_one_actor_of_one_kind_in_one_second_are_one_event() -> None:
    app, clock = _campus()
    balance = ReadOf("balance", ADMIN, account_id="s1")
    assert app.record_reads([balance, balance]) == [["s1"], ["s1"]]
    clock.now += timedelta(milliseconds=800)  # still the same second
    app.record_reads([balance, ReadOf("transactions", ADMIN, account_id="s1"), ReadOf("balance", AUDITOR, "s1")])
    clock.now += timedelta(milliseconds=200)  # the next second
    app.record_reads([balance])
    first, later = "2026-11-25T04:00:00.100000+00:00", "2026-11-25T04:00:01.100000+00:00"
    assert _reads(app, "s1") == [("admin", "balance", first), ("admin", "transactions", "2026-11-25T04:00:00.900000+00:00"),
                                 ("auditor", "balance", "2026-11-25T04:00:00.900000+00:00"), ("admin", "balance", later)]


def test_a_read_through_a_card_is_a_read_of_its_account_and_nobody_is_read_for_unknown_ids() -> None:
    app, _ = _campus()
    assert app.record_reads([ReadOf("access_log", ADMIN, card_uid="C0FFEE01"),
                             ReadOf("audit_events", ADMIN, account_id="s1", card_uid="C0FFEE01"),
                             ReadOf("balance", ADMIN, account_id="nobody"),
                             ReadOf("access_log", ADMIN, card_uid="FFFFFFFF")]) == [["s2"], ["s1", "s2"], [], []]
    assert [w for _, w, _ in _reads(app, "s2")] == ["access_log", "audit_events"]
    assert [w for _, w, _ in _reads(app, "s1")] == ["audit_events"]
    assert app.repository.get(ids.access_id("s2")).version == 3  # opened with its first read, then two


def test_a_read_names_a_known_kind_and_an_actor() -> None:
    with pytest.raises(AssertionError):
        ReadOf("everything", ADMIN, account_id="s1")
    with pytest.raises(AssertionError, match="not an actor"):
        ReadOf("balance", {"role": "admin"}, account_id="s1")  # type: ignore[arg-type]
