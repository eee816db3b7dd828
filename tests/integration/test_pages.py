"""The hub's own pages (the managers' dashboard, the cardholders' app) are served with one strict
Content-Security-Policy and the same security headers, need no token, and hold nothing the policy
would refuse: no inline script or style, nothing from another origin, only files the hub serves."""

from __future__ import annotations

import re

import pytest

from hub.service.pages import HEADERS
from tests.conftest import Hub

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
       " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGES = {
    "/app": ["/app/app.js", "/app/app-format.js", "/app/app-phone.js", "/app/vendor/qrcode.mjs", "/app/app-text.js",
             "/app/reasons.js", "/app/pages.css", "/app/app.css", "/app/icon.svg"],
    "/dashboard": ["/dashboard/dashboard.js", "/dashboard/dashboard-text.js", "/dashboard/reasons.js",
                   "/dashboard/pages.css", "/dashboard/dashboard.css"],
}
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def test_the_policy_is_the_strict_one() -> None:
    assert HEADERS["Content-Security-Policy"] == CSP
    assert HEADERS["X-Content-Type-Options"] == "nosniff" and HEADERS["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_a_page_and_each_of_its_files_carry_the_policy_without_a_token(hub: Hub, page: str) -> None:
    for path in [page, *PAGES[page]]:
        resp = await hub.client.get(path)
        assert resp.status == 200, path
        assert {name: resp.headers.get(name) for name in HEADERS} == HEADERS, path
        suffix = path[path.rfind("."):] if "." in path.rsplit("/", 1)[-1] else ".html"
        assert resp.content_type == CONTENT_TYPES.get(suffix, "text/html") and resp.charset == "utf-8", path


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_a_page_has_no_inline_script_or_style_and_loads_only_its_own_files(hub: Hub, page: str) -> None:
    html = await (await hub.client.get(page)).text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # every script has a src
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.IGNORECASE)
    scripts = re.findall(r'<script type="module" src="([^"]+)"', html)
    links = re.findall(r'<link rel="(?:stylesheet|icon)" href="([^"]+)"', html)
    assert sorted(re.findall(r'(?:src|href)="([^"]+)"', html)) == sorted(scripts + links)
    assert all(url.startswith(f"{page}/") for url in scripts + links)  # same origin, the page's own
    modules, todo = set(scripts), list(scripts)  # and the modules they import, and those theirs
    while todo:
        script = await (await hub.client.get(todo.pop())).text()
        for name in re.findall(r'^(?:import|export) .* from "\./([^"]+)";$', script, re.MULTILINE):
            if f"{page}/{name}" not in modules:
                modules.add(f"{page}/{name}")
                todo.append(f"{page}/{name}")
    assert sorted([*modules, *links]) == sorted(PAGES[page])


async def test_the_app_keeps_its_token_in_session_storage_only(hub: Hub) -> None:
    """The script never writes the token to localStorage, a cookie or the URL (its language only
    goes to localStorage)."""
    script = await (await hub.client.get("/app/app.js")).text()
    assert re.findall(r"localStorage\.setItem\(([A-Z_]+)", script) == ["LANG_KEY"]
    assert re.findall(r"sessionStorage\.setItem\(([A-Z_]+)", script) == ["SESSION_KEY"]
    assert not re.search(r"document\.cookie|history\.(push|replace)State|location\.(hash|search|href)\s*=", script)


@pytest.mark.parametrize("path", ["/app/vendor/", "/app/vendor/LICENSE", "/app/vendor/README.md", "/app/vendor/qrcode.js",
                                  "/app/vendor/qrcode.mjs%00", "/app/vendor/qrcode.mjs/", "/app/vendor/..%2Fapp.js",
                                  "/app/vendor/%2E%2E/%2E%2E/pages.py", "/app/app-phone.js%00.map"])
async def test_only_the_named_files_are_served_from_the_static_folder(hub: Hub, path: str) -> None:
    """Each file is a route of its own: no folder listing, no other file of static/, no way out of it."""
    resp = await hub.client.get(path)
    assert resp.status == 404 and resp.content_type == "application/problem+json", path
