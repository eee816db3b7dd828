"""Prometheus metrics of one hub, in a registry of its own (tests run several hubs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "cardhub_device_events", "Device events by upload status and decision or code",
            ["status", "outcome"], registry=r,
        )
        self.shed = Counter("cardhub_shed_requests", "Requests refused with 503: writer queue full", registry=r)
        self.signature_checks = Counter(
            "cardhub_signature_checks", "Device signatures checked before the writer", registry=r,
        )
        self.queue_depth = Gauge("cardhub_writer_queue_depth", "Jobs waiting for the writer", registry=r)
        self.batch_events = Histogram(
            "cardhub_writer_batch_events", "Events per writer transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000), registry=r,
        )
        self.batch_seconds = Histogram(
            "cardhub_writer_batch_seconds", "Decide and commit time of one writer batch",
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1), registry=r,
        )
        self.upload_wait_seconds = Histogram(
            "cardhub_upload_commit_seconds", "From enqueue to commit, per upload",
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2), registry=r,
        )
        self.projection_position = Gauge(
            "cardhub_projection_position", "Last notification id applied, per projection",
            ["projection"], registry=r,
        )
        self.store_position = Gauge("cardhub_store_position", "Last notification id in the event store", registry=r)
        self.store_reachable = Gauge("cardhub_store_reachable", "1 if the last health read reached the store", registry=r)
        self.projection_failures = Counter(
            "cardhub_projection_failures", "Failures of a projection on an event (it is retried)",
            ["projection"], registry=r,
        )
        self._failures_seen: dict[str, int] = {}

    def count_results(self, results: Iterable[dict[str, Any]]) -> None:
        for result in results:
            outcome = result.get("decision") or result.get("code") or ""
            self.events.labels(result["status"], outcome).inc()

    def count_projection_failures(self, totals: dict[str, int], names: Iterable[str]) -> None:
        """Counts what the projections' process recorded since the last read (its table keeps
        a running total per projection: ``projections.failures``)."""
        for name in names:
            total = totals.get(name, 0)
            seen = self._failures_seen.get(name, 0)
            self.projection_failures.labels(name).inc(max(0, total - seen))
            self._failures_seen[name] = max(seen, total)
