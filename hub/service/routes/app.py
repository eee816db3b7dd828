"""The cardholders' phone app (DESIGN §10): one static page, its script (its modules and the QR
library they import, copied into ``static/vendor/``), its style sheet and icon.

The page itself needs no token; the cardholder signs in on it with account id and PIN
(``POST /v1/sessions``) and it keeps the session's token in ``sessionStorage`` only."""

from __future__ import annotations

from aiohttp import web

from hub.service.pages import PageFile, serve

routes = web.RouteTableDef()
serve(
    routes, __name__,
    PageFile("/app", "app.html", "The cardholders' phone app (HTML; sign in with account id and PIN)", "page"),
    PageFile("/app/app.js", "app.js", "The app's script", "script"),
    PageFile("/app/app-format.js", "app-format.js", "The app's formatting of money, times and elements (a module)",
             "formatting"),
    PageFile("/app/app-phone.js", "app-phone.js",
             "This phone's card: its WebCrypto key, its record in IndexedDB, its payment code (a module)", "phone"),
    PageFile("/app/vendor/qrcode.mjs", "vendor/qrcode.mjs",
             "qrcode-generator 2.0.4 (MIT), which draws the payment code (vendor/README.md)", "qrcode"),
    PageFile("/app/app-text.js", "app-text.js",
             "The app's words, in Chinese and English (a module the script imports)", "words"),
    PageFile("/app/reasons.js", "reasons.js", "Decline reasons in words, Chinese and English (a module the words import)",
             "reasons"),
    PageFile("/app/pages.css", "pages.css", "The palette and fonts of the hub's pages", "palette"),
    PageFile("/app/app.css", "app.css", "The app's style sheet", "style"),
    PageFile("/app/icon.svg", "app-icon.svg", "The app's icon", "icon"),
)
