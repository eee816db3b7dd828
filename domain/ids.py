"""Deterministic aggregate ids from natural keys, so a retry finds what the first try wrote."""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1d3c2a-6b0e-5c8e-9a51-3c1f0c4d2b7e")
# The ids every swipe needs are remembered: uuid5 (SHA-1) of the device, its chain, its merchant,
# the card and its account took 3.5 % of the hub's CPU at 1,000 online swipes/s. Bounded, as the
# keys come from requests.
_SWIPE_IDS = lru_cache(maxsize=1 << 15)


@_SWIPE_IDS
def account_id(account: str) -> UUID:
    return uuid5(NAMESPACE, f"account:{account}")


@_SWIPE_IDS
def card_id(card_uid: str) -> UUID:
    return uuid5(NAMESPACE, f"card:{card_uid}")


@_SWIPE_IDS
def device_id(device: str) -> UUID:
    return uuid5(NAMESPACE, f"device:{device}")


@_SWIPE_IDS
def swipe_log_id(device: str) -> UUID:
    """The per-device chain of swipes: version ``seq + 1`` holds the envelope of ``seq``."""
    return uuid5(NAMESPACE, f"swipes:{device}")


@_SWIPE_IDS
def merchant_id(merchant: str) -> UUID:
    return uuid5(NAMESPACE, f"merchant:{merchant}")


def zone_id(zone: str) -> UUID:
    return uuid5(NAMESPACE, f"zone:{zone}")


def token_id(jti: str) -> UUID:
    """A bearer token's facts (issued, revoked), found from the ``jti`` the token carries."""
    return uuid5(NAMESPACE, f"token:{jti}")


def access_id(account: str) -> UUID:
    """Who read the account's records (``domain.reads.Access``)."""
    return uuid5(NAMESPACE, f"reads:{account}")


def phone_key_id(public_key: str) -> UUID:
    """Which virtual card a phone's public key is registered for (``domain.virtual_cards.PhoneKey``)."""
    return uuid5(NAMESPACE, f"phone-key:{public_key}")
