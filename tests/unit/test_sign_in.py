"""The sign-in lockout (DESIGN §10) on a clock the test moves, and its bound; the PIN hasher."""

from __future__ import annotations

import asyncio

from hub.service.sign_in import DUMMY_HASH, Lockout, Pins


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_fifth_failure_within_15_minutes_locks_for_15_minutes_from_it() -> None:
    clock = Clock()
    lockout = Lockout(clock)
    for _ in range(4):
        lockout.failed("s1")
        clock.now += 60
    assert lockout.retry_after_s("s1") is None
    lockout.failed("s1")  # the fifth, at 240 s
    assert lockout.retry_after_s("s1") == 900
    assert lockout.retry_after_s("s2") is None  # per account id
    clock.now += 899.2
    assert lockout.retry_after_s("s1") == 1  # whole seconds, at least 1
    clock.now += 0.8
    assert lockout.retry_after_s("s1") is None
    lockout.failed("s1")  # the lock's end forgot its failures
    assert lockout.retry_after_s("s1") is None


def test_failures_older_than_the_window_and_those_before_a_success_do_not_count() -> None:
    clock = Clock()
    lockout = Lockout(clock)
    for _ in range(4):
        lockout.failed("s1")
    clock.now += 900
    lockout.failed("s1")
    assert lockout.retry_after_s("s1") is None
    for _ in range(3):
        lockout.failed("s1")
    lockout.succeeded("s1")
    for _ in range(4):
        lockout.failed("s1")
    assert lockout.retry_after_s("s1") is None
    lockout.failed("s1")
    assert lockout.retry_after_s("s1") == 900


def test_it_tracks_at_most_its_bound_dropping_the_oldest() -> None:
    clock = Clock()
    lockout = Lockout(clock, max_tracked=3)
    for _ in range(5):
        lockout.failed("locked")
    for account_id in ("a", "b", "c"):
        clock.now += 1
        lockout.failed(account_id)
    assert len(lockout) == 3 and lockout.retry_after_s("locked") is None
    for _ in range(100):
        lockout.failed("d")
    assert len(lockout) == 3


def test_a_pin_verifies_against_its_hash_only_and_no_hash_never_verifies() -> None:
    async def check() -> None:
        pins = Pins()
        hashed = await pins.hash("135792")
        assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and "135792" not in hashed
        assert await pins.verify(hashed, "135792")
        assert not await pins.verify(hashed, "135793")
        assert not await pins.verify(None, "135792")
        assert not await pins.verify("not a hash", "135792")
        assert not await pins.verify(None, "cardhub: no PIN is set")  # the dummy's own secret: still no
        assert DUMMY_HASH.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # costs what a real one costs

    asyncio.run(check())
