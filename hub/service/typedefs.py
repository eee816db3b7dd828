"""Typed keys of the aiohttp application (the resources ``create_app`` builds)."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.config import Settings
from hub.ingest.verifying import Verifiers
from hub.service.metrics import Metrics
from hub.service.seat import Seat
from hub.service.sign_in import SignIn
from hub.service.token_keys import TokenKeyring
from hub.service.token_registry import TokenRegistry

SETTINGS = web.AppKey("settings", Settings)
HUB_KEY = web.AppKey("hub_key", Ed25519PrivateKey)
METRICS = web.AppKey("metrics", Metrics)
SEAT = web.AppKey("seat", Seat)  # active or standby, and while active what it writes with
POOL = web.AppKey("pool", asyncpg.Pool)
VERIFIERS = web.AppKey("verifiers", Verifiers)
TOKEN_KEYS = web.AppKey("token_keys", TokenKeyring)
TOKENS = web.AppKey("tokens", TokenRegistry)
SIGN_IN = web.AppKey("sign_in", SignIn)
