// cardhub dashboard: polls GET /v1/stats/dashboard with the bearer token kept in sessionStorage
// and draws it. Money arrives as integer fen and is only formatted here, never computed on.
// A module (strict by itself): its words are in dashboard-text.js.
import { REASONS, TEXT } from "./dashboard-text.js";

(() => {
  const POLL_MS = 2000, TIMEOUT_MS = 10000, BUCKET_MIN = 10, DAY_MIN = 1440;
  // Projections this few events behind the store read as up to date: between two polls a busy
  // hub always has a few events in flight.
  const UP_TO_DATE_EVENTS = 20;
  const TOKEN_KEY = "cardhub.dashboard.token", LANG_KEY = "cardhub.dashboard.lang";
  const COLORS = ["#1f6feb", "#d6336c", "#2f9e44", "#f08c00", "#7048e8", "#0c8599", "#862e9c", "#5c940d"];
  const MEALS = ["breakfast", "lunch", "dinner", "other"];
  const CATEGORIES = ["student", "staff", "visitor"];
  const $ = (id) => document.getElementById(id);
  const state = { lang: "zh", date: "", data: null, series: [], cutBucket: DAY_MIN / BUCKET_MIN,
                  timer: 0, seq: 0, message: "" };
  try { state.lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh"; } catch { /* storage off */ }
  // A label, with {name} replaced by vars.name.
  const t = (key, vars) => (TEXT[state.lang][key] ?? key).replace(/\{(\w+)\}/g, (_, name) => vars?.[name] ?? "");

  // --- formatting: integers only ---
  const group = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const num = (n) => (n < 0 ? "-" : "") + group(Math.abs(n));
  const money = (fen) => {
    const a = Math.abs(fen), cents = a % 100;
    return (fen < 0 ? "-" : "") + "¥" + group((a - cents) / 100) + "." + String(cents).padStart(2, "0");
  };
  // "YYYY-MM-DD HH:MM:SS" in the hub's time zone, whatever offset the instant was written with.
  function clock(rfc3339, zone) {
    if (!rfc3339) return "–";
    try {
      return new Intl.DateTimeFormat("sv-SE", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(rfc3339));
    } catch {
      return rfc3339.slice(0, 19).replace("T", " ");
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "style") Object.assign(node.style, value);  // CSSOM: allowed by the page's CSP
      else node.setAttribute(key, value);
    }
    node.append(...children);  // strings become text nodes: names from the hub are never parsed as HTML
    return node;
  }
  const bar = (fraction) => el("div", { class: "bar" },
    el("b", { style: { width: `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%` } }));
  const pair = (count, amount, attrs) => el("td", attrs, num(count), el("small", {}, money(amount)));

  // --- views ---
  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function showSignin(messageKey) {
    clearTimeout(state.timer);
    state.seq += 1;  // an answer still in flight is dropped
    state.data = null;
    state.message = messageKey;
    delete document.body.dataset.loaded;
    $("board").hidden = true;
    $("board-tools").hidden = true;
    $("signout").hidden = true;
    $("signin-view").hidden = false;
    $("signin-message").textContent = messageKey ? t(messageKey) : "";
    setStatus("");
    $("token").focus();
  }

  function showBoard() {
    $("signin-view").hidden = true;
    $("board").hidden = false;
    $("board-tools").hidden = false;
    $("signout").hidden = false;
  }

  function applyLang() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    $("lang").textContent = state.lang === "zh" ? "English" : "中文";
    $("per-minute").setAttribute("aria-label", t("perMinute"));
    if (state.message) $("signin-message").textContent = t(state.message);
    if (state.data) render(state.data);
  }

  // --- polling ---
  async function refresh() {
    clearTimeout(state.timer);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showSignin("");
    const seq = ++state.seq;
    const query = state.date ? "?date=" + encodeURIComponent(state.date) : "";
    try {
      const resp = await fetch("/v1/stats/dashboard" + query, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      if (seq !== state.seq) return;
      if (resp.status === 401 || resp.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        return signedOut(resp, seq);
      }
      const body = await resp.json();
      if (seq !== state.seq) return;
      if (!resp.ok) throw new Error(body.detail || `HTTP ${resp.status}`);
      state.data = body;
      showBoard();
      render(body);
      document.body.dataset.loaded = "1";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    } catch (err) {
      if (seq !== state.seq) return;
      setStatus(`${t("retrying")} ${err.message}`, true);
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  // 401: the token expired, was revoked (the hub's problem detail says which) or is not valid;
  // 403: its role may not read the dashboard. Either way the board and its figures go away.
  async function signedOut(resp, seq) {
    let detail = "";
    try { detail = String((await resp.json()).detail || ""); } catch { /* not a problem document */ }
    if (seq !== state.seq) return;
    if (resp.status === 403) return showSignin("forbidden");
    const why = /revoked/.test(detail) ? "revoked" : /expired/.test(detail) ? "expired" : "unauthorized";
    document.body.dataset.signedOut = why;
    return showSignin(why);
  }

  function render(d) {
    setStatus(`${t("updated")} ${clock(d.generated_at, d.time_zone).slice(11)} · ${d.date} · ${d.time_zone}`);
    document.body.dataset.date = d.date;
    if (document.activeElement !== $("date")) $("date").value = d.date;
    const total = d.total;
    const cells = [["total-count", "totalCount", total.count, num], ["total-amount", "totalAmount", total.amount, money],
                   ["total-cards", "totalCards", total.cards, num]];
    for (const [id, key, value, format] of cells) {
      $(id).dataset[key] = String(value);
      $(id).textContent = format(value);
    }
    renderChart(d);
    renderMeals(d);
    renderWindows(d.windows);
    renderCategories(d.categories);
    renderGates(d.gates);
    renderSlots(d.refunds, d.exposure);
    renderPhone(d.phone, d.total);
    renderDeclines(d.declines);
    renderSystem(d.projections, d.checkpoint, d.time_zone);
  }

  // Refunds and exposure: "—" until the first answer (responses_stats.Counted, DashboardExposure).
  function renderSlots(refunds, exposure) {
    $("refunds").dataset.shown = refunds ? "1" : "";
    $("refunds").textContent = refunds ? t("refundsN", { count: num(refunds.count) }) : "—";
    $("refunds-amount").textContent = refunds ? money(refunds.amount) : "";
    $("exposure").dataset.shown = exposure ? "1" : "";
    // The money owed by accounts below zero (offline purchases debited past the balance), then each figure.
    $("exposure").textContent = exposure ? money(exposure.negative_balances.fen) : "—";
    $("exposure-lines").replaceChildren(...(exposure ? [
      t("negativeBalances", { accounts: num(exposure.negative_balances.accounts) }),
      t("offlineFen", { fen: money(exposure.offline_fen) }),
      t("offlineOverLimit", { events: num(exposure.offline_over_limit.events),
                              fen: money(exposure.offline_over_limit.fen) }),
    ] : []).map((line) => el("li", {}, line)));
  }

  // Paid by phone (payment codes, DESIGN §10): its share of the day's purchases, then the figures;
  // "—" when the hub leaves it out (null: a manager, while fewer than 5 phones paid).
  function renderPhone(phone, total) {
    const share = (part, whole) => (whole > 0 ? `${(Math.round((1000 * part) / whole) / 10).toFixed(1)}%` : "–");
    const tile = $("phone");
    tile.dataset.shown = phone ? "1" : "";
    for (const key of ["count", "amount", "cards"]) tile.dataset[key] = phone ? String(phone[key]) : "";
    tile.textContent = phone ? share(phone.count, total.count) : "—";
    $("phone-lines").replaceChildren(...(phone ? [
      t("phoneSales", { count: num(phone.count), fen: money(phone.amount) }),
      t("phoneAmountShare", { share: share(phone.amount, total.amount) }),
      t("phonesN", { cards: num(phone.cards) }),
    ] : []).map((line) => el("li", {}, line)));
  }

  function renderDeclines(declines) {
    for (const [kind, id] of [["pos", "pos-declines"], ["gate", "gate-declines"]]) {
      const mine = declines.filter((x) => x.kind === kind);
      const list = $(id);
      list.dataset.total = String(mine.reduce((sum, x) => sum + x.count, 0));
      list.replaceChildren(...mine.map((x) => el("li", { "data-reason": x.reason, "data-count": x.count },
        el("span", { class: "name" }, REASONS[state.lang][x.reason] ?? x.reason, el("small", {}, x.reason)),
        el("span", { class: "value" }, num(x.count)))));
      if (!mine.length) list.append(el("li", { class: "empty" }, t("noDeclines")));
    }
  }

  function renderMeals(d) {
    const byKey = new Map(d.meals.map((m) => [`${m.merchant_id}/${m.meal}`, m]));
    const sums = MEALS.map(() => ({ count: 0, amount: 0 }));
    const rows = d.merchants.map((m) => {
      const meals = MEALS.map((meal, i) => {
        const x = byKey.get(`${m.merchant_id}/${meal}`) || { count: 0, amount: 0 };
        sums[i].count += x.count;
        sums[i].amount += x.amount;
        return pair(x.count, x.amount, { "data-meal": meal, "data-count": x.count, "data-amount": x.amount });
      });
      const day = pair(m.count, m.amount, { "data-merchant": m.merchant_id, "data-count": m.count,
                                            "data-amount": m.amount, "data-cards": m.cards });
      day.append(el("small", {}, `${num(m.cards)} ${t("cardsN")}`));
      return el("tr", {}, el("td", {}, m.name, el("small", {}, m.merchant_id)), day, ...meals);
    });
    $("meals").tBodies[0].replaceChildren(...rows);
    $("meals").tFoot.replaceChildren(el("tr", {}, el("td", {}, t("total")),
      pair(d.total.count, d.total.amount, {}), ...sums.map((s) => pair(s.count, s.amount, {}))));
  }

  function renderWindows(windows) {
    const list = $("windows"), max = Math.max(1, ...windows.map((w) => w.count));
    list.dataset.points = String(windows.length);
    list.replaceChildren(...windows.map((w) => el("li", { "data-device": w.device_id, "data-count": w.count,
      "data-amount": w.amount, title: `${w.device_id} · ${w.merchant_id}` },
      el("span", { class: "name" }, w.location || w.device_id),
      el("span", { class: "value" }, `${num(w.count)} · ${money(w.amount)}`), bar(w.count / max))));
    if (!windows.length) list.append(el("li", { class: "empty" }, t("noData")));
  }

  function renderCategories(categories) {
    const byKey = new Map(categories.map((c) => [c.key, c]));
    const keys = [...CATEGORIES, ...categories.map((c) => c.key).filter((k) => !CATEGORIES.includes(k))];
    const revenue = categories.reduce((sum, c) => sum + c.amount, 0);
    $("categories").tBodies[0].replaceChildren(...keys.map((key) => {
      const c = byKey.get(key) || { count: 0, amount: 0, cards: 0 };
      const share = revenue > 0 ? c.amount / revenue : 0;
      return el("tr", { "data-category": key, "data-count": c.count, "data-amount": c.amount },
        el("td", {}, t(key)), pair(c.count, c.amount, {}),
        el("td", { class: "share" }, `${(share * 100).toFixed(1)}%`, bar(share)));
    }));
  }

  function renderGates(gates) {
    const rows = gates.map((g) => el("tr", { "data-zone": g.zone, "data-in": g.in, "data-out": g.out,
      "data-declined": g.declined }, el("td", {}, g.name || g.zone, el("small", {}, g.zone)),
      el("td", {}, num(g.in)), el("td", {}, num(g.out)),
      el("td", g.declined ? { class: "bad" } : {}, num(g.declined))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "empty" }, t("noData"))));
    $("gates").tBodies[0].replaceChildren(...rows);
  }

  // In words first (fresh or behind, signed when); the engineering figures behind "details".
  function renderSystem(projections, checkpoint, zone) {
    const lag = projections.lag_events, fresh = $("freshness"), signed = $("signed");
    fresh.textContent = lag <= UP_TO_DATE_EVENTS ? t("upToDate") : t("behind", { n: num(lag) });
    fresh.className = lag <= UP_TO_DATE_EVENTS ? "ok" : lag < 10000 ? "warn" : "bad";
    fresh.dataset.lag = String(lag);
    signed.textContent = checkpoint ? t("signedAt", { time: clock(checkpoint.issued_at, zone).slice(11, 16) })
      : t("notSigned");
    signed.dataset.issuedAt = checkpoint ? checkpoint.issued_at : "";
    signed.title = checkpoint ? clock(checkpoint.issued_at, zone) : "";
    $("store-position").textContent = num(projections.store_position);
    $("lag").textContent = `${num(lag)} ${t("events")}`;
    $("lag").className = fresh.className;
    $("lag").dataset.lag = String(lag);
    $("tree-size").textContent = checkpoint ? num(checkpoint.tree_size) : t("noCheckpoint");
    $("tree-size").dataset.treeSize = checkpoint ? String(checkpoint.tree_size) : "";
    $("root-hash").textContent = checkpoint ? checkpoint.root_hash.slice(0, 16) + "…" : "–";
    $("root-hash").title = checkpoint ? checkpoint.root_hash : "";
    $("issued-at").textContent = checkpoint ? clock(checkpoint.issued_at, zone) : "–";
  }

  // --- the per-minute chart, on a canvas ---
  function renderChart(d) {
    const dining = d.merchants.filter((m) => m.category === "dining");
    const index = new Map(dining.map((m, i) => [m.merchant_id, i]));
    state.series = dining.map((m, i) => ({ name: m.name, count: m.count, color: COLORS[i % COLORS.length],
                                           buckets: new Array(DAY_MIN / BUCKET_MIN).fill(0) }));
    let points = 0;  // the per-minute rows drawn
    for (const p of d.per_minute) {
      const i = index.get(p.merchant_id);
      if (i === undefined || !(p.minute >= 0 && p.minute < DAY_MIN)) continue;
      state.series[i].buckets[Math.floor(p.minute / BUCKET_MIN)] += p.count;
      points += 1;
    }
    // Today's lines stop at the hub's current minute (or the last swipe) instead of dropping to zero.
    const now = clock(d.generated_at, d.time_zone);
    const minute = Number(now.slice(11, 13)) * 60 + Number(now.slice(14, 16));
    const last = Math.max(-1, ...state.series.map((s) => s.buckets.findLastIndex((c) => c > 0)));
    state.cutBucket = now.slice(0, 10) === d.date ? Math.max(Math.floor(minute / BUCKET_MIN), last) + 1
      : DAY_MIN / BUCKET_MIN;
    const canvas = $("per-minute");
    canvas.dataset.points = String(points);
    canvas.dataset.series = String(state.series.length);
    $("legend").replaceChildren(...state.series.map((s) => el("li", {},
      el("i", { style: { background: s.color } }), `${s.name} · ${num(s.count)}`)));
    drawChart();
  }

  function niceStep(value) {
    const power = 10 ** Math.floor(Math.log10(value)), f = value / power;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
  }

  function drawChart() {
    const canvas = $("per-minute"), w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.font = `12px ${getComputedStyle(document.body).fontFamily}`;
    const buckets = DAY_MIN / BUCKET_MIN, series = state.series;
    const max = Math.max(0, ...series.flatMap((s) => s.buckets)) / BUCKET_MIN;
    const step = niceStep(Math.max(max, 0.4) / 4), top = Math.max(1, Math.ceil(max / step)) * step;
    const label = g.measureText("00:00").width;
    const left = g.measureText(String(+top.toFixed(2))).width + 12, right = label / 2 + 4, y0 = 8, bottom = 22;
    const pw = w - left - right, ph = h - y0 - bottom;
    const x = (b) => left + (pw * b) / buckets, y = (v) => y0 + ph - (ph * v) / top;
    g.lineWidth = 1;
    g.strokeStyle = "#dde2ea";
    g.fillStyle = "#5d6677";
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let v = 0; v <= top + step / 2; v += step) {
      g.beginPath(); g.moveTo(left, y(v)); g.lineTo(left + pw, y(v)); g.stroke();
      g.fillText(String(+v.toFixed(2)), left - 6, y(v));
    }
    const every = [1, 2, 3, 4, 6, 12].find((n) => (pw / 24) * n >= label + 16) || 24;
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let hour = 0; hour <= 24; hour += 1) {
      const hx = x((hour * 60) / BUCKET_MIN);
      g.beginPath(); g.moveTo(hx, y0 + ph); g.lineTo(hx, y0 + ph + (hour % every ? 3 : 6)); g.stroke();
      if (hour % every === 0) g.fillText(`${String(hour).padStart(2, "0")}:00`, hx, y0 + ph + 7);
    }
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const s of series) {
      g.strokeStyle = s.color;
      g.beginPath();
      for (let b = 0; b < state.cutBucket; b += 1) {
        const px = x(b + 0.5), py = y(s.buckets[b] / BUCKET_MIN);
        if (b === 0) g.moveTo(px, py); else g.lineTo(px, py);
      }
      g.stroke();
    }
    if (!series.some((s) => s.buckets.some((c) => c > 0))) {
      g.fillStyle = "#5d6677";
      g.textBaseline = "middle";
      g.fillText(t("noData"), left + pw / 2, y0 + ph / 2);
    }
  }

  // --- wiring ---
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    delete document.body.dataset.signedOut;
    $("token").value = "";
    state.message = "";
    $("signin-message").textContent = "";
    setStatus(t("loading"));
    refresh();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin("signedOut");
  });
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    try { localStorage.setItem(LANG_KEY, state.lang); } catch { /* storage off */ }
    applyLang();
  });
  $("date").addEventListener("change", () => { state.date = $("date").value; refresh(); });
  $("today").addEventListener("click", () => { state.date = ""; refresh(); });
  new ResizeObserver(() => drawChart()).observe($("per-minute"));

  applyLang();
  if (sessionStorage.getItem(TOKEN_KEY)) {
    setStatus(t("loading"));
    refresh();
  } else {
    showSignin("");
  }
})();
