"""What decoding an upload body costs per event: the strict JSON decoder of DESIGN §9
(``hub.service.http.decode_json`` + ``msgspec.convert``) and the envelope parser, on a typical
1-event and a 1,000-event body, against plain msgspec decoding. Prints figures; asserts nothing.

    python -m hub.bench.upload_decode
"""

from __future__ import annotations

import json
import timeit
from datetime import datetime, timedelta, timezone

import msgspec

from device_sim.device import SimDevice
from domain.wire import parse_envelope
from hub.service.http import decode_json
from hub.service.schemas import UploadIn


class RawUpload(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


def msgspec_only(raw: bytes) -> list:
    """The decoding before the §9 checks: msgspec, events as Raw, then each one decoded."""
    return [msgspec.json.decode(r) for r in msgspec.json.decode(raw, type=RawUpload, strict=True).events]


def strict(raw: bytes) -> list:
    return msgspec.convert(decode_json(raw), UploadIn, strict=True).events


def main() -> None:
    device = SimDevice("pos-1", "pos")
    at = datetime(2026, 11, 25, 12, tzinfo=timezone(timedelta(hours=8)))
    for n in range(1000):
        device.purchase("ABCDEF01", 100 + n, at)
    bodies = {"1 event": json.dumps({"events": device.pending[:1]}).encode(),
              "1,000 events": json.dumps({"events": device.pending}).encode()}
    for label, raw in bodies.items():
        events = len(json.loads(raw)["events"])
        number = max(20_000 // events, 20)
        for name, decode in (("msgspec only", msgspec_only), ("strict (§9)", strict)):
            seconds = min(timeit.repeat(lambda d=decode: d(raw), number=number, repeat=7)) / number
            print(f"{label:>12} {len(raw):>8,} B  {name:<13} {seconds * 1e6 / events:6.2f} µs/event")
        envelopes = strict(raw)
        seconds = min(timeit.repeat(lambda: [parse_envelope(e) for e in envelopes], number=number, repeat=7)) / number
        print(f"{label:>12} {'':>10}  {'parse_envelope':<13} {seconds * 1e6 / events:6.2f} µs/event")


if __name__ == "__main__":
    main()
