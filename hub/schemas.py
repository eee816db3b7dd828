"""Request bodies of the card-office routes (DESIGN §1, §6), validated strictly at the edge."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MAX_INT = 2**53 - 1
AccountId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MerchantId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
CardUid = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-F]{8,20}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Group = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Fen = Annotated[int, msgspec.Meta(gt=0, le=MAX_INT)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Zone = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class MerchantIn(Strict):
    merchant_id: MerchantId
    name: Name
    category: Literal["dining", "supermarket", "laundry", "other"]


class DeviceIn(Strict):
    device_id: DeviceId
    kind: Literal["pos", "gate"]
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    merchant_id: MerchantId | None = None
    zone: Zone | None = None
    location: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class AccountIn(Strict):
    account_id: AccountId
    name: Name
    category: Literal["student", "staff", "visitor"]
    groups: Annotated[list[Group], msgspec.Meta(max_length=64)] = []
    daily_limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)] | None = None
    valid_from: str | None = None
    valid_until: str | None = None


class CardIn(Strict):
    card_uid: CardUid
    account_id: AccountId


class CreditIn(Strict):
    amount: Fen
    ref: Ref


class UploadIn(Strict):
    events: list[msgspec.Raw]


class ZoneIn(Strict):
    zone: Zone
    name: Name
    anti_passback: bool = False


HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]


class AccessRuleIn(Strict):
    zone: Zone
    group: Group
    days: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], msgspec.Meta(min_length=1, max_length=7)]
    start: HHMM = msgspec.field(name="from")
    stop: HHMM = msgspec.field(name="to")
