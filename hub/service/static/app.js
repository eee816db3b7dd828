// cardhub app: the cardholder's own page (DESIGN §10). The cardholder signs in with account id and
// PIN (POST /v1/sessions); the session's token is kept in sessionStorage only (never localStorage,
// a cookie or the URL). The page polls the balance and the latest transactions, and lets the
// cardholder report a card lost or found, revoke a phone's card, change the PIN and see who read
// their data; this phone's own card (its key, its payment code) is app-phone.js's. Money arrives as
// integer fen and is only formatted here, never computed on. A module: its words are in app-text.js.
import { el, minutesFrom, money, when } from "./app-format.js";
import { phoneCard } from "./app-phone.js";
import { READERS, READ_WHAT, REASONS, TEXT } from "./app-text.js";

(() => {
  // The newest purchase shows within 2 s of its swipe: a poll every 1.5 s, plus the projection's
  // and the request's own time. Cards, name and reads change rarely: every SLOW_EVERY-th poll.
  const POLL_MS = 1500, SLOW_EVERY = 8, TIMEOUT_MS = 10000, TRANSACTIONS = 20, READS = 10;
  const SESSION_KEY = "cardhub.app.session", LANG_KEY = "cardhub.app.lang";
  const PIN_RE = /^[0-9]{6}$/;
  const KINDS = { purchase: "purchase", reversal: "reversal", topup: "topup", subsidy: "subsidyIn", refund: "refund",
                  payout: "payout", expiry: "expiry" };
  const AT_A_MERCHANT = new Set(["purchase", "reversal", "refund"]);
  // What a card's row offers, by its kind and status; the dialog's words for each action that asks first.
  const ACTIONS = { physical: { active: "lost", lost: "found" }, virtual: { active: "revoke", lost: "revoke" } };
  const BUTTONS = { lost: ["reportLost", "danger"], found: ["reportFound", "primary"], revoke: ["revoke", "danger"] };
  const CONFIRM = { lost: ["confirmTitle", "confirmText", "confirmOk"],
                    revoke: ["confirmRevokeTitle", "confirmRevokeText", "confirmRevokeOk"],
                    remove: ["confirmRemoveTitle", "confirmRemoveText", "confirmRemoveOk"] };
  const $ = (id) => document.getElementById(id);
  const state = { lang: "zh", session: null, lastAccount: "", seq: 0, timer: 0, polls: 0, data: {}, messages: {},
                  status: null, pending: null };
  try { state.lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh"; } catch { /* storage off */ }
  // A label, with {name} replaced by vars.name.
  const t = (key, vars) => (TEXT[state.lang][key] ?? key).replace(/\{(\w+)\}/g, (_, name) => vars?.[name] ?? "");

  // --- messages (kept as keys, so the language switch says them again) ---
  function say(id, key, vars, tone) {
    state.messages[id] = key ? { key, vars, tone } : null;
    $(id).textContent = key ? t(key, vars) : "";
    $(id).dataset.tone = key ? tone || "bad" : "";
    $(id).dataset.key = key || "";
  }
  function status(key, vars, isError) {
    state.status = key ? { key, vars, isError } : null;
    $("status").textContent = key ? t(key, vars) : "";
    $("status").classList.toggle("error", Boolean(isError));
  }

  // --- the session ---
  class SessionEnded extends Error {}
  class Refused extends Error {  // an answer that is not 2xx (nor 401), where the page expected one
    constructor(status) { super(`HTTP ${status}`); this.status = status; }
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      return s && typeof s.token === "string" && typeof s.account_id === "string" ? s : null;
    } catch {
      return null;
    }
  }

  // Every call of a signed-in page: a 401 (expired or revoked token) ends the session.
  async function api(method, path, body) {
    const seq = state.seq;
    if (!state.session) throw new SessionEnded();
    const headers = { Authorization: "Bearer " + state.session.token, Accept: "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined,
                                     cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS) });
    let data = {};
    try { data = (await resp.json()) ?? {}; } catch { /* not JSON */ }
    if (seq !== state.seq) throw new SessionEnded();  // signed out meanwhile: the answer is dropped
    if (resp.status === 401) {
      expire();
      throw new SessionEnded();
    }
    return { status: resp.status, ok: resp.ok, data, headers: resp.headers };
  }
  const mine = (what) => `/v1/accounts/${encodeURIComponent(state.session.account_id)}${what}`;
  async function read(path) {
    const answer = await api("GET", path);
    if (!answer.ok) throw new Refused(answer.status);
    return answer.data;
  }
  const phone = phoneCard({ api, mine, say, t, listed: () => state.data.cards, changed: cardChanged });

  function forget(key) {
    sessionStorage.removeItem(SESSION_KEY);
    state.session = null;
    state.seq += 1;  // answers still in flight are dropped
    state.data = {};
    phone.hide();  // this phone's card stays in IndexedDB, unseen until its account signs in again
    if ($("confirm").open) $("confirm").close("cancel");
    showSignin(key);
  }
  function expire() {
    forget("expired");
    document.body.dataset.signedOut = "expired";
  }

  // --- views ---
  function showSignin(key) {
    clearTimeout(state.timer);
    document.body.dataset.view = "signin";
    delete document.body.dataset.loaded;
    $("home").hidden = true;
    $("signout").hidden = true;
    $("signin-view").hidden = false;
    for (const id of ["name", "account"]) $(id).textContent = "";
    for (const id of ["total", "cash", "subsidy"]) [$(id).textContent, $(id).dataset[id]] = ["", ""];
    for (const id of ["cards", "transactions", "reads"]) $(id).replaceChildren();
    for (const id of ["cards-message", "pin-message"]) say(id, null);
    say("signin-message", key);
    status(null);
    $("pin").value = "";
    $(state.lastAccount ? "pin" : "account-id").focus();
  }

  function showHome() {
    delete document.body.dataset.signedOut;
    document.body.dataset.view = "home";
    $("signin-view").hidden = true;
    $("home").hidden = false;
    $("signout").hidden = false;
    $("account").textContent = state.session.account_id;
    $("pin-user").value = state.session.account_id;
    phone.show(state.session.account_id).catch(failed);
  }

  function applyLang() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    $("lang").textContent = state.lang === "zh" ? "English" : "中文";
    for (const [id, m] of Object.entries(state.messages)) if (m) say(id, m.key, m.vars, m.tone);
    if (state.status) status(state.status.key, state.status.vars, state.status.isError);
    if (state.pending) confirmWords(state.pending);
    render();
    phone.render();
  }

  function render() {
    const d = state.data;
    if (d.account) $("name").textContent = d.account.name ?? "";
    if (d.balance) renderBalance(d.balance);
    if (d.cards) renderCards(d.cards);
    if (d.transactions) renderTransactions(d.transactions);
    if (d.reads) renderReads(d.reads);
  }

  function renderBalance(b) {
    for (const [id, value] of [["total", b.total], ["cash", b.cash], ["subsidy", b.subsidy]]) {
      $(id).dataset[id] = String(value);
      $(id).textContent = money(value);
    }
  }

  // A chip card: 挂失 / 解挂. A phone's card: its name, and 撤销 unless it is this phone's (whose own
  // section removes it).
  function renderCards(cards) {
    const rows = cards.map((c) => {
      const here = c.kind === "virtual" && phone.isThisPhone(c.card_uid);
      const action = here ? null : ACTIONS[c.kind]?.[c.status];
      const button = action ? el("button", { type: "button", class: BUTTONS[action][1], "data-action": action,
                                             "data-card": c.card_uid }, t(BUTTONS[action][0])) : "";
      const name = c.kind === "virtual" ? [" ", el("span", { class: "label" }, here ? t("thisPhone") : c.label ?? "")] : [];
      return el("li", { "data-card": c.card_uid, "data-status": c.status, "data-kind": c.kind, "data-here": here ? "1" : null },
        el("span", { class: "card-name" }, t(c.kind), ...name, el("small", { class: "mono" }, c.card_uid)),
        el("span", { class: `badge ${c.status}` }, t(c.status)), button);
    });
    if (!rows.length) rows.push(el("li", { class: "empty" }, t("noCards")));
    $("cards").replaceChildren(...rows);
    phone.cards(cards);
  }
  // A card the writer answered for (registered, revoked): in the list before its view has it.
  function cardChanged(card) {
    const cards = state.data.cards ?? [];
    const known = cards.find((c) => c.card_uid === card.card_uid);
    if (known) known.status = card.status;
    else cards.unshift({ card_uid: card.card_uid, status: card.status, kind: "virtual", label: card.label });
    state.data.cards = cards;
    renderCards(cards);
  }

  function renderTransactions(items) {
    $("transactions").dataset.count = String(items.length);
    const rows = items.map(transactionRow);
    if (!rows.length) rows.push(el("li", { class: "empty" }, t("noTransactions")));
    $("transactions").replaceChildren(...rows);
  }

  // ``amount`` is signed (negative for a purchase, a payout, an expiry) and 0 for a declined swipe.
  function transactionRow(x) {
    const declined = x.decision === "declined", kind = t(KINDS[x.kind] ?? x.kind);
    const atMerchant = AT_A_MERCHANT.has(x.kind);
    const title = atMerchant ? x.merchant_name || x.merchant_id || kind : kind;
    const amount = declined ? t("declinedShort") : (x.amount > 0 ? "+" : "") + money(x.amount);
    const details = [atMerchant && x.kind !== "purchase" ? kind : "", atMerchant ? x.location : "",
                     x.medium === "phone" ? t("byPhone") : "", x.kind === "refund" ? x.reason : ""]
      .filter(Boolean).join(" · ");
    const after = declined ? t("declined", { reason: REASONS[state.lang][x.reason] ?? x.reason ?? "" })
      : x.balance === null || x.balance === undefined ? "" : t("balanceAfter", { amount: money(x.balance) });
    const time = x.at || x.recorded_at;
    return el("li", { "data-kind": x.kind, "data-decision": x.decision ?? "", "data-reason": declined ? x.reason ?? "" : "",
                      "data-seq": x.seq ?? "", "data-device": x.device ?? "", "data-card": x.card ?? "",
                      "data-medium": x.medium ?? "",
                      "data-amount": x.amount, class: declined ? "declined" : x.amount < 0 ? "out" : "in" },
      el("span", { class: "what" }, title), el("span", { class: "amount" }, amount),
      el("span", { class: "where" }, details, details ? " " : "", el("time", { datetime: time }, when(time))),
      el("span", { class: "after" }, after));
  }

  function renderReads(items) {
    $("reads").dataset.count = String(items.length);
    const rows = items.map((r) => el("li", { "data-role": r.role, "data-what": r.what },
      el("span", {}, READERS[state.lang][r.role] ?? r.role), el("span", {}, READ_WHAT[state.lang][r.what] ?? r.what),
      el("time", { datetime: r.at }, when(r.at, true))));
    if (!rows.length) rows.push(el("li", { class: "empty" }, t("noReads")));
    $("reads").replaceChildren(...rows);
  }

  // --- polling ---
  async function poll() {
    clearTimeout(state.timer);
    const seq = state.seq, started = performance.now();
    if (!state.session) return;
    if (Date.parse(state.session.expires_at) <= Date.now()) return expire();
    const slow = state.polls % SLOW_EVERY === 0;
    state.polls += 1;
    try {
      await Promise.all([loadBalance(), loadTransactions(), ...(slow ? [loadAccount(), loadCards(), loadReads()] : [])]);
      status("updated", { time: when(new Date().toISOString()).slice(6) });
      document.body.dataset.loaded = "1";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    } catch (err) {
      if (err instanceof SessionEnded || seq !== state.seq) return;
      failed(err);
      if (slow && !state.data.cards) phone.cards(null);  // unknown: this phone's code shows all the same
    }
    if (seq === state.seq) state.timer = setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
  }
  const loadAccount = async () => { state.data.account = await read(mine("")); render(); };
  const loadBalance = async () => { state.data.balance = await read(mine("/balance")); renderBalance(state.data.balance); };
  const loadCards = async () => { state.data.cards = (await read(mine("/cards"))).items; renderCards(state.data.cards); };
  const loadReads = async () => { state.data.reads = (await read(mine(`/reads?limit=${READS}`))).items; renderReads(state.data.reads); };
  async function loadTransactions() {
    state.data.transactions = (await read(mine(`/transactions?limit=${TRANSACTIONS}`))).items;
    renderTransactions(state.data.transactions);
  }

  // --- actions ---
  async function signIn(event) {
    event.preventDefault();
    const button = $("signin").querySelector("button[type=submit]");
    const body = { account_id: $("account-id").value.trim(), pin: $("pin").value };
    button.disabled = true;
    say("signin-message", null);
    status("signingIn");
    try {
      const resp = await fetch("/v1/sessions", { method: "POST", body: JSON.stringify(body), cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" }, signal: AbortSignal.timeout(TIMEOUT_MS) });
      let data = {};
      try { data = (await resp.json()) ?? {}; } catch { /* not JSON */ }
      status(null);
      if (resp.status === 201) return start(data);
      $("pin").value = "";
      if (resp.status === 401) say("signin-message", "wrongPin");
      else if (resp.status === 429) say("signin-message", "locked", { minutes: minutesFrom(resp.headers.get("Retry-After")) });
      else if (resp.status === 422 || resp.status === 400) say("signin-message", "badInput");
      else say("signin-message", "serverError", { status: resp.status });
    } catch {
      status("retrying", null, true);
    } finally {
      button.disabled = false;
    }
  }

  function start(session) {
    state.session = { token: session.token, account_id: session.account_id, expires_at: session.expires_at };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
    state.lastAccount = session.account_id;
    state.polls = 0;
    say("signin-message", null);
    $("pin").value = "";
    showHome();
    status("loading");
    poll();
  }

  async function cardAction(uid, action) {
    for (const b of $("cards").querySelectorAll("button")) b.disabled = true;
    const card = encodeURIComponent(uid);
    const answer = await api("POST", action === "revoke" ? `/v1/virtual-cards/${card}/revoke` : `/v1/cards/${card}/${action}`);
    if (answer.ok) {  // the writer's answer is newer than the cards' view, which follows within a moment
      for (const c of state.data.cards) if (c.card_uid === uid) c.status = answer.data.status;
      renderCards(state.data.cards);
      return say("cards-message", `${action}Done`, { card: uid }, "ok");
    }
    await loadCards();  // refused: what the hub has now (the page may have been behind)
    if (answer.status === 409) refused(uid, action, String(answer.data.detail ?? ""));
    else if (answer.status === 403) say("cards-message", "cardForbidden");
    else say("cards-message", "serverError", { status: answer.status });
  }

  // 409: the card was replaced (补卡) or the account closed meanwhile, or another card is active.
  function refused(uid, action, detail) {
    const other = state.data.cards.find((c) => c.card_uid !== uid && c.status === "active");
    if (state.data.cards.find((c) => c.card_uid === uid)?.status === "cancelled") {
      say("cards-message", "cardCancelled", { card: uid });
    } else if (action === "found" && other) {
      say("cards-message", "foundRefused", { card: other.card_uid });
    } else {
      say("cards-message", "actionRefused", { detail });
    }
  }

  // 挂失, 撤销 and "remove this phone" ask first, in the one dialog.
  function confirmAction(action, uid) {
    state.pending = { action, uid };
    $("confirm").returnValue = "";
    confirmWords(state.pending);
    $("confirm").showModal();
  }
  function confirmWords({ action, uid }) {
    const [title, text, ok] = CONFIRM[action];
    [$("confirm-title").textContent, $("confirm-ok").textContent] = [t(title), t(ok)];
    $("confirm-text").textContent = t(text, { card: uid });
  }

  async function changePin(event) {
    event.preventDefault();
    const old = $("old-pin").value, pin = $("new-pin").value;
    say("pin-message", null);
    if (!PIN_RE.test(pin)) return say("pin-message", "pinNotSix");
    if (pin !== $("new-pin-again").value) return say("pin-message", "pinMismatch");
    const answer = await api("POST", mine("/pin"), { pin, old_pin: old });
    for (const id of ["old-pin", "new-pin", "new-pin-again"]) $(id).value = "";
    if (answer.ok) say("pin-message", "pinChanged", null, "ok");
    else if (answer.status === 403) say("pin-message", "wrongOldPin");
    else if (answer.status === 429) say("pin-message", "pinLocked", { minutes: minutesFrom(answer.headers.get("Retry-After")) });
    else if (answer.status === 422) say("pin-message", "pinBadInput");
    else say("pin-message", "pinRefused", { detail: String(answer.data.detail ?? answer.status) });
  }

  // A failure that is not the session's end is said on the status line (the next poll retries).
  function failed(err) {
    if (err instanceof Refused) status("serverError", { status: err.status }, true);
    else if (!(err instanceof SessionEnded)) status("retrying", null, true);
  }
  const run = (action) => action().catch(failed);

  // --- wiring ---
  $("signin").addEventListener("submit", (event) => { signIn(event); });
  $("pin-form").addEventListener("submit", (event) => run(() => changePin(event)));
  $("signout").addEventListener("click", () => forget("signedOut"));
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch { /* storage off */ }
    applyLang();
  });
  $("cards").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    if (button.dataset.action === "found") run(() => cardAction(button.dataset.card, "found"));
    else confirmAction(button.dataset.action, button.dataset.card);
  });
  $("phone-create").addEventListener("click", () => run(phone.create));
  $("phone-refresh").addEventListener("click", () => run(phone.refresh));
  $("phone-remove").addEventListener("click", () => confirmAction("remove", phone.card()));
  $("confirm-ok").addEventListener("click", () => $("confirm").close("ok"));
  $("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));
  $("confirm").addEventListener("close", () => {
    const pending = state.pending;
    state.pending = null;
    if ($("confirm").returnValue !== "ok" || !pending) return;
    run(() => (pending.action === "remove" ? phone.remove() : cardAction(pending.uid, pending.action)));
  });
  $("reads-section").addEventListener("toggle", () => { if ($("reads-section").open && state.session) run(loadReads); });

  applyLang();
  state.session = loadSession();
  if (state.session) {
    showHome();
    status("loading");
    poll();
  } else {
    showSignin(null);
  }
})();
