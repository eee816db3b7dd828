"""The money use cases of DESIGN §11, mixed into the Application (``CampusCard``, whose
``_in_one_save``, ``_stored_swipe``, ``clock`` and workspace they use): refunds of purchases,
closure of an account (销户), and the expiry of subsidy grants by the hub's clock.

Each runs in one workspace, saved at once: a refused command leaves nothing changed (the
writer's workspace drops what it loaded from the cache), and grants already due expire
first, in the same save, as at any command or swipe on the account."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from domain import ids
from domain.accounts import Account
from domain.actors import Actor, check
from domain.cards import Card
from domain.devices import SwipeLog
from domain.errors import Conflict, NotFound
from domain.workspace import Workspace

T = TypeVar("T")


class MoneyOffice:
    clock: Callable[[], datetime]
    _in_one_save: Callable[[Callable[[Workspace], Any]], Any]
    _stored_swipe: Callable[[str, int], Any]

    def _account_in(self, workspace: Workspace, account_id: str) -> Account:
        """The account, its grants due at the hub's clock expired (DESIGN §11)."""
        account: Account | None = workspace.find(ids.account_id(account_id))
        if account is None:
            raise NotFound(f"account {account_id} not found")
        workspace.changed(account.expire_due(self.clock()))
        return account

    def refund_purchase(self, account_id: str, device: str, seq: int, amount_fen: int, reason: str, ref: str,
                        *, actor: Actor) -> tuple[dict[str, Any], bool]:
        """Refunds all or part of an approved purchase of the account, recorded by ``device`` at
        ``seq`` (one read of the store). Returns the answer, with ``balance`` the account's total
        now (as a credit's answer has it), and whether the ref is new."""
        def refund(workspace: Workspace) -> tuple[dict[str, Any], bool]:
            account = self._account_in(workspace, account_id)
            answered = account.refund_answered(ref, device, seq, amount_fen)
            if answered is not None:  # answered as before, whatever happened since
                return {**answered, "balance": account.total_fen}, False
            account.refuse_if_closed()
            stored = self._stored_swipe(device, seq)
            if stored is None or stored.facts["account_id"] != account_id:
                raise NotFound(f"no purchase of account {account_id} recorded by {device} at seq {seq}")
            moved = stored.facts["subsidy_fen"] + stored.facts["cash_fen"]
            if stored.envelope["type"] != "purchase" or stored.result["decision"] != "approved" or moved <= 0:
                raise Conflict(f"{device} seq {seq} is a {stored.result['decision']} {stored.envelope['type']}:"
                               " only an approved purchase that moved money is refunded", code="not_refundable")
            log: SwipeLog = workspace.find(ids.swipe_log_id(device))
            answer = account.refund_purchase(
                stored.envelope, stored.facts, seq in log.reversed_seqs, amount_fen, reason, ref,
                self.clock().isoformat(), check(actor))
            workspace.changed(1 + account.expire_due(self.clock()))  # given back to an expired grant
            return {**answer, "balance": account.total_fen}, True
        return self._in_one_save(refund)  # type: ignore[no-any-return]

    def close_account(self, account_id: str, ref: str, *, actor: Actor) -> tuple[dict[str, Any], bool]:
        """销户: every card of the account cancelled (on the hotlist), the cash paid out, the
        subsidy expired. Returns the answer and whether it is new."""
        def close(workspace: Workspace) -> tuple[dict[str, Any], bool]:
            account = self._account_in(workspace, account_id)
            if account.closed is not None:
                return account.close(ref, [], self.clock(), check(actor))
            cards: list[Card] = [workspace.find(ids.card_id(uid)) for uid in account.card_uids]
            blocked = [c.card_uid for c in cards if c.cancel_for_closure(check(actor))]
            answer, created = account.close(ref, blocked, self.clock(), check(actor))
            workspace.changed(len(blocked) + len(account.grants) + 1)
            return answer, created
        return self._in_one_save(close)  # type: ignore[no-any-return]

    def expire_subsidies(self, account_ids: Sequence[str]) -> int:
        """The hub's clock (``hub.ingest.expiry``): expires what is due of these accounts' grants
        (accounts not found are skipped); returns the number of ``SubsidyExpired`` events."""
        def expire(workspace: Workspace) -> int:
            now, events = self.clock(), 0
            for account_id in account_ids:
                account: Account | None = workspace.find(ids.account_id(account_id))
                if account is not None:
                    expired = account.expire_due(now)
                    workspace.changed(expired)
                    events += expired
            return events
        return self._in_one_save(expire)  # type: ignore[no-any-return]
