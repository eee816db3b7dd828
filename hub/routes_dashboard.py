"""The managers' dashboard: one static page, its script and its style sheet.

The page itself needs no token; it asks for one and sends it to ``/v1/stats/dashboard``."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from hub.http import Problem

ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page holds a bearer token: it runs only its own script and talks only to its own hub.
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
                               " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
routes = web.RouteTableDef()


def _read(name: str) -> bytes:
    return resources.files("hub").joinpath("static", name).read_bytes()


@routes.get("/dashboard")
async def page(request: web.Request) -> web.Response:
    return web.Response(body=_read("dashboard.html"), content_type="text/html", charset="utf-8",
                        headers=HEADERS)


@routes.get("/dashboard/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise Problem(404, "not_found", f"no dashboard file {name}")
    return web.Response(body=_read(name), content_type=content_type, charset="utf-8",
                        headers=HEADERS)
