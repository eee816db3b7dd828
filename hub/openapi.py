"""The hub's OpenAPI 3.1 document, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from hub.http import json_response
from hub.schemas import AccountIn, CardIn, CreditIn, DeviceIn, MerchantIn

PROBLEM = {"description": "RFC 9457 problem", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
BEARER = [{"bearer": []}]


def _op(summary: str, ok: int, *, body: str | None = None, secure: bool = True,
        errors: tuple[int, ...] = (), params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok): {"description": "OK", "content": {"application/json": {}}}},
    }
    codes = set(errors) | ({401, 403} if secure else set())
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
        codes |= {400, 413, 422}
    for code in sorted(codes):
        op["responses"][str(code)] = PROBLEM
    if secure:
        op["security"] = BEARER
    if params:
        op["parameters"] = [
            {"name": p, "in": "query", "required": False, "schema": {"type": "string"}} for p in params
        ]
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [MerchantIn, DeviceIn, AccountIn, CardIn, CreditIn], ref_template="#/components/schemas/{name}"
    )
    components["Problem"] = {"type": "object", "required": ["status", "title", "detail", "code"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"}}}
    components["Upload"] = {"type": "object", "required": ["events"], "additionalProperties": False,
                            "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000,
                                                      "items": {"type": "object"}}}}
    paths: dict[str, Any] = {
        "/v1/merchants": {"post": _op("Register a merchant", 201, body="MerchantIn", errors=(409,))},
        "/v1/devices": {"post": _op("Register a device", 201, body="DeviceIn", errors=(404, 409))},
        "/v1/devices/{device_id}/revoke": {"post": _op("Revoke a device", 200, errors=(404, 409))},
        "/v1/devices/{device_id}/events": {"post": _op(
            "Upload signed device events (protocol v1)", 200, body="Upload", secure=False, errors=(503,))},
        "/v1/devices/{device_id}/hotlist": {"get": _op(
            "Signed hotlist, whole or since a version", 200, secure=False, errors=(404, 422), params=("since",))},
        "/v1/hub/key": {"get": _op("The hub's Ed25519 public key", 200, secure=False)},
        "/v1/accounts": {"post": _op("Open an account", 201, body="AccountIn", errors=(409,))},
        "/v1/accounts/{account_id}/topups": {"post": _op("Top up cash (idempotent by ref)", 201, body="CreditIn", errors=(404, 409))},
        "/v1/accounts/{account_id}/subsidies": {"post": _op("Grant a subsidy (idempotent by ref)", 201, body="CreditIn", errors=(404, 409))},
        "/v1/accounts/{account_id}/balance": {"get": _op("Balance in fen", 200, errors=(404,))},
        "/v1/accounts/{account_id}/transactions": {"get": _op(
            "Transactions, newest first", 200, errors=(404, 422), params=("limit", "cursor", "from", "to"))},
        "/v1/cards": {"post": _op("Issue a card (replaces lost cards)", 201, body="CardIn", errors=(404, 409))},
        "/v1/cards/{card_uid}/lost": {"post": _op("Report a card lost", 200, errors=(404, 409))},
        "/v1/cards/{card_uid}/found": {"post": _op("Report a lost card found", 200, errors=(404, 409))},
        "/v1/audit/checkpoint": {"get": _op("The latest signed checkpoint of the Merkle log", 200)},
        "/v1/audit/leaves": {"get": _op(
            "Leaf bytes [start, end), at most 1000", 200, errors=(422,), params=("start", "end"))},
        "/v1/audit/proofs/inclusion": {"get": _op(
            "RFC 9162 inclusion proof", 200, errors=(422,), params=("index", "tree_size"))},
        "/v1/audit/proofs/consistency": {"get": _op(
            "RFC 9162 consistency proof", 200, errors=(422,), params=("first", "second"))},
        "/v1/audit/events": {"get": _op(
            "Device envelopes as signed, with their results, newest first", 200, errors=(422,),
            params=("card", "device", "account", "from", "to", "limit", "cursor"))},
        "/v1/merchants/{merchant_id}/settlement": {"get": _op(
            "A merchant's approved purchases and reversals on one local day (JSON or text/csv)", 200,
            errors=(404, 422), params=("date", "format"))},
        "/v1/zones": {"post": _op("Create an access zone", 201, errors=(400, 409, 422))},
        "/v1/access-rules": {"post": _op("Add an access rule to a zone", 201, errors=(400, 404, 422))},
        "/v1/zones/{zone}/occupancy": {"get": _op("Who is inside an anti-passback zone", 200, errors=(404,))},
        "/v1/devices/{device_id}/rules": {"get": _op(
            "Signed access rules of a gate's zone", 200, secure=False, errors=(304, 404, 422), params=("since",))},
        "/v1/access-log": {"get": _op(
            "Gate swipes with their decisions, newest first", 200, errors=(422,),
            params=("zone", "account", "card", "from", "to", "limit", "cursor"))},
        "/v1/stats/consumption": {"get": _op(
            "Approved purchases net of reversals, grouped by merchant|device|hour|meal|category|day", 200,
            errors=(404, 422), params=("from", "to", "by", "merchant"))},
        "/v1/stats/dashboard": {"get": _op(
            "One local day of aggregates for the dashboard", 200, errors=(422,), params=("date",))},
        "/dashboard": {"get": _op("The managers' dashboard (HTML; sign in with a token)", 200, secure=False)},
        "/healthz": {"get": _op("Health and projection lag", 200, secure=False)},
        "/metrics": {"get": _op("Prometheus metrics", 200, secure=False)},
        "/openapi.json": {"get": _op("This document", 200, secure=False)},
    }
    for path, item in paths.items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if names:
            item["parameters"] = [_path_param(n) for n in names]
    return {
        "openapi": "3.1.0",
        "info": {"title": "cardhub", "version": "1", "description": "Campus one-card hub (DESIGN §2, §6)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
