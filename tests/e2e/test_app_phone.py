"""This phone's card (本机电子卡, DESIGN §10) in the cardholders' app, in a real headless Chromium at
360×740 driven by Playwright: the student creates a card whose Ed25519 key WebCrypto made (never
extractable, kept in IndexedDB), the payment code is read back from a screenshot of its QR code
by a real decoder (zxing-cpp), checked with the hub's public key only, and paid with by a signed
POS; a code pays once, a new one comes on demand and every 30 s with a higher ``n`` (also across
a reload), and a removed phone's code is declined with its uid on the hotlist. The browser, the
hub, its views and the devices are real; nothing of ours is mocked."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Page

from device_sim.device import SimDevice
from device_sim.phone import SimPhone
from domain import paycode
from domain.wire import public_key_from_b64
from tests.conftest import Hub
from tests.e2e.browser import (ARTIFACTS, PHONE_WIDTH, WAIT_S, Console, add_merchants, add_tills, csp_violations,
                               wait_for)
from tests.e2e.browser import chromium, hub, phone_page  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(180)  # one test waits out the 30 s refresh

ACCOUNT, NAME, PIN = "2024000456", "李华", "246801"
MERCHANT = ("canteen-2", "第二食堂", "dining")
TILL = ("canteen-2-pos01", "canteen-2", "第二食堂 1号窗口")
APPEARS_WITHIN_S = 2.0  # the bar: a payment is in the student's list within 2 s
REFRESH_S = 30.0  # DESIGN §10: the code is refreshed every 30 s
MIN_MODULE_PX = 3  # a module of the QR code at least 3 CSS px wide, to be scanned off a 360 px screen

# The code on the page, from its machine-readable attributes; and the section's state.
READ_CODE = """() => {
  const qr = document.getElementById("paycode"), phone = document.getElementById("phone");
  return {state: phone.dataset.state, code: qr.dataset.code ?? null, card: qr.dataset.card ?? null,
          n: qr.dataset.n === undefined ? null : Number(qr.dataset.n), module_px: Number(qr.dataset.modulePx ?? 0),
          width: qr.width, css_width: qr.getBoundingClientRect().width,
          message: document.getElementById("phone-message").dataset.key ?? "",
          message_text: document.getElementById("phone-message").textContent,
          create: !document.getElementById("phone-create").hidden,
          countdown: document.getElementById("phone-countdown").textContent,
          scroll_width: document.documentElement.scrollWidth};
}"""
# This browser's IndexedDB record of the account, as the app keeps it (the keys are CryptoKeys).
READ_RECORD = """async (account) => {
  const done = (r) => new Promise((ok, no) => { r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const db = await done(indexedDB.open("cardhub.app"));
  const record = await done(db.transaction("phone-cards").objectStore("phone-cards").get(account));
  db.close();
  if (!record) return null;
  const key = record.keys.privateKey;
  let exported = "refused";
  try { await crypto.subtle.exportKey("pkcs8", key); exported = "exported"; } catch (e) { exported = e.name; }
  return {card_uid: record.card_uid, n: record.n, cert: record.cert, label: record.label,
          private: {type: key.type, extractable: key.extractable, algorithm: key.algorithm.name, usages: key.usages,
                    is_crypto_key: key instanceof CryptoKey, exported},
          fields: Object.keys(record).sort()};
}"""
# The app's own code maker, fed a vector's keys (imported: WebCrypto cannot take a raw seed).
VECTOR_CODE = """async ({seed, cert, t, n}) => {
  const { paymentCode } = await import("/app/app-phone.js");
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                                0x04, 0x20, ...seed.match(/../g).map((h) => parseInt(h, 16))]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, {name: "Ed25519"}, false, ["sign"]);
  return paymentCode({cert, n, keys: {privateKey}}, t);
}"""


# The phone section's state once it is known ("loading" while the browser's probe and record are read).
SETTLED = "!['', 'loading'].includes(document.getElementById('phone').dataset.state)" \
          " && document.getElementById('phone').dataset.state"
# Every state the section takes, and whether its create button was ever shown, as they happen.
STATES = """new MutationObserver(() => {
  const state = document.getElementById("phone").dataset.state;
  const create = document.getElementById("phone-create").hidden ? "" : "+create";
  (globalThis.phoneStates ??= []).push(state + create);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state", "hidden"]});"""
# A browser slow to answer the probe (a phone under load): the cards list comes back first.
SLOW_PROBE = """const generateKey = crypto.subtle.generateKey.bind(crypto.subtle);
crypto.subtle.generateKey = (...args) => new Promise((ok) => setTimeout(ok, 3000)).then(() => generateKey(...args));"""


async def student(hub: Hub) -> SimDevice:
    """A canteen window and a student with ¥80.00 of cash and the PIN the card office set, and no chip card."""
    await add_merchants(hub, [MERCHANT])
    [till] = await add_tills(hub, [TILL])
    await hub.account(ACCOUNT, name=NAME, cash=8000)
    await hub.post(f"/v1/accounts/{ACCOUNT}/pin", {"pin": PIN}, role="operator", expect=200)
    return till


async def sign_in(page: Page) -> None:
    await page.fill("#account-id", ACCOUNT)
    await page.fill("#pin", PIN)
    await page.click("#signin [type=submit]")
    await wait_for(page, "document.body.dataset.loaded === '1'")


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=ARTIFACTS / f"app-phone-{name}.png", full_page=True)


async def shown_code(page: Page, after_n: int = 0, timeout_s: float = WAIT_S) -> dict[str, Any]:
    """The code the page shows once its ``n`` is above ``after_n``."""
    await wait_for(page, f"Number(document.getElementById('paycode').dataset.n ?? 0) > {after_n}", timeout_s)
    return await page.evaluate(READ_CODE)


async def scanned(page: Page) -> str:
    """What a scanner reads off the QR code as the screen shows it (a screenshot of the canvas)."""
    image = Image.open(io.BytesIO(await page.locator("#paycode").screenshot()))
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"{len(found)} QR codes read off the screenshot"
    return found[0].text


async def pay(hub: Hub, till: SimDevice, code: str, amount_fen: int) -> tuple[dict[str, Any], float]:
    """The till scans the code and asks the hub online: its answer and the monotonic time it was sent."""
    envelope = till.purchase_by_code(code, amount_fen, datetime.now(UTC))
    assert "card" not in envelope and envelope["credential"] == code
    sent = time.monotonic()
    [result] = await hub.send(till)
    assert result["status"] == "accepted" and result["seq"] == envelope["seq"], result
    return result, sent


async def row_of(page: Page, seq: int) -> dict[str, Any]:
    """The transaction row of the till's event ``seq``, once the page shows it."""
    row = f"document.querySelector('#transactions li[data-seq=\"{seq}\"]')"
    return await wait_for(page, f"{row} && {{...{row}.dataset, text: {row}.innerText.replace(/\\s+/g, ' ')}}")


async def card_row(page: Page, uid: str, status: str) -> dict[str, Any]:
    row = f"document.querySelector('#cards li[data-card=\"{uid}\"]')"
    return await wait_for(page, f"{row}?.dataset.status === '{status}' && {{...{row}.dataset,"
                                f" button: {row}.querySelector('button')?.textContent ?? null}}")


async def test_a_student_pays_with_the_phone_s_qr_code_once_and_removes_the_phone(hub: Hub, page: Page) -> None:
    console = Console().attach(page)
    till = await student(hub)
    hub_key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    await page.goto(str(hub.client.make_url("/app")))
    await sign_in(page)
    assert await wait_for(page, SETTLED) == "none"
    await shot(page, "none")

    await page.click("#phone-create")
    first = await shown_code(page)
    assert first["state"] == "active" and first["n"] == 1 and first["message"] == "phoneCreated"
    uid = first["card"]
    assert paycode.VIRTUAL_UID_RE.fullmatch(uid)
    record = await page.evaluate(READ_RECORD, ACCOUNT)
    assert record["fields"] == ["account_id", "card_uid", "cert", "created_at", "keys", "label", "n"]
    assert (record["card_uid"], record["n"], record["label"]) == (uid, 1, "Linux · Chrome")
    assert record["private"] == {"type": "private", "extractable": False, "algorithm": "Ed25519", "usages": ["sign"],
                                 "is_crypto_key": True, "exported": "InvalidAccessError"}
    cards = await hub.get(f"/v1/accounts/{ACCOUNT}/cards", role="cardholder", scope=ACCOUNT)
    assert cards["items"][0]["card_uid"] == uid and cards["items"][0]["label"] == "Linux · Chrome"
    assert record["cert"]["card"] == uid
    assert await card_row(page, uid, "active") == {"card": uid, "status": "active", "kind": "virtual", "here": "1",
                                                   "button": None}  # removed in its own section, not here

    # The screen's QR code says exactly the code, and the code is good by the hub's key alone.
    assert first["module_px"] >= MIN_MODULE_PX and first["css_width"] == first["width"] <= PHONE_WIDTH
    assert first["scroll_width"] <= PHONE_WIDTH
    code = await scanned(page)
    assert code == first["code"] and code.startswith("CHV1.")
    checked = paycode.check_code(code, hub_key, datetime.now(UTC))
    assert checked.ok and (checked.card_uid, checked.n, checked.key) == (uid, 1, record["cert"]["key"])
    await shot(page, "code")

    result, sent = await pay(hub, till, code, 1250)
    assert (result["decision"], result["balance"]) == ("approved", 6750), result
    row = await row_of(page, result["seq"])
    appeared_s = time.monotonic() - sent
    assert appeared_s <= APPEARS_WITHIN_S, f"the payment showed after {appeared_s:.2f} s"
    assert (row["decision"], row["medium"], row["card"], row["amount"]) == ("approved", "phone", uid, "-1250")
    assert row["text"].startswith("第二食堂 −¥12.50 第二食堂 1号窗口 · 电子卡付款 ")
    assert row["text"].endswith(" 余额 ¥67.50")
    await wait_for(page, "document.getElementById('total').dataset.total === '6750'")
    await shot(page, "paid")  # docs/app-phone.png

    result, _ = await pay(hub, till, code, 1250)  # the same code again: a screenshot replayed
    assert (result["decision"], result["reason"]) == ("declined", "credential_reused")
    row = await row_of(page, result["seq"])
    assert (row["decision"], row["reason"]) == ("declined", "credential_reused")

    await page.click("#phone-refresh")  # on demand: a new code, n one higher, scanned and good
    second = await shown_code(page, after_n=1)
    assert second["n"] == 2 and second["card"] == uid and await scanned(page) == second["code"] != code
    refreshed = time.monotonic()
    third = await shown_code(page, after_n=2, timeout_s=REFRESH_S + WAIT_S)  # on its own, 30 s later
    waited_s = time.monotonic() - refreshed
    assert third["n"] == 3 and REFRESH_S - 1.5 <= waited_s <= REFRESH_S + 2.0, f"refreshed after {waited_s:.1f} s"
    assert paycode.check_code(await scanned(page), hub_key, datetime.now(UTC)).n == 3

    await page.reload()  # n is kept before a code is shown: a reload never shows an n again
    fourth = await shown_code(page, after_n=0)
    assert fourth["n"] == 4 and fourth["card"] == uid
    assert (await page.evaluate(READ_RECORD, ACCOUNT))["n"] == 4
    result, _ = await pay(hub, till, second["code"], 300)  # an older, unused code is good while it is fresh
    assert result["decision"] == "approved", result

    await page.click("#phone-remove")  # "remove this phone", confirmed
    assert await page.evaluate("document.getElementById('confirm').open")
    assert uid in await page.evaluate("document.getElementById('confirm-text').textContent")
    assert (await page.evaluate(READ_CODE))["scroll_width"] <= PHONE_WIDTH
    await shot(page, "confirm-remove")
    await page.click("#confirm-ok")
    gone = await wait_for(page, "document.getElementById('phone').dataset.state === 'none'"
                                " && document.getElementById('phone-message').textContent")
    assert gone == f"本机电子卡 {uid} 已撤销并从本机移除。"
    assert await page.evaluate(READ_RECORD, ACCOUNT) is None
    shown = await page.evaluate(READ_CODE)
    assert (shown["code"], shown["card"], shown["create"]) == (None, None, True)
    assert (await card_row(page, uid, "revoked"))["button"] is None
    result, _ = await pay(hub, till, fourth["code"], 500)  # a code shown before the removal: declined
    assert (result["decision"], result["reason"]) == ("declined", "card_cancelled"), result
    await hub.settle()
    assert uid in (await hub.get(f"/v1/devices/{TILL[0]}/hotlist", role=None))["added"]
    await shot(page, "removed")

    assert console.unexpected() == []
    assert await csp_violations(page) == []


async def test_a_card_revoked_elsewhere_and_another_phone_s_card_are_said_and_handled(hub: Hub, page: Page) -> None:
    """Signed out, the card stays in this browser unseen; revoked meanwhile by the card office, the
    section says so and makes a new one; another phone's card is revoked from the list (撤销)."""
    console = Console().attach(page)
    await student(hub)
    other = (await hub.post(f"/v1/accounts/{ACCOUNT}/virtual-cards",
                            {"public_key": SimPhone().public_key, "label": "旧手机"}))["card_uid"]  # another phone's
    await page.goto(str(hub.client.make_url("/app")))
    await sign_in(page)
    await page.click("#phone-create")
    uid = (await shown_code(page))["card"]

    await page.click("#signout")
    await wait_for(page, "document.body.dataset.view === 'signin'")
    shown = await page.evaluate(READ_CODE)
    assert (shown["state"], shown["code"], shown["card"]) == ("", None, None)  # nothing of it shown
    assert (await page.evaluate(READ_RECORD, ACCOUNT))["card_uid"] == uid  # but it is still this phone's
    await hub.post(f"/v1/virtual-cards/{uid}/revoke", role="operator", expect=200)
    await hub.settle()

    await sign_in(page)
    message = await wait_for(page, "document.getElementById('phone').dataset.state === 'gone'"
                                   " && document.getElementById('phone-message').textContent")
    assert message == f"本机电子卡 {uid} 已在别处撤销，不能付款。可以重新创建一张。"
    shown = await page.evaluate(READ_CODE)
    assert (shown["code"], shown["create"]) == (None, True)
    assert (await page.evaluate(READ_RECORD, ACCOUNT))["n"] == 1  # no code was made for a revoked card
    assert await page.evaluate("document.getElementById('phone-create').textContent") == "重新创建本机电子卡"
    await shot(page, "revoked-elsewhere")
    await page.click("#phone-create")
    fresh = await shown_code(page)
    assert fresh["card"] != uid and fresh["n"] == 1 and fresh["state"] == "active"

    other_row = await card_row(page, other, "active")
    assert "here" not in other_row and other_row["button"] == "撤销"
    assert (await card_row(page, fresh["card"], "active"))["button"] is None
    await page.click(f"#cards li[data-card='{other}'] button")
    assert await page.evaluate("document.getElementById('confirm-title').textContent") == "撤销这张电子卡？"
    await page.click("#confirm-ok")
    await card_row(page, other, "revoked")
    assert (await page.evaluate("document.getElementById('cards-message').dataset.key")) == "revokeDone"
    assert (await page.evaluate(READ_CODE))["state"] == "active"  # this phone's card is untouched

    await page.click("#lang")
    shown = await page.evaluate(READ_CODE)
    assert shown["countdown"].startswith("New code in ") and shown["scroll_width"] <= PHONE_WIDTH
    await shot(page, "en")
    assert console.unexpected() == []
    assert await csp_violations(page) == []


async def test_a_slow_browser_shows_the_section_loading_not_unsupported_until_it_knows(hub: Hub, page: Page) -> None:
    """The cards list may come back before the browser has answered whether it can make a key and
    what it keeps: meanwhile the section is loading, it never says this browser cannot, and it
    offers no create button before it knows whether this phone already has a card."""
    console = Console().attach(page)
    await student(hub)
    await page.add_init_script(SLOW_PROBE)
    await page.goto(str(hub.client.make_url("/app")))
    await page.evaluate(STATES)
    await sign_in(page)  # loaded: the balance, the transactions and the cards list are shown
    assert await page.evaluate("document.getElementById('phone').dataset.state") == "loading"
    assert await wait_for(page, SETTLED) == "none"
    states = await page.evaluate("globalThis.phoneStates")
    assert not [x for x in states if x.startswith("unsupported")], states
    assert not [x for x in states if x.endswith("+create") and not x.startswith("none")], states
    assert console.unexpected() == []


NO_ED25519 = """const generateKey = crypto.subtle.generateKey.bind(crypto.subtle);
crypto.subtle.generateKey = (algorithm, ...rest) => (algorithm?.name ?? algorithm) === "Ed25519"
  ? Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError")) : generateKey(algorithm, ...rest);"""


async def test_a_browser_without_ed25519_is_told_it_cannot_make_a_phone_card(hub: Hub, page: Page) -> None:
    console = Console().attach(page)
    await student(hub)
    await page.add_init_script(NO_ED25519)  # a browser as older ones are: WebCrypto without Ed25519
    await page.goto(str(hub.client.make_url("/app")))
    await sign_in(page)
    message = await wait_for(page, "document.getElementById('phone').dataset.state === 'unsupported'"
                                   " && document.getElementById('phone-message').textContent")
    assert message == ("此浏览器无法生成电子卡（不支持 Ed25519 密钥或 IndexedDB），"
                       "请换用新版浏览器。")
    shown = await page.evaluate(READ_CODE)
    assert (shown["code"], shown["create"]) == (None, False)
    assert console.unexpected() == []
    assert await csp_violations(page) == []


async def test_the_app_makes_the_vectors_codes_byte_for_byte(hub: Hub, page: Page) -> None:
    """The app's own code maker (WebCrypto Ed25519, its canonical JSON and b64url), fed the keys of
    tests/vectors/paycodes.json, makes each vector's code exactly (Ed25519 is deterministic)."""
    vectors = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "paycodes.json").read_text())["vectors"]
    await page.goto(str(hub.client.make_url("/app")))
    for v in vectors:
        made = await page.evaluate(VECTOR_CODE, {"seed": v["phone_seed"], "cert": v["cert"], "t": v["t"], "n": v["n"]})
        assert made == v["code"], v["name"]
