"""``cardhub demo``: a fresh hub on the embedded PostgreSQL, a seeded campus, a lunch hour."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from rich.console import Console

from device_sim.sim import print_report, simulate
from hub.config import ConfigError, Settings
from hub.keys import issue_token, load_key
from hub.spawn import free_port, port_is_free, wait_ready

console = Console()


async def _fresh_checkpoint(url: str, token: str, timeout_s: float = 5.0) -> None:
    """Waits for a checkpoint issued after now (the day's events are all projected by then)."""
    since = datetime.now(UTC)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{url}/v1/audit/checkpoint", headers=headers) as resp:
                checkpoint = await resp.json()
            if datetime.fromisoformat(checkpoint["issued_at"]) > since:
                return
            await asyncio.sleep(0.2)


def _audit(data_dir: Path) -> bool:
    """``cardhub audit verify`` on the demo's database, while the hub keeps running."""
    from hub.store import open_database
    from hub.verify import print_report as print_audit
    from hub.verify import verify

    console.print("\n[bold]Audit[/]: re-checking every signature, chain, total and view from the event store")
    with open_database(Settings.from_env(data_dir=data_dir), shared=True) as database:
        report = verify(database, load_key(data_dir).public_key())
    print_audit(report)
    return report.ok


def run_demo(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cardhub-demo-"))
    port = args.port if port_is_free(args.port) else free_port()
    url = f"http://127.0.0.1:{port}"
    console.print(f"[bold]cardhub demo[/] — data in {data_dir}, hub at {url}")
    log_path = data_dir / "hub.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    # A demo day is short: checkpoints every second, so the last one covers the whole day.
    env = {**os.environ, "CARDHUB_CHECKPOINT_SECONDS": os.environ.get("CARDHUB_CHECKPOINT_SECONDS", "1")}
    with log_path.open("ab") as log:
        hub = subprocess.Popen(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log, stderr=log, env=env,
        )
    try:
        started = time.perf_counter()
        with console.status("starting the hub and its embedded PostgreSQL"):
            asyncio.run(wait_ready(url, hub, log_path))
        console.print(f"hub ready in {time.perf_counter() - started:.1f} s")
        token = issue_token(load_key(data_dir), "admin")
        report = asyncio.run(simulate(
            url, token, seed=args.seed, devices=24, accounts=args.accounts, swipes=args.swipes,
            batch=20, offline_share=0.05, state=data_dir / "sim.json", tz=settings.zone(),
        ))
        print_report(report)
        asyncio.run(_fresh_checkpoint(url, token))
        audit_ok = _audit(data_dir)
        account = f"{args.seed}{0:06d}"
        cardholder = issue_token(load_key(data_dir), "cardholder", account)
        console.print(
            "\nTry it:\n"
            f"  curl -s -H 'Authorization: Bearer {cardholder}' {url}/v1/accounts/{account}/balance\n"
            f"  curl -s {url}/healthz\n"
            f"  cardhub token issue --role admin --data-dir {data_dir}\n"
            f"  cardhub audit verify --data-dir {data_dir}",
            highlight=False, soft_wrap=True,
        )
        ok = (report.books is None or report.books[0] == report.books[1]) and audit_ok
        if args.no_wait:
            return 0 if ok else 1
        console.print(f"\nThe hub keeps serving at {url}. Press Ctrl-C to stop it.")
        try:
            hub.wait()
        except KeyboardInterrupt:
            pass
        return 0 if ok else 1
    except ConfigError as exc:
        console.print(f"cardhub demo: {exc}", style="red")
        return 2
    finally:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            hub.wait(timeout=60)
