"""``cardhub bench``'s baselines: the naive path (one ``save()`` per swipe) and the Ed25519
ceiling of this machine, to set the batched pipeline's figures against."""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from device_sim.device import SimDevice
from domain.application import Item
from domain.wire import parse_envelope, public_key_from_b64, verify_envelope
from hub.bench.report import Phase
from hub.ingest.application import IngestCampusCard
from hub.service.app import application_env
from hub.storage.store import Database

AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD_PREFIX = "B0"


def card_uid(prefix: str, i: int) -> str:
    """The bench's cards: 8–20 uppercase hex characters, distinct per prefix and index."""
    return f"{CARD_PREFIX}{len(prefix):02X}{i:08X}"


def naive(data_dir: Path, args: argparse.Namespace, device: SimDevice) -> Phase:
    """The path without batching: verify, load the aggregates, one save() per swipe."""
    phase = Phase("naive", "one save() per swipe, one thread")
    url = args.url or embedded_url(data_dir)
    app = IngestCampusCard(env={k: v for k, v in application_env(Database.from_url(url)).items()
                                if not k.startswith("AGGREGATE_CACHE")})
    key = public_key_from_b64(device.public_key)
    for i in range(200_000):
        device.purchase(card_uid("naive", i % 50), 100, AT)
        if i > args.naive_seconds * 5000:
            break
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.naive_seconds and device.pending:
        envelope = device.pending.pop(0)
        s0 = time.perf_counter()
        assert verify_envelope(envelope, key)
        outcome = app.record_swipes([(device.device_id, [Item(parse_envelope(envelope), sig_ok=True)])])[0]
        phase.latencies_ms.append((time.perf_counter() - s0) * 1000)
        phase.events += outcome.results[0]["status"] == "accepted"
    phase.seconds = time.perf_counter() - t0
    app.close()
    return phase


def embedded_url(data_dir: Path) -> str:
    return f"postgresql://postgres@/cardhub?host={data_dir / 'pg'}"


def ceiling(device: SimDevice) -> dict[str, float]:
    """Ed25519 verifications per second on one thread and on one thread per core."""
    key = public_key_from_b64(device.public_key)
    envelopes = device.pending[:2000] or [device.purchase("B0000000", 1, AT)]

    def spin(seconds: float) -> int:
        n, stop = 0, time.perf_counter() + seconds
        while time.perf_counter() < stop:
            for e in envelopes[:200]:
                verify_envelope(e, key)
            n += min(200, len(envelopes))
        return n

    one = spin(2.0) / 2.0
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        many = sum(pool.map(spin, [2.0] * workers)) / 2.0
    return {"1_thread": round(one), f"{workers}_threads": round(many)}
