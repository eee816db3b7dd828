"""Request bodies of the card-office routes (DESIGN §1, §6), validated strictly at the edge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from domain.wire import MAX_SAFE_INT, RFC3339_PATTERN, UNSAFE_CHARS


def whole(pattern: str) -> str:
    """``pattern`` over the whole string (DESIGN §9: "S001\n" is not "S001"). msgspec matches with
    ``re.search``, where ``$`` also matches before a final newline; the lookahead rules that out,
    and in JSON Schema (ECMA 262), where ``$`` is the end already, it changes nothing."""
    return f"^(?:{pattern})$(?!\\n)"


MAX_CREDIT_FEN = 100_000_000  # DESIGN §9: a top-up or subsidy is at most ¥1,000,000
OPERATOR_MAX_CREDIT_FEN = 1_000_000  # DESIGN §12: an operator's credit or refund above ¥10,000 needs an admin
SAFE_TEXT = whole(f"[^{UNSAFE_CHARS}]*")  # no control or bidirectional character

AccountId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_-]{1,32}"))]
DeviceId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_.-]{1,64}"))]
MerchantId = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_.-]{1,64}"))]
CardUid = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9A-F]{8,20}"))]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_TEXT)]
Location = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_TEXT)]
Group = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_.:-]{1,64}"))]
Fen = Annotated[int, msgspec.Meta(ge=1, le=MAX_CREDIT_FEN)]
DailyLimitFen = Annotated[int, msgspec.Meta(ge=0, le=MAX_CREDIT_FEN)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=SAFE_TEXT)]
Zone = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9_.-]{1,64}"))]
Jti = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"))]
PublicKey = Annotated[str, msgspec.Meta(pattern=whole(r"[A-Za-z0-9+/]{1,96}={0,2}"))]
# An RFC 3339 date-time with an offset; the handler also bounds its year (domain.wire.parse_instant).
Instant = Annotated[str, msgspec.Meta(max_length=40, pattern=whole(RFC3339_PATTERN))]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class MerchantIn(Strict):
    merchant_id: MerchantId
    name: Name
    category: Literal["dining", "supermarket", "laundry", "other"]


class DeviceIn(Strict):
    device_id: DeviceId
    kind: Literal["pos", "gate"]
    public_key: PublicKey
    merchant_id: MerchantId | None = None
    zone: Zone | None = None
    location: Location | None = None


class AccountIn(Strict):
    account_id: AccountId
    name: Name
    category: Literal["student", "staff", "visitor"]
    groups: Annotated[list[Group], msgspec.Meta(max_length=64)] = []
    daily_limit: DailyLimitFen | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None


class CardIn(Strict):
    card_uid: CardUid
    account_id: AccountId


class VirtualCardIn(Strict):
    """A phone's Ed25519 public key (standard base64 of the raw 32 bytes) and a name for it (DESIGN §10)."""

    public_key: PublicKey
    label: Name


class CreditIn(Strict):
    amount: Fen
    ref: Ref


class SubsidyIn(Strict):
    """A subsidy grant (DESIGN §11): what is left of it expires at ``expires_at``, when given."""

    amount: Fen
    ref: Ref
    expires_at: Instant | None = None


Seq = Annotated[int, msgspec.Meta(ge=1, lt=MAX_SAFE_INT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_TEXT)]


class RefundIn(Strict):
    """A refund of all or part of the purchase ``device`` recorded at ``seq`` (DESIGN §11)."""

    device: DeviceId
    seq: Seq
    amount: Fen
    reason: Reason
    ref: Ref


class CloseIn(Strict):
    ref: Ref


class UploadIn(Strict):
    events: list[Any]  # each one checked by domain.wire.parse_envelope, so one bad event fails alone


class ZoneIn(Strict):
    zone: Zone
    name: Name
    anti_passback: bool = False


HHMM = Annotated[str, msgspec.Meta(pattern=whole(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00"))]


class AccessRuleIn(Strict):
    zone: Zone
    group: Group
    days: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], msgspec.Meta(min_length=1, max_length=7)]
    start: HHMM = msgspec.field(name="from")
    stop: HHMM = msgspec.field(name="to")


class LimitsIn(Strict):
    """A merchant's offline limits (DESIGN §11), every one required: fen, fen per card and local
    day, fen of a device's offline purchases since its last upload, seconds since that upload
    (the bounds are ``domain.limits.BOUNDS``, checked again by the domain)."""

    max_amount: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    max_card_day: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    max_device_total: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    max_offline_seconds: Annotated[int, msgspec.Meta(ge=1, le=2_592_000)]


# A query PIN (DESIGN §10): exactly six ASCII digits ("١٢٣٤٥٦" and full-width digits are not).
Pin = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9]{6}"), description="6 ASCII digits")]


class PinIn(Strict):
    """The card office sets ``pin``; the account's cardholder changes it, giving ``old_pin`` too."""

    pin: Pin
    old_pin: Pin | None = None


class SessionIn(Strict):
    account_id: AccountId
    pin: Pin
