"""The managers' dashboard: one static page, its script (two modules) and its style sheet.

The page itself needs no token; it asks for one and sends it to ``/v1/stats/dashboard``."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from hub.service.query import Body, documented

# The page holds a bearer token: it runs only its own script and talks only to its own hub.
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
                               " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
routes = web.RouteTableDef()


@routes.get("/dashboard")
@documented("The managers' dashboard (HTML; it asks for a token)", auth=False, store=False,
            responses={200: Body("text/html", {"type": "string"})})
async def page(request: web.Request) -> web.Response:
    return _file("dashboard.html", "text/html")


@routes.get("/dashboard/dashboard.js")
@documented("The dashboard's script", auth=False, store=False,
            responses={200: Body("text/javascript", {"type": "string"})})
async def script(request: web.Request) -> web.Response:
    return _file("dashboard.js", "text/javascript")


@routes.get("/dashboard/dashboard-text.js")
@documented("The dashboard's words, in Chinese and English (a module the script imports)", auth=False,
            store=False, responses={200: Body("text/javascript", {"type": "string"})})
async def words(request: web.Request) -> web.Response:
    return _file("dashboard-text.js", "text/javascript")


@routes.get("/dashboard/dashboard.css")
@documented("The dashboard's style sheet", auth=False, store=False,
            responses={200: Body("text/css", {"type": "string"})})
async def style(request: web.Request) -> web.Response:
    return _file("dashboard.css", "text/css")


def _file(name: str, content_type: str) -> web.Response:
    body = resources.files("hub.service").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)
