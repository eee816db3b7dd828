"""Reads of a person are themselves audited (DESIGN §12): ``Access`` is the log of who read one
account's records, each read an ``Access.Read`` event — a leaf of the audit log like any other.

What is read (``WHAT``): the ``account`` itself (its name), its ``balance``, its ``transactions``, its ``cards``, the
``access_log`` or the ``audit_events`` filtered by the account or one of its cards, and its
``reads`` (this log, read by anyone but the cardholder). The cardholder's own reads are not
recorded: the hub does not call ``read`` for them.

Coalescing: reads of one account by one actor of one kind within the same second of the hub's
clock are one event, the first; so a scraper paging through an account's records writes at most
one event a second per kind of record, while each kind read stays on the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.actors import Actor, check

WHAT = ("account", "balance", "transactions", "cards", "access_log", "audit_events", "reads")


class Access(Aggregate):
    class Opened(Aggregate.Created):
        """The log begins with the first read of the account, by its ``actor``."""

        account_id: str
        actor: Actor

    class Read(Aggregate.Event):
        account_id: str
        actor: Actor
        what: str  # one of WHAT
        at: str  # the hub's clock, RFC 3339

    @staticmethod
    def create_id(account_id: str) -> object:
        return ids.access_id(account_id)

    @event(Opened)
    def __init__(self, account_id: str, actor: Actor) -> None:
        self.account_id = account_id
        self.second = 0  # the second (Unix time) of the latest read recorded
        self.seen: list[str] = []  # what was read in that second, by whom (``_seen_key``)

    def read(self, actor: Actor, what: str, at: datetime) -> bool:
        """Records a read; returns False when it is coalesced with one already recorded."""
        assert what in WHAT, what
        assert at.tzinfo is not None, at
        if int(at.timestamp()) == self.second and _seen_key(actor, what) in self.seen:
            return False
        self._read(account_id=self.account_id, actor=actor, what=what, at=at.isoformat())
        return True

    @event(Read)
    def _read(self, account_id: str, actor: Actor, what: str, at: str) -> None:
        second = int(datetime.fromisoformat(at).timestamp())
        if second != self.second:
            self.second, self.seen = second, []
        self.seen.append(_seen_key(actor, what))


def _seen_key(actor: Actor, what: str) -> str:
    return json.dumps([actor, what], sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ReadOf:
    """A read to record: ``what`` ``actor`` read of the account named, directly or by one of its
    cards (either may be None)."""

    what: str
    actor: Actor
    account_id: str | None = None
    card_uid: str | None = None

    def __post_init__(self) -> None:
        assert self.what in WHAT, self.what
        check(self.actor)


class Loads(Protocol):
    """The aggregates one batch of commands touches (``domain.application.Workspace``)."""

    def find(self, aggregate_id: UUID) -> Any | None: ...

    def add(self, aggregate: Aggregate) -> Any: ...


def record_read(workspace: Loads, read: ReadOf, now: datetime) -> list[str]:
    """Records ``read`` in the read log of each account it names (none for an unknown account or
    card: no person's records were read); returns those accounts."""
    named = []
    if read.account_id is not None and workspace.find(ids.account_id(read.account_id)) is not None:
        named.append(read.account_id)
    card = workspace.find(ids.card_id(read.card_uid)) if read.card_uid is not None else None
    if card is not None and card.account_id not in named:
        named.append(card.account_id)
    for account_id in named:
        log = workspace.find(ids.access_id(account_id))
        if log is None:
            log = workspace.add(Access(account_id=account_id, actor=read.actor))
        log.read(read.actor, read.what, now)
    return named
