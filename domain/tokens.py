"""Bearer tokens as facts (DESIGN §12): that one was issued — its role, scope, key id, lifetime
and who issued it — and that it was revoked, and by whom. Never the token itself: its
signature is not stored, so the event store cannot leak a usable token.

A token's aggregate id is derived from its ``jti`` (``ids.token_id``), so a hub that meets a
token it has not heard of finds its facts in the store with one read by id."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from domain import ids
from domain.actors import Actor, check
from domain.errors import AlreadyExists, Conflict, Invalid, NotFound

MAX_TTL_S = 90 * 86_400  # DESIGN §12: a token lives at most 90 days
# iat within 2000–2099 (UTC): a stored fact a view can always turn into a timestamp.
MIN_IAT, MAX_IAT = 946_684_800, 4_102_444_800


class Token(Aggregate):
    @staticmethod
    def create_id(jti: str) -> object:
        return ids.token_id(jti)

    @event("Issued")
    def __init__(self, jti: str, role: str, scope: str | None, kid: str, iat: int, exp: int, actor: Actor) -> None:
        self.jti = jti
        self.role = role
        self.scope = scope
        self.kid = kid
        self.iat = iat  # unix seconds, as in the token
        self.exp = exp
        self.issued_by = actor
        self.revoked_at: str | None = None
        self.revoked_by: Actor | None = None

    def revoke(self, actor: Actor, at: str) -> None:
        if self.revoked_by is not None:
            raise Conflict(f"token {self.jti} is already revoked")
        self._revoked(jti=self.jti, actor=check(actor), revoked_at=at)

    @event("Revoked")
    def _revoked(self, jti: str, actor: Actor, revoked_at: str) -> None:
        """``jti`` again, so that the fact says which token on its own (a leaf of the audit log)."""
        self.revoked_by = actor
        self.revoked_at = revoked_at


class TokenOffice:
    """The token use cases, mixed into the Application (``domain.application.CampusCard``,
    whose ``repository``, ``save`` and ``clock`` they use). They are called by the hub's writer
    and by the command line beside it, each with an Application of its own: the writer's never
    takes a Token aggregate from its cache (``hub.ingest.application``: another process may have
    changed it), and two processes saving the same version are told apart by the store
    (``IntegrityError``)."""

    repository: Any
    save: Any
    clock: Any

    def record_token(
        self, jti: str, role: str, scope: str | None, kid: str, iat: int, exp: int, actor: Actor,
    ) -> Token:
        if not MIN_IAT <= iat <= MAX_IAT:
            raise Invalid("iat must fall in the years 2000–2099", field="iat")
        if not 0 < exp - iat <= MAX_TTL_S:
            raise Invalid(f"a token lives 1 s to {MAX_TTL_S // 86_400} days", field="exp")
        token = Token(jti=jti, role=role, scope=scope, kid=kid, iat=iat, exp=exp, actor=check(actor))
        try:
            self.save(token)
        except IntegrityError:
            raise AlreadyExists(f"token {jti} already exists") from None
        return token

    def get_token(self, jti: str) -> Token:
        try:
            return self.repository.get(ids.token_id(jti))
        except AggregateNotFoundError:
            raise NotFound(f"token {jti} not found") from None

    def revoke_token(self, jti: str, actor: Actor) -> Token:
        token = self.get_token(jti)
        try:
            token.revoke(actor, self.clock().isoformat())
            self.save(token)
        except IntegrityError:  # revoked meanwhile by another process
            raise Conflict(f"token {jti} is already revoked") from None
        return token
