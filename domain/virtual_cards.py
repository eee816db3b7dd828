"""Virtual cards' use cases (DESIGN §10), mixed into the Application (``CampusCard``, whose
``get_account``, ``_find``, ``_card_of`` and ``save`` they use): a phone's key registered as a
card of its account, and revoked.

The hub's private key never reaches the domain: the caller passes ``certify``, which signs the
cert of the uid the domain chose (``domain.paycode.make_cert`` with the hub's key), and
``new_uid``, the hub's randomness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.accounts import Account
from domain.actors import Actor, check
from domain.cards import ACTIVE, Card
from domain.errors import Conflict, Invalid
from domain.wire import public_key_from_b64

MAX_ACTIVE_VIRTUAL = 3  # DESIGN §10: at most three active virtual cards per account
MAX_UID_TRIES = 16  # a random 56-bit uid collides about never; a loop has a bound all the same


class PhoneKey(Aggregate):
    """Which card a phone's public key was last registered for, so that a key is live (active or
    lost) on one card at most. Names no person: a key and a uid."""

    class Bound(Aggregate.Created):
        public_key: str
        card_uid: str
        actor: Actor

    class Rebound(Aggregate.Event):
        """The key registered again, after its card was revoked or cancelled."""

        card_uid: str
        actor: Actor

    @staticmethod
    def create_id(public_key: str) -> object:
        return ids.phone_key_id(public_key)

    @event(Bound)
    def __init__(self, public_key: str, card_uid: str, actor: Actor) -> None:
        self.public_key = public_key
        self.card_uid = card_uid

    def rebind(self, card_uid: str, actor: Actor) -> None:
        self._rebound(card_uid=card_uid, actor=actor)

    @event(Rebound)
    def _rebound(self, card_uid: str, actor: Actor) -> None:
        self.card_uid = card_uid


class VirtualCardOffice:
    get_account: Callable[[str], Account]
    _find: Callable[[Any], Any]
    _card_of: Callable[[str, str | None], Card]
    save: Callable[..., Any]

    def virtual_cards_of(self, account: Account) -> list[Card]:
        cards = [self._find(ids.card_id(uid)) for uid in account.card_uids]
        return [c for c in cards if c is not None and c.is_virtual]

    def register_virtual_card(
        self, account_id: str, public_key: str, label: str, *, certify: Callable[[str], dict[str, str]],
        new_uid: Callable[[], str], actor: Actor,
    ) -> Card:
        """A new active virtual card of the account for the phone's ``public_key``, with the cert
        ``certify`` signed for it. 422 a key that is not Ed25519's; 404 an unknown account; 409 a
        closed one, a key live (active or lost) on a card already (``key_in_use``), or a fourth
        active virtual card (``too_many_virtual_cards``)."""
        try:
            public_key_from_b64(public_key)
        except ValueError as exc:
            raise Invalid(f"public_key: {exc}", field="public_key") from None
        account = self.get_account(account_id)
        account.refuse_if_closed()
        key: PhoneKey | None = self._find(ids.phone_key_id(public_key))
        holder: Card | None = self._find(ids.card_id(key.card_uid)) if key is not None else None
        if holder is not None and holder.is_live:
            raise Conflict(f"this public key is registered for card {holder.card_uid} already", code="key_in_use")
        self.refuse_more_virtual(account)
        uid = self._new_uid(new_uid)
        card = Card.issue_virtual(uid, account_id, public_key, label, certify(uid), check(actor))
        account.assign_card(uid, actor)
        if key is None:
            key = PhoneKey(public_key=public_key, card_uid=uid, actor=actor)
        else:
            key.rebind(uid, actor)
        self.save(card, account, key)
        return card

    def refuse_more_virtual(self, account: Account, but: str | None = None) -> None:
        """409 ``too_many_virtual_cards`` when the account has its three active virtual cards
        (``but``: one of them not counted, the card being found again)."""
        active = [c.card_uid for c in self.virtual_cards_of(account) if c.status == ACTIVE and c.card_uid != but]
        if len(active) >= MAX_ACTIVE_VIRTUAL:
            raise Conflict(f"account {account.account_id} has {len(active)} active virtual cards already:"
                           f" {', '.join(active)}", code="too_many_virtual_cards")

    def revoke_virtual_card(self, card_uid: str, *, actor: Actor, owner: str | None = None) -> Card:
        """Revokes a virtual card for good (on the hotlist): ``owner``, the account a cardholder
        acts for (its own cards only). 409 twice, or for a chip card's uid (``not_virtual``)."""
        card = self._card_of(card_uid, owner)
        card.revoke(check(actor))
        self.save(card)
        return card

    def _new_uid(self, new_uid: Callable[[], str]) -> str:
        for _ in range(MAX_UID_TRIES):
            uid = new_uid()
            if self._find(ids.card_id(uid)) is None:
                return uid
        raise AssertionError(f"no unused card uid in {MAX_UID_TRIES} tries: is new_uid random?")
