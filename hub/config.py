"""Settings: one frozen dataclass, read from the environment and the command line once."""

from __future__ import annotations

import argparse
import gc
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from projections.stats import DEFAULT_MEALS, parse_meals


DEFAULT_TIMEZONE = "Asia/Shanghai"
T = TypeVar("T", int, float)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver's can run to several), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Nearly all of the hub's garbage is freed by reference counting. With the default first
# threshold (700) the cyclic collector ran hundreds of times a second under load and promoted
# in-flight requests (in the projections' process, the staged rows of a flush), which set off
# full collections over everything long-lived: in one bench run 20 of them in the hub, up to
# 90 ms each, the online phase's whole p99; in the projections' process a full collection
# every 3.5 s (20–63 ms, collecting nothing). With 20,000 they are rare; cyclic garbage is
# still collected.
GC_THRESHOLD_0 = 20_000


def collect_rarely() -> None:
    """The cyclic collector's thresholds for a long-running process of the hub's (see above)."""
    gc.set_threshold(GC_THRESHOLD_0, 20, 20)


UPLOAD_MAX_EVENTS = 1000  # DESIGN §2: 1–1000 events per upload
# The command line's bounds on a simulated or benchmarked campus (DESIGN §9), generous for any campus.
DEVICES_MAX = 10_000
ACCOUNTS_MAX = 1_000_000


class ConfigError(ValueError):
    """A setting that cannot be used; the CLI prints it on one line and exits non-zero."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".cardhub")
    database_url: str | None = None  # CARDHUB_DATABASE_URL; None: embedded PostgreSQL
    host: str = "127.0.0.1"
    port: int = 8080
    timezone: str = DEFAULT_TIMEZONE  # CARDHUB_TIMEZONE
    queue_max_uploads: int = 4096  # uploads waiting for the writer before the hub sheds (503)
    queue_max_events: int = 10_000  # … or device events waiting (≈ 2–3 s of the writer's work here)
    batch_max_events: int = 2000  # events decided and committed in one writer transaction
    body_max_bytes: int = 1 << 20  # DESIGN §2: upload body ≤ 1 MiB
    upload_max_events: int = UPLOAD_MAX_EVENTS
    checkpoint_seconds: float = 10.0  # CARDHUB_CHECKPOINT_SECONDS: sign the growing audit tree this often
    checkpoint_events: int = 10_000  # CARDHUB_CHECKPOINT_EVENTS: … or after this many new events
    meals: str = DEFAULT_MEALS  # CARDHUB_MEALS: meal periods of the statistics, name=HH:MM-HH:MM,…
    idle_timeout_s: float = 15.0  # CARDHUB_IDLE_TIMEOUT_SECONDS: close a connection idle (or slow to send its headers) this long
    tls_cert: Path | None = None  # serve --tls-cert: HTTPS with this PEM certificate chain …
    tls_key: Path | None = None  # … and --tls-key, its private key (DESIGN §13)
    db_pool: int = 20  # CARDHUB_DB_POOL: server connections the hub may hold, split by hub.storage.budget

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls(
            database_url=env.get("CARDHUB_DATABASE_URL") or None,
            timezone=env.get("CARDHUB_TIMEZONE") or DEFAULT_TIMEZONE,
            checkpoint_seconds=_number(env, "CARDHUB_CHECKPOINT_SECONDS", 10.0, float),
            checkpoint_events=_number(env, "CARDHUB_CHECKPOINT_EVENTS", 10_000, int),
            meals=env.get("CARDHUB_MEALS") or DEFAULT_MEALS,
            idle_timeout_s=_number(env, "CARDHUB_IDLE_TIMEOUT_SECONDS", 15.0, float),
            db_pool=_count(env, "CARDHUB_DB_POOL", 20, DB_POOL_MAX),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        settings.zone()  # fail early on an unknown zone
        try:
            parse_meals(settings.meals)
        except ValueError as exc:
            raise ConfigError(f"CARDHUB_MEALS: {exc}") from None
        return settings

    def projection_settings(self) -> dict[str, str]:
        """What the projections depend on (local time, meal periods), for the hub and for a replay."""
        return {"CARDHUB_TIMEZONE": self.timezone, "CARDHUB_MEALS": self.meals}

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"CARDHUB_TIMEZONE: unknown time zone {self.timezone!r}") from None


DB_POOL_MAX = 10_000  # far above any server's max_connections: a bound, so that 2^63 is refused


def _count(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """A whole number of ASCII digits, 1 to ``maximum`` (``int()`` would take " 7", "٧" and "1_0")."""
    text = env.get(name)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"{name}: not a whole number: {text!r}")
    if len(text) > len(str(maximum)) or not 1 <= int(text) <= maximum:
        raise ConfigError(f"{name}: must be between 1 and {maximum}")
    return int(text)


def _number(env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T]) -> T:
    text = env.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}: not a number: {text!r}") from None
    if not value > 0:  # type: ignore[operator]
        raise ConfigError(f"{name}: must be greater than 0")
    return value


# Command-line numbers (DESIGN §9: every input has bounds). argparse's ``type=int`` takes
# " 7", "٧", "1_0" and 10**100, ``type=float`` "nan" and "1e300": each then failed later, with a
# traceback, or ran until it ran out of memory.

def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of ASCII digits from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
        if len(digits) > len(str(maximum)) or not minimum <= int(text) <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from {minimum:,} to {maximum:,}")
        return int(text)

    return parse


def real_number(low: float, high: float, *, low_included: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number above ``low`` (or at it, ``low_included``) and at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        above = value >= low if low_included else value > low
        if not (math.isfinite(value) and above and value <= high):
            raise argparse.ArgumentTypeError(
                f"must be a number {'from' if low_included else 'above'} {low:g} {'to' if low_included else 'and at most'} {high:g}")
        return value

    return parse
