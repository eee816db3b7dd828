"""Personal fields sealed under an account's data key (DESIGN §12): AES-256-GCM with the account
and field as associated data, and erasure as a command of the pure domain (in-memory keys)."""

from __future__ import annotations

import base64

import pytest

from domain import personal
from domain.actors import CLI
from domain.application import CampusCard
from domain.errors import Conflict
from domain.personal import Sealed, Unreadable, new_key, seal, unseal

NAME = "李雷 Lǐ Léi"


def _flip(text: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_sealed_name_opens_with_its_key_account_and_field() -> None:
    key = new_key()
    sealed = seal(key, "S2026001", "name", NAME)
    assert len(key) == 32 and sealed["alg"] == "A256GCM"
    assert len(base64.b64decode(sealed["nonce"])) == 12
    assert len(base64.b64decode(sealed["ciphertext"])) == len(NAME.encode()) + 16  # the tag
    assert NAME.encode() not in base64.b64decode(sealed["ciphertext"])
    assert unseal(key, "S2026001", "name", sealed) == NAME
    assert unseal(key, "x", "name", seal(key, "x", "name", "a\x00b")) == "a\x00b"


def test_every_seal_takes_a_fresh_nonce() -> None:
    key = new_key()
    first, second = seal(key, "S1", "name", NAME), seal(key, "S1", "name", NAME)
    assert first["nonce"] != second["nonce"] and first["ciphertext"] != second["ciphertext"]


def test_a_sealed_value_moved_to_another_account_does_not_open() -> None:
    key = new_key()
    sealed = seal(key, "S1", "name", NAME)
    with pytest.raises(Unreadable, match="account S2"):
        unseal(key, "S2", "name", sealed)


def test_the_associated_data_names_the_account_and_the_field() -> None:
    assert personal.associated_data("S1", "name") == b"cardhub/personal/v1\nS1\nname"
    with pytest.raises(AssertionError):
        personal.associated_data("S1", "category")  # not a personal field


@pytest.mark.parametrize("part", ["ciphertext", "nonce"])
@pytest.mark.parametrize("at", [0, -1])  # the first byte; the last (of the ciphertext: the tag)
def test_a_tampered_value_does_not_open(part: str, at: int) -> None:
    key = new_key()
    sealed = seal(key, "S1", "name", NAME)
    tampered = Sealed(**{**sealed, part: _flip(sealed[part], at)})  # type: ignore[typeddict-item]
    with pytest.raises(Unreadable):
        unseal(key, "S1", "name", tampered)


def test_a_wrong_key_or_a_malformed_value_does_not_open() -> None:
    sealed = seal(new_key(), "S1", "name", NAME)
    with pytest.raises(Unreadable):
        unseal(new_key(), "S1", "name", sealed)
    for broken in ({**sealed, "nonce": "not base64!"}, {**sealed, "ciphertext": ""}, {"alg": "A256GCM"}):
        with pytest.raises(Unreadable):
            unseal(new_key(), "S1", "name", broken)  # type: ignore[arg-type]


def test_a_bare_string_is_the_plaintext_of_an_old_event() -> None:
    assert personal.from_stored("李雷") == {"alg": "none", "plaintext": "李雷"}
    sealed = seal(new_key(), "S1", "name", NAME)
    assert personal.from_stored(sealed) is sealed


def _campus() -> tuple[CampusCard, personal.MemoryKeys]:
    keys = personal.MemoryKeys()
    app = CampusCard(keys=keys)
    app.open_account("S1", NAME, "student", actor=CLI)
    return app, keys


def test_an_account_is_opened_with_its_name_sealed_under_a_new_key() -> None:
    app, keys = _campus()
    account = app.get_account("S1")
    key = keys.keys["S1"]
    assert key is not None and unseal(key, "S1", "name", account.name) == NAME
    [opened] = app.events.get(account.id)
    assert NAME.encode() not in app.mapper.to_stored_event(opened).state


def test_erasure_destroys_the_key_and_is_recorded_once() -> None:
    app, keys = _campus()
    app.close_account("S1", "close-1", actor=CLI)
    account = app.erase_account("S1", actor=CLI)
    assert keys.keys["S1"] is None and account.name is None and account.erased_at is not None
    erased = list(app.events.get(account.id))[-1]
    assert type(erased).__qualname__ == "Account.Erased"
    assert erased.account_id == "S1" and erased.erased_at == account.erased_at  # and nothing personal
    with pytest.raises(Conflict, match="was erased at") as again:
        app.erase_account("S1", actor=CLI)
    assert again.value.code == "erased"


def test_an_account_is_erased_only_once_closed() -> None:
    app, keys = _campus()
    app.issue_card("C0FFEE01", "S1", actor=CLI)
    app.report_lost("C0FFEE01", actor=CLI)
    app.credit("S1", "topup", 100, "r1", actor=CLI)
    with pytest.raises(Conflict, match="is not closed: close it first") as refused:
        app.erase_account("S1", actor=CLI)
    assert refused.value.code == "not_closed"
    assert keys.keys["S1"] is not None and app.get_account("S1").erased_at is None
    app.close_account("S1", "close-1", actor=CLI)
    assert app.erase_account("S1", actor=CLI).erased_at is not None


def test_an_erased_account_takes_no_card_no_found_card_and_no_credit() -> None:
    app, _ = _campus()
    app.issue_card("C0FFEE01", "S1", actor=CLI)
    app.report_lost("C0FFEE01", actor=CLI)
    app.close_account("S1", "close-1", actor=CLI)
    app.erase_account("S1", actor=CLI)
    for command in (lambda: app.issue_card("C0FFEE02", "S1", actor=CLI), lambda: app.report_found("C0FFEE01", actor=CLI),
                    lambda: app.credit("S1", "topup", 100, "r1", actor=CLI)):
        with pytest.raises(Conflict, match="was erased"):
            command()


def test_an_application_on_the_in_memory_store_keeps_its_keys_in_memory() -> None:
    assert isinstance(CampusCard().keys, personal.MemoryKeys)  # a reader of PostgreSQL has none
