// cardhub app: formatting, pure. Money from the integer's digits (fen, never a float), times in the
// phone's own time zone, the minutes of a Retry-After, and DOM elements whose text is never HTML.
const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
export function money(fen) {
  if (!Number.isSafeInteger(fen)) return "–";
  const digits = String(Math.abs(fen)).padStart(3, "0");
  return (fen < 0 ? "−" : "") + "¥" + group(digits.slice(0, -2)) + "." + digits.slice(-2);
}
const pad = (n) => String(n).padStart(2, "0");
export function when(rfc3339, withYear) {
  const d = new Date(rfc3339);
  if (!rfc3339 || Number.isNaN(d.getTime())) return "–";
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withYear ? `${d.getFullYear()}-${day}` : day;
}
export const minutesFrom = (retryAfter) => {
  const seconds = Number(retryAfter);
  return Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds / 60) : 15;
};

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  node.append(...children);  // strings become text nodes: what the hub sends is never parsed as HTML
  return node;
}
