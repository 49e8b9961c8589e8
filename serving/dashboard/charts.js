// Small SVG charts, written by hand: an interval (forest) plot, a line chart with a band, and a
// bar chart. Text goes in through textContent only; each mark has a <title> for hovering.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  if (text !== null) node.textContent = String(text);
  return node;
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function extent(values, includeZero) {
  const v = values.filter(finite);
  if (includeZero) v.push(0);
  if (!v.length) return [0, 1];
  let lo = Math.min(...v);
  let hi = Math.max(...v);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const pad = (hi - lo) * 0.06;
  return [lo - pad, hi + pad];
}

function scale([d0, d1], [r0, r1]) {
  return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
}

function ticks([lo, hi], n = 4) {
  const step = (hi - lo) / n;
  return Array.from({ length: n + 1 }, (_, i) => lo + i * step);
}

function frame(width, height, label) {
  return svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label, class: "chart",
  });
}

// rows: [{label, value, lo, hi}]; one row per line, a dot and its interval, a line at zero.
export function intervalChart(rows, { format = (v) => v.toFixed(3), label = "intervals", width = 560 } = {}) {
  const left = 170, right = 20, rowH = 26, top = 10, axisH = 24;
  const height = top + rows.length * rowH + axisH;
  const root = frame(width, height, label);
  const dom = extent(rows.flatMap((r) => [r.value, r.lo, r.hi]), true);
  const x = scale(dom, [left, width - right]);
  const bottom = top + rows.length * rowH;
  for (const t of ticks(dom)) {
    root.append(svg("line", { x1: x(t), x2: x(t), y1: top, y2: bottom, class: "grid" }));
    root.append(svg("text", { x: x(t), y: bottom + 16, class: "tick", "text-anchor": "middle" }, format(t)));
  }
  root.append(svg("line", { x1: x(0), x2: x(0), y1: top, y2: bottom, class: "zero" }));
  rows.forEach((r, i) => {
    const y = top + i * rowH + rowH / 2;
    root.append(svg("text", { x: left - 8, y: y + 4, class: "label", "text-anchor": "end" }, r.label));
    const g = svg("g", { class: r.highlight ? "mark strong" : "mark" });
    if (finite(r.lo) && finite(r.hi)) {
      g.append(svg("line", { x1: x(r.lo), x2: x(r.hi), y1: y, y2: y, class: "whisker" }));
    }
    if (finite(r.value)) g.append(svg("circle", { cx: x(r.value), cy: y, r: 4.5 }));
    const lo = finite(r.lo) ? format(r.lo) : "–";
    const hi = finite(r.hi) ? format(r.hi) : "–";
    titled(g, `${r.label}: ${finite(r.value) ? format(r.value) : "–"} [${lo}, ${hi}]`);
    root.append(g);
  });
  return root;
}

// series: [{name, points: [[x, y]], cls}], band: [[x, lo, hi]] (shaded), xs: category labels.
export function lineChart({ xs, series, band = [], format = (v) => v.toFixed(3), label = "chart",
  width = 560, height = 200, zero = false }) {
  const left = 60, right = 40, top = 12, bottom = 28;
  const root = frame(width, height, label);
  const values = series.flatMap((s) => s.points.map((p) => p[1])).concat(band.flatMap((b) => [b[1], b[2]]));
  const dom = extent(values, zero);
  const n = Math.max(xs.length - 1, 1);
  const x = (i) => left + (i / n) * (width - left - right);
  const y = scale(dom, [height - bottom, top]);
  for (const t of ticks(dom)) {
    root.append(svg("line", { x1: left, x2: width - right, y1: y(t), y2: y(t), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, format(t)));
  }
  const every = Math.ceil(xs.length / 8);
  xs.forEach((name, i) => {
    if (i % every === 0 || i === xs.length - 1) {
      root.append(svg("text", { x: x(i), y: height - 8, class: "tick", "text-anchor": "middle" }, name));
    }
  });
  if (zero) root.append(svg("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), class: "zero" }));
  const full = band.filter((b) => finite(b[1]) && finite(b[2]));
  if (full.length) {
    const upper = full.map((b) => `${x(b[0])},${y(b[2])}`);
    const lower = full.slice().reverse().map((b) => `${x(b[0])},${y(b[1])}`);
    root.append(titled(svg("polygon", { points: upper.concat(lower).join(" "), class: "band" }),
      "always-valid confidence sequence"));
  }
  series.forEach((s, k) => {
    const pts = s.points.filter((p) => finite(p[1]));
    if (!pts.length) return;
    root.append(svg("polyline", {
      points: pts.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), class: `line s${k} ${s.cls || ""}`,
    }));
    for (const p of pts) {
      root.append(titled(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: s.cls === "dashed" ? 1.5 : 3, class: `dot s${k}` }),
        `${s.name}, ${xs[p[0]]}: ${format(p[1])}`));
    }
  });
  return root;
}

// bars: [{label, value, title}]; vertical bars with their labels underneath.
export function barChart(bars, { format = (v) => String(v), label = "bars", width = 560, height = 180 } = {}) {
  const left = 44, right = 10, top = 10, bottom = 34;
  const root = frame(width, height, label);
  const max = Math.max(1e-12, ...bars.map((b) => b.value).filter(finite));
  const y = scale([0, max * 1.05], [height - bottom, top]);
  const slot = (width - left - right) / Math.max(bars.length, 1);
  for (const t of ticks([0, max * 1.05], 3)) {
    root.append(svg("line", { x1: left, x2: width - right, y1: y(t), y2: y(t), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, format(t)));
  }
  bars.forEach((b, i) => {
    const x0 = left + i * slot + slot * 0.15;
    const h = finite(b.value) ? (height - bottom) - y(b.value) : 0;
    root.append(titled(svg("rect", { x: x0, y: (height - bottom) - h, width: slot * 0.7, height: h, class: "bar" }),
      b.title || `${b.label}: ${format(b.value)}`));
    root.append(svg("text", { x: x0 + slot * 0.35, y: height - bottom + 14, class: "tick", "text-anchor": "middle" }, b.label));
  });
  return root;
}

// rows: [{label, value, title}]; one horizontal bar per row, its label on the left, its value
// at the end (for long labels: item titles, feature names).
export function hbarChart(rows, { format = (v) => String(v), label = "bars", width = 560 } = {}) {
  const left = 210, right = 60, rowH = 20, top = 6;
  const height = top * 2 + rows.length * rowH;
  const root = frame(width, height, label);
  const max = Math.max(1e-12, ...rows.map((r) => r.value).filter(finite));
  const x = scale([0, max], [left, width - right]);
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const text = r.label.length > 32 ? `${r.label.slice(0, 31)}…` : r.label;
    root.append(svg("text", { x: left - 8, y: y + rowH * 0.7, class: "label", "text-anchor": "end" }, text));
    const w = finite(r.value) ? x(r.value) - left : 0;
    root.append(titled(svg("rect", { x: left, y: y + 3, width: Math.max(w, 0), height: rowH - 6, class: "bar" }),
      r.title || `${r.label}: ${format(r.value)}`));
    root.append(svg("text", { x: left + w + 6, y: y + rowH * 0.7, class: "tick" }, format(r.value)));
  });
  return root;
}
