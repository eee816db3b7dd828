"""Devices under test against a real hub process: setting them up, a load of one purchase after
another that retries on 503 and on connection errors, and waiting for the views."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import aiohttp
import psycopg
from eventsourcing.utils import get_topic

from device_sim.device import SimDevice
from domain.application import CampusCard
from domain.devices import SwipeLog

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
DEVICES = 4
AMOUNT_FEN = 100
START_CASH = 10_000_000


@dataclass
class Load:
    """Devices uploading one purchase after another; every request's time and answer."""

    url: str
    devices: list[SimDevice]
    acknowledged: dict[str, dict[int, dict]] = field(default_factory=dict)
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)  # sent, seconds, status, code
    stop: bool = False

    async def run(self, session: aiohttp.ClientSession, device: SimDevice) -> None:
        n = 0
        while not self.stop:
            if not device.pending:
                device.purchase(f"ABCDEF0{device.device_id[-1]}", AMOUNT_FEN, NOON + timedelta(seconds=n))
                n += 1
            sent = time.monotonic()
            try:
                async with session.post(f"{self.url}/v1/devices/{device.device_id}/events",
                                        json={"events": device.batch(1)}) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status, body = 0, None
            self.answers.append((sent, time.monotonic() - sent, status, answer_code(status, body)))
            if status == 200:
                device.acknowledge(body["results"])
                for result in body["results"]:
                    if result["status"] in ("accepted", "duplicate"):
                        self.acknowledged.setdefault(device.device_id, {})[result["seq"]] = result
            else:
                await asyncio.sleep(0.05)


def answer_code(status: int, body: object) -> str:
    if status == 200 and isinstance(body, dict):
        return body["results"][0]["status"]
    return body.get("code", "") if isinstance(body, dict) else ""


async def setup_devices(session: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> list[SimDevice]:
    devices = []
    await post_created(session, url + "/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}, admin)
    for i in range(DEVICES):
        device = SimDevice(f"pos-{i}", "pos")
        await post_created(session, url + "/v1/devices", {"device_id": device.device_id, "kind": "pos",
                                                     "public_key": device.public_key, "merchant_id": "canteen-1"}, admin)
        await post_created(session, url + "/v1/accounts", {"account_id": f"s{i}", "name": "李雷", "category": "student"}, admin)
        await post_created(session, url + "/v1/cards", {"card_uid": f"ABCDEF0{i}", "account_id": f"s{i}"}, admin)
        await post_created(session, url + f"/v1/accounts/s{i}/topups", {"amount": START_CASH, "ref": f"t{i}"}, admin)
        devices.append(device)
    return devices


async def post_created(session: aiohttp.ClientSession, url: str, body: dict, headers: dict[str, str]) -> None:
    async with session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()


async def views_caught_up(session: aiohttp.ClientSession, url: str, timeout_s: float = 20) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/healthz") as resp:
                health = await resp.json() if resp.status == 200 else None
        except aiohttp.ClientError:
            health = None
        if health and all(p["lag_events"] == 0 for p in health["projections"].values()):
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError("the views did not catch up")


async def send_what_is_pending(session: aiohttp.ClientSession, load: Load, timeout_s: float = 30) -> None:
    """The devices send what was never acknowledged, as a device does: again on 503 or a lost connection."""
    deadline = time.monotonic() + timeout_s
    for device in load.devices:
        while device.pending:
            assert time.monotonic() < deadline, f"{device.device_id} could not deliver {len(device.pending)} events"
            try:
                async with session.post(f"{load.url}/v1/devices/{device.device_id}/events",
                                        json={"events": device.batch(10)}) as resp:
                    answer = await resp.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            if resp.status == 503:
                await asyncio.sleep(0.1)
                continue
            assert resp.status == 200, answer
            device.acknowledge(answer["results"])
            for result in answer["results"]:
                load.acknowledged.setdefault(device.device_id, {})[result["seq"]] = result


def stored_swipes(database_url: str) -> list[tuple[str, int]]:
    """(device, seq) of every device event in the database, read straight from its event table."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT state FROM {CampusCard.name}_events WHERE topic = %s",
                            (get_topic(SwipeLog.Recorded),)).fetchall()
    envelopes = [json.loads(bytes(state))["envelope"] for (state,) in rows]
    return [(envelope["device"], envelope["seq"]) for envelope in envelopes]
