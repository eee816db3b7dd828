"""The hub's own web pages (the managers' dashboard, the cardholders' app): their files, from the
package's ``static/`` folder, each served with the same security headers.

A page holds a bearer token, so it runs only its own script and style sheet, talks only to its own
hub, and is never framed: no inline script or style, no external resource (DESIGN §10)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from aiohttp import web

from hub.service.query import Body, documented

HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
                               " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class PageFile:
    """``static/NAME`` served at ``PATH`` without a token; ``operation`` names its handler (the
    OpenAPI ``operationId`` is ``<route module>.<operation>``)."""

    path: str
    name: str
    summary: str
    operation: str


def static_file(name: str, content_type: str) -> web.Response:
    """``static/NAME`` of the package (``NAME`` may name a file in a folder of it, ``vendor/…``),
    with the pages' headers."""
    body = resources.files("hub.service").joinpath("static", *name.split("/")).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


def serve(routes: web.RouteTableDef, module: str, *files: PageFile) -> None:
    """Adds a documented GET route to ``routes`` (of the route module ``module``) for each file."""
    for file in files:
        routes.get(file.path)(_handler(module, file))


def _handler(module: str, file: PageFile):  # noqa: ANN202 - an aiohttp handler
    content_type = CONTENT_TYPES[PurePosixPath(file.name).suffix]

    async def handler(request: web.Request) -> web.Response:
        return static_file(file.name, content_type)

    handler.__module__, handler.__name__, handler.__qualname__ = module, file.operation, file.operation
    return documented(file.summary, auth=False, store=False,
                      responses={200: Body(content_type, {"type": "string"})})(handler)
