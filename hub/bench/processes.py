"""What a bench run's processes used: CPU seconds of the hub, its projections and PostgreSQL; the
WAL the server wrote; the hub's RSS."""

from __future__ import annotations

import time

import psutil
import psycopg

from hub.bench.report import Phase
from hub.ingest.verifying import WORKER_NAME as VERIFIER_NAME


class Processes:
    """CPU seconds and RSS of the hub process, of its projections' process and of the
    PostgreSQL server."""

    def __init__(self, hub_pid: int, pg_pid: int | None, db_url: str | None = None) -> None:
        self.hub = psutil.Process(hub_pid)
        self.pg_pid = pg_pid
        self.db_url = db_url  # where the WAL position is read (the server's own, embedded or not)
        self.peak_rss = 0
        self.rss_samples: list[tuple[float, int]] = []

    def _pg(self) -> list[psutil.Process]:
        if self.pg_pid is None:
            return []
        try:
            root = psutil.Process(self.pg_pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> tuple[float, float | None]:
        """The hub's CPU seconds — its process and its signature-checking ones — and PostgreSQL's."""
        times = self.hub.cpu_times()
        hub = times.user + times.system + _cpu_of(self._children(verifiers=True))
        if self.pg_pid is None:
            return hub, None
        return hub, _cpu_of(self._pg())

    def snapshot(self) -> tuple[float, float | None, float, int | None]:
        hub, pg = self.cpu()
        return hub, pg, self.projections_cpu(), self.wal_position()

    def charge(self, phase: Phase, before: tuple[float, float | None, float, int | None]) -> None:
        """Sets the phase's CPU seconds and WAL: what each process used, and the server wrote, since ``before``."""
        hub, pg, projections, wal = self.snapshot()
        phase.hub_cpu_s = round(hub - before[0], 1)
        phase.pg_cpu_s = round(pg - before[1], 1) if pg is not None and before[1] is not None else None
        phase.projections_cpu_s = round(projections - before[2], 1)
        phase.wal_mb = round((wal - before[3]) / 2**20, 3) if wal is not None and before[3] is not None else None

    def wal_position(self) -> int | None:
        """The server's WAL insert position in bytes (None if it cannot be read: a standby, a refused login)."""
        if self.db_url is None:
            return None
        try:
            with psycopg.connect(self.db_url, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row else None

    def projections_cpu(self) -> float:
        """The hub's child processes but its signature checkers: the projections (and multiprocessing's tracker)."""
        return _cpu_of(self._children(verifiers=False))

    def _children(self, *, verifiers: bool) -> list[psutil.Process]:
        try:
            children = self.hub.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if _is_verifier(p) == verifiers]

    def sample_rss(self) -> None:
        rss = self.hub.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        self.rss_samples.append((time.monotonic(), rss))


def _cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def _is_verifier(process: psutil.Process) -> bool:
    try:
        return process.name() == VERIFIER_NAME
    except psutil.Error:
        return False
