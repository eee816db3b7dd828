"""Driving one simulated device through its swipes: online events one request each, events
kept while the device is offline uploaded in batches once it is back, every answer tallied."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_sim.client import HubClient, HubError
from device_sim.device import SimDevice
from device_sim.tally import Tally, acked
from domain.wire import canonical


@dataclass
class Link:
    """What every device shares: the hub, its public key, the upload size, the progress bar."""

    client: HubClient
    hub_key: Ed25519PublicKey
    batch: int
    on_progress: Callable[[int], None] = lambda n: None

    @classmethod
    async def open(cls, client: HubClient, batch: int) -> Link:
        _, key = await client.call("GET", "/v1/hub/key")
        return cls(client, Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])), batch)

    async def signed(self, device: SimDevice, what: str, prefix: bytes) -> dict[str, Any]:
        """A document the hub signs for devices (``hotlist``, ``rules``), checked before use."""
        _, document = await self.client.call("GET", f"/v1/devices/{device.device_id}/{what}")
        body = {k: v for k, v in document.items() if k != "sig"}
        try:
            self.hub_key.verify(base64.b64decode(document["sig"]), prefix + canonical(body))
        except InvalidSignature:
            raise HubError(f"{device.device_id}: the hub's signature on its {what} does not verify") from None
        return document


@dataclass
class Driver:
    """One device's link to the hub. ``offline``: the local [start, stop) it cannot reach it."""

    device: SimDevice
    tally: Tally
    merchant: str = ""
    offline: tuple[datetime, datetime] | None = None
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq → envelope, for the tally
    planned: set[int] = field(default_factory=set)  # seqs of planned swipes (what progress counts)

    def is_offline(self, at: datetime) -> bool:
        return self.offline is not None and self.offline[0] <= at < self.offline[1]

    def record(self, envelope: dict[str, Any], *, planned: bool = True) -> None:
        self.sent[envelope["seq"]] = envelope
        if planned:
            self.planned.add(envelope["seq"])

    async def upload_kept(self, link: Link) -> list[dict[str, Any]]:
        """Uploads what the device keeps, oldest first, until the hub has stored all of it;
        answers the last upload's results."""
        results: list[dict[str, Any]] = []
        while self.device.pending:
            size = link.batch if len(self.device.pending) > 1 else 1
            results = await link.client.upload(self.device, size)
            self.tally.add(self.merchant, self.sent, results)
            stored = acked(results)
            if not stored:
                codes = sorted({r.get("code", r["status"]) for r in results})
                raise HubError(f"{self.device.device_id}: the hub stored none of an upload ({', '.join(codes)})")
            link.on_progress(acked(results, self.planned))
        return results

    async def send_fault(self, link: Link, kind: str, envelope: dict[str, Any]) -> None:
        """Sends a faulty envelope outside the device's chain; the tally notes the answer."""
        answer = await link.client.send([envelope], self.device.device_id)
        self.tally.add_fault(kind, answer["results"])
