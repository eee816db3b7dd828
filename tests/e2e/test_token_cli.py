"""``cardhub token issue | revoke | rotate-key`` as processes (DESIGN §7, §12): beside a running hub
and without one, on an external database and on the embedded one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest

from hub.service.typedefs import SETTINGS
from hub.storage.store import Database
from tests.conftest import Hub, start_hub
from tests.e2e.processes import free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture
from tests.integration.test_tokens import call, claims_of, refused

pytestmark = pytest.mark.timeout(180)
CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def cardhub(database: Database | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}
    if database is not None:
        env["CARDHUB_DATABASE_URL"] = database.url
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False, timeout=120)


def data_dir_of(hub: Hub) -> str:
    return str(hub.app[SETTINGS].data_dir)


async def test_a_token_issued_for_2s_while_the_hub_runs_works_then_answers_401(hub: Hub, database: Database) -> None:
    done = await asyncio.to_thread(cardhub, database, "token", "issue", "--role", "auditor", "--ttl", "2s",
                                   "--data-dir", data_dir_of(hub))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    token = done.stdout.strip()
    assert claims_of(token)["exp"] - claims_of(token)["iat"] == 2
    assert (await call(hub, token, path="/v1/access-log"))[0] == 200
    deadline = time.monotonic() + 6
    while (await call(hub, token, path="/v1/access-log"))[0] == 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert "expired" in await refused(hub, token, "/v1/access-log")


async def test_a_revocation_by_the_command_line_while_the_hub_runs_is_refused_within_a_second(
    hub: Hub, database: Database,
) -> None:
    token, other = hub.new_token("operator"), hub.token("operator")
    jti = claims_of(token)["jti"]
    assert (await call(hub, token, path="/v1/access-log"))[0] == 200
    await hub.settle()  # the projections are running
    done = await asyncio.to_thread(cardhub, database, "token", "revoke", jti, "--data-dir", data_dir_of(hub))
    revoked_at = time.monotonic()
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["jti"] == jti and record["revoked_by"] == {"role": "cli"} and record["revoked_at"]
    while (await call(hub, token, path="/v1/access-log"))[0] == 200:
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after `cardhub token revoke`"
        await asyncio.sleep(0.02)
    assert "revoked" in await refused(hub, token, "/v1/access-log")
    assert (await call(hub, other, path="/v1/access-log"))[0] == 200
    for args, says in (([jti], "already revoked"), (["0" * 8 + "-0000-4000-8000-" + "0" * 12], "not found"),
                       (["not-a-jti\x01"], "not a token id")):
        again = await asyncio.to_thread(cardhub, database, "token", "revoke", *args, "--data-dir", data_dir_of(hub))
        assert again.returncode == 2 and again.stderr.count("\n") == 1 and says in again.stderr, again.stderr


async def test_rotate_key_while_the_hub_runs_keeps_old_tokens_and_new_ones_carry_the_new_kid(
    hub: Hub, database: Database,
) -> None:
    data_dir = hub.app[SETTINGS].data_dir
    old_token = hub.token("admin")
    assert stat.S_IMODE((data_dir / "token.key").stat().st_mode) == 0o600
    rotated = await asyncio.to_thread(cardhub, None, "token", "rotate-key", "--data-dir", str(data_dir))
    assert rotated.returncode == 0, rotated.stderr
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert old_kid in rotated.stdout and stat.S_IMODE((data_dir / "token.key").stat().st_mode) == 0o600
    issued = await asyncio.to_thread(cardhub, database, "token", "issue", "--role", "admin", "--data-dir", str(data_dir))
    new_token = issued.stdout.strip()
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid and new_kid in rotated.stdout
    for token in (new_token, old_token):
        assert (await call(hub, token))[0] == 200


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for ttl in ("0s", "91d", "2161h", "8", "1.5h", "8H", "-1h", "9999999999s", "8h\n"):
        done = cardhub(None, "token", "issue", "--role", "admin", f"--ttl={ttl}", "--data-dir", str(tmp_path))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--ttl" in done.stderr, (ttl, done.stderr)
        assert done.stdout == ""
    for role_scope in (["--role", "warden"], ["--role", "warden", "--scope", "a,a"], ["--role", "admin", "--scope", "x"],
                       ["--role", "cardholder", "--scope", "S1\n"]):
        done = cardhub(None, "token", "issue", *role_scope, "--data-dir", str(tmp_path))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "scope" in done.stderr, done.stderr
    missing = cardhub(None, "token", "rotate-key", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no token key" in missing.stderr


async def test_a_token_issued_while_no_hub_runs_is_accepted_by_the_next(database: Database, tmp_path: Path) -> None:
    first = await start_hub(database, tmp_path / "hub")
    await first.client.close()
    done = await asyncio.to_thread(cardhub, database, "token", "issue", "--role", "admin", "--data-dir",
                                   str(tmp_path / "hub"))
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    again = await start_hub(database, tmp_path / "hub")
    try:
        assert (await call(again, token))[0] == 200
        await again.settle()
        (item,) = [i for i in (await again.get("/v1/tokens"))["items"] if i["jti"] == claims_of(token)["jti"]]
        assert item["issued_by"] == {"role": "cli"} and item["role"] == "admin"
    finally:
        await again.client.close()


async def test_on_the_embedded_database_with_the_hub_running_and_stopped(run_dir: Path) -> None:  # noqa: F811
    data_dir, port, log = run_dir / "hub", free_port(), run_dir / "hub.log"
    url = f"http://127.0.0.1:{port}"

    async def serve() -> subprocess.Popen[bytes]:
        proc = start(["serve", "--port", str(port), "--data-dir", str(data_dir)], log)
        await ready(url, proc, log)
        return proc

    async def status(token: str) -> int:
        async with aiohttp.ClientSession() as session, session.get(
                url + "/v1/tokens", headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status

    def issue() -> str:
        done = cardhub(None, "token", "issue", "--role", "admin", "--data-dir", str(data_dir))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    hub = await serve()
    try:
        beside = await asyncio.to_thread(issue)
        assert await status(beside) == 200
    finally:
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, 30) == 0
    alone = await asyncio.to_thread(issue)  # starts the embedded PostgreSQL for itself, and stops it
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    hub = await serve()
    try:
        assert await status(alone) == 200 and await status(beside) == 200
    finally:
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.wait, 30) == 0
