// cardhub app: this phone's card (本机电子卡, DESIGN §10). WebCrypto makes an Ed25519 key pair whose
// private key cannot be exported; its public key is registered as a virtual card of the signed-in
// account, and the record {account_id, card_uid, cert, keys, n} is kept in IndexedDB, one per
// account id (the CryptoKey objects themselves: never a private key's bytes). The payment code is
// made here, offline, exactly as domain/paycode.py makes it:
//   "CHV1." + b64url(canonical(body)) + "." + b64url(sig), body = {cert, t: unix seconds, n},
//   sig = Ed25519 over "cardhub/paycode/v1\n" + canonical(body) (UTF-8),
// n one more for every code made, stored (durably) before the code is shown, so no reload ever
// shows an n again. The QR code is drawn by qrcode-generator (vendor/, MIT), level M, on a canvas.
// Signing out hides the card; its record stays, for when that account signs in here again.
import qrcode from "./vendor/qrcode.mjs";

const DB_NAME = "cardhub.app", DB_VERSION = 1, STORE = "phone-cards";
const CODE_PREFIX = "cardhub/paycode/v1\n", CODE_START = "CHV1.";
const REFRESH_S = 30, TICK_MS = 1000, QUIET_MODULES = 4, MIN_MODULE_PX = 3, LABEL_MAX = 200;
const ED25519 = { name: "Ed25519" }, USES = ["sign", "verify"];
const GONE = new Set(["lost", "revoked", "cancelled"]);  // the card's status, where it cannot pay
const utf8 = new TextEncoder();

// canonical(obj) of DESIGN §2: keys sorted, no whitespace, non-ASCII as it is (JSON.stringify
// escapes no non-ASCII character); only strings, safe integers, booleans, lists and objects.
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new TypeError(`not a safe integer: ${value}`);
  if (!["string", "number", "boolean"].includes(typeof value)) throw new TypeError(`not canonical: ${value}`);
  return JSON.stringify(value);
}

// Standard base64 of bytes, or URL-safe without padding (b64url).
function b64(bytes, urlSafe) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  const text = btoa(binary);
  return urlSafe ? text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : text;
}

// The card's name at the hub: this device and browser, "Phone · Chrome" style, from fixed words only.
function label() {
  const ua = navigator.userAgent || "";
  const device = [[/iPhone/, "iPhone"], [/iPad/, "iPad"], [/Android/, "Android"], [/Windows/, "Windows"],
                  [/Macintosh|Mac OS X/, "Mac"], [/Linux|X11/, "Linux"]].find(([re]) => re.test(ua))?.[1] ?? "Phone";
  const browser = [[/MicroMessenger/, "WeChat"], [/AlipayClient/, "Alipay"], [/Edg\//, "Edge"], [/OPR\//, "Opera"],
                   [/Firefox\/|FxiOS/, "Firefox"], [/Chrome\/|CriOS/, "Chrome"], [/Safari\//, "Safari"]]
    .find(([re]) => re.test(ua))?.[1] ?? "Browser";
  return `${device} · ${browser}`.slice(0, LABEL_MAX);
}

// --- IndexedDB: one object store of records keyed by account id ---
let database = null;
function openDatabase() {
  database ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "account_id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return database;
}
// One transaction: ``work(store, done)`` makes its requests and calls done(value); the promise
// resolves with the value once the transaction has committed ("strict": on disk), not before.
async function transact(mode, work) {
  const db = await openDatabase();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode, { durability: "strict" });
    let result = null;
    tx.oncomplete = () => resolve(result);
    tx.onerror = tx.onabort = () => reject(tx.error);
    work(tx.objectStore(STORE), (value) => { result = value ?? null; });
  });
}
const load = (account) => transact("readonly", (store, done) => { store.get(account).onsuccess = (e) => done(e.target.result); });
const keep = (record) => transact("readwrite", (store, done) => { store.put(record).onsuccess = () => done(record); });
const drop = (account) => transact("readwrite", (store) => { store.delete(account); });
// The record with its n one higher, stored: read and written in one transaction, so two tabs
// never take the same n.
const nextN = (account) => transact("readwrite", (store, done) => {
  store.get(account).onsuccess = (e) => {
    const record = e.target.result;
    if (!record) return done(null);  // removed meanwhile (another tab)
    record.n += 1;
    store.put(record).onsuccess = () => done(record);
  };
});

// Whether this browser can make a phone card: WebCrypto Ed25519 and IndexedDB (once, on demand).
let probe = null;
const supported = () => {
  probe ??= (async () => {
    if (!globalThis.crypto?.subtle || !globalThis.indexedDB) return false;
    try {
      await crypto.subtle.generateKey(ED25519, false, USES);
      await openDatabase();
      return true;
    } catch {
      return false;
    }
  })();
  return probe;
};

// The payment code of the record (whose n is the one just stored) at unix second ``t``.
export async function paymentCode(record, t) {
  const body = canonical({ cert: record.cert, t, n: record.n });
  const sig = await crypto.subtle.sign(ED25519, record.keys.privateKey, utf8.encode(CODE_PREFIX + body));
  return CODE_START + b64(utf8.encode(body), true) + "." + b64(new Uint8Array(sig), true);
}

// Draws ``text`` as a QR code (level M) with its quiet zone, in whole pixels per module, as wide
// as the section lets it be; the canvas is scaled to the screen's pixels as they are (pixelated).
function draw(canvas, text) {
  const qr = qrcode(0, "M");
  qr.addData(text, "Byte");
  qr.make();
  const modules = qr.getModuleCount() + 2 * QUIET_MODULES;
  const cell = Math.max(MIN_MODULE_PX, Math.floor((canvas.parentElement.clientWidth || 0) / modules));
  canvas.width = canvas.height = modules * cell;
  const context = canvas.getContext("2d");
  context.fillStyle = "white";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.translate(QUIET_MODULES * cell, QUIET_MODULES * cell);
  qr.renderTo2dContext(context, cell);
  return { modules, cell };
}

// The section's controller. ``api(method, path, body)`` and ``mine(path)`` are the app's signed-in
// calls (a 401 ends the session); ``say(id, key, vars, tone)`` its messages, ``t(key, vars)`` its
// words; ``listed()`` the account's cards as last loaded (or undefined), ``changed(card)`` tells the
// app's cards list of a card the writer answered for.
export function phoneCard({ api, mine, say, t, listed, changed }) {
  const $ = (id) => document.getElementById(id);
  const s = { account: "", supported: null, record: null, status: "", listed: false, seq: 0, timer: 0, madeAt: 0,
              making: null, busy: false, said: false };

  // Signed in as ``account``: its record, if this browser keeps one, and the section for it.
  async function show(account) {
    hide();
    const seq = s.seq;
    s.account = account;
    s.supported = null;  // "loading" until the probe and the record are known (the cards list may come first)
    const can = await supported();
    const record = can ? await load(account) : null;
    if (seq !== s.seq) return;
    [s.supported, s.record] = [can, record];
    if (listed()) cards(listed());
    else render();
  }

  // Signed out, or the session ended: nothing of the card is shown; its record stays here.
  function hide() {
    s.seq += 1;
    Object.assign(s, { account: "", record: null, status: "", listed: false, making: null });
    stop();
    $("phone").dataset.state = "";
    if (s.said) say("phone-message", null);
  }

  // The account's cards as the hub lists them (null: they could not be loaded, so the code shows,
  // as it does offline): this phone's card may be lost or revoked elsewhere. Until the first list,
  // its code waits. A card not listed yet was registered a moment ago (the view follows): active.
  function cards(list) {
    const card = s.record && list?.find((c) => c.card_uid === s.record.card_uid);
    if (card) s.status = card.status;
    s.listed = true;
    render();
  }
  const isThisPhone = (uid) => Boolean(s.record) && s.record.card_uid === uid;

  function stateOf() {
    if (!s.account) return "";
    if (s.supported === null) return "loading";
    if (!s.supported) return "unsupported";
    if (!s.record) return "none";
    if (!s.listed) return "loading";
    if (GONE.has(s.status) || !(Date.parse(s.record.cert.valid_until) > Date.now())) return "gone";
    return "active";
  }

  function render() {
    const state = stateOf();
    if (!state) return;
    $("phone").dataset.state = state;
    $("phone-help").hidden = state !== "none";
    $("phone-create").hidden = !(state === "none" || (state === "gone" && s.status !== "cancelled"));  // closed: no new
    $("phone-create").textContent = t(state === "gone" ? "phoneCreateAgain" : "phoneCreate");
    $("phone-code").hidden = state !== "active";
    $("paycode").setAttribute("aria-label", t("phoneCode"));
    if (state === "unsupported" || state === "gone") {
      const key = state === "unsupported" ? "phoneUnsupported" : GONE.has(s.status) ? `phoneGone_${s.status}` : "phoneExpired";
      say("phone-message", key, { card: s.record?.card_uid });
      s.said = true;
    } else if (s.said) {
      say("phone-message", null);
      s.said = false;
    }
    if (state !== "active") return stop();
    $("phone-card").textContent = `${t("virtual")} ${s.record.card_uid} · ${s.record.label}`;
    countdown();
    if (!s.timer) {
      s.timer = setInterval(tick, TICK_MS);
      refresh();
    }
  }

  function stop() {
    clearInterval(s.timer);
    s.timer = 0;
    s.madeAt = 0;
    const canvas = $("paycode");
    canvas.width = canvas.height = 0;
    for (const key of ["code", "card", "n"]) delete canvas.dataset[key];
    $("phone-countdown").textContent = "";
  }

  const secondsLeft = () => REFRESH_S - Math.floor((Date.now() - s.madeAt) / 1000);
  function countdown() {
    $("phone-countdown").textContent = s.madeAt ? t("phoneRefreshIn", { seconds: Math.max(0, secondsLeft()) }) : "";
  }
  function tick() {
    if (!s.madeAt || secondsLeft() <= 0) refresh();
    else countdown();
  }

  // A new code: its n taken and stored first, then signed, drawn and shown. One at a time.
  function refresh() {
    if (s.making) return s.making;
    const seq = s.seq;
    const making = (async () => {
      try {
        const record = await nextN(s.account);
        if (seq !== s.seq) return;
        if (!record) {  // removed in another tab
          Object.assign(s, { record: null, status: "" });
          return render();
        }
        s.record = record;
        const at = Math.floor(Date.now() / 1000), code = await paymentCode(record, at);
        if (seq !== s.seq || stateOf() !== "active") return;
        const canvas = $("paycode");
        const { cell } = draw(canvas, code);
        Object.assign(canvas.dataset, { code, card: record.card_uid, n: String(record.n), modulePx: String(cell) });
        s.madeAt = at * 1000;
        countdown();
      } catch (err) {
        if (seq === s.seq) say("phone-message", "phoneFailed", { detail: String(err?.message ?? err) });
      } finally {
        if (s.making === making) s.making = null;
      }
    })();
    s.making = making;
    return making;
  }

  function busy(flag) {
    s.busy = flag;
    for (const id of ["phone-create", "phone-refresh", "phone-remove"]) $(id).disabled = flag;
  }

  // "Create this phone's card" (again, when the one here was lost or revoked elsewhere: a lost one
  // is revoked first, as its key is about to go).
  async function create() {
    if (s.busy || !s.supported) return;
    const seq = s.seq, account = s.account, old = s.record;
    busy(true);
    say("phone-message", null);
    s.said = false;
    try {
      if (old && s.status === "lost") await api("POST", `/v1/virtual-cards/${encodeURIComponent(old.card_uid)}/revoke`);
      const keys = await crypto.subtle.generateKey(ED25519, false, USES);  // the private key: not extractable
      const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
      const answer = await api("POST", mine("/virtual-cards"), { public_key: b64(raw, false), label: label() });
      if (answer.status !== 201) return refused(answer);
      const card = answer.data;
      const record = await keep({ account_id: account, card_uid: card.card_uid, cert: card.cert, label: card.label,
                                  keys, n: 0, created_at: new Date().toISOString() });
      if (seq !== s.seq) return;
      Object.assign(s, { record, status: card.status });
      changed(card);  // listed as this phone's
      say("phone-message", "phoneCreated", { card: card.card_uid }, "ok");
      render();
    } finally {
      busy(false);
    }
  }

  function refused(answer) {
    if (answer.status === 409 && answer.data.code === "too_many_virtual_cards") say("phone-message", "phoneTooMany");
    else if (answer.status === 409) say("phone-message", "phoneRefused", { detail: String(answer.data.detail ?? "") });
    else say("phone-message", "serverError", { status: answer.status });
  }

  // "Remove this phone" (confirmed by the app's dialog): the card revoked at the hub, then its
  // record deleted here. Revoked or cancelled before (409): this phone forgets it all the same.
  async function remove() {
    const record = s.record, seq = s.seq;
    if (!record || s.busy) return;
    busy(true);
    try {
      const answer = await api("POST", `/v1/virtual-cards/${encodeURIComponent(record.card_uid)}/revoke`);
      if (!answer.ok && answer.status !== 409) return say("phone-message", "serverError", { status: answer.status });
      await drop(record.account_id);
      if (seq !== s.seq) return;
      Object.assign(s, { record: null, status: "" });
      if (answer.ok) changed(answer.data);  // listed as revoked, no longer this phone's
      say("phone-message", "phoneRemoved", { card: record.card_uid }, "ok");
      render();
    } finally {
      busy(false);
    }
  }

  return { show, hide, cards, render, isThisPhone, create, remove, refresh: () => refresh(),
           card: () => s.record?.card_uid ?? "" };
}
