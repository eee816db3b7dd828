"""Tokens without a hub: the Token aggregate's rule, --ttl and --scope as the command line takes
them, sign-then-read round trips, and the keyring's bounded reloads (files in a temporary
directory, no database)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Conflict
from domain.tokens import Token
from hub.service.keys import (
    TokenClaims,
    TokenError,
    TokenExpired,
    check_role,
    issue_token,
    parse_ttl,
    read_token,
)
from hub.service.token_keys import TokenKeyring, load_token_key, rotate_token_key


def test_a_token_is_revoked_once() -> None:
    token = Token(jti=str(uuid.uuid4()), role="admin", scope=None, kid="k", iat=1, exp=2, actor={"role": "cli"})
    token.revoke({"role": "cli"}, "2026-11-25T00:00:00+00:00")
    with pytest.raises(Conflict):
        token.revoke({"role": "cli"}, "2026-11-25T00:00:01+00:00")
    assert [type(e).__name__ for e in token.collect_events()] == ["Issued", "Revoked"]


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("30m", 1800), ("8h", 28_800), ("90d", 7_776_000),
                                               ("2160h", 7_776_000)])
def test_ttls_in_seconds_minutes_hours_and_days(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["0s", "91d", "2161h", "8", "h", "1.5h", "8H", "-1h", " 8h", "8h\n", "٨h", "",
                                  "999999999s"])
def test_other_ttls_are_refused(text: str) -> None:
    with pytest.raises(TokenError, match="--ttl"):
        parse_ttl(text)


@pytest.mark.parametrize(("role", "scope"), [("admin", "x"), ("merchant", None), ("warden", ""),
                                             ("warden", "a,,b"), ("warden", "a,a"), ("warden", ",".join("z" * 33)),
                                             ("cardholder", "S1\n"), ("root", None), ("warden", "dorm 1")])
def test_roles_and_scopes_that_do_not_fit_are_refused(role: str, scope: str | None) -> None:
    with pytest.raises(TokenError):
        check_role(role, scope)


@pytest.fixture
def keyring(tmp_path: Path) -> TokenKeyring:
    return TokenKeyring(tmp_path)


@settings(deadline=None)  # each example writes a key file: slow on a loaded machine, not wrong
@given(role=st.sampled_from(["admin", "operator", "auditor", "manager"]), ttl_s=st.integers(60, 90 * 86_400))
def test_a_token_reads_back_as_what_was_recorded(tmp_path_factory: pytest.TempPathFactory, role: str,
                                                 ttl_s: int) -> None:
    keyring = TokenKeyring(tmp_path_factory.mktemp("keys"))
    recorded: list[TokenClaims] = []
    token = issue_token(keyring.current, role, record=recorded.append, ttl_s=ttl_s)
    (claims,) = recorded
    principal = read_token(keyring, token)
    assert (principal.role, principal.scope, principal.jti, principal.exp) == (role, None, claims.jti, claims.exp)
    assert claims.exp - claims.iat == ttl_s and claims.kid == keyring.current.kid


def test_an_expired_token_is_refused_as_expired(keyring: TokenKeyring) -> None:
    token = issue_token(keyring.current, "admin", record=lambda c: None, ttl_s=60, now=int(time.time()) - 120)
    with pytest.raises(TokenExpired):
        read_token(keyring, token)


def test_the_keyring_reads_a_rotated_key_once_a_second_at_most(tmp_path: Path) -> None:
    clock = [100.0]
    keyring = TokenKeyring(tmp_path, clock=lambda: clock[0])
    old = keyring.current
    _, new = rotate_token_key(tmp_path)
    assert keyring.public_key(new.kid) is not None  # an unknown kid: the files are read again
    assert keyring.public_key(old.kid) is not None and keyring.current.kid == new.kid
    _, newer = rotate_token_key(tmp_path)
    assert keyring.public_key(newer.kid) is None  # within the second: not read again
    clock[0] += 1.0
    assert keyring.public_key(newer.kid) is not None and keyring.kids == {old.kid, new.kid, newer.kid}
    assert load_token_key(tmp_path).kid == newer.kid
