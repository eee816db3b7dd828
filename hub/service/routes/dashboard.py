"""The managers' dashboard: one static page, its script (two modules) and its style sheet.

The page itself needs no token; it asks for one and sends it to ``/v1/stats/dashboard``."""

from __future__ import annotations

from aiohttp import web

from hub.service.pages import PageFile, serve

routes = web.RouteTableDef()
serve(
    routes, __name__,
    PageFile("/dashboard", "dashboard.html", "The managers' dashboard (HTML; it asks for a token)", "page"),
    PageFile("/dashboard/dashboard.js", "dashboard.js", "The dashboard's script", "script"),
    PageFile("/dashboard/dashboard-text.js", "dashboard-text.js",
             "The dashboard's words, in Chinese and English (a module the script imports)", "words"),
    PageFile("/dashboard/reasons.js", "reasons.js", "Decline reasons in words, Chinese and English (a module the words import)",
             "reasons"),
    PageFile("/dashboard/pages.css", "pages.css", "The palette and fonts of the hub's pages", "palette"),
    PageFile("/dashboard/dashboard.css", "dashboard.css", "The dashboard's style sheet", "style"),
)
