"""The shapes of the hub's JSON answers, declared for the OpenAPI document (``hub.service.openapi``).

Handlers build their answers as dicts; schemathesis checks in the suite that every answer
matches the shape declared here. Fields a route leaves out when they do not apply have a
default (not required); extra fields are allowed, so a new field is not a breaking change."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Answer(msgspec.Struct):
    pass


class Problem(Answer):
    """RFC 9457 problem details; ``field`` names the input at fault."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None


class Merchant(Answer):
    merchant_id: str
    name: str
    category: str


class Device(Answer):
    device_id: str
    kind: str
    public_key: str
    merchant_id: str | None
    zone: str | None
    location: str | None
    revoked: bool


class Account(Answer):
    """``name`` is null, and ``erased`` true, once the account's data key was destroyed (DESIGN §12)."""

    account_id: str
    name: str | None
    erased: bool
    category: str
    groups: list[str]
    daily_limit: int | None
    valid_from: str | None
    valid_until: str | None
    erased_at: str | None = None


class Card(Answer):
    card_uid: str
    account_id: str
    status: str


class Balance(Answer):
    account_id: str
    cash: int
    subsidy: int
    total: int


class Credit(Answer):
    account_id: str
    kind: Literal["topup", "subsidy"]
    amount: int
    ref: str
    balance: Balance


class Refund(Answer):
    account_id: str
    device: str
    seq: int
    amount: int
    subsidy: int
    cash: int
    remaining: int
    ref: str
    reason: str
    balance: int  # the account's total (fen) just after the refund, as a swipe's result has it


class Closure(Answer):
    account_id: str
    closed_at: str
    payout: int
    expired_subsidy: int
    cards_blocked: list[str]


class UploadResult(Answer):
    seq: int | None
    status: Literal["accepted", "duplicate", "rejected"]
    decision: str | None = None
    reason: str | None = None
    balance: int | None = None
    code: str | None = None
    detail: str | None = None


class UploadAnswer(Answer):
    results: list[UploadResult]
    next_seq: int


class Hotlist(Answer):
    version: int
    full: bool
    added: list[str]
    removed: list[str]
    issued_at: str
    sig: str


class HubKey(Answer):
    public_key: str


class Transaction(Answer):
    kind: str
    amount: int
    subsidy: int
    cash: int
    balance: int | None
    recorded_at: str
    ref: str | None = None
    decision: str | None = None
    card: str | None = None
    device: str | None = None
    seq: int | None = None
    merchant_id: str | None = None
    at: str | None = None
    flags: list[str] = []
    reason: str | None = None
    merchant_name: str | None = None  # purchases, reversals, refunds: the merchant's, null when unknown
    location: str | None = None  # … and the device's location (a canteen's window), null when unknown
    medium: Literal["card", "phone"] | None = None  # … and paid by chip card or by phone (a virtual card, DESIGN §10)


class Transactions(Answer):
    items: list[Transaction]
    next: str | None


class Checkpoint(Answer):
    tree_size: int
    root_hash: str
    issued_at: str
    sig: str


class Leaves(Answer):
    start: int
    leaves: list[str]


class Proof(Answer):
    hashes: list[str]


class DeviceActor(Answer):
    device: str


class TokenActor(Answer):
    """A token's caller; ``{"role": "cli"}`` (no scope, no jti) for the command line."""

    role: str
    scope: str | None = None
    jti: str | None = None


class AuditEvent(Answer):
    envelope: dict[str, Any]
    result: dict[str, Any]
    recorded_at: str
    leaf_index: int | None
    actor: DeviceActor  # a swipe's actor is its device (DESIGN §12)


class Read(Answer):
    at: str
    role: str  # the reader's role
    what: Literal["account", "balance", "transactions", "cards", "access_log", "audit_events", "reads"]


class Reads(Answer):
    items: list[Read]
    next: str | None


class AuditEvents(Answer):
    items: list[AuditEvent]
    next: str | None


class Sums(Answer):
    count: int
    amount: int


class DeviceSettlement(Answer):
    device_id: str
    purchases: Sums
    reversals: Sums
    net: int
    refunds: Sums | None = None  # card-office refunds of its purchases of the day (DESIGN §11)


class Settlement(Answer):
    merchant_id: str
    date: str
    time_zone: str
    purchases: Sums
    reversals: Sums
    net: int
    devices: list[DeviceSettlement]
    refunds: Sums | None = None


class ZoneAnswer(Answer):
    zone: str
    name: str
    anti_passback: bool


class Rule(Answer):
    rule_id: str
    zone: str
    group: str
    days: list[str]
    start: str = msgspec.field(name="from")
    stop: str = msgspec.field(name="to")


class Inside(Answer):
    account_id: str
    since: str
    device: str


class Occupancy(Answer):
    zone: str
    anti_passback: bool
    count: int
    inside: list[Inside]


class GateRule(Answer):
    rule_id: str
    group: str
    days: list[str]
    start: str = msgspec.field(name="from")
    stop: str = msgspec.field(name="to")


class DeviceRules(Answer):
    device: str
    zone: str | None
    anti_passback: bool
    time_zone: str
    rules: list[GateRule]
    version: int
    hotlist_version: int
    issued_at: str
    sig: str


class AccessEntry(Answer):
    zone: str | None
    device: str
    seq: int
    card: str | None  # null: a payment code that resolved to no card (credential_invalid, DESIGN §10)
    account_id: str | None
    direction: str
    decision: str
    flags: list[str]
    offline: bool
    at: str
    recorded_at: str
    reason: str | None = None


class AccessLog(Answer):
    items: list[AccessEntry]
    next: str | None


class Actor(Answer):
    """Who acted: ``{"role", "scope", "jti"}`` for a token, ``{"role": "cli"}`` for the command line."""

    role: str
    scope: str | None = None
    jti: str | None = None


class TokenRecord(Answer):
    """An issued token's record (never the token)."""

    jti: str
    role: str
    scope: str | None
    kid: str
    issued_at: str
    expires_at: str
    issued_by: Actor
    revoked_at: str | None
    revoked_by: Actor | None


class PinSet(Answer):
    """The PIN is never in an answer: when it was set, by the hub's clock."""

    account_id: str
    pin_set_at: str


class Session(Answer):
    """A cardholder's bearer token for its own account (DESIGN §10), valid 12 h."""

    token: str
    expires_at: str
    account_id: str


class CardItem(Answer):
    """A chip card (``physical``), or a phone's virtual card with its ``label`` and its cert's
    ``valid_until`` (DESIGN §10)."""

    card_uid: str
    status: Literal["active", "lost", "cancelled", "revoked"]
    kind: Literal["physical", "virtual"]
    label: str | None = None
    valid_until: str | None = None


class Cards(Answer):
    items: list[CardItem]
    next: str | None


class Tokens(Answer):
    items: list[TokenRecord]
    next: str | None


class ProjectionPosition(Answer):
    position: int
    lag_events: int
    lag_seconds: float


class HealthProblem(Answer):
    """A projection that failed on an event (``position``) or lags more than 5 s; or a pool of
    the hub that cannot get a database connection (``pool``, e.g. ``cardhub projections``)."""

    error: str
    projection: str | None = None
    position: int | None = None
    lag_seconds: float | None = None
    failed_at: str | None = None
    pool: str | None = None


class Health(Answer):
    """``role``: ``active`` (holds the writer lock and writes) or ``standby`` (reads only; then
    ``active`` names the hub that writes, DESIGN §13)."""

    status: Literal["ok", "degraded"]
    role: Literal["active", "standby"]
    store_position: int
    projections: dict[str, ProjectionPosition]
    writer_queue: int
    problems: list[HealthProblem] | None = None
    active: str | None = None


class Document(Answer):
    """This OpenAPI document."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
