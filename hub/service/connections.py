"""Connections (DESIGN §9): the open-file limit, idle and slow connections, and running out.

- At start the soft ``RLIMIT_NOFILE`` is raised to the hard limit.
- aiohttp closes a connection that has not sent a complete request head within
  ``keepalive_timeout`` of being opened or of its last answer (aiohttp ≥ 3.10 arms that timer
  when the connection is made and does not re-arm it on partial data), which covers idle
  keep-alive connections and slow-header (slowloris) ones alike.
- When the process is out of descriptors, asyncio's accept gets EMFILE, logs and stops
  accepting for a second (it never spins). The hub keeps one reserve descriptor for that
  moment: it closes it, accepts, answers ``503`` problem+json with ``Retry-After``, closes, and
  takes the reserve again — so a device hears "send again" instead of waiting in the backlog.
  The hook is the loop's exception handler, whose ``socket`` context key asyncio documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.config import ConfigError, Settings

log = logging.getLogger(__name__)

BACKLOG = 1024  # connections the kernel queues before the hub accepts them (capped by somaxconn)
REFUSE_PER_ROUND = BACKLOG  # connections answered 503 each time asyncio reports EMFILE (once a second)
LOG_EVERY_S = 60.0
RETRY_AFTER_S = 1
_BODY = json.dumps({
    "type": "about:blank", "title": "Service Unavailable", "status": 503, "code": "overloaded",
    "detail": "the hub has no free connection; keep the events and send them again",
}).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    + f"Retry-After: {RETRY_AFTER_S}\r\nConnection: close\r\nContent-Length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


def raise_open_file_limit() -> int:
    """Raises the soft open-file limit to the hard one (or the kernel's ceiling); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        nr_open = Path("/proc/sys/fs/nr_open")
        target = int(nr_open.read_text()) if nr_open.exists() else max(soft, 1 << 16)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit stays %d: %s", soft, exc)
            return soft
    log.info("open-file limit %d (soft was %d, hard %d)", max(soft, target), soft, hard)
    return max(soft, target)


def server_options(settings: Settings) -> dict[str, Any]:
    """``web.run_app`` keyword arguments for the hub's connections."""
    return {"keepalive_timeout": settings.idle_timeout_s, "backlog": BACKLOG}


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context for ``--tls-cert``/``--tls-key`` (TLS 1.2 or later), or None for
    plain HTTP. A file that is missing, unreadable or not a matching PEM pair is a ``ConfigError``."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: no such file: {exc.filename}") from None
    except ssl.SSLError as exc:  # not PEM, or the key does not match the certificate
        raise ConfigError(f"TLS: cannot use {settings.tls_cert} with {settings.tls_key}: {exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError(f"TLS: cannot read {exc.filename or settings.tls_cert}: {exc.strerror or exc}") from None
    return context


def guard(app: web.Application) -> None:
    """Answers ``503`` when the process runs out of descriptors, for as long as ``app`` runs."""
    app.cleanup_ctx.append(_guarded)


async def _guarded(_app: web.Application) -> AsyncIterator[None]:
    # Here, after the hub's resources (and its writer lock) are up and before it listens: a hub
    # that refuses to start says so in one line, with nothing logged before it.
    raise_open_file_limit()
    loop = asyncio.get_running_loop()
    reserve = AcceptReserve()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(reserve.handler(previous))
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
        reserve.close()


class AcceptReserve:
    """One descriptor kept free for refusing connections when the process has none left."""

    def __init__(self) -> None:
        self._fd: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.refused = 0
        self._logged_at = 0.0
        self._since_log = 0

    def handler(self, previous: Any) -> Any:
        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc, sock = context.get("exception"), context.get("socket")
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE) and sock is not None:
                self.refuse(sock.fileno())
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handle

    def refuse(self, listener_fd: int) -> int:
        """Accepts up to ``REFUSE_PER_ROUND`` waiting connections on the listening socket and
        answers each ``503``; returns how many."""
        listener = socket.socket(fileno=listener_fd)  # the same descriptor: detached below
        answered = 0
        try:
            for _ in range(REFUSE_PER_ROUND):
                self._release()
                try:
                    conn, _ = listener.accept()
                except OSError:  # nothing waiting, or the free descriptor was taken meanwhile
                    break
                with conn:
                    _answer(conn)
                answered += 1
                self._take()
        finally:
            listener.detach()
            self._take()
        self.refused += answered
        self._log(answered)
        return answered

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _take(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._fd = None  # taken again at the next refusal

    def _log(self, answered: int) -> None:
        self._since_log += answered
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning("out of file descriptors (limit %d): %d connections answered 503 since the last report",
                        soft, self._since_log)
            self._logged_at, self._since_log = now, 0

    def close(self) -> None:
        self._release()


def _answer(conn: socket.socket) -> None:
    """Answers 503 and closes, without waiting: first reads what the client has sent already,
    so that closing does not reset the connection before the client has read the answer."""
    try:
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            conn.recv(65536)
        conn.send(REFUSAL)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        return
