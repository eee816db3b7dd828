"""schemathesis against a live ``cardhub serve`` on the embedded PostgreSQL (DESIGN §6, §9):
every operation of the generated document, positive and negative cases, with an admin token;
no answer may be a server error, an undocumented status or content type, or a body or header
that the document does not describe."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from device_sim.device import SimDevice
from hub.service.token_keys import load_token_key
from hub.service.token_office import TokenOffice
from hub.storage.store import Database
from tests.e2e.test_crash import CLI, free_port

EXAMPLES_PER_OPERATION = 25  # per operation: 15 that fit the document, 10 that do not (where anything can be negated)
EXAMPLES = {"positive": 15, "negative": 10}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


class LiveHub:
    """``cardhub serve`` on a fresh database of the session's PostgreSQL, seeded so that
    generated ids sometimes hit: a merchant, a pos and a gate, a zone, an account, a card."""

    def __init__(self, database: Database, data_dir: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "hub.log"
        env = {**os.environ, "CARDHUB_DATABASE_URL": database.url}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--data-dir", str(data_dir), "--port", self.url.rsplit(":", 1)[1]],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        self.session = requests.Session()
        self.statuses: Counter[int] = Counter()
        self.session.hooks["response"].append(lambda resp, *_, **__: self.statuses.update([resp.status_code]))
        self._ready()
        with TokenOffice(database) as office:
            self.headers = {"Authorization": "Bearer " + office.issue(load_token_key(data_dir), "admin")}

    def _ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.session.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError("hub did not become ready")

    def seed(self) -> None:
        pos, gate = SimDevice("pos-1", "pos"), SimDevice("gate-1", "gate")
        for path, body in [
            ("/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}),
            ("/v1/zones", {"zone": "library", "name": "图书馆", "anti_passback": True}),
            ("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": pos.public_key,
                             "merchant_id": "canteen-1"}),
            ("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key, "zone": "library"}),
            ("/v1/accounts", {"account_id": "S001", "name": "李雷", "category": "student", "groups": ["students"]}),
            ("/v1/cards", {"card_uid": "C0FFEE01", "account_id": "S001"}),
            ("/v1/accounts/S001/topups", {"amount": 10_000, "ref": "seed"}),
        ]:
            resp = self.session.post(self.url + path, json=body, headers=self.headers, timeout=10)
            assert resp.status_code == 201, resp.text
        pos.purchase("C0FFEE01", 500, datetime.now(UTC))
        resp = self.session.post(self.url + "/v1/devices/pos-1/events", json={"events": pos.pending}, timeout=10)
        assert resp.status_code == 200 and resp.json()["results"][0]["status"] == "accepted", resp.text

    def stop(self) -> None:
        self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def live_hub(database: Database, tmp_path: Path) -> Iterator[LiveHub]:
    hub = LiveHub(database, tmp_path / "data")
    try:
        hub.seed()
        yield hub
    finally:
        hub.stop()


def _fuzz(live_hub: LiveHub, operation: APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode.value], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(session=live_hub.session, headers=live_hub.headers, checks=CHECKS, timeout=10)

    run()


@pytest.mark.timeout(240)
def test_no_generated_request_makes_the_hub_answer_outside_its_document(live_hub: LiveHub) -> None:
    """Driven through ``APIOperation.as_strategy`` rather than ``schemathesis.pytest``: the
    latter's lazy fixture loader uses a pytest private (``Node._nodeid``) that pytest 9 removed."""
    document = live_hub.session.get(live_hub.url + "/openapi.json", timeout=10).json()
    api = schemathesis.openapi.from_dict(document)
    api.config.update(base_url=live_hub.url)
    failures, operations = [], 0
    started = time.monotonic()
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1
        spec = document["paths"][operation.path][operation.method.lower()]
        negatable = "parameters" in spec or "requestBody" in spec
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable else (GenerationMode.POSITIVE,):
            try:
                _fuzz(live_hub, operation, mode)
            except (AssertionError, ExceptionGroup, FailureGroup) as exc:  # a failure of one operation; the others still run
                failures.append(f"{operation.label} ({mode}): {exc}")
    elapsed = time.monotonic() - started
    print(f"fuzzed {operations} operations, up to {EXAMPLES_PER_OPERATION} examples each, in {elapsed:.1f} s:"
          f" {sum(live_hub.statuses.values())} requests, statuses {sorted(live_hub.statuses.items())}")
    assert operations == len([m for item in document["paths"].values() for m in item])
    assert not failures, "\n\n".join(failures)
