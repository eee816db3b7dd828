"""What the hub knows of issued tokens (DESIGN §12): jti → revoked or not, and when it expires.

- The view: every ``REFRESH_EVERY_S`` the hub reads the rows of the ``tokens`` view
  (``projections.tokens``) changed since the last read.
- The store: in the same beat it reads the ``Token.Revoked`` events stored after what the view
  had applied when the hub started, from the event store itself (a range of its primary key,
  at most ``STORE_SCAN_ROWS`` notifications a beat). So a revocation by ``cardhub token
  revoke`` (another process) is refused on every route within that interval, however far the
  projections lag.
- The API: ``POST /v1/tokens/{jti}/revoke`` marks its token revoked here at once, and
  ``POST /v1/sessions`` marks the token it issues as issued.
- A jti the hub has not seen yet (a token the command line issued a moment ago, before the
  view has it): its Token aggregate is looked up in the event store by id (uuid5 of the
  jti) and the answer kept. No ``Token.Issued`` there: the token is refused, though validly
  signed — every token the project makes is recorded before it is signed.

Revocation only ever goes one way: whatever source says "revoked" wins over any other."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import asyncpg
from eventsourcing.utils import get_topic

from domain import ids
from domain.tokens import MAX_TTL_S, Token
from hub.service.keys import Principal, TokenError, TokenRevoked
from projections import tokens_queries

log = logging.getLogger(__name__)
ISSUED_TOPIC, REVOKED_TOPIC = get_topic(Token.Issued), get_topic(Token.Revoked)


@dataclass(slots=True)
class _Known:
    revoked: bool
    exp: float  # unix seconds


class TokenRegistry:
    REFRESH_EVERY_S = 0.25
    PAGE_ROWS = 1000
    PRUNE_EVERY_S = 60.0
    NEVER_ISSUED_MAX = 1024  # jtis found unissued, kept so a replay of one costs no read
    STORE_SCAN_ROWS = 50_000  # notifications of the store read for revocations in one beat

    def __init__(self) -> None:
        self._known: dict[str, _Known] = {}
        self._never: set[str] = set()
        self.version = 0  # the last view change read
        self.scanned: int | None = None  # the store's notifications read for revocations, up to here
        self._pruned = time.monotonic()

    async def check(self, pool: asyncpg.Pool, principal: Principal) -> None:
        """Raises ``TokenRevoked``, or ``TokenError`` for a token never issued."""
        jti = principal.jti
        assert jti is not None
        known = self._known.get(jti)
        if known is None:
            known = await self._look_up(pool, jti, principal.exp)
        if known is None:
            raise TokenError("it was never issued")
        if known.revoked:
            raise TokenRevoked("the token was revoked")

    async def _look_up(self, pool: asyncpg.Pool, jti: str, exp: float) -> _Known | None:
        if jti in self._never:
            return None
        topics = await tokens_queries.event_topics(pool, ids.token_id(jti))
        if ISSUED_TOPIC not in topics:
            if len(self._never) >= self.NEVER_ISSUED_MAX:
                self._never.clear()
            self._never.add(jti)
            return None
        return self._learn(jti, REVOKED_TOPIC in topics, exp)

    def _learn(self, jti: str, revoked: bool, exp: float) -> _Known:
        known = self._known.get(jti)
        if known is None:
            known = self._known[jti] = _Known(revoked, exp)
        known.revoked = known.revoked or revoked
        return known

    def mark_issued(self, jti: str, exp: float) -> None:
        """A token this hub has just recorded (``POST /v1/sessions``): accepted on the next request
        without a read of the store."""
        self._never.discard(jti)
        self._learn(jti, False, exp)

    def mark_revoked(self, jti: str, exp: float) -> None:
        self._learn(jti, True, exp)

    async def refresh(self, pool: asyncpg.Pool) -> int:
        """Reads the view's changes since the last read; returns how many rows changed."""
        changed = 0
        while True:
            try:
                rows = await tokens_queries.changes(pool, self.version, self.PAGE_ROWS)
            except asyncpg.UndefinedTableError:  # the projections have not made their tables yet
                return changed
            for row in rows:
                self._learn(row["jti"], row["revoked"], row["exp"])
            changed += len(rows)
            if rows:
                self.version = rows[-1]["version"]
            if len(rows) < self.PAGE_ROWS:
                break
        changed += await self._revocations_in_store(pool)
        if time.monotonic() - self._pruned >= self.PRUNE_EVERY_S:
            self._prune()
        return changed

    async def _revocations_in_store(self, pool: asyncpg.Pool) -> int:
        """Learns the revocations stored since the last beat straight from the event store."""
        try:
            if self.scanned is None:  # what the view holds is read from the view
                self.scanned = await tokens_queries.view_position(pool)
            upto = min(await tokens_queries.store_position(pool), self.scanned + self.STORE_SCAN_ROWS)
        except asyncpg.UndefinedTableError:  # the projections have not made their tables yet
            return 0
        if upto <= self.scanned:
            return 0
        states = await tokens_queries.states_of(pool, REVOKED_TOPIC, self.scanned, upto)
        for state in states:  # the event's exp is its token's: kept no longer than any token lives
            self.mark_revoked(json.loads(state)["jti"], time.time() + MAX_TTL_S)
        self.scanned = upto
        return len(states)

    def _prune(self) -> None:
        """Forgets tokens that have expired: they are refused by their ``exp`` alone."""
        now = time.time()
        self._known = {jti: known for jti, known in self._known.items() if known.exp > now}
        self._pruned = time.monotonic()

    async def follow(self, pool: asyncpg.Pool) -> None:
        """The hub's task: refreshes for as long as it runs."""
        while True:
            await self.refresh(pool)
            await asyncio.sleep(self.REFRESH_EVERY_S)
