"""The ingest path's Prometheus metrics: events by outcome, shedding, signature checks, the
writer's queue and batches. ``hub.service.metrics.Metrics`` adds the service's own."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from domain.facts import UploadResult


class IngestMetrics:
    """In a registry of their own (tests run several hubs)."""

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

    def count_results(self, results: Iterable[UploadResult]) -> None:
        for result in results:
            outcome = result["code"] if result["status"] == "rejected" else result["decision"]
            self.events.labels(result["status"], outcome).inc()
