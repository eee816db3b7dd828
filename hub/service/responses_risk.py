"""The shapes of the offline limits' and the exposure's JSON answers (``hub.service.routes.risk``,
``hub.service.routes.devices``), declared for the OpenAPI document like the rest
(``hub.service.responses``)."""

from __future__ import annotations

from hub.service.responses import Answer


class MerchantLimits(Answer):
    merchant_id: str
    max_amount: int
    max_card_day: int
    max_device_total: int
    max_offline_seconds: int
    version: int


class DeviceLimits(Answer):
    """Signed by the hub over ``b"cardhub/limits/v1\\n"`` + canonical(all but ``sig``). The four
    limits are null, and ``version`` 0, while the merchant has none."""

    device: str
    merchant_id: str
    max_amount: int | None
    max_card_day: int | None
    max_device_total: int | None
    max_offline_seconds: int | None
    version: int
    issued_at: str
    sig: str


class NegativeBalances(Answer):
    accounts: int
    fen: int


class Flagged(Answer):
    flag: str
    events: int
    fen: int


class OfflineDevice(Answer):
    device: str
    offline_events: int
    fen: int
    last_upload: str


class Exposure(Answer):
    negative_balances: NegativeBalances
    flagged: list[Flagged]
    devices: list[OfflineDevice]
