"""The access log: one line per request on the logger ``cardhub.access``.

``GET /v1/accounts/S001/transactions?limit&cursor 200 3.1ms admin 5d1c…`` — the method, the
path as it came (percent-encoded, so a line is always one line), the *names* of the query
parameters (their values may be personal: a card, an account, a time), the status, the duration,
and the caller's role and token id (``jti``) when a route authorized one (``-`` otherwise:
device routes, health, a request refused before its token was read). Never the token, the
``Authorization`` header or a body. One log call per request: device uploads are logged too.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from hub.service.http import PRINCIPAL_KEY

ACCESS_LOG = logging.getLogger("cardhub.access")
MAX_PATH_CHARS = 200
MAX_QUERY_NAMES = 16
MAX_NAME_CHARS = 40


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        caller = request.get(PRINCIPAL_KEY)
        path, _, query = request.raw_path.partition("?")
        if len(path) > MAX_PATH_CHARS:
            path = path[:MAX_PATH_CHARS] + "…"
        if query:
            names = query.split("&", MAX_QUERY_NAMES)[:MAX_QUERY_NAMES]
            path += "?" + "&".join(name.partition("=")[0][:MAX_NAME_CHARS] for name in names)
        self.logger.info("%s %s %d %.1fms %s %s", request.method, path, response.status, time * 1000,
                         caller.role if caller else "-", (caller.jti or "-") if caller else "-")


def access_log_options() -> dict[str, Any]:
    """The keyword arguments of ``web.run_app`` (or an ``AppRunner``) that turn the log on."""
    return {"access_log_class": AccessLogger, "access_log": ACCESS_LOG}
