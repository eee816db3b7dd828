"""Cardholders' sign-in (DESIGN §10): query PINs hashed with argon2id, and the lockout of failed
attempts.

- ``Pins``: hashes and verifies off the event loop and off the writer thread
  (``asyncio.to_thread``), at most ``concurrency`` at a time, so that a flood of sign-ins cannot
  take the CPU the tills' swipes need (beyond that, sign-ins wait their turn). A hash is
  ~25–60 ms of one core here (OWASP's minimum parameters). Where an account has no PIN to check
  (unknown, closed, erased, none set), a fixed dummy hash is verified instead, so the time of
  an answer does not tell which case it was; argon2's comparison is constant-time.
- ``Lockout``: five failures for one account id within 15 minutes lock that id's sign-in (and
  PIN change) for 15 minutes from the fifth. Kept in memory: a restart of the hub, or a second
  hub, starts from nothing. Bounded: at most ``max_tracked`` ids (100,000), the one whose last
  failure is oldest dropped first; at ``Pins``' pace (a few verifications in flight at ~25–60 ms
  each: under 200 a second) a flood of made-up ids takes longer than a lock lasts to push a
  locked id out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from domain import personal
from domain.errors import DomainError
from hub.ingest.writer import IngestWriter
from projections import ledger_queries
from projections.queries import Connection

PIN_FIELD = "pin"  # the sealed field of domain.personal
# argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane); the parameters are in every hash.
HASHER_PARAMETERS = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}
# The hash of no PIN (a 6-digit PIN never equals its plaintext), verified when there is none to check.
DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$PbP95ToprqVRT1kgCRhraA$ygOmWvaOD54J7yrCBL+/02RLq4Ve4GImjmCuA7/H2Bo"
VERIFY_CONCURRENCY = 3
MAX_FAILURES = 5
WINDOW_S = 15 * 60.0
LOCK_S = 15 * 60.0
MAX_TRACKED = 100_000


class Pins:
    """argon2id hashing and verification, ``concurrency`` at a time, on threads."""

    def __init__(self, concurrency: int = VERIFY_CONCURRENCY) -> None:
        self.hasher = PasswordHasher(**HASHER_PARAMETERS)
        self.slots = asyncio.Semaphore(concurrency)

    async def hash(self, pin: str) -> str:
        async with self.slots:
            return await asyncio.to_thread(self.hasher.hash, pin)

    async def verify(self, hashed: str | None, pin: str) -> bool:
        """Whether ``pin`` is the one of ``hashed``; with None, the dummy's time and False."""
        async with self.slots:
            return await asyncio.to_thread(self._verify, hashed, pin)

    def _verify(self, hashed: str | None, pin: str) -> bool:
        try:
            matched = self.hasher.verify(hashed if hashed is not None else DUMMY_HASH, pin)
        except (VerificationError, InvalidHashError):
            return False
        return matched and hashed is not None


@dataclass(slots=True)
class _Tracked:
    failures: list[float] = field(default_factory=list)  # clock readings, within the window
    locked_until: float | None = None


class Lockout:
    """Failed attempts per account id; ``clock``: seconds, monotonic (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_failures: int = MAX_FAILURES,
                 window_s: float = WINDOW_S, lock_s: float = LOCK_S, max_tracked: int = MAX_TRACKED) -> None:
        self.clock = clock
        self.max_failures, self.window_s, self.lock_s, self.max_tracked = max_failures, window_s, lock_s, max_tracked
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracked)

    def retry_after_s(self, account_id: str) -> int | None:
        """Whole seconds (≥ 1) until the account id's sign-in opens again; None when it is open."""
        tracked = self._tracked.get(account_id)
        if tracked is None or tracked.locked_until is None:
            return None
        left = tracked.locked_until - self.clock()
        if left <= 0:
            del self._tracked[account_id]  # the lock is over, and its failures with it
            return None
        return max(1, math.ceil(left))

    def failed(self, account_id: str) -> None:
        now = self.clock()
        tracked = self._tracked.pop(account_id, None) or _Tracked()
        self._tracked[account_id] = tracked  # the newest now
        tracked.failures = [t for t in tracked.failures if now - t < self.window_s]
        tracked.failures.append(now)
        if len(tracked.failures) >= self.max_failures:
            tracked.failures, tracked.locked_until = [], now + self.lock_s
        while len(self._tracked) > self.max_tracked:
            self._tracked.popitem(last=False)

    def succeeded(self, account_id: str) -> None:
        self._tracked.pop(account_id, None)


class SignIn:
    """What the hub keeps for sign-in: the hasher and the lockout."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pins = Pins()
        self.lockout = Lockout(clock)


async def stored_hash(writer: IngestWriter, conn: Connection, account_id: str) -> tuple[personal.Sealed | None, str | None]:
    """The account's sealed PIN hash (from the writer's account: ``NotFound``, or ``Conflict`` when
    closed or erased) and the hash opened with its data key (None without a PIN, or when it does
    not open: the key destroyed)."""
    sealed = await writer.run(lambda app: app.pin_of(account_id))
    key = await ledger_queries.data_key(conn, account_id)
    if sealed is None or key is None:
        return sealed, None
    try:
        return sealed, personal.unseal(key, account_id, PIN_FIELD, sealed)
    except personal.Unreadable:
        return sealed, None


async def hash_to_check(writer: IngestWriter, conn: Connection, account_id: str) -> str | None:
    """``stored_hash``'s opened hash for a sign-in: None for every account that cannot sign in,
    whatever the reason, with the same reads for each."""
    try:
        return (await stored_hash(writer, conn, account_id))[1]
    except DomainError:
        await ledger_queries.data_key(conn, account_id)  # as many reads as an account with a PIN
        return None
