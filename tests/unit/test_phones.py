"""The simulator's phones (device_sim.phones, DESIGN §10), without a hub: who pays by phone, and
what a POS without its link decides of a payment code — as the hub would, with domain.paycode."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.campus import Campus, cardholders, layout
from device_sim.day import campus_day
from device_sim.phone import SimPhone
from device_sim.phones import (
    CODE_SHOWN,
    CODES_KEPT,
    OWN_SESSION,
    PAYS_BY_PHONE,
    PHONE_MERCHANTS,
    OfflineCodes,
    fault_phone,
    pay_by_phone,
    phone_holders,
    phone_of,
    tampered,
)
from domain.paycode import make_cert, virtual_uid
from domain.wire import public_key_b64

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 25)
HUB = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"unit hub").digest())
AT = datetime(2026, 11, 25, 12, 1, 30, 250_000, tzinfo=TZ)


def campus(seed: int = 7, accounts: int = 1000) -> Campus:
    rng = random.Random(seed)
    return Campus(seed=seed, day=DAY, tz=TZ, pos=layout(seed, 24), cardholders=cardholders(seed, accounts, DAY, TZ, rng))


def registered(k: int = 1) -> SimPhone:
    phone = SimPhone(key=Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"phone {k}".encode()).digest()))
    phone.cert = make_cert(virtual_uid(bytes([k]) * 7), phone.public_key, AT + timedelta(days=365), HUB)
    return phone


def test_about_a_third_of_students_and_some_staff_hold_a_phone_and_the_first_pin_holders_register_it_themselves() -> None:
    place = campus()
    students = [c.account_id for c in place.cardholders if c.category == "student"][:6]
    pins = {account_id: "123456" for account_id in students}
    holders, own = phone_holders(place, pins)
    assert phone_holders(place, pins) == (holders, own)  # the same seed, the same phones
    by = Counter(c.category for c in holders)
    people = Counter(c.category for c in place.cardholders)
    assert 0.25 < by["student"] / people["student"] < 0.36 and 0 < by["staff"] < by["student"] / 3
    assert by["visitor"] == 0 and len({c.card for c in holders}) == len(holders)
    assert len(own) == OWN_SESSION and own <= {c.card for c in holders}
    assert own == {c.card for c in place.cardholders if c.account_id in students[:OWN_SESSION]}


def test_phone_holders_pay_a_share_of_their_canteen_and_market_purchases_by_code_and_the_day_stays_the_same() -> None:
    place = campus()
    plan = campus_day(place, random.Random(7))
    holders, _ = phone_holders(place, {})
    place.phones = {c.card: registered() for c in holders}
    paid = pay_by_phone(place, plan)
    assert [replace(p, phone=False) for p in paid] == plan  # only who pays how changes
    assert pay_by_phone(place, plan) == paid
    merchant_of = place.merchant_of
    eligible = [p for p in plan if p.card in place.phones and merchant_of[p.device_id] in PHONE_MERCHANTS]
    by_phone = [p for p in paid if p.phone]
    assert {merchant_of[p.device_id] for p in by_phone} == set(PHONE_MERCHANTS)  # never the laundry
    assert all(p.card in place.phones for p in by_phone)
    assert abs(len(by_phone) / len(eligible) - PAYS_BY_PHONE) < 0.05


def test_a_removed_phone_pays_no_more_and_is_the_one_its_fault_is_made_with() -> None:
    place = campus(accounts=50)
    plan = pay_by_phone(place, campus_day(place, random.Random(1)))
    assert not any(p.phone for p in plan)  # nobody holds a phone: every purchase by card
    first, second = registered(1), registered(2)
    phones = {"AAAAAAAA01": first, "AAAAAAAA02": second}
    purchase = replace(plan[0], card="AAAAAAAA01", phone=True)
    assert phone_of(phones, purchase) is first and phone_of(phones, replace(purchase, phone=False)) is None
    assert fault_phone(phones, revoked=False) is first and fault_phone(phones, revoked=True) is None
    first.revoked = True
    assert phone_of(phones, purchase) is None  # by card from now on
    assert fault_phone(phones, revoked=True) is first and fault_phone(phones, revoked=False) is second


def test_an_offline_pos_takes_a_good_code_once_and_refuses_a_replay_for_24_hours() -> None:
    pos, phone = OfflineCodes(), registered()
    code = phone.code(AT - CODE_SHOWN)
    checked, ok = pos.check(code, HUB.public_key(), AT, set())
    assert ok and checked.card_uid == phone.card_uid and checked.n == 1
    pos.accept(checked, AT)
    assert pos.check(code, HUB.public_key(), AT + timedelta(seconds=1), set())[1] is False  # a screenshot
    later = AT + CODES_KEPT
    assert pos.check(phone.code(later), HUB.public_key(), later, set())[1] and pos.accepted == {}  # forgotten
    other = phone.code(AT)
    assert pos.check(other, HUB.public_key(), AT, set())[1]  # a new counter is a new code


def test_an_offline_pos_refuses_an_old_doctored_forged_or_hotlisted_code_as_the_hub_would() -> None:
    pos, phone = OfflineCodes(), registered()
    old = phone.code(AT - timedelta(minutes=10))
    assert pos.check(old, HUB.public_key(), AT, set())[0].reason == "credential_expired"
    doctored = tampered(phone.code(AT))
    assert doctored != phone.code(AT) and len(doctored) == len(phone.code(AT))
    assert pos.check(doctored, HUB.public_key(), AT, set())[0].reason == "credential_invalid"
    rogue = Ed25519PrivateKey.generate()  # a cert the hub never signed
    forged = SimPhone(key=rogue, cert=make_cert(phone.card_uid, public_key_b64(rogue.public_key()), AT, rogue))
    assert pos.check(forged.code(AT), HUB.public_key(), AT, set())[0].reason == "credential_invalid"
    checked, ok = pos.check(phone.code(AT), HUB.public_key(), AT, {phone.card_uid})
    assert checked.ok and not ok  # its virtual card is on the hotlist: revoked or lost
    assert pos.accepted == {}


def test_a_phone_kept_between_runs_keeps_its_key_cert_and_counter() -> None:
    phone = registered(3)
    phone.code(datetime.now(UTC))
    phone.revoked = True
    again = SimPhone.from_json(phone.to_json())
    assert (again.public_key, again.cert, again.n, again.revoked) == (phone.public_key, phone.cert, 1, True)
