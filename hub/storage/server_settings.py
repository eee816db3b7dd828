"""What the hub tells the administrator of an external PostgreSQL about its settings.

The embedded server is configured by the hub (``store.EMBEDDED_SETTINGS``); an external one is
left as its administrator set it, and only a superuser could change it. One of PostgreSQL's
defaults stalls the hub's commits every few seconds under load, so the hub says so in its log
at start, with what to set; the README's Operations section has the measurements.

``wal_init_zero = on`` (the default): every new 16 MB WAL segment is written full of zeros by
the backend that needs it, inside a commit, and every other commit waits for it. Sampled from
``pg_stat_activity`` against a Debian PostgreSQL 15 with its defaults (``cardhub bench
--scenario lunch --url …``): at 1,000 single swipes/s, about 5 KB of WAL a swipe, the hub's
writer waited on ``WALInitWrite`` for 157–218 ms every 2–3 s, the whole of the online p99
(121–147 ms); with only that setting off, it was 15–27 ms. A server stops creating
segments once it recycles old ones, but one that has not yet seen its busiest hour (a young
server, or a lunch burst larger than the last checkpoint cycle's WAL) creates them then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg

log = logging.getLogger(__name__)

# setting → (the value that stalls, what the log line says of it)
STALLING: Mapping[str, tuple[str, str]] = {
    "wal_init_zero": ("on", "each new 16 MB WAL segment is zero-filled inside a commit, and every commit waits for it"
                            " (150–220 ms, every few seconds at 1,000 swipes/s): set wal_init_zero = off"),
}


def stalling_settings(shown: Mapping[str, str]) -> list[str]:
    """The advice for each setting of ``shown`` (name → its ``pg_settings`` value) that stalls commits."""
    return [f"{name} = {shown[name]}: {advice}" for name, (value, advice) in STALLING.items()
            if shown.get(name, "").lower() == value]


def read_settings(conn: psycopg.Connection) -> dict[str, str]:
    """The server's current values of the settings ``STALLING`` names (absent if it has none)."""
    rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(STALLING),)).fetchall()
    return {str(name): str(setting) for name, setting in rows}


def advise(conn: psycopg.Connection) -> list[str]:
    """Logs a warning for each setting of the server that stalls the hub's commits (the hub calls
    it once, at start); returns them."""
    found = stalling_settings(read_settings(conn))
    for advice in found:
        log.warning("PostgreSQL setting %s (see the README, Operations)", advice)
    return found
