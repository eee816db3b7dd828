"""The command line: one-line errors with a non-zero exit, tokens the hub accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hub.service.keys import load_or_create_key, read_token

CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=60)


def test_token_issue_prints_a_token_signed_by_the_hub_key(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    result = run("token", "issue", "--role", "cardholder", "--scope", "2026001", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    principal = read_token(key, result.stdout.strip())
    assert (principal.role, principal.scope) == ("cardholder", "2026001")


def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(tmp_path: Path) -> None:
    missing = run("token", "issue", "--role", "admin", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no hub key" in missing.stderr
    load_or_create_key(tmp_path)
    unscoped = run("token", "issue", "--role", "merchant", "--data-dir", str(tmp_path))
    assert unscoped.returncode == 2 and "--scope" in unscoped.stderr and unscoped.stdout == ""
    bad_url = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                             env={"CARDHUB_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": ""},
                             timeout=60, check=False)
    assert bad_url.returncode == 2 and bad_url.stderr.strip().startswith("cardhub: cannot connect to PostgreSQL")
    bad_zone = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              env={"CARDHUB_TIMEZONE": "Mars/Olympus", "PATH": ""}, timeout=60, check=False)
    assert bad_zone.returncode == 2 and "CARDHUB_TIMEZONE" in bad_zone.stderr
