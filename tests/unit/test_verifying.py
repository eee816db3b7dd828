"""The processes that check the signatures of large uploads: the same answers as the thread
did, a pool whose process died is replaced without a wrong answer, and nothing outlives a
killed hub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import psutil
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.ingest.verifying import Verifiers, verify_until_failure

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes_raw()


def _pairs(n: int, bad: frozenset[int] | set[int] = frozenset()) -> list[tuple[bytes, bytes]]:
    pairs = []
    for i in range(n):
        signed = f"cardhub/event/v1\n{{\"seq\":{i}}}".encode()
        sig = KEY.sign(signed)
        pairs.append((bytes(64) if i in bad else sig, signed))
    return pairs


def _workers(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]


def test_checks_in_order_up_to_and_including_the_first_failure() -> None:
    assert verify_until_failure(PUBLIC, _pairs(5)) == [True] * 5
    assert verify_until_failure(PUBLIC, _pairs(5, bad={2, 4})) == [True, True, False]
    assert verify_until_failure(PUBLIC, []) == []


def test_the_pool_answers_as_the_thread_does_and_survives_a_dead_process() -> None:
    verifiers = Verifiers(threads=1, processes=1)
    try:
        assert verifiers.check(PUBLIC, _pairs(30, bad={17})) == [True] * 17 + [False]
        worker = next(iter(_workers(os.getpid())), None)
        assert worker is not None
        worker.kill()
        worker.wait(5)
        # The upload that finds the pool broken is checked in its thread; the next ones in a new process.
        assert verifiers.check(PUBLIC, _pairs(3)) == [True] * 3
        assert verifiers.check(PUBLIC, _pairs(4, bad={0})) == [False]
        assert _workers(os.getpid()) and worker not in _workers(os.getpid())
    finally:
        verifiers.shutdown()
    assert verifiers.check(PUBLIC, _pairs(2)) == [True, True]  # stopped: still answers, in the caller's thread


def test_its_processes_exit_when_the_hub_is_killed() -> None:
    hub = subprocess.Popen(
        [sys.executable, "-c", "from hub.ingest.verifying import Verifiers; import time; v = Verifiers(); "
         f"v.check(bytes.fromhex('{PUBLIC.hex()}'), []); time.sleep(60)"],
        cwd=os.getcwd(), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(workers := _workers(hub.pid)) < 2:
            assert time.monotonic() < deadline, "the pool's processes did not start"
            time.sleep(0.1)
        hub.send_signal(signal.SIGKILL)
        hub.wait()
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, alive
    finally:
        if hub.poll() is None:
            hub.kill()


def test_a_machine_that_starts_no_process_checks_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(ProcessPoolExecutor, "submit", refuse)
    verifiers = Verifiers(threads=1, processes=2)
    try:
        assert verifiers.check(PUBLIC, _pairs(3, bad={1})) == [True, False]
    finally:
        verifiers.shutdown()


def test_a_process_that_does_not_answer_holds_up_no_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    verifiers = Verifiers(threads=1, processes=1)
    try:
        assert verifiers.check(PUBLIC, _pairs(1)) == [True]  # the pool is up
        [worker] = _workers(os.getpid())
        worker.suspend()
        monkeypatch.setattr("hub.ingest.verifying.CHECK_TIMEOUT_S", 0.5)
        started = time.monotonic()
        assert verifiers.check(PUBLIC, _pairs(3, bad={2})) == [True, True, False]
        assert time.monotonic() - started < 5
        worker.resume()
    finally:
        verifiers.shutdown()
