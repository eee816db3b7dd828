"""``cardhub demo``: a fresh hub on the embedded PostgreSQL, a seeded campus, a campus day
through the device simulator, its summary, the audit verification, then the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from rich.console import Console

from device_sim.campus import Cardholder
from device_sim.client import HubError
from device_sim.sim import simulate
from device_sim.summary import print_report
from hub.config import ConfigError, Settings
from hub.bench.spawn import check_port, free_port, wait_ready
from hub.service.keys import load_key
from hub.service.token_office import issue_from_data_dir

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
    from hub.storage.store import open_database
    from hub.audit.report import print_report as print_audit
    from hub.audit.verify import verify

    console.print("\n[bold]Audit[/]: re-checking every signature, chain, total and view from the event store")
    settings = Settings.from_env(data_dir=data_dir)
    with open_database(settings, shared=True) as database:
        report = verify(database, load_key(data_dir).public_key(), None, settings.projection_settings())
    print_audit(report)
    return report.ok


def _try_it(url: str, data_dir: Path, account: str, app_users: list[Cardholder], pins: dict[str, str]) -> None:
    """Where to look next, while the hub runs: the dashboard with a manager token, the phone
    app as a student with a PIN, a cardholder's balance, the CLI."""
    settings = Settings.from_env(data_dir=data_dir)
    manager, cardholder = issue_from_data_dir(settings, "manager"), issue_from_data_dir(settings, "cardholder", account)
    cardhub = _cardhub()
    console.print(
        f"\n[bold]Dashboard[/]: open {url}/dashboard in a browser and sign in by pasting this manager"
        " token into the page (it stays in the tab's session, never in the address):\n"
        f"  {manager}\n"
        f"  (another: {cardhub} token issue --role manager --data-dir {data_dir})\n",
        highlight=False, soft_wrap=True,
    )
    if app_users:
        student = app_users[0]
        console.print(
            f"[bold]Phone app (持卡人)[/]: open {url}/app (a phone, or a narrow window) and sign in as student"
            f" {student.account_id} with PIN {pins[student.account_id]}: balance, today's purchases, 挂失/解挂 of"
            f" card {student.card}.\n  Other students with a PIN: "
            + ", ".join(f"{c.account_id} / {pins[c.account_id]}" for c in app_users[1:]) + "\n",
            highlight=False, soft_wrap=True,
        )
    console.print(
        "Try it:\n"
        f"  curl -s -H 'Authorization: Bearer {cardholder}' {url}/v1/accounts/{account}/balance\n"
        f"  curl -s {url}/healthz\n"
        f"  {cardhub} token issue --role admin --data-dir {data_dir}\n"
        f"  {cardhub} audit verify --data-dir {data_dir}",
        highlight=False, soft_wrap=True,
    )


def _cardhub() -> str:
    """The command as the user can type it: ``cardhub`` when that is on PATH (an activated
    virtual environment), else the path they ran (``.venv/bin/cardhub``)."""
    ran, found = Path(sys.argv[0]), shutil.which("cardhub")
    if ran.name != "cardhub" or (found is not None and Path(found).resolve() == ran.resolve()):
        return "cardhub"
    return str(ran)


def run_demo(args: argparse.Namespace) -> int:
    demo_started = time.perf_counter()
    # Ctrl-C, or SIGTERM (a service manager, `timeout`; also SIGINT when a shell started us in
    # the background with it ignored), at any point of the run: stop the hub and its PostgreSQL
    # on the way out (the finally below), never leave them orphaned.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = Settings.from_env()
    if args.port:
        check_port("127.0.0.1", args.port, " (0: any free port)")  # ConfigError: one line, exit status 2
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cardhub-demo-"))
    remove = args.data_dir is None and not args.keep  # a directory the user named is never removed
    gone = " (removed on exit; --keep keeps it)" if remove else ""
    console.print(f"[bold]cardhub demo[/] — data in {data_dir}{gone}, hub at {url}", highlight=False)
    log_path = data_dir / "hub.log"
    hub = _start_hub(data_dir, port, log_path)
    try:
        status = _day(args, settings, url, hub, data_dir, demo_started)
        if not args.no_wait:
            console.print(f"\nThe hub keeps serving at {url}. Press Ctrl-C to stop it.")
            hub.wait()
    except KeyboardInterrupt:
        console.print("stopping the hub")
        status = 130
    except ConfigError as exc:
        console.print(f"cardhub demo: {exc}", style="red", highlight=False)
        status = 2
    except (HubError, aiohttp.ClientError) as exc:
        console.print(f"cardhub demo: {exc} (the hub's log: {log_path})", style="red", highlight=False)
        status = 1
    finally:
        stopped = _stop(hub)
    _leave(args, data_dir, remove and stopped, status, port)
    return status


def _start_hub(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    # A demo day is short: checkpoints every second, so the last one covers the whole day.
    env = {**os.environ, "CARDHUB_CHECKPOINT_SECONDS": os.environ.get("CARDHUB_CHECKPOINT_SECONDS", "1")}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from hub.cli import main; main()", "serve",
             "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log, stderr=log, env=env,
        )


def _day(args: argparse.Namespace, settings: Settings, url: str, hub: subprocess.Popen[bytes], data_dir: Path,
         demo_started: float) -> int:
    """The hub ready, the campus day, its summary and the audit: 0 when everything checked out."""
    started = time.perf_counter()
    with console.status("starting the hub and its embedded PostgreSQL"):
        asyncio.run(wait_ready(url, hub, data_dir / "hub.log"))
    console.print(f"hub ready in {time.perf_counter() - started:.1f} s")
    token = issue_from_data_dir(Settings.from_env(data_dir=data_dir), "admin")
    report = asyncio.run(simulate(
        url, token, seed=args.seed, devices=24, accounts=args.accounts, swipes=args.swipes,
        batch=20, offline_share=0.05, state=data_dir / "sim.json", tz=settings.zone(),
    ))
    print_report(report, console)
    asyncio.run(_fresh_checkpoint(url, token))
    audit_ok = _audit(data_dir)
    console.print(f"from start to the audit's verdict: {time.perf_counter() - demo_started:.0f} s")
    ok = report.ok and audit_ok
    if not ok:
        console.print("[red]the books, the statistics or the audit did not check out: see above[/]")
    if not args.no_wait:
        _try_it(url, data_dir, report.campus.cardholders[0].account_id, report.holders.active(report.campus),
                report.holders.pins)
    return 0 if ok else 1


def _leave(args: argparse.Namespace, data_dir: Path, remove: bool, status: int, port: int) -> None:
    """Removes the temporary data directory unless something failed (its hub.log says what);
    after --no-wait, one line on how to go on."""
    if status not in (0, 130):
        console.print(f"the hub's data and its log are kept in {data_dir}", highlight=False, soft_wrap=True)
        return
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
    if not args.no_wait:
        return
    if remove:
        line = f"The hub is stopped and its data removed ({_cardhub()} demo --keep keeps the data to serve it again)."
    else:
        line = f"The hub is stopped. To serve its data again: {_cardhub()} serve --data-dir {data_dir} --port {port}"
    console.print(f"\n{line}", highlight=False, soft_wrap=True)


def _stop(hub: subprocess.Popen[bytes]) -> bool:
    """Stops the hub (it drains, then stops its PostgreSQL), however the demo is leaving;
    True once it has exited."""
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C must not orphan the hub
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return False
    return True
