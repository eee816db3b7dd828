"""Virtual cards in the pure domain (DESIGN §10): a Card of kind virtual, the counters of the
codes it paid with (the latest 256 one by one, a floor below them), and the stored shapes of
cards from before virtual cards (class version 3)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from domain import ids, paycode
from domain.actors import CLI
from domain.application import CampusCard
from domain.cards import CODES_KEPT, PHYSICAL, Card
from domain.errors import Conflict, Invalid
from domain.wire import public_key_b64

HUB = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def register(app: CampusCard, account_id: str = "s1", key: str | None = None) -> Card:
    key = key or public_key_b64(Ed25519PrivateKey.generate().public_key())
    return app.register_virtual_card(
        account_id, key, "phone", actor=CLI,
        certify=lambda uid: paycode.make_cert(uid, key, NOW + timedelta(days=365), HUB),
        new_uid=lambda: paycode.virtual_uid(secrets.token_bytes(7)))


def campus() -> CampusCard:
    app = CampusCard(clock=lambda: NOW)
    app.open_account("s1", "韩梅梅", "student", actor=CLI)
    return app


def test_a_virtual_card_is_a_card_of_its_account_with_its_cert() -> None:
    app = campus()
    card = register(app)
    stored = app.repository.get(ids.card_id(card.card_uid))
    assert (stored.kind, stored.status, stored.account_id, stored.label) == ("virtual", "active", "s1", "phone")
    assert stored.cert["card"] == card.card_uid and stored.valid_until == stored.cert["valid_until"]
    assert app.get_account("s1").card_uids == [card.card_uid]


def test_a_cert_for_another_uid_or_key_is_a_programmers_error() -> None:
    app = campus()
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AssertionError):
        app.register_virtual_card("s1", key, "x", actor=CLI, new_uid=lambda: "F000000000000001",
                                  certify=lambda uid: paycode.make_cert("F000000000000002", key, NOW, HUB))


def test_a_key_that_is_not_ed25519s_is_invalid_and_a_uid_collision_draws_again() -> None:
    app = campus()
    with pytest.raises(Invalid) as refused:
        register(app, key="AAAA")
    assert refused.value.field == "public_key"
    first = register(app)
    uids = iter([first.card_uid, first.card_uid, "F0000000000000AA"])
    key = public_key_b64(Ed25519PrivateKey.generate().public_key())
    card = app.register_virtual_card("s1", key, "x", actor=CLI, new_uid=lambda: next(uids),
                                     certify=lambda uid: paycode.make_cert(uid, key, NOW, HUB))
    assert card.card_uid == "F0000000000000AA"


def test_revoking_is_for_live_virtual_cards_only() -> None:
    app = campus()
    app.issue_card("C0000001", "s1", actor=CLI)
    with pytest.raises(Conflict) as chip:
        app.revoke_virtual_card("C0000001", actor=CLI)
    assert chip.value.code == "not_virtual"
    card = register(app)
    app.report_lost(card.card_uid, actor=CLI)
    assert app.revoke_virtual_card(card.card_uid, actor=CLI).status == "revoked"  # a lost phone too
    with pytest.raises(Conflict):
        app.revoke_virtual_card(card.card_uid, actor=CLI)


def test_codes_used_are_kept_one_by_one_and_below_the_floor_all_count() -> None:
    card = register(campus())
    for n in range(10, 10 + CODES_KEPT):
        card.use_code(n, "pos-1", n)
    assert card.n_floor == -1 and card.code_used(10) and not card.code_used(9) and not card.code_used(5000)
    card.use_code(5000, "pos-1", 1)  # the set overflows: its smallest goes under the floor
    assert card.n_floor == 10 and card.code_used(3) and card.code_used(10) and not card.code_used(4999)
    assert len(card.used_n) == CODES_KEPT


@given(ns=st.lists(st.integers(min_value=0, max_value=2**53 - 1), unique=True, max_size=300))
def test_every_code_used_counts_as_used_whatever_the_order(ns: list[int]) -> None:
    card = Card.issue_virtual("F000000000000001", "s1", "k", "x",
                              {"card": "F000000000000001", "key": "k", "valid_until": "", "sig": ""}, CLI)
    for i, n in enumerate(ns):
        assert not card.code_used(n) or n <= card.n_floor
        if not card.code_used(n):
            card.use_code(n, "pos-1", i + 1)
        assert card.code_used(n)
    assert all(card.code_used(n) for n in ns) and len(card.used_n) <= CODES_KEPT


def test_a_card_snapshot_from_before_virtual_cards_is_a_chip_card() -> None:
    app = campus()
    card = app.issue_card("C0000001", "s1", actor=CLI)
    kept = {k: v for k, v in vars(card).items() if k in ("card_uid", "account_id", "status", "offline_fen",
                                                          "_created_on", "_modified_on")}
    app.snapshots.put([Snapshot(  # type: ignore[call-arg]
        originator_id=card.id, originator_version=card.version, timestamp=Snapshot.create_timestamp(),
        topic=get_topic(Card), state={**kept, "class_version": 2},
    )])
    restored = app.repository.get(card.id)
    assert (restored.kind, restored.public_key, restored.cert, restored.used_n, restored.n_floor) == (
        PHYSICAL, None, None, [], -1)
    taken = Snapshot.take(restored)
    assert taken.state["class_version"] == 3 and vars(taken.mutate(None)) == vars(restored)
