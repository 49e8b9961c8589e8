// Shared by the views: DOM building (text nodes only: data is never parsed as HTML), the JSON
// calls (same origin; the browser adds the key it asked for), number formats, and the marks
// that tie each shown number to the JSON it came from (data-source on a container, data-key =
// a JSON pointer on the number), which the acceptance test reads back.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// ------------------------------------------------------------------ JSON calls
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(`${status} ${title}: ${detail}`);
    this.status = status;
  }
}

async function problemOf(response) {
  let title = response.statusText;
  let detail = "";
  try {
    const body = await response.json();
    title = body.title || title;
    detail = body.detail || "";
  } catch (e) {
    detail = "(no problem document)";
  }
  return new ApiError(response.status, title, detail);
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

export function errorBox(error) {
  return el("div", { class: "error", role: "alert" }, String(error.message || error));
}

// ------------------------------------------------------------------ numbers
export const DASH = "–";   // a number that cannot be computed yet (null in the JSON)

function missing(v) {
  return v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v));
}

export const fmt = {
  int: (v) => (missing(v) ? DASH : Math.round(v).toLocaleString("en-US")),
  num: (v, digits = 2) => (missing(v) ? DASH : v.toFixed(digits)),
  sig: (v, digits = 3) => (missing(v) ? DASH : Number(v.toPrecision(digits)).toString()),
  pct: (v, digits = 2) => (missing(v) ? DASH : `${(v * 100).toFixed(digits)}%`),
  signedPct: (v, digits = 1) => (missing(v) ? DASH : `${v >= 0 ? "+" : ""}${(v * 100).toFixed(digits)}%`),
  ms: (v) => (missing(v) ? DASH : `${v.toFixed(2)} ms`),
  p: (v) => {
    if (missing(v)) return DASH;
    if (v === 0) return "0";
    return v < 0.001 ? v.toExponential(1) : v.toFixed(3);
  },
  rate: (v) => (missing(v) ? DASH : `${v.toFixed(2)}/s`),
};

export function interval(pair, format) {
  if (!Array.isArray(pair) || missing(pair[0]) || missing(pair[1])) return DASH;
  return `[${format(pair[0])}, ${format(pair[1])}]`;
}

// A JSON pointer (RFC 6901) from path segments: how a shown number names its place in the JSON.
export function pointer(...segments) {
  return "/" + segments.map((s) => String(s).replaceAll("~", "~0").replaceAll("/", "~1")).join("/");
}

// One shown number: its text, and the JSON pointer of the value it shows.
export function num(key, text, cls = "num") {
  return el("span", { class: cls, "data-key": key }, text);
}

export function dateTime(iso) {
  if (!iso) return DASH;
  return iso.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, " UTC");
}

export function day(iso) {
  return iso ? iso.slice(0, 10) : DASH;
}

export function table(headers, rows, attrs = {}) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

export function badge(text, kind) {
  return el("span", { class: `badge ${kind}` }, text);
}

export function section(title, ...children) {
  return el("section", { class: "panel" }, el("h3", {}, title), children);
}

export function stamp() {
  return new Date().toISOString().slice(11, 19) + " UTC";
}
