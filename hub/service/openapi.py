"""The hub's OpenAPI 3.1 document, served at ``/openapi.json``, generated from the router and
each handler's ``@documented`` declaration (``hub.service.query``): a route cannot be served
undocumented (``document`` raises), nor documented without being served."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from hub.service import responses
from hub.service.http import json_response
from hub.service.query import OPERATIONS, PATH_TYPES, Body, Operation, documented, schema_hook

REF = "#/components/schemas/{name}"
PROBLEM_TYPE = "application/problem+json"
BEARER = [{"bearer": []}]
DESCRIPTIONS = {
    200: "OK", 201: "Created", 304: "Not modified since the version given", 400: "Malformed JSON",
    401: "Missing, invalid, expired or revoked token", 403: "The token's role or scope does not cover this",
    404: "Unknown id, or an id that cannot exist", 409: "Conflicts with the current state", 413: "Body too large",
    422: "A field or query parameter is invalid; `field` names it",
    429: "Too many failed attempts: locked; send again after Retry-After seconds",
    503: "The store is unavailable or the hub is at capacity; send again after Retry-After seconds",
}


class UnknownRoute(LookupError):
    """A served route has no ``@documented`` declaration."""


def document(router: web.UrlDispatcher) -> dict[str, Any]:
    operations: list[tuple[str, str, Operation]] = []
    for route in router.routes():
        if route.method == "HEAD":
            continue  # aiohttp's implicit HEAD of every GET
        path = route.resource.canonical if route.resource is not None else ""
        operation = OPERATIONS.get(route.handler)
        if operation is None:
            raise UnknownRoute(f"{route.method} {path} is served but not @documented")
        operations.append((route.method.lower(), path, operation))
    types: list[Any] = [responses.Problem]
    for _, _, op in operations:
        types += [op.query] + ([op.body] if op.body is not None else [])
        types += [t for t in op.responses.values() if isinstance(t, type)]
    schemas, components = msgspec.json.schema_components(types, schema_hook=schema_hook, ref_template=REF)
    query_schemas = {t: s for t, s in zip(types, schemas, strict=True)}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in operations:
        paths.setdefault(path, {})[method] = _operation(path, op, query_schemas, components)
    for struct in {t for _, _, op in operations for t in [op.query]}:
        components.pop(struct.__name__, None)  # inlined as parameters
    return {
        "openapi": "3.1.0",
        "info": {"title": "cardhub", "version": "1", "description": "Campus one-card hub (DESIGN §2, §6, §9)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def _operation(path: str, op: Operation, schemas: dict[Any, Any], components: dict[str, Any]) -> dict[str, Any]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    parameters = [{"name": n, "in": "path", "required": True, "schema": _path_schema(n)} for n in names]
    query = components[op.query.__name__]
    for name, schema in query.get("properties", {}).items():
        parameters.append({"name": name, "in": "query", "required": name in query.get("required", []),
                           "schema": _not_null(schema)})
    answers: dict[int, Any] = dict(op.responses)
    problems = set()
    if op.auth:
        problems |= {401, 403}
    if op.store:
        problems.add(503)
    if op.body is not None:
        problems |= {400, 413, 422}
    if query.get("properties"):
        problems.add(422)
    if names:
        problems.add(404)
    for status in problems:
        answers.setdefault(status, None)
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(path, op),
                           "responses": {str(s): _response(s, answers[s], op) for s in sorted(answers)}}
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schemas[op.body]}}}
    out["security"] = BEARER if op.auth else []
    return out


def _response(status: int, answer: Any, op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"description": DESCRIPTIONS.get(status, "")}
    if answer is None:
        out["content"] = {PROBLEM_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}}
        if status in (429, 503):
            out["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
        if status == 401 and op.auth:  # a route without a token (sign-in) asks for no bearer
            out["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    elif isinstance(answer, Body):
        out["description"] = answer.description or out["description"]
        if answer.content_type is not None:
            out["content"] = {answer.content_type: {"schema": answer.schema}}
    else:
        out["content"] = {"application/json": {"schema": {"$ref": REF.format(name=answer.__name__)}}}
    for content_type, schema in op.content.get(status, {}).items():
        out.setdefault("content", {})[content_type] = {"schema": schema}
    return out


def _path_schema(name: str) -> dict[str, Any]:
    (schema,), _ = msgspec.json.schema_components([PATH_TYPES[name]])
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if "anyOf" in schema and len(options) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        schema = {**options[0], **rest}
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _operation_id(path: str, op: Operation) -> str:
    handler = next(h for h, o in OPERATIONS.items() if o is op)
    return f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}"


@documented("This OpenAPI 3.1 document", responses={200: responses.Document}, auth=False, store=False)
async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app.router))
