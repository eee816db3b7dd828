"""The managers' dashboard in a real headless Chromium, driven by Playwright: a manager signs in,
the charts fill, and the numbers shown are the hub's own statistics. Playwright drives Debian's
chromium (``executable_path``); it never downloads a browser of its own."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
from playwright.async_api import CDPSession, Page

from device_sim.device import SimDevice
from device_sim.phone import SimPhone
from tests.conftest import Hub
from tests.e2e.browser import ARTIFACTS, add_merchants, add_tills, browser_page, wait_for
from tests.e2e.browser import chromium, hub  # noqa: F401 - fixtures

SHANGHAI = timezone(timedelta(hours=8))  # the hub's default time zone, CARDHUB_TIMEZONE unset
DAY = date(2026, 11, 25)

MERCHANTS = [("canteen-1", "第一食堂", "dining"), ("canteen-2", "第二食堂", "dining"),
             ("market", "校园超市", "supermarket")]
POS = [("canteen-1-pos01", "canteen-1", "第一食堂 1号窗口"), ("canteen-1-pos02", "canteen-1", "第一食堂 2号窗口"),
       ("canteen-2-pos01", "canteen-2", "第二食堂 1号窗口"), ("market-till01", "market", "校园超市 收银台")]
# Seven cardholders, and purchases dealt to card k % 7 at till k % 4: every till, merchant and meal
# period sells to all seven, so a manager sees every merchant and window by name (a group of fewer
# than 5 distinct cards is merged into "other" for managers, projections.stats_privacy).
ACCOUNTS = [("s1", "student"), ("s2", "student"), ("s3", "student"), ("s4", "student"), ("s5", "student"),
            ("t1", "staff"), ("v1", "visitor")]
MEAL_PEAKS_MIN = (7 * 60 + 30, 12 * 60, 18 * 60)  # breakfast, lunch and dinner rushes
PURCHASES = 150
PHONES = 5  # students who pay by phone too: a manager sees the phone share from 5 distinct phones

# What the page shows, read from its machine-readable attributes.
READ_PAGE = """() => {
  const body = document.body.dataset, canvas = document.getElementById("per-minute");
  const merchants = {};
  for (const cell of document.querySelectorAll("#meals [data-merchant]")) {
    merchants[cell.dataset.merchant] = {count: +cell.dataset.count, amount: +cell.dataset.amount,
                                        cards: +cell.dataset.cards};
  }
  const head = (id) => document.getElementById(id);
  const [r, g, b] = [0x1f, 0x6f, 0xeb];  // the first canteen's line colour
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (Math.abs(pixels[i] - r) + Math.abs(pixels[i + 1] - g) + Math.abs(pixels[i + 2] - b) < 60) inked += 1;
  }
  return {
    merchants,
    total: {count: +head("total-count").dataset.totalCount, amount: +head("total-amount").dataset.totalAmount,
            cards: +head("total-cards").dataset.totalCards},
    revenue_text: head("total-amount").textContent,
    points: +canvas.dataset.points, series: +canvas.dataset.series, inked,
    windows: document.querySelectorAll("#windows [data-device]").length,
    gates: [...document.querySelectorAll("#gates [data-zone]")].map((row) => [row.dataset.zone,
             +row.dataset.in, +row.dataset.out, +row.dataset.declined]),
    declines: Object.fromEntries(["pos-declines", "gate-declines"].map((id) => [id,
      [...head(id).querySelectorAll("[data-reason]")].map((li) => [li.dataset.reason, +li.dataset.count,
                                                                   li.textContent, li.checkVisibility()])])),
    tiles: [head("refunds").textContent, head("exposure").textContent],
    phone: {text: head("phone").textContent, count: head("phone").dataset.count,
            amount: head("phone").dataset.amount, cards: head("phone").dataset.cards,
            lines: head("phone-lines").innerText},
    strip: [head("freshness").textContent, head("signed").textContent],
    details_open: head("details").open, figures_shown: head("tree-size").checkVisibility(),
    url: location.href, cookie: document.cookie, local: JSON.stringify(localStorage),
  };
}"""


@pytest.fixture
async def page(chromium: Path) -> AsyncIterator[Page]:
    """One page of a fresh headless chromium, as tall as the desktop dashboard."""
    async with browser_page(chromium, 1280, 1800) as page:
        yield page


async def as_a_phone(page: Page) -> CDPSession:
    """The same page, still signed in, turned into a 400 px phone screen at twice the pixel density.

    Playwright fixes the pixel ratio and mobile mode when a context is made; a DevTools session of
    our own changes them on the open page, so the chart has to redraw itself at the new size."""
    devtools = await page.context.new_cdp_session(page)
    await devtools.send("Emulation.setDeviceMetricsOverride",
                        {"width": 400, "height": 900, "deviceScaleFactor": 2, "mobile": True})
    return devtools


async def phone_screenshot(devtools: CDPSession, path: Path) -> None:
    """A PNG of the whole phone page at its pixel density. ``page.screenshot`` would capture it
    with the metrics of Playwright's own session (1×), not those ``as_a_phone`` set."""
    shot = await devtools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def at(minute_of_day: int) -> datetime:
    return datetime.combine(DAY, time(0), tzinfo=SHANGHAI) + timedelta(minutes=minute_of_day)


async def campus_day(hub: Hub, phones: int = PHONES) -> int:
    """Two canteens and a supermarket through a day, one reversal, and a dorm gate. The first
    ``phones`` students pay every third of their purchases with their phone's payment code (DESIGN
    §10); answers how many purchases (net of the reversal) were paid by phone."""
    await add_merchants(hub, MERCHANTS)
    tills = await add_tills(hub, POS)
    cards = [f"CA{i:06X}" for i in range(len(ACCOUNTS))]
    for (account_id, category), card in zip(ACCOUNTS, cards, strict=True):
        groups = ["students"] if category == "student" else [category]
        await hub.account(account_id, cash=50000, card=card, category=category, groups=groups)
    on_phone = {}
    for account_id, card in zip([a for a, _ in ACCOUNTS][:phones], cards, strict=False):
        on_phone[card] = SimPhone()
        answer = await hub.post(f"/v1/accounts/{account_id}/virtual-cards",
                                {"public_key": on_phone[card].public_key, "label": "我的手机"})
        on_phone[card].cert = answer["cert"]
    rng = random.Random(6)
    swipes = sorted((MEAL_PEAKS_MIN[k % 3] + round(rng.triangular(-50, 50)), k % len(tills), cards[k % len(cards)],
                     rng.randrange(300, 1800, 10)) for k in range(PURCHASES))
    swipes.append((21 * 60 + 5, len(tills) - 1, cards[1], 1290))  # an evening purchase: meal period "other"
    paid_by = {}  # (till, seq) → the virtual card whose code paid
    for k, (minute, till, card, amount_fen) in enumerate(swipes):
        if card in on_phone and k % 3 == 0:
            code = on_phone[card].code(at(minute) - timedelta(seconds=4))
            paid_by[(till, tills[till].purchase_by_code(code, amount_fen, at(minute))["seq"])] = on_phone[card].card_uid
        else:
            tills[till].purchase(card, amount_fen, at(minute))
    tills[1].purchase("DEADBEEF", 500, at(12 * 60 + 5))  # a card the hub never issued: declined
    voided = tills[0].pending[-1]  # the cashier voids the last sale, a few minutes later
    card = voided.get("card") or paid_by[(0, voided["seq"])]  # a phone's purchase: its virtual card
    tills[0].reversal(card, voided["seq"], datetime.fromisoformat(voided["at"]) + timedelta(minutes=3))
    for till in tills:
        assert all(r["status"] == "accepted" for r in await hub.send(till))

    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号宿舍楼", "anti_passback": False})
    await hub.post("/v1/access-rules", {"zone": "dorm-1", "group": "students", "days": ["mon", "tue", "wed", "thu",
                                        "fri", "sat", "sun"], "from": "06:00", "to": "23:30"})
    gate = SimDevice("dorm-1-gate01", "gate")
    await hub.post("/v1/devices", {"device_id": gate.device_id, "kind": "gate", "public_key": gate.public_key,
                                   "zone": "dorm-1", "location": "一号宿舍楼 正门"})
    for i, card in enumerate(cards[:4]):
        gate.gate(card, "out", at(7 * 60 + 40 + i))
        gate.gate(card, "in", at(21 * 60 + i))
    gate.gate(cards[5], "in", at(22 * 60))  # staff (t1) are not let into a student dorm
    assert all(r["status"] == "accepted" for r in await hub.send(gate))
    await hub.settle()
    return len(paid_by) - ((0, voided["seq"]) in paid_by)


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#signin [type=submit]")


async def sign_in_and_pick_the_day(page: Page, url: str, token: str) -> None:
    await page.goto(url)
    await wait_for(page, "!document.getElementById('signin-view').hidden")
    await sign_in(page, token)
    await wait_for(page, "document.body.dataset.loaded === '1'")
    await page.fill("#date", DAY.isoformat())  # sets the value and fires input and change
    await wait_for(page, f"document.body.dataset.date === '{DAY.isoformat()}'")


def yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


async def test_a_manager_signs_in_and_sees_the_hubs_statistics_charted(hub: Hub, page: Page) -> None:
    by_phone = await campus_day(hub)
    token = hub.token("manager")
    url = str(hub.client.make_url("/dashboard"))
    await sign_in_and_pick_the_day(page, url, token)
    shown = await page.evaluate(READ_PAGE)

    start = datetime.combine(DAY, time(0), tzinfo=SHANGHAI)
    query = urlencode({"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat(), "by": "merchant"})
    stats = await hub.get(f"/v1/stats/consumption?{query}", role="manager")
    expected = {merchant_id: {"count": 0, "amount": 0, "cards": 0} for merchant_id, _, _ in MERCHANTS}
    expected |= {g["key"]: {"count": g["count"], "amount": g["amount"], "cards": g["cards"]} for g in stats["groups"]}
    assert shown["merchants"] == expected
    assert shown["total"] == stats["total"] and stats["total"]["count"] == PURCHASES  # one more, one reversed
    assert shown["revenue_text"] == yuan(stats["total"]["amount"])
    assert shown["series"] == 2 and shown["points"] > 0 and shown["inked"] > 50  # two canteens, lines drawn
    assert shown["windows"] == len(POS)
    assert shown["gates"] == [["dorm-1", 4, 4, 1]]
    assert shown["declines"] == {"pos-declines": [["card_unknown", 1, "未登记的卡card_unknown1", True]],
                                 "gate-declines": [["no_access", 1, "无通行权限no_access1", True]]}
    assert shown["tiles"] == ["0 笔", "¥0.00"]  # no refund, no account below zero
    phone = (await hub.get(f"/v1/stats/dashboard?date={DAY}", role="manager"))["phone"]
    assert phone is not None and phone["count"] == by_phone > 0 and phone["cards"] == PHONES
    assert {k: int(shown["phone"][k]) for k in ("count", "amount", "cards")} == phone
    total = stats["total"]
    assert shown["phone"]["text"] == f"{round(1000 * phone['count'] / total['count']) / 10:.1f}%"
    assert shown["phone"]["lines"] == (f"{phone['count']} 笔，共 {yuan(phone['amount'])}\n"
                                       f"占消费金额 {round(1000 * phone['amount'] / total['amount']) / 10:.1f}%\n"
                                       f"{PHONES} 部手机付款")
    assert token not in shown["url"] and shown["url"] == url
    assert token not in shown["cookie"] and token not in shown["local"]

    await wait_for(page, "+document.body.dataset.refreshes >= 3")  # it keeps polling
    issued_at = await wait_for(page, "document.getElementById('signed').dataset.issuedAt")
    shown = await page.evaluate(READ_PAGE)
    signed_at = datetime.fromisoformat(str(issued_at)).astimezone(SHANGHAI).strftime("%H:%M")
    assert shown["strip"] == ["数据已是最新", f"审计日志已签名于 {signed_at}"]
    assert not shown["details_open"] and not shown["figures_shown"]  # the engineering figures wait behind 详情
    await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    await page.click("#details summary")
    shown = await page.evaluate(READ_PAGE)
    assert shown["details_open"] and shown["figures_shown"]
    assert int(await wait_for(page, "document.getElementById('tree-size').dataset.treeSize")) > 0
    assert re.fullmatch("[0-9a-f]{16}…", await page.evaluate("document.getElementById('root-hash').textContent"))
    await page.click("#lang")
    assert await page.evaluate("document.querySelector('h1').textContent") == "One-card hub · Logistics dashboard"
    shown = await page.evaluate(READ_PAGE)
    assert shown["strip"][0] == "Data up to date" and shown["strip"][1].startswith("Audit log signed at ")
    assert shown["declines"]["pos-declines"][0][2] == "Unknown cardcard_unknown1"
    assert shown["phone"]["lines"].startswith(f"{phone['count']} purchases, {yuan(phone['amount'])}\n")
    assert shown["phone"]["lines"].endswith(f"\nfrom {PHONES} phones")
    devtools = await as_a_phone(page)
    await wait_for(page, "document.getElementById('per-minute').width <= 800")  # the chart resized
    await phone_screenshot(devtools, ARTIFACTS / "dashboard-phone-en.png")


async def test_the_refunds_and_exposure_tiles_show_the_hubs_figures(hub: Hub, page: Page) -> None:
    """A refund by the card office and an offline purchase into overdraft: the tiles show the
    day's refunds and the money at risk exactly as the hub counts them."""
    await campus_day(hub, phones=PHONES - 1)  # too few phones for a manager to see their share
    sale = next(t for t in (await hub.get("/v1/accounts/s2/transactions"))["items"] if t["kind"] == "purchase"
                and t["decision"] == "approved")
    await hub.post("/v1/accounts/s2/refunds", {"device": sale["device"], "seq": sale["seq"], "amount": 123,
                                               "reason": "charged twice", "ref": "refund-e2e-1"})
    await hub.account("s9", cash=100, card="CA0000FF", category="student")
    till = SimDevice("canteen-2-pos09", "pos")  # a window that lost its link: it approved ¥600 on a ¥1 card
    await hub.post("/v1/devices", {"device_id": till.device_id, "kind": "pos", "public_key": till.public_key,
                                   "merchant_id": "canteen-2"})
    till.purchase("CA0000FF", 60000, at(12 * 60 + 30), offline=True, decision="approved")
    assert [r["status"] for r in await hub.send(till)] == ["accepted"]
    await hub.settle()
    await page.goto(str(hub.client.make_url("/dashboard")))
    await sign_in(page, hub.token("manager"))
    await wait_for(page, "document.body.dataset.loaded === '1'")
    await page.fill("#date", DAY.isoformat())
    await wait_for(page, f"document.body.dataset.date === '{DAY.isoformat()}'")
    risk = await hub.get("/v1/risk/exposure", role="auditor")
    assert risk["negative_balances"] == {"accounts": 1, "fen": 59900}
    shown = await page.evaluate("""() => ["refunds", "refunds-amount", "exposure", "exposure-lines"].map(
        (id) => document.getElementById(id).innerText)""")
    assert shown == ["1 笔", "¥1.23", "¥599.00", "1 个账户余额为负\n离线批准 ¥600.00\n离线超限 0 笔，共 ¥0.00"]
    assert (await hub.get(f"/v1/stats/dashboard?date={DAY}", role="manager"))["phone"] is None
    assert await page.evaluate("""[document.getElementById("phone").textContent,
                                   document.getElementById("phone-lines").innerText]""") == ["—", ""]


async def test_a_cardholder_token_is_refused_and_the_sign_in_form_comes_back(hub: Hub, page: Page) -> None:
    await page.goto(str(hub.client.make_url("/dashboard")))
    await sign_in(page, hub.token("cardholder", "s1"))
    message = await wait_for(page, "document.getElementById('signin-message').textContent")
    assert "manager" in message
    assert await page.evaluate("[sessionStorage.length, document.getElementById('board').hidden]") == [0, True]


async def test_a_revoked_or_expired_token_signs_the_page_out_saying_why(hub: Hub, page: Page) -> None:
    url = str(hub.client.make_url("/dashboard"))
    revoked = hub.new_token("manager")
    await page.goto(url)
    await wait_for(page, "!document.getElementById('signin-view').hidden")
    await sign_in(page, revoked)
    await wait_for(page, "document.body.dataset.loaded === '1'")
    jti = jwt.decode(revoked, options={"verify_signature": False})["jti"]
    await hub.post(f"/v1/tokens/{jti}/revoke", expect=200)
    assert await wait_for(page, "document.body.dataset.signedOut") == "revoked"
    shown = await page.evaluate("[document.getElementById('signin-message').textContent,"
                                " document.getElementById('board').hidden, sessionStorage.length]")
    assert shown == ["已退出：令牌已被吊销，请用新令牌重新登录。", True, 0]
    await page.click("#lang")
    await page.screenshot(path=ARTIFACTS / "dashboard-signed-out.png")
    assert "the token was revoked" in await page.evaluate("document.getElementById('signin-message').textContent")

    await sign_in(page, hub.new_token("manager", ttl_s=3))
    await wait_for(page, "document.body.dataset.loaded === '1' && !document.body.dataset.signedOut")
    assert await wait_for(page, "document.body.dataset.signedOut") == "expired"
    assert await page.evaluate("document.getElementById('signin-message').textContent") == (
        "Signed out: the token expired; sign in with a new one.")
    assert await page.evaluate("document.getElementById('board').hidden")
