"""``cardhub demo``: a fresh hub on the embedded PostgreSQL, a seeded campus, a lunch hour."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from device_sim.sim import print_report, simulate
from hub.config import ConfigError, Settings
from hub.keys import issue_token, load_key
from hub.spawn import free_port, port_is_free, wait_ready

console = Console()


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
    with log_path.open("ab") as log:
        hub = subprocess.Popen(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log, stderr=log,
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
