"""The cardholders' phone app (DESIGN §10) in a real headless Chromium at 360×740, driven by
Playwright: a student signs in with the PIN the card office set, sees the hub's balance, watches
a purchase at a canteen window arrive, reports the card lost (a purchase is then declined
``card_lost``) and found again; a wrong PIN, a lockout and a revoked session are said in words.
Nothing of the page's own is mocked: the hub, its views and a signed device are real."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import jwt
import pytest
from playwright.async_api import Page

from device_sim.device import SimDevice
from tests.conftest import Hub
from tests.e2e.browser import ARTIFACTS, PHONE_WIDTH, Console, add_merchants, add_tills, csp_violations, wait_for
from tests.e2e.browser import chromium, hub, phone_page  # noqa: F401 - fixtures

ACCOUNT, NAME, PIN, NEW_PIN = "2024000123", "韩梅梅", "135792", "864209"
CARD, NEW_CARD = "CA15A00001", "CA15A00002"
MERCHANT = ("canteen-1", "第一食堂", "dining")
TILL = ("canteen-1-pos03", "canteen-1", "第一食堂 3号窗口")
APPEARS_WITHIN_S = 2.0  # the bar: a swipe is in the student's list within 2 s

# What the page shows, read from its machine-readable attributes.
READ_PAGE = """() => {
  const $ = (id) => document.getElementById(id);
  return {
    view: document.body.dataset.view, signed_out: document.body.dataset.signedOut ?? null,
    name: $("name").textContent, total: $("total").dataset.total, total_text: $("total").textContent,
    cash: $("cash").textContent, subsidy: $("subsidy").textContent,
    cards: [...$("cards").querySelectorAll("li[data-card]")].map((li) => [li.dataset.card, li.dataset.status,
             li.querySelector("button")?.textContent ?? null]),
    rows: [...$("transactions").querySelectorAll("li[data-kind]")].map((li) => ({kind: li.dataset.kind,
             seq: li.dataset.seq, decision: li.dataset.decision, reason: li.dataset.reason,
             amount: +li.dataset.amount, text: li.innerText.replace(/\\s+/g, " ")})),
    scroll_width: document.documentElement.scrollWidth,
    session: sessionStorage.getItem("cardhub.app.session"), local: JSON.stringify(localStorage),
    cookie: document.cookie, url: location.href,
  };
}"""


async def student(hub: Hub) -> SimDevice:
    """A canteen window and a student with a card, ¥50.00 of cash, ¥20.00 of meal subsidy and the
    PIN the card office set."""
    await add_merchants(hub, [MERCHANT])
    [till] = await add_tills(hub, [TILL])
    await hub.account(ACCOUNT, name=NAME, cash=5000, subsidy=2000, card=CARD)
    await hub.post(f"/v1/accounts/{ACCOUNT}/pin", {"pin": PIN}, role="operator", expect=200)
    return till


async def sign_in(page: Page, account_id: str, pin: str) -> None:
    await page.fill("#account-id", account_id)
    await page.fill("#pin", pin)
    await page.click("#signin [type=submit]")


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=ARTIFACTS / f"app-{name}.png", full_page=True)


async def swipe(hub: Hub, till: SimDevice, amount_fen: int) -> tuple[dict[str, object], float]:
    """A purchase at the window, online: the hub's answer and the monotonic time it was sent."""
    envelope = till.purchase(CARD, amount_fen, datetime.now(UTC))
    sent = time.monotonic()
    [result] = await hub.send(till)
    assert result["status"] == "accepted" and result["seq"] == envelope["seq"], result
    return result, sent


async def row_of(page: Page, seq: int) -> dict[str, object]:
    """The transaction row of the window's event ``seq``, once the page shows it."""
    await wait_for(page, f"document.querySelector('#transactions li[data-seq=\"{seq}\"]')")
    return next(r for r in (await page.evaluate(READ_PAGE))["rows"] if r["seq"] == str(seq))


async def card_status(page: Page, card: str, status: str) -> None:
    await wait_for(page, f"document.querySelector('#cards li[data-card=\"{card}\"]')?.dataset.status === '{status}'")


async def test_a_student_sees_a_purchase_arrive_and_blocks_and_unblocks_the_lost_card(hub: Hub, page: Page) -> None:
    console = Console().attach(page)
    till = await student(hub)
    await page.goto(str(hub.client.make_url("/app")))
    await wait_for(page, "document.body.dataset.view === 'signin'")
    assert (await page.evaluate(READ_PAGE))["scroll_width"] <= PHONE_WIDTH
    await shot(page, "signin")

    await sign_in(page, ACCOUNT, PIN)
    await wait_for(page, "document.body.dataset.loaded === '1'")
    balance = await hub.get(f"/v1/accounts/{ACCOUNT}/balance", role="cardholder", scope=ACCOUNT)
    shown = await page.evaluate(READ_PAGE)
    assert shown["view"] == "home" and shown["name"] == NAME
    assert int(shown["total"]) == balance["total"] == 7000 and shown["total_text"] == "¥70.00"
    assert [shown["cash"], shown["subsidy"]] == ["¥50.00", "¥20.00"]
    assert shown["cards"] == [[CARD, "active", "挂失"]]
    token = json.loads(shown["session"])["token"]
    assert token not in shown["local"] + shown["cookie"] + shown["url"]

    result, sent = await swipe(hub, till, 1250)
    row = await row_of(page, result["seq"])
    appeared_s = time.monotonic() - sent
    assert appeared_s <= APPEARS_WITHIN_S, f"the purchase showed after {appeared_s:.2f} s"
    assert row["decision"] == "approved" and row["amount"] == -1250
    assert row["text"].startswith("第一食堂 −¥12.50 第一食堂 3号窗口 ") and row["text"].endswith(" 余额 ¥57.50")
    await wait_for(page, "document.getElementById('total').dataset.total === '5750'")
    shown = await page.evaluate(READ_PAGE)
    assert [shown["total_text"], shown["cash"], shown["subsidy"]] == ["¥57.50", "¥50.00", "¥7.50"]  # subsidy first
    assert shown["scroll_width"] <= PHONE_WIDTH
    await shot(page, "purchase")

    await page.click(f"#cards li[data-card='{CARD}'] button")
    assert await page.evaluate("document.getElementById('confirm').open")
    assert CARD in await page.evaluate("document.getElementById('confirm-text').textContent")
    assert (await page.evaluate(READ_PAGE))["scroll_width"] <= PHONE_WIDTH
    await shot(page, "confirm-lost")
    await page.click("#confirm-ok")
    await card_status(page, CARD, "lost")
    assert await page.evaluate("document.getElementById('cards-message').textContent") == f"卡 {CARD} 已挂失。"
    result, _ = await swipe(hub, till, 800)
    assert (result["decision"], result["reason"]) == ("declined", "card_lost")
    row = await row_of(page, result["seq"])
    assert (row["decision"], row["reason"]) == ("declined", "card_lost")
    assert row["text"].startswith("第一食堂 未成功 ") and row["text"].endswith(" 未成功：已挂失的卡")
    await shot(page, "declined")

    await page.click(f"#cards li[data-card='{CARD}'] button")  # 解挂: no confirmation needed
    await card_status(page, CARD, "active")
    result, _ = await swipe(hub, till, 600)
    assert result["decision"] == "approved"
    assert (await row_of(page, result["seq"]))["decision"] == "approved"
    await wait_for(page, "document.getElementById('total').dataset.total === '5150'")
    assert (await page.evaluate(READ_PAGE))["scroll_width"] <= PHONE_WIDTH
    await shot(page, "signed-in")  # docs/app.png

    # Lost again, and the card office issues a new card (补卡): the old one is cancelled, and the
    # page, still showing it lost, is refused (409) and says why.
    await page.click(f"#cards li[data-card='{CARD}'] button")
    await page.click("#confirm-ok")
    await card_status(page, CARD, "lost")
    await hub.post("/v1/cards", {"card_uid": NEW_CARD, "account_id": ACCOUNT})
    await hub.settle()  # the student comes back later, to a page that has not reloaded the cards yet
    assert (await page.evaluate(READ_PAGE))["cards"] == [[CARD, "lost", "解挂"]]
    await page.click(f"#cards li[data-card='{CARD}'] button")
    message = await wait_for(page, "document.getElementById('cards-message').dataset.key === 'cardCancelled'"
                                   " && document.getElementById('cards-message').textContent")
    assert message == f"卡 {CARD} 已注销（已补办新卡或已销户），不能再挂失或解挂。"
    assert (await page.evaluate(READ_PAGE))["cards"] == [[NEW_CARD, "active", "挂失"], [CARD, "cancelled", None]]
    await shot(page, "refused")

    assert console.unexpected(answered=[409]) == []
    assert await csp_violations(page) == []


async def test_wrong_pins_a_lockout_a_pin_change_and_a_revoked_session_are_said_in_words(hub: Hub, page: Page) -> None:
    console = Console().attach(page)
    await student(hub)
    await page.goto(str(hub.client.make_url("/app")))
    await sign_in(page, ACCOUNT, "000000")
    message = "document.getElementById('signin-message')"  # emptied when a sign-in is sent
    assert await wait_for(page, f"{message}.dataset.key") == "wrongPin"
    assert await page.evaluate(f"{message}.textContent") == "学号 / 工号或查询密码不正确。"
    await shot(page, "wrong-pin")
    await sign_in(page, ACCOUNT, "12345")  # five digits: the hub's 422
    assert await wait_for(page, f"{message}.dataset.key && {message}.textContent") == (
        "请输入学号 / 工号和 6 位数字的查询密码。")

    await sign_in(page, ACCOUNT, PIN)
    await wait_for(page, "document.body.dataset.loaded === '1'")
    await hub.get(f"/v1/accounts/{ACCOUNT}/balance", role="operator")  # the card office looks: a read of a person
    await page.click("#reads-section summary")
    operator = "document.querySelector('#reads li[data-role=operator]')"
    read = await wait_for(page, f"{operator} && [...{operator}.children].map((cell) => cell.textContent)")
    assert read[:2] == ["卡务中心", "余额"] and read[2].startswith(str(datetime.now().year))

    await page.click("#pin-section summary")
    pin_message = "document.getElementById('pin-message')"
    for old, new, again, key in [(PIN, NEW_PIN[:5], NEW_PIN[:5], "pinNotSix"), (PIN, NEW_PIN, "864200", "pinMismatch"),
                                 ("000000", NEW_PIN, NEW_PIN, "wrongOldPin"), (PIN, NEW_PIN, NEW_PIN, "pinChanged")]:
        await page.fill("#old-pin", old)
        await page.fill("#new-pin", new)
        await page.fill("#new-pin-again", again)
        await page.click("#pin-form [type=submit]")
        await wait_for(page, f"{pin_message}.dataset.key === '{key}'")
    assert await page.evaluate(f"{pin_message}.textContent") == "查询密码已修改。"
    assert (await page.evaluate(READ_PAGE))["scroll_width"] <= PHONE_WIDTH
    await shot(page, "pin-changed")

    shown = await page.evaluate(READ_PAGE)
    jti = jwt.decode(json.loads(shown["session"])["token"], options={"verify_signature": False})["jti"]
    await hub.post(f"/v1/tokens/{jti}/revoke", expect=200)
    assert await wait_for(page, "document.body.dataset.signedOut") == "expired"
    shown = await page.evaluate(READ_PAGE)
    assert [shown["view"], shown["session"], shown["name"], shown["total"], shown["rows"]] == [
        "signin", None, "", "", []]  # nothing of the student is left on the page
    assert await page.evaluate(f"{message}.textContent") == "登录已过期，请重新登录。"
    await shot(page, "expired")

    await page.click("#lang")
    assert await page.evaluate(f"[document.documentElement.lang, {message}.textContent]") == [
        "en", "Your session has expired. Please sign in again."]
    await sign_in(page, ACCOUNT, PIN)  # the old PIN no longer opens it
    assert await wait_for(page, f"{message}.dataset.key && {message}.textContent") == (
        "Wrong student / staff number or PIN.")
    await sign_in(page, ACCOUNT, NEW_PIN)
    await wait_for(page, "document.body.dataset.loaded === '1'")
    await page.reload()  # the language is remembered; the session too, for this tab
    await wait_for(page, "document.body.dataset.loaded === '1'")
    assert await page.evaluate("[document.documentElement.lang, document.querySelector('h1').textContent]") == [
        "en", "Campus card"]
    await page.click("#signout")
    assert (await page.evaluate(READ_PAGE))["session"] is None

    for _ in range(5):  # five wrong PINs in 15 minutes (the sign-in above cleared the count)
        await sign_in(page, ACCOUNT, "000000")
        assert await wait_for(page, f"{message}.dataset.key") == "wrongPin"
    await sign_in(page, ACCOUNT, NEW_PIN)  # locked: even the right PIN
    assert await wait_for(page, f"{message}.dataset.key && {message}.textContent") == (
        "Too many wrong PINs: sign-in is locked. Try again in 15 min.")
    await shot(page, "locked-en")

    assert console.unexpected(answered=[401, 403, 422, 429]) == []
    assert await csp_violations(page) == []
