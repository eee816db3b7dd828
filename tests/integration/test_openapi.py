"""The OpenAPI document is generated from the router and the handlers' ``@documented``
declarations (DESIGN §6): every served route is in it and nothing else, it is valid OpenAPI
3.1, and each answer has its status, content type and schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from aiohttp import web

from hub.service.openapi import UnknownRoute, document
from tests.conftest import Hub

PROBLEM = "application/problem+json"
UNSECURED = {
    ("post", "/v1/devices/{device_id}/events"), ("get", "/v1/devices/{device_id}/hotlist"),
    ("get", "/v1/devices/{device_id}/rules"), ("get", "/v1/devices/{device_id}/limits"), ("get", "/v1/hub/key"),
    ("get", "/dashboard"), ("get", "/dashboard/dashboard.js"), ("get", "/dashboard/dashboard-text.js"),
    ("get", "/dashboard/reasons.js"), ("get", "/dashboard/dashboard.css"), ("get", "/app"), ("get", "/app/app.js"),
    ("get", "/app/app-text.js"), ("get", "/app/reasons.js"), ("get", "/app/app.css"), ("get", "/app/icon.svg"),
    ("get", "/app/app-format.js"), ("get", "/app/app-phone.js"), ("get", "/app/vendor/qrcode.mjs"),
    ("get", "/dashboard/pages.css"), ("get", "/app/pages.css"), ("get", "/healthz"),
    ("get", "/metrics"), ("get", "/openapi.json"), ("post", "/v1/sessions"),
}


def served(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None}


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in doc["paths"].items() for method, op in item.items()}


async def test_every_served_route_is_documented_and_every_documented_route_is_served(hub: Hub) -> None:
    doc = await hub.get("/openapi.json", role=None)
    assert set(operations(doc)) == served(hub.app)
    assert len(served(hub.app)) >= 33


async def test_the_document_is_valid_openapi_3_1_that_schemathesis_loads(hub: Hub) -> None:
    doc = await hub.get("/openapi.json", role=None)
    assert doc["openapi"] == "3.1.0"
    api = schemathesis.openapi.from_dict(doc)
    api.validate()
    loaded = [result.ok() for result in api.get_all_operations()]
    assert {(op.method.lower(), op.path) for op in loaded} == set(operations(doc))


def test_a_route_without_a_declaration_cannot_be_served_undocumented() -> None:
    async def secret(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1/secret", secret)
    with pytest.raises(UnknownRoute, match="GET /v1/secret"):
        document(app.router)


async def test_every_answer_has_its_content_type_and_problems_are_problem_json(hub: Hub) -> None:
    ops = operations(await hub.get("/openapi.json", role=None))
    for key, op in ops.items():
        answers = op["responses"]
        for status, answer in answers.items():
            if int(status) >= 400:
                assert list(answer["content"]) == [PROBLEM], (key, status)
            elif status == "304":
                assert "content" not in answer, key
            else:
                assert answer["content"], (key, status)
        secured = key not in UNSECURED
        assert (op["security"] != []) == secured, key
        assert ({"401", "403"} <= set(answers)) == secured, key
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(answers), key
        if any(p["in"] == "query" for p in op.get("parameters", [])):
            assert "422" in answers, key
        if any(p["in"] == "path" for p in op.get("parameters", [])):
            assert "404" in answers, key
    settlement = ops[("get", "/v1/merchants/{merchant_id}/settlement")]["responses"]["200"]["content"]
    assert set(settlement) == {"application/json", "text/csv"}
    assert set(ops[("get", "/dashboard")]["responses"]["200"]["content"]) == {"text/html"}
    assert set(ops[("get", "/dashboard/dashboard.js")]["responses"]["200"]["content"]) == {"text/javascript"}
    assert set(ops[("get", "/dashboard/dashboard-text.js")]["responses"]["200"]["content"]) == {"text/javascript"}
    assert set(ops[("get", "/dashboard/dashboard.css")]["responses"]["200"]["content"]) == {"text/css"}
    assert set(ops[("get", "/metrics")]["responses"]["200"]["content"]) == {"text/plain"}
    assert "304" in ops[("get", "/v1/devices/{device_id}/rules")]["responses"]
    for key in [("post", "/v1/devices/{device_id}/events"), ("get", "/v1/accounts/{account_id}/balance"),
                ("post", "/v1/accounts"), ("get", "/healthz")]:
        unavailable = ops[key]["responses"]["503"]
        assert unavailable["headers"]["Retry-After"]["required"], key


async def test_query_and_path_parameters_carry_their_types_and_bounds(hub: Hub) -> None:
    ops = operations(await hub.get("/openapi.json", role=None))
    params = {p["name"]: p for p in ops[("get", "/v1/accounts/{account_id}/transactions")]["parameters"]}
    assert params["account_id"]["in"] == "path" and params["account_id"]["schema"]["pattern"]
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100,
                                         "description": "page size, 1–1000"}
    assert params["from"]["schema"]["format"] == "date-time"
    assert params["cursor"]["schema"]["maxLength"] <= 64
    leaves = {p["name"]: p for p in ops[("get", "/v1/audit/leaves")]["parameters"]}
    assert leaves["start"]["required"] and leaves["start"]["schema"]["maximum"] == 2**63 - 1
    by = {p["name"]: p for p in ops[("get", "/v1/stats/consumption")]["parameters"]}["by"]
    assert set(by["schema"]["enum"]) == {"merchant", "device", "hour", "meal", "category", "day"}
