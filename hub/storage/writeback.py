"""Keeps the embedded PostgreSQL's data files from piling up dirty pages in the kernel.

PostgreSQL asks the kernel to start writing back what it writes out of shared buffers (the
``*_flush_after`` settings), but not the zero pages it writes when a table or index grows
by a block. Linux leaves those dirty for 30 s (``vm.dirty_expire_centisecs``) and then
writes each file's dirty pages in one go. Traced with the kernel's writeback events during
``cardhub bench``: 30 s after a burst began, 140–310 MB of them were written in under a
second, and every commit's WAL flush queued behind that write; in that half second the
online latency's p99 went from about 15 to 50–85 ms.

``WritebackPacer`` asks the kernel every second to start writing back the data files that
changed since its last round (``sync_file_range(SYNC_FILE_RANGE_WRITE)``: it starts the
writes and waits for none of them), so the same pages leave as a steady trickle. Linux only;
elsewhere it does nothing. With ``CARDHUB_DATABASE_URL`` the server is not ours to manage:
there the kernel's ``vm.dirty_background_bytes`` is the DBA's knob for the same problem.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of dirty pages, do not wait


def _sync_file_range() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return lambda fd: fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # offset 0, length 0: to the end


class WritebackPacer:
    """A daemon thread that starts the writeback of recently changed files under ``pgdata``."""

    def __init__(self, pgdata: Path, interval_s: float = INTERVAL_S) -> None:
        assert interval_s > 0
        self.pgdata = pgdata
        self.interval_s = interval_s
        self._flush = _sync_file_range()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._flush is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="pg-writeback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        since = time.time()
        while not self._stop.wait(self.interval_s):
            # mtime is kept to the kernel's clock tick: look one interval further back.
            started, cutoff = time.time(), since - self.interval_s
            for path in self._changed_since(cutoff):
                self.flush(path)
            since = started

    def flush(self, path: str) -> None:
        """Starts the writeback of one file's dirty pages; a file gone meanwhile is skipped."""
        assert self._flush is not None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            if self._flush(fd) != 0:
                log.debug("sync_file_range(%s): errno %d", path, ctypes.get_errno())
        finally:
            os.close(fd)

    def _changed_since(self, cutoff: float) -> Iterator[str]:
        for folder in self._folders():
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime >= cutoff:
                            yield entry.path

    def _folders(self) -> Iterator[Path]:
        """Each database's folder and the shared catalog: not pg_wal, which commits fsync."""
        yield self.pgdata / "global"
        with contextlib.suppress(OSError):
            yield from (p for p in (self.pgdata / "base").iterdir() if p.is_dir())
