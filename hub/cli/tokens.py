"""``cardhub token issue | revoke | rotate-key`` (DESIGN §7, §12): each works whether or not the
hub runs (``hub.service.token_office``). Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hub.config import Settings
from hub.service.keys import DEFAULT_TTL_S, JTI_RE, ROLES, TokenError, parse_ttl
from hub.service.token_keys import TokenKeyError, rotate_token_key

DATA_DIR_HELP = "the hub's data directory (its token key and, without CARDHUB_DATABASE_URL, its database)"


def add_arguments(token: argparse.ArgumentParser, command: Any) -> None:
    """``command(parent, name, text)`` makes a sub-command parser (``hub.cli.commands``)."""
    sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = command(sub, "issue", "print a bearer token signed by the hub's token key, and record its issuance")
    issue.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    issue.add_argument("--scope", help="merchant_id (merchant), account_id (cardholder), or a zone or comma-separated"
                                       " zones (warden); required for those roles")
    issue.add_argument("--ttl", default=f"{DEFAULT_TTL_S // 3600}h",
                       help="how long the token is valid: 2s, 30m, 8h, 90d (at most 90 days)")
    issue.add_argument("--data-dir", type=Path, default=Path(".cardhub"), help=DATA_DIR_HELP)
    revoke = command(sub, "revoke", "revoke a token by its jti: the hub refuses it within a second")
    revoke.add_argument("jti", help="the token's id (GET /v1/tokens lists them)")
    revoke.add_argument("--data-dir", type=Path, default=Path(".cardhub"), help=DATA_DIR_HELP)
    rotate = command(sub, "rotate-key", "start a new token key; tokens of the old one stay valid until they expire")
    rotate.add_argument("--data-dir", type=Path, default=Path(".cardhub"), help=DATA_DIR_HELP)


def run(args: argparse.Namespace) -> None:
    """Raises ``TokenError`` (or ``ConfigError``) for the caller to print on one line."""
    from hub.service.token_office import issue_from_data_dir, revoke_from_data_dir  # the store's drivers: not for --help

    if args.token_command == "issue":
        ttl_s = parse_ttl(args.ttl)
        print(issue_from_data_dir(Settings.from_env(data_dir=args.data_dir), args.role, args.scope, ttl_s=ttl_s))
    elif args.token_command == "revoke":
        if not JTI_RE.fullmatch(args.jti):
            raise TokenError(f"{args.jti!r} is not a token id (a jti, as GET /v1/tokens lists them)")
        record = revoke_from_data_dir(Settings.from_env(data_dir=args.data_dir), args.jti)
        print(json.dumps(record, ensure_ascii=False))
    else:
        try:
            old, new = rotate_token_key(args.data_dir)
        except TokenKeyError as exc:
            raise TokenError(str(exc)) from None
        print(f"token key {new.kid} signs new tokens; those of {old.kid} stay valid until they expire")
