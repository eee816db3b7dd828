"""``cardhub bench`` in miniature: every phase runs and reports, nothing acknowledged is lost.
It asserts nothing about speed (benchmarks print figures; CI does not judge them)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def test_a_small_bench_reports_every_phase_and_loses_nothing(tmp_path: Path) -> None:
    if os.environ.get("CARDHUB_DATABASE_URL"):
        pytest.skip("the bench starts its own embedded PostgreSQL")
    figures, trace = tmp_path / "bench.json", tmp_path / "trace.csv"
    result = subprocess.run(
        [*CLI, "bench", "--data-dir", str(tmp_path / "data"), "--devices", "4", "--accounts", "20",
         "--batch", "5", "--seconds", "2", "--max-rate", "200", "--online-rate", "50", "--online-seconds", "1",
         "--overload", "2", "--overload-seconds", "1", "--naive-seconds", "1", "--scenario", "lunch",
         "--lunch-batch", "50", "--json", str(figures), "--trace", str(trace)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(figures.read_text())
    for phase in ("sustained", "online", "lunch", "lunch backlogs", "overload", "after overload", "naive"):
        assert data[phase]["events"] > 0, (phase, data[phase])
    for phase in ("online", "lunch"):  # a p99 for each second of the phase
        assert len(data[phase]["p99_per_second_ms"]) == 1, data[phase]
        assert data[phase]["worst_second_p99_ms"] == max(data[phase]["p99_per_second_ms"])
    for phase in ("sustained", "online", "lunch", "overload"):  # what the server wrote meanwhile: a swipe's WAL
        assert data[phase]["wal_mb"] > 0, (phase, data[phase])
    assert "WAL per accepted event: " in result.stdout
    assert data["server"]["version"] and data["server"]["stalling_settings"] == []  # the embedded server's own settings
    assert data["acknowledged_vs_stored"]["lost"] == 0
    assert data["acknowledged_vs_stored"]["swipes_stored"] >= data["acknowledged_vs_stored"]["accepted_answers"] > 0
    with trace.open() as f:
        rows = list(csv.DictReader(f))
    assert {row["phase"] for row in rows} == {"online", "lunch", "after overload"}
    assert sum(row["phase"] == "online" for row in rows) == data["online"]["events"]


def test_the_flood_bench_reports_single_swipes_without_and_during_a_flood_and_beside_idle_connections(
    tmp_path: Path,
) -> None:
    if os.environ.get("CARDHUB_DATABASE_URL"):
        pytest.skip("the bench starts its own embedded PostgreSQL")
    figures = tmp_path / "flood.json"
    result = subprocess.run(
        [*CLI, "bench", "--flood", "--data-dir", str(tmp_path / "data"), "--devices", "4", "--accounts", "20",
         "--flood-rate", "20", "--flood-seconds", "1", "--idle-connections", "50", "--json", str(figures)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(figures.read_text())
    for phase in ("quiet", "during flood", "idle connections", "flood"):
        assert data[phase]["events"] > 0, (phase, data[phase])
    assert data["cores"] == os.cpu_count()
    assert data["idle_connections_held"]["opened"] == 50
