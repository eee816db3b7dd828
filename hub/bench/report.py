"""``cardhub bench``'s figures: one phase's measurements, and the table and JSON of a run."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


@dataclass
class Phase:
    name: str
    offered: str
    events: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    sent_at: list[float] = field(default_factory=list, repr=False)  # wall clock, beside latencies_ms (online phases)
    errors: int = 0
    shed: int = 0
    hub_cpu_s: float | None = None
    pg_cpu_s: float | None = None
    projections_cpu_s: float | None = None
    lag_p99_s: float | None = None
    lag_max_s: float | None = None
    hub_commit_p50_ms: float | None = None  # the hub's own enqueue-to-commit time (bucket bound)
    hub_commit_p99_ms: float | None = None
    recovery_s: float | None = None  # overload: from the end of the offered load to every backlog delivered
    wal_mb: float | None = None  # what the server wrote to its WAL meanwhile (its other phases' too, if they overlap)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float | None:
        return _quantile(self.latencies_ms, q) if self.latencies_ms else None

    def p99_per_second(self) -> list[float]:
        """The p99 of the requests sent in each second of the phase (online phases), in order."""
        if not self.sent_at:
            return []
        first = min(self.sent_at)
        seconds: dict[int, list[float]] = {}
        for sent, ms in zip(self.sent_at, self.latencies_ms, strict=True):
            seconds.setdefault(int(sent - first), []).append(ms)
        return [round(_quantile(seconds[s], 0.99), 1) for s in sorted(seconds)]

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "sent_at")}
        per_second = self.p99_per_second()
        data.update(events_per_s=round(self.rate, 1), p50_ms=self.percentile(0.50), p95_ms=self.percentile(0.95),
                    p99_ms=self.percentile(0.99), max_ms=max(self.latencies_ms) if self.latencies_ms else None,
                    p99_per_second_ms=per_second or None, worst_second_p99_ms=max(per_second) if per_second else None)
        return data


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.1f}{unit}"


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    names = ("sustained", "online", "lunch", "lunch backlogs", "overload", "after overload", "naive")
    phases = [results[name] for name in names if name in results]
    table = Table(title=f"cardhub bench — {results['cores']} cores", title_justify="left")
    table.add_column("", no_wrap=True)
    for phase in phases:
        table.add_column(phase["name"], justify="right", no_wrap=True)
    rows = [
        ("accepted events/s", "events_per_s", ""), ("latency p50", "p50_ms", " ms"),
        ("latency p95", "p95_ms", " ms"), ("latency p99", "p99_ms", " ms"), ("worst second's p99", "worst_second_p99_ms", " ms"),
        ("latency max", "max_ms", " ms"),
        ("hub CPU", "hub_cpu_s", " s"), ("projections CPU", "projections_cpu_s", " s"),
        ("PostgreSQL CPU", "pg_cpu_s", " s"), ("WAL written", "wal_mb", " MB"),
        ("projection lag p99", "lag_p99_s", " s"), ("projection lag max", "lag_max_s", " s"),
        ("hub commit p50 ≤", "hub_commit_p50_ms", " ms"), ("hub commit p99 ≤", "hub_commit_p99_ms", " ms"),
        ("seconds measured", "seconds", ""), ("recovery", "recovery_s", " s"),
    ]
    for label, key, unit in rows:
        table.add_row(label, *(fmt(p.get(key), unit) for p in phases))
    table.add_row("rejected or missed", *(str(p["errors"]) for p in phases))
    table.add_row("503 answers", *(str(p["shed"]) for p in phases))
    Console(width=max(console.width, 110)).print(table)
    for phase in phases:
        console.print(f"  {phase['name']}: {phase['offered']}")
        if phase.get("p99_per_second_ms"):
            console.print(f"    p99 per second: {' '.join(f'{ms:.0f}' for ms in phase['p99_per_second_ms'])} ms")
    per_event = [f"{p['wal_mb'] * 1024 / p['events']:.1f} KB {p['name']}" for p in phases
                 if p["name"] in ("sustained", "online") and p.get("wal_mb") is not None and p["events"]]
    if per_event:
        console.print(f"WAL per accepted event: {', '.join(per_event)}")
    check = results["acknowledged_vs_stored"]
    console.print(f"acknowledged as accepted: {check['accepted_answers']:,}; swipes in the event store: "
                  f"{check['swipes_stored']:,}; acknowledged but not stored: {max(0, check['lost']):,}")
    ceiling = results["ed25519_verifies_per_s"]
    figures = ", ".join(f"{v:,}/s on {k.replace('_', ' ')}" for k, v in ceiling.items())
    console.print(f"Ed25519 verify ceiling: {figures}")
    ratios = results["ratios"]
    console.print(f"sustained / naive = {ratios['sustained_over_naive']}×; "
                  f"sustained / 1-thread verify ceiling = {ratios['sustained_over_verify_ceiling_1_thread']}")
    rss = results["hub_rss_mb"]
    console.print(f"hub RSS: {rss['first']} MB before the sustained phase, {rss['after_tenth']} MB after a tenth "
                  f"of it, {rss['last']} MB at its end, peak {rss['peak']} MB")
    write_figures(results, args.json or Path("bench.json"))


def write_figures(results: dict[str, Any], out: Path) -> None:
    """The run's figures as JSON, where the report says."""
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"written to {out}")
