"""Prometheus metrics of one hub, in a registry of its own (tests run several hubs)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from hub.ingest.metrics import IngestMetrics


class Metrics(IngestMetrics):
    """The ingest path's metrics (registered first, so ``/metrics`` lists them in the same order)
    and the projections' and the store's."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.projection_position = Gauge(
            "cardhub_projection_position", "Last notification id applied, per projection",
            ["projection"], registry=r,
        )
        self.projection_lag = Gauge(
            "cardhub_projection_lag_seconds", "How long ago the oldest event a projection has not applied was"
            " recorded; 0 when caught up", ["projection"], registry=r,
        )
        self.degraded = Gauge("cardhub_degraded", "1 when /healthz says degraded (a projection failing or lagging)",
                              registry=r)
        self.checkpoint_age = Gauge(
            "cardhub_checkpoint_age_seconds", "Seconds since the latest signed checkpoint while the audit tree has"
            " grown past it; 0 when it covers the tree", registry=r,
        )
        self.active = Gauge("cardhub_active", "1 while this hub holds the writer lock and writes; 0 while it stands by",
                            registry=r)
        self.store_position = Gauge("cardhub_store_position", "Last notification id in the event store", registry=r)
        self.store_reachable = Gauge("cardhub_store_reachable", "1 if the last health read reached the store", registry=r)
        self.projection_failures = Counter(
            "cardhub_projection_failures", "Failures of a projection on an event (it is retried)",
            ["projection"], registry=r,
        )
        self._failures_seen: dict[str, int] = {}

    def count_projection_failures(self, totals: dict[str, int], names: Iterable[str]) -> None:
        """Counts what the projections' process recorded since the last read (its table keeps
        a running total per projection: ``projections.failures``)."""
        for name in names:
            total = totals.get(name, 0)
            seen = self._failures_seen.get(name, 0)
            self.projection_failures.labels(name).inc(max(0, total - seen))
            self._failures_seen[name] = max(seen, total)
