"""The hub's keystore of accounts' data keys (DESIGN §12, ``domain.personal.Keystore``): the table
``account_keys``, outside the event store, beside it in the same database.

A command that makes or destroys a key (``open_account``, ``erase_account``) leaves the change
here; the writer's recorder (``hub.ingest.recorder``) takes it and writes it in the transaction
that inserts the command's events. So an ``Account.Opened`` never commits without its key,
and an ``Account.Erased`` never without the key's destruction; a save that fails writes
neither (and ``IngestCampusCard.save`` drops what a failed command left here).

Destroying sets the key to NULL and ``erased_at``; the row stays, so that the account is
known to have had a key. PostgreSQL keeps the old row version in the table's files until its
space is reused or the table rewritten, and the WAL and backups keep it until they are
recycled or expire (README, "Erasing a person").
"""

from __future__ import annotations

from typing import NamedTuple

from psycopg.sql import SQL, Composed, Identifier

from domain import personal
from projections.queries import KEYS_TABLE


class KeyChange(NamedTuple):
    account_id: str
    key: bytes | None  # a new key, or None: destroy the account's key


class AccountKeys:
    """The writer thread's pending key changes (one command at a time)."""

    def __init__(self) -> None:
        self._pending: list[KeyChange] = []

    def create(self, account_id: str) -> bytes:
        key = personal.new_key()
        self._pending.append(KeyChange(account_id, key))
        return key

    def destroy(self, account_id: str) -> None:
        self._pending.append(KeyChange(account_id, None))

    def take(self) -> list[KeyChange]:
        """The changes to write with the events being inserted now."""
        taken, self._pending = self._pending, []
        return taken

    def discard(self) -> None:
        """The command failed before its events were inserted: its keys were never used."""
        self._pending.clear()


def create_statements(schema: Identifier) -> list[Composed]:
    return [SQL(
        "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
        " account_id text PRIMARY KEY, key bytea CHECK (key IS NULL OR length(key) = {key_bytes}),"
        " created_at timestamptz NOT NULL DEFAULT now(), erased_at timestamptz,"
        " CHECK ((key IS NULL) = (erased_at IS NOT NULL)))"
    ).format(schema=schema, table=Identifier(KEYS_TABLE), key_bytes=personal.KEY_BYTES)]


def with_changes(schema: Identifier) -> Composed:
    """The data-modifying ``WITH`` that goes before the statement inserting a command's events,
    so that its key changes and its events are one statement: one transaction, one round trip.
    Its parameters are ``parameters(changes)``. A second key for an account violates the
    primary key and fails the statement, events and all."""
    table = Identifier(KEYS_TABLE)
    return SQL(
        "WITH created AS (INSERT INTO {schema}.{table} (account_id, key)"
        " SELECT * FROM unnest(%b::text[], %b::bytea[])),"
        " destroyed AS (UPDATE {schema}.{table} SET key = NULL, erased_at = now()"
        " WHERE account_id = ANY(%b::text[]) AND key IS NOT NULL) "
    ).format(schema=schema, table=table)


def parameters(changes: list[KeyChange]) -> tuple[list[str], list[bytes], list[str]]:
    created = [(c.account_id, c.key) for c in changes if c.key is not None]
    destroyed = [c.account_id for c in changes if c.key is None]
    # One snapshot: the UPDATE would not see a row the INSERT adds (one command never does both).
    assert not {a for a, _ in created} & set(destroyed), changes
    return [a for a, _ in created], [k for _, k in created], destroyed
