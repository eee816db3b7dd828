"""The access log (``hub.service.access_log``): one line per request with the method, the path,
the names of the query parameters, the status, the duration and the caller's role and jti —
never the token, the Authorization header, a query value or a body."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from device_sim.device import SimDevice
from hub.config import Settings
from hub.service.access_log import ACCESS_LOG, access_log_options
from hub.service.app import create_app
from hub.service.keys import read_token
from hub.service.token_keys import load_token_key
from hub.service.token_office import TokenOffice
from hub.service.typedefs import TOKEN_KEYS
from hub.storage.store import Database

pytestmark = pytest.mark.timeout(120)
LINE = re.compile(r"(GET|POST) (\S+) (\d{3}) (\d+\.\d)ms (\S+) (\S+)")


async def test_one_line_per_request_with_the_callers_role_and_jti_and_never_the_token(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "hub"), database)
    server = TestServer(app)
    await server.start_server(**access_log_options())
    client = TestClient(server)
    try:
        with TokenOffice(database) as office:
            token = office.issue(load_token_key(tmp_path / "hub"), "admin")
        jti = read_token(app[TOKEN_KEYS], token).jti
        auth = {"Authorization": f"Bearer {token}"}
        caplog.set_level(logging.INFO, logger=ACCESS_LOG.name)
        body = {"account_id": "S001", "name": "李雷", "category": "student", "groups": ["students"]}
        assert (await client.post("/v1/accounts", json=body, headers=auth)).status == 201
        assert (await client.get("/v1/access-log?account=S001&card=C0FFEE01&limit=5", headers=auth)).status == 200
        assert (await client.get("/v1/accounts/S001/balance", headers={"Authorization": "Bearer forged"})).status == 401
        pos = SimDevice("pos-1", "pos")
        pos.purchase("C0FFEE01", 100, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
        assert (await client.post("/v1/devices/pos-1/events", json={"events": pos.pending})).status == 200
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG.name]
    assert len(lines) == 5, lines
    parsed = [LINE.fullmatch(line).groups() for line in lines]  # type: ignore[union-attr]
    assert [(m, p, s, r, j) for m, p, s, _, r, j in parsed] == [
        ("POST", "/v1/accounts", "201", "admin", jti),
        ("GET", "/v1/access-log?account&card&limit", "200", "admin", jti),
        ("GET", "/v1/accounts/S001/balance", "401", "-", "-"),
        ("POST", "/v1/devices/pos-1/events", "200", "-", "-"),
        ("GET", "/healthz", "200", "-", "-"),
    ]
    text = "\n".join(lines)
    for secret in (token, token.split(".")[2], "forged", "Bearer", "C0FFEE01", "李雷"):
        assert secret not in text
