"""Where the signatures of large uploads are checked: in processes of their own.

One Ed25519 check holds the hub's interpreter lock only briefly (the library lets it go for the
arithmetic), but it has to take it back afterwards: at lunch, with 40 tills uploading their
backlogs, the verifier threads gave up and took back the lock for every check, thousands of
times a second, and each time the writer and the event loop — the online swipes' path —
waited their turn.
Measured on 2 cores, a Python loop kept 95 % of its speed beside a verifying thread, while
that thread's checks fell from 7,600/s alone to 1,400/s: the lock, not the CPU, sets the pace.

``Verifiers`` keeps the threads that parse a large upload, and a pool of ``VERIFY_PROCESSES``
spawned processes that check its signatures in one round trip per upload (the bytes signed
and the signatures in, a list of answers out). Small uploads (``pipeline.INLINE_VERIFY_MAX``)
never come here: they are checked on the event loop, with no round trip to wait for. A pool
whose process died is replaced, and that upload is checked in its thread meanwhile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

VERIFY_THREADS = 2
VERIFY_PROCESSES = 2
# An upload's checks take milliseconds (1,000 events: about 0.1 s); the first waits for the pool to start.
CHECK_TIMEOUT_S = 10.0
# (signature, bytes signed), in the upload's order
Pairs = Sequence[tuple[bytes, bytes]]


def verify_until_failure(public_key: bytes, pairs: Pairs) -> list[bool]:
    """``check_in_order`` with the raw Ed25519 ``public_key`` (what a process of the pool is sent)."""
    return check_in_order(Ed25519PublicKey.from_public_bytes(public_key), pairs)


def check_in_order(key: Ed25519PublicKey, pairs: Pairs) -> list[bool]:
    """Checks ``pairs`` in order, up to and including the first that fails (the writer answers
    the events after it ``not_processed``)."""
    answers: list[bool] = []
    for sig, signed in pairs:
        try:
            key.verify(sig, signed)
        except InvalidSignature:
            answers.append(False)
            break
        answers.append(True)
    return answers


def _worker_started(hub_pid: int) -> None:
    # SIGTERM and Ctrl-C to the whole process group: the hub drains its uploads, then stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _name_process(WORKER_NAME)
    # A worker holds both ends of the pool's queue, so a killed hub's never reads as closed:
    # it watches its parent instead, as the projections' process does.
    threading.Thread(target=_exit_when_orphaned, args=(hub_pid,), name="orphan-watch", daemon=True).start()


def _exit_when_orphaned(hub_pid: int) -> None:
    while os.getppid() == hub_pid:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(0)


ORPHAN_CHECK_S = 0.25
WORKER_NAME = "cardhub-verify"  # what ps and psutil's name() show (Linux); cardhub bench counts it as the hub's CPU


def _name_process(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        return


_PR_SET_NAME = 15  # <linux/prctl.h>


class Verifiers:
    """The threads that parse large uploads, and the processes that check their signatures."""

    def __init__(self, threads: int = VERIFY_THREADS, processes: int = VERIFY_PROCESSES) -> None:
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify")
        self._processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._started = self._stopped = False

    def _new_pool(self) -> ProcessPoolExecutor | None:
        """A started pool, or None (checks in threads) when this machine will not start processes now."""
        pool = ProcessPoolExecutor(max_workers=self._processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_started, initargs=(os.getpid(),))
        try:
            for _ in range(self._processes):  # all of them now, not one at a time as uploads come
                pool.submit(int)
        except OSError as exc:  # out of processes or memory: the hub runs on, checking in its threads
            log.error("cannot start the signature-checking processes (%s); checking in threads", exc)
            pool.shutdown(wait=False, cancel_futures=True)
            return None
        return pool

    def check(self, public_key: bytes, pairs: Pairs) -> list[bool]:
        """``verify_until_failure`` in a process of the pool; called from one of ``threads``.
        The first large upload starts the pool (and waits for it, about half a second): a hub
        that never gets one, such as a standby or most of the tests' hubs, starts no process."""
        pool = self._pool if self._started else self._start()
        if pool is not None:
            try:
                return pool.submit(verify_until_failure, public_key, pairs).result(timeout=CHECK_TIMEOUT_S)
            except (BrokenProcessPool, RuntimeError):  # a process died, or the hub is stopping
                self._replace(pool)
            except TimeoutError:  # a process that does not answer (stopped, starved) holds up no upload
                log.warning("a signature-checking process did not answer in %.0f s; checking in a thread",
                            CHECK_TIMEOUT_S)
        return verify_until_failure(public_key, pairs)

    def _start(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if not self._started and not self._stopped and self._processes:
                self._pool = self._new_pool()
            self._started = True
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken or self._stopped:
                return
            log.error("a signature-checking process died; starting the pool again (checking in threads meanwhile)")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def shutdown(self) -> None:
        """Waits for the uploads being parsed, then stops the processes."""
        self.threads.shutdown()
        with self._lock:
            self._stopped = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(cancel_futures=True)
