"""``cardhub backup --to DIR`` and ``cardhub restore --from DIR --data-dir NEW`` (DESIGN §13).

A backup holds what proves and restores the past, and no secret of the hub's own:

- ``pg/``: ``pg_basebackup`` of the whole server, plain format, with its WAL and manifest;
- ``checkpoint.json``: the latest signed checkpoint committed before the backup began (so the
  copy holds every event it covers), in the format ``cardhub audit verify --checkpoint`` reads;
- ``hub.pub``: the hub key's public part, ``token.retired``: retired token keys' public parts;
- ``manifest.json``: when, the server's version, the size, the checkpoint's tree size.

It does NOT hold ``hub.key`` or ``token.key``. The database inside it holds the accounts'
data keys (DESIGN §12) and everything else in clear: keep a backup as you keep the database.
A restore needs the hub key (``--key``: the old data directory's ``hub.key`` or its safe
copy), since devices, virtual cards and checkpoints trust that key and nothing else; without
``--token-key`` the restored hub makes a new token key, and tokens issued before are refused."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.wire import b64decode, public_key_b64
from hub.audit.signed import latest_checkpoint
from hub.config import Settings
from hub.service.keys import KEY_FILE, load_key
from hub.service.token_keys import RETIRED_FILE, TOKEN_KEY_FILE, write_secret
from hub.storage import backup
from hub.storage.backup import PG_DIR, BackupError
from hub.storage.store import open_database

FORMAT = "cardhub-backup/1"
MANIFEST, CHECKPOINT, PUBLIC_KEY = "manifest.json", "checkpoint.json", "hub.pub"


def add_arguments(sub: Any, command: Any) -> None:
    """``command(parent, name, text)`` makes a sub-command parser (``hub.cli.commands``)."""
    take = command(sub, "backup", "a consistent physical backup of the database (the hub may run), with the"
                                  " latest signed checkpoint")
    take.add_argument("--to", type=Path, required=True, metavar="DIR", help="a directory that does not exist or is empty")
    take.add_argument("--data-dir", type=Path, default=Path(".cardhub"),
                      help="the hub's key and, without CARDHUB_DATABASE_URL, its embedded PostgreSQL")
    restore = command(sub, "restore", "make a new data directory from a backup; a hub starts on it")
    restore.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR", help="a cardhub backup")
    restore.add_argument("--data-dir", type=Path, required=True, metavar="NEW",
                         help="the new data directory: does not exist or is empty")
    restore.add_argument("--key", type=Path, required=True, metavar="FILE",
                         help="the hub's private key: hub.key of the backed-up data directory (a backup never holds it)")
    restore.add_argument("--token-key", type=Path, metavar="FILE",
                         help="token.key of the backed-up data directory, to keep issued tokens valid"
                              " (default: the hub makes a new one; tokens issued before are refused)")


def run_backup(args: argparse.Namespace) -> None:
    backup.check_target(args.to, "--to")
    settings = Settings.from_env(data_dir=args.data_dir)
    public = public_key_b64(load_key(settings.data_dir).public_key())
    with open_database(settings, shared=True) as database:
        major, version, may_replicate = backup.server_facts(database)
        if not may_replicate:
            raise BackupError(f"PostgreSQL role {database.params.get('user', '?')!r} may not replicate:"
                              " pg_basebackup needs a role WITH REPLICATION (or a superuser)")
        program = backup.find_basebackup(major)
        with psycopg.connect(database.url, connect_timeout=10) as conn:
            checkpoint = latest_checkpoint(conn)  # before the backup begins: the copy holds its events
        staging = backup.staging_dir(args.to)
        try:
            backup.base_backup(program, database, staging / PG_DIR)
            _write_extras(staging, settings.data_dir, public, checkpoint, {
                "format": FORMAT, "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "server_version": version, "server_major": major,
                "source": "external" if settings.database_url else "embedded",
                "database": database.params["dbname"],
                "size_bytes": backup.tree_bytes(staging / PG_DIR),
                "checkpoint_tree_size": checkpoint["tree_size"] if checkpoint else None,
            })
            backup.finish(staging, args.to)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    size = f"{json.loads((args.to / MANIFEST).read_text())['size_bytes'] / 2**20:.1f} MiB"
    signed = f"checkpoint of {checkpoint['tree_size']} events" if checkpoint else "no checkpoint issued yet"
    print(f"backup of PostgreSQL {version} in {args.to}: {size}, {signed}")


def _write_extras(staging: Path, data_dir: Path, public: str, checkpoint: dict[str, Any] | None,
                  manifest: dict[str, Any]) -> None:
    if checkpoint is not None:
        (staging / CHECKPOINT).write_text(json.dumps(checkpoint, indent=2) + "\n")
    (staging / PUBLIC_KEY).write_text(public + "\n")
    if (data_dir / RETIRED_FILE).exists():
        shutil.copyfile(data_dir / RETIRED_FILE, staging / RETIRED_FILE)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def run_restore(args: argparse.Namespace) -> None:
    manifest = _read_manifest(args.source)
    backup.check_target(args.data_dir, "--data-dir")
    key_text = _matching_key(args.key, (args.source / PUBLIC_KEY).read_text().strip())
    token_text = _key_text(args.token_key, "--token-key") if args.token_key else None
    backup.verify_copy(args.source / PG_DIR)
    staging = backup.staging_dir(args.data_dir)
    try:
        staging.chmod(0o755)  # the embedded server's user (root's hub: another one) must reach pg/
        backup.copy_cluster(args.source / PG_DIR, staging / PG_DIR)
        write_secret(staging / KEY_FILE, key_text + "\n")
        if token_text is not None:
            write_secret(staging / TOKEN_KEY_FILE, token_text + "\n")
            if (args.source / RETIRED_FILE).exists():
                shutil.copyfile(args.source / RETIRED_FILE, staging / RETIRED_FILE)
        backup.finish(staging, args.data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"restored the backup of {manifest['taken_at']} into {args.data_dir}")
    if manifest["source"] == "external":
        print(f"it is a copy of an external server (PostgreSQL {manifest['server_version']}): start"
              f" {args.data_dir / PG_DIR} with that version's binaries and configuration and point"
              f" CARDHUB_DATABASE_URL at its database {manifest['database']!r}", file=sys.stderr)


def _read_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"--from {source}: not a cardhub backup ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not (source / PG_DIR / "PG_VERSION").is_file() or not (source / PUBLIC_KEY).is_file():
        raise BackupError(f"--from {source}: not a cardhub backup ({FORMAT}: {MANIFEST}, {PG_DIR}/, {PUBLIC_KEY})")
    return manifest


def _key_text(path: Path, flag: str) -> str:
    try:
        text = path.read_text().strip()
        Ed25519PrivateKey.from_private_bytes(b64decode(text))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{flag} {path}: not a cardhub key file ({exc})") from None
    return text


def _matching_key(path: Path, public: str) -> str:
    text = _key_text(path, "--key")
    if public_key_b64(Ed25519PrivateKey.from_private_bytes(b64decode(text)).public_key()) != public:
        raise BackupError(f"--key {path}: not the key of this backup's hub (its public key is in {PUBLIC_KEY})")
    return text
