"""The external server's settings that stall the hub's commits are named in its log, with what to set."""

from __future__ import annotations

from hub.storage.server_settings import stalling_settings
from hub.storage.store import EMBEDDED_SETTINGS


def test_a_server_that_zero_fills_its_wal_segments_is_told_to_stop() -> None:
    [advice] = stalling_settings({"wal_init_zero": "on", "max_wal_size": "1024"})
    assert advice.startswith("wal_init_zero = on: ") and advice.endswith("set wal_init_zero = off")


def test_a_server_without_the_setting_or_with_it_off_hears_nothing() -> None:
    assert stalling_settings({"wal_init_zero": "off"}) == []
    assert stalling_settings({}) == []  # a server without the setting (none the hub supports)


def test_the_embedded_servers_own_settings_stall_nothing() -> None:
    assert stalling_settings(EMBEDDED_SETTINGS) == []
