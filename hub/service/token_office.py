"""Issuing and revoking tokens beside the hub (DESIGN §7, §12): the command line, and the tools
and tests that need a token for a hub of theirs (``cardhub sim``, ``demo``, ``bench``).

They write ``Token.Issued`` and ``Token.Revoked`` straight to the event store, with an
Application of their own and no cache, whether or not a hub is running: a hub holds the
database's one-writer lock for the aggregates it caches, but a Token aggregate is cached by no
one (``domain.tokens.TokenOffice``), and the store's own table lock orders the insert with
the hub's. A running hub learns of a new token when it first sees it (by id in the store) and
of a revocation from the ``tokens`` view within a second."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from eventsourcing.persistence import ProgrammingError

from domain.application import CampusCard
from domain.errors import DomainError
from domain.actors import CLI, Actor
from domain.tokens import Token
from hub.config import ConfigError, Settings
from hub.service.keys import DEFAULT_TTL_S, TokenClaims, TokenError, check_role, issue_token
from hub.service.token_keys import TokenKey, TokenKeyError, load_token_key
from hub.storage.budget import TOKEN_OFFICE, pool_env
from hub.storage.store import Database, open_database


def token_json(token: Token) -> dict[str, Any]:
    """A token's record, as ``GET /v1/tokens`` lists it."""
    return {
        "jti": token.jti, "role": token.role, "scope": token.scope, "kid": token.kid,
        "issued_at": datetime.fromtimestamp(token.iat, UTC).isoformat(),
        "expires_at": datetime.fromtimestamp(token.exp, UTC).isoformat(),
        "issued_by": dict(token.issued_by), "revoked_at": token.revoked_at,
        "revoked_by": dict(token.revoked_by) if token.revoked_by is not None else None,
    }


class TokenOffice:
    """An Application on the hub's database for token facts only (a context manager)."""

    def __init__(self, database: Database) -> None:
        # The hub made the tables; creating them again would lock the events table under it.
        env = {**database.eventsourcing_env(), **pool_env(TOKEN_OFFICE, 2), "CREATE_TABLE": "n"}
        self.app = CampusCard(env=env)

    def __enter__(self) -> TokenOffice:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.app.close()

    def issue(self, key: TokenKey, role: str, scope: str | None = None, *, ttl_s: int = DEFAULT_TTL_S,
              actor: Actor = CLI) -> str:
        def record(claims: TokenClaims) -> None:
            self._run(lambda: self.app.record_token(
                claims.jti, claims.role, claims.scope, claims.kid, claims.iat, claims.exp, actor))

        return issue_token(key, role, scope, record=record, ttl_s=ttl_s)

    def revoke(self, jti: str, actor: Actor = CLI) -> dict[str, Any]:
        return token_json(self._run(lambda: self.app.revoke_token(jti, actor)))

    @staticmethod
    def _run(command: Any) -> Any:
        try:
            return command()
        except DomainError as exc:
            raise TokenError(exc.detail) from None
        except ProgrammingError as exc:  # no events table: the hub never started on this database
            raise ConfigError(f"the event store is not set up: start the hub on it first ({exc})") from None


def issue_from_data_dir(settings: Settings, role: str, scope: str | None = None, *,
                        ttl_s: int = DEFAULT_TTL_S) -> str:
    """A token for the hub of ``settings.data_dir``, recorded in its store: the embedded one
    there (started for the moment if the hub is not running) or ``CARDHUB_DATABASE_URL``'s."""
    check_role(role, scope)  # before anything is started
    key = _token_key(settings)
    with open_database(settings, shared=True) as database, TokenOffice(database) as office:
        return office.issue(key, role, scope, ttl_s=ttl_s)


def revoke_from_data_dir(settings: Settings, jti: str) -> dict[str, Any]:
    with open_database(settings, shared=True) as database, TokenOffice(database) as office:
        return office.revoke(jti)


def _token_key(settings: Settings) -> TokenKey:
    try:
        return load_token_key(settings.data_dir)
    except TokenKeyError as exc:
        raise TokenError(str(exc)) from None
