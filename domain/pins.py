"""The query PIN's use cases (DESIGN §10), mixed into the Application (``CampusCard``, whose
``get_account``, ``save`` and ``_now`` they use). The domain only keeps the PIN's hash, sealed
under the account's data key: the hub hashes and verifies (argon2id) off the writer thread, and
seals with the key it reads beside the event store."""

from __future__ import annotations

from typing import Any

from domain import personal
from domain.accounts import Account
from domain.actors import Actor, check


class PinOffice:
    get_account: Any
    save: Any
    _now: Any

    def pin_of(self, account_id: str) -> personal.Sealed | None:
        """The account's sealed PIN hash, None when it has none; ``NotFound``, or ``Conflict``
        when it is closed (or erased)."""
        account: Account = self.get_account(account_id)
        account.refuse_if_closed()
        return account.pin

    def set_pin(self, account_id: str, sealed: personal.Sealed, *, actor: Actor,
                replacing: personal.Sealed | None = None) -> Account:
        """Stores a PIN's hash, sealed by the caller with the account's data key; ``replacing``:
        the sealed hash a cardholder's old PIN was checked against (``Account.set_pin``)."""
        account: Account = self.get_account(account_id)
        account.set_pin(sealed, self._now(), check(actor), replacing)
        self.save(account)
        return account
