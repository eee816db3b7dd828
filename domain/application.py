"""The use cases of the card office and of device ingest, on the eventsourcing Application.

Every method is synchronous and must be called from one writer thread per process
(the hub's ``IngestWriter``): the aggregate cache is authoritative only while a
single writer changes the aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import EnvType

from domain import ids, limits, personal
from domain.access import Zone
from domain.actors import Actor, check
from domain.accounts import CATEGORIES, Account
from domain.cards import ACTIVE, LOST, Card
from domain.devices import DEVICE_KINDS, MERCHANT_CATEGORIES, Device, Merchant, SwipeLog
from domain.errors import AlreadyExists, Conflict, Forbidden, Invalid, NotFound
from domain.money import MoneyOffice
from domain.pins import PinOffice
from domain.reads import Access, ReadOf, record_read
from domain.recording import Item, SwipeRecorder, UploadOutcome, rejected
from domain.tokens import TokenOffice
from domain.virtual_cards import VirtualCardOffice
from domain.wire import public_key_from_b64
from domain.workspace import Workspace

__all__ = ["CampusCard", "Item", "UploadOutcome", "Workspace", "rejected", "utc_now"]  # re-exported for callers

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class CampusCard(MoneyOffice, PinOffice, TokenOffice, VirtualCardOffice, SwipeRecorder, Application):
    """cardhub's event-sourced application: the system of record."""

    name = "cardhub"
    snapshotting_intervals = {Account: 200, SwipeLog: 500, Access: 200, Card: 200}  # noqa: RUF012
    workspace_class: ClassVar[type[Workspace]] = Workspace

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        timezone: ZoneInfo | None = None,
        clock: Callable[[], datetime] = utc_now,
        keys: personal.Keystore | None = None,
        hub_key: Ed25519PublicKey | None = None,
    ) -> None:
        """``keys``: where accounts' data keys live (DESIGN §12); in memory by default when the
        events are, else none: such an application (a reader of the store) opens no account.
        ``hub_key``: the hub's public key, which signs virtual cards' certs (DESIGN §10); an
        application that records swipes carrying payment codes is given it."""
        super().__init__(env)
        self.tz = timezone or ZoneInfo("Asia/Shanghai")
        self.clock = clock
        self.hub_key = hub_key
        in_memory = isinstance(self.recorder, POPOApplicationRecorder)
        self.keys: personal.Keystore | None = keys if keys is not None else personal.MemoryKeys() if in_memory else None

    def _now(self) -> str:
        return self.clock().isoformat()

    def _find(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _get(self, aggregate_id: UUID, what: str) -> Any:
        found = self._find(aggregate_id)
        if found is None:
            raise NotFound(f"{what} not found")
        return found

    def _refuse_existing(self, aggregate_id: UUID, what: str) -> None:
        if self._find(aggregate_id) is not None:
            raise AlreadyExists(f"{what} already exists")

    # -- merchants and devices ------------------------------------------

    def register_merchant(self, merchant_id: str, name: str, category: str, *, actor: Actor) -> Merchant:
        if category not in MERCHANT_CATEGORIES:
            raise Invalid(f"category must be one of {', '.join(MERCHANT_CATEGORIES)}", field="category")
        self._refuse_existing(ids.merchant_id(merchant_id), f"merchant {merchant_id}")
        merchant = Merchant(merchant_id=merchant_id, name=name, category=category, actor=check(actor))
        self.save(merchant)
        return merchant

    def set_merchant_limits(
        self, merchant_id: str, max_amount_fen: int, max_card_day_fen: int, max_device_total_fen: int,
        max_offline_seconds: int, *, actor: Actor,
    ) -> Merchant:
        """DESIGN §11: the merchant's offline limits, checked by the next online purchase (the
        writer decides on this aggregate) and told to its devices with a new version."""
        new = limits.checked(max_amount_fen, max_card_day_fen, max_device_total_fen, max_offline_seconds)
        merchant: Merchant = self._get(ids.merchant_id(merchant_id), f"merchant {merchant_id}")
        merchant.set_limits(new, check(actor))
        self.save(merchant)
        return merchant

    def register_device(
        self, device_id: str, kind: str, public_key: str, merchant_id: str | None = None,
        zone: str | None = None, location: str | None = None, *, actor: Actor,
    ) -> Device:
        if kind not in DEVICE_KINDS:
            raise Invalid("kind must be pos or gate", field="kind")
        try:
            public_key_from_b64(public_key)
        except ValueError as exc:
            raise Invalid(f"public_key: {exc}", field="public_key") from None
        if kind == "pos":
            if merchant_id is None or zone is not None:
                raise Invalid("a pos device has a merchant_id and no zone", field="merchant_id")
            self._get(ids.merchant_id(merchant_id), f"merchant {merchant_id}")
        elif zone is None or merchant_id is not None:
            raise Invalid("a gate device has a zone and no merchant_id", field="zone")
        else:
            self._get(ids.zone_id(zone), f"zone {zone}")
        self._refuse_existing(ids.device_id(device_id), f"device {device_id}")
        device = Device(
            device_id=device_id, kind=kind, public_key=public_key,
            merchant_id=merchant_id, zone=zone, location=location, actor=check(actor),
        )
        self.save(device, SwipeLog(device_id=device_id, actor=actor))
        return device

    def revoke_device(self, device_id: str, *, actor: Actor) -> Device:
        device: Device = self._get(ids.device_id(device_id), f"device {device_id}")
        device.revoke(check(actor))
        self.save(device)
        return device

    def get_device(self, device_id: str) -> Device:
        return self._get(ids.device_id(device_id), f"device {device_id}")

    def next_seq(self, device_id: str) -> int:
        try:
            log: SwipeLog = self.repository.get(ids.swipe_log_id(device_id))
        except AggregateNotFoundError:
            return 1
        return log.next_seq

    # -- zones and access rules (DESIGN §3) -----------------------------

    def create_zone(self, zone: str, name: str, anti_passback: bool, *, actor: Actor) -> Zone:
        self._refuse_existing(ids.zone_id(zone), f"zone {zone}")
        created = Zone(zone=zone, name=name, anti_passback=anti_passback, actor=check(actor))
        self.save(created)
        return created

    def get_zone(self, zone: str) -> Zone:
        return self._get(ids.zone_id(zone), f"zone {zone}")

    def add_access_rule(
        self, zone: str, group: str, days: list[str], start: str, stop: str, *, actor: Actor
    ) -> dict[str, Any]:
        """Takes effect for the next online gate decision: the writer decides on this aggregate."""
        found = self.get_zone(zone)
        rule = found.add_rule(group, days, start, stop, check(actor))
        self.save(found)
        return rule

    # -- accounts and cards ----------------------------------------------

    def open_account(
        self, account_id: str, name: str, category: str, groups: Sequence[str] = (),
        daily_limit_fen: int | None = None, valid_from: datetime | None = None,
        valid_until: datetime | None = None, *, actor: Actor,
    ) -> Account:
        if category not in CATEGORIES:
            raise Invalid(f"category must be one of {', '.join(CATEGORIES)}", field="category")
        if daily_limit_fen is not None and daily_limit_fen < 0:
            raise Invalid("daily_limit must be >= 0 fen", field="daily_limit")
        if valid_from and valid_until and valid_until <= valid_from:
            raise Invalid("valid_until must be after valid_from", field="valid_until")
        self._refuse_existing(ids.account_id(account_id), f"account {account_id}")
        key = self._keystore().create(account_id)
        account = Account(
            account_id=account_id, name=personal.seal(key, account_id, "name", name),
            category=category, groups=list(groups),
            daily_limit_fen=daily_limit_fen,
            valid_from=valid_from.isoformat() if valid_from else None,
            valid_until=valid_until.isoformat() if valid_until else None, actor=check(actor),
        )
        self.save(account)
        return account

    def get_account(self, account_id: str) -> Account:
        return self._get(ids.account_id(account_id), f"account {account_id}")

    def erase_account(self, account_id: str, *, actor: Actor) -> Account:
        """Destroys the account's data key, which erases its personal fields from every event
        (DESIGN §12), and records ``Account.Erased``; the events themselves stay as they are."""
        account = self.get_account(account_id)
        account.erase(self._now(), check(actor))
        self._keystore().destroy(account_id)
        self.save(account)
        return account

    def _keystore(self) -> personal.Keystore:
        assert self.keys is not None, "this application has no keystore: it cannot seal or erase personal data"
        return self.keys

    def issue_card(self, card_uid: str, account_id: str, *, actor: Actor) -> Card:
        """Binds a new chip card; the account's lost chip cards become cancelled (补卡). Its
        virtual cards (DESIGN §10) are not counted: one active chip card per account."""
        account = self.get_account(account_id)
        account.refuse_if_closed()
        self._refuse_existing(ids.card_id(card_uid), f"card {card_uid}")
        cards = self._chip_cards_of(account)
        for old in cards:
            if old.status == ACTIVE:
                raise Conflict(f"account {account_id} already has an active card {old.card_uid}")
        replaced = [old for old in cards if old.status == LOST]
        for old in replaced:
            old.cancel(check(actor))
        card = Card(card_uid=card_uid, account_id=account_id, actor=check(actor))
        account.assign_card(card_uid, actor)
        self.save(card, account, *replaced)
        return card

    def report_lost(self, card_uid: str, *, actor: Actor, owner: str | None = None) -> Card:
        """``owner``: the account a cardholder acts for (DESIGN §10); its own cards only."""
        card = self._card_of(card_uid, owner)
        card.report_lost(check(actor))
        self.save(card)
        return card

    def report_found(self, card_uid: str, *, actor: Actor, owner: str | None = None) -> Card:
        """A chip card found again while the account has another active chip card, or a virtual
        one while it has three active virtual cards, is refused (409)."""
        card = self._card_of(card_uid, owner)
        account = self.get_account(card.account_id)
        account.refuse_if_closed()
        if card.is_virtual:
            self.refuse_more_virtual(account, but=card_uid)
        for other in self._chip_cards_of(account) if not card.is_virtual else []:
            if other.card_uid != card_uid and other.status == ACTIVE:
                raise Conflict(f"account {account.account_id} has another active card {other.card_uid}")
        card.report_found(check(actor))
        self.save(card)
        return card

    def _chip_cards_of(self, account: Account) -> list[Card]:
        cards: list[Card] = [self.repository.get(ids.card_id(uid)) for uid in account.card_uids]
        return [c for c in cards if not c.is_virtual]

    def _card_of(self, card_uid: str, owner: str | None) -> Card:
        """The card; for a cardholder (``owner``), one of its account's, and an unknown card is
        refused alike, so that the answer does not tell which cards exist."""
        card: Card | None = self._find(ids.card_id(card_uid))
        if owner is not None and (card is None or card.account_id != owner):
            raise Forbidden(f"card {card_uid} is not a card of account {owner}")
        if card is None:
            raise NotFound(f"card {card_uid} not found")
        return card

    def credit(self, account_id: str, kind: str, amount_fen: int, ref: str, *, actor: Actor,
               expires_at: datetime | None = None) -> tuple[Account, bool]:
        """A top-up (``topup``) or subsidy (``expires_at``: when what is left of it expires, DESIGN
        §11); returns the account and whether this ref is new. Grants due expire first."""
        def credit(workspace: Workspace) -> tuple[Account, bool]:
            account = self._account_in(workspace, account_id)
            expiry = expires_at.isoformat() if expires_at is not None else None
            return account, account.credit(kind, amount_fen, ref, self._now(), check(actor), expiry)
        return self._in_one_save(credit)

    # -- reads of a person (DESIGN §12) -------------------------------------

    def record_reads(self, reads: Sequence[ReadOf]) -> list[list[str]]:
        """Records reads of persons' records (``domain.reads``: coalesced within a second) in one
        save, before any of them is answered; returns, per read, the accounts it read."""
        return self._in_one_save(lambda workspace: [record_read(workspace, r, self.clock()) for r in reads])

    def _in_one_save(self, work: Callable[[Workspace], T]) -> T:
        """``work`` on one workspace, saved at once; nothing of it is stored if any of it fails."""
        workspace = self.workspace_class(self)
        try:
            done = work(workspace)
            workspace.save()
        except BaseException:
            workspace.discard()
            raise
        return done
