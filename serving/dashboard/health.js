// The model health view: the champion from its manifest (offline metrics, data spans), the
// registry's champion pointer and the drift monitor's verdict (or why they are not on this
// server), and this worker's window of served lists (GET /v1/dashboard/health).
import { barChart, hbarChart, lineChart } from "./charts.js";
import {
  badge, clear, dateTime, day, el, errorBox, fmt, getJSON, num, pointer, section, table,
} from "./common.js";

const PATH = "/v1/dashboard/health";

function championPanel(b) {
  const k = (...rest) => pointer("champion", ...rest);
  return section("Champion",
    el("dl", { class: "facts" },
      el("dt", {}, "bundle"), el("dd", {}, `${b.name} · `, el("code", {}, b.version)),
      el("dt", {}, "trained"), el("dd", {}, dateTime(b.created_at)),
      el("dt", {}, "loaded"), el("dd", {}, dateTime(b.loaded_at)),
      el("dt", {}, "path"), el("dd", {}, el("code", {}, b.path)),
      el("dt", {}, "catalog"), el("dd", {}, num(k("catalog_items"), fmt.int(b.catalog_items)), " items, ",
        num(k("known_users"), fmt.int(b.known_users)), " known shoppers"),
      el("dt", {}, "sources"), el("dd", {}, b.sources.join(", ")),
      el("dt", {}, "ranker features"), el("dd", {}, num(k("features"), fmt.int(b.features))),
      el("dt", {}, "holdout from"), el("dd", {}, dateTime(b.holdout_start)),
      el("dt", {}, "surfaces ranked"), el("dd", {}, b.ranked_surfaces.join(", ") || "none")),
    spansTable(b));
}

function spansTable(b) {
  // parts fitted on the same events share one row
  const groups = new Map();
  for (const [part, s] of Object.entries(b.spans)) {
    const id = `${s.start}|${s.end}|${s.events}`;
    if (!groups.has(id)) groups.set(id, { parts: [], span: s, first: part });
    groups.get(id).parts.push(part);
  }
  const rows = [...groups.values()].map((g) => [g.parts.join(", "), day(g.span.start), day(g.span.end),
    num(pointer("champion", "spans", g.first, "events"), fmt.int(g.span.events))]);
  return el("details", {}, el("summary", {}, "Data each part was fitted on"),
    table(["parts", "from", "until", "events"], rows));
}

function offlinePanel(b) {
  const models = Object.entries(b.models);
  const metrics = [...new Set(models.flatMap(([, m]) => Object.keys(m.valid_metrics)))];
  const rows = models.map(([name, m]) => [el("span", {}, name, " ", el("small", {}, m.kind)),
    ...metrics.map((metric) => num(pointer("champion", "models", name, "valid_metrics", metric), fmt.num(m.valid_metrics[metric], 4))),
    num(pointer("champion", "models", name, "best_iteration"), m.best_iteration === null ? "–" : fmt.int(m.best_iteration))]);
  const curves = models.filter(([, m]) => m.curve.length > 1).map(([name, m]) => {
    const step = "iteration" in m.curve[0] ? "iteration" : "epoch" in m.curve[0] ? "epoch" : null;
    const keys = Object.keys(m.curve[0]).filter((key) => key.startsWith("valid_"));
    return el("figure", {},
      lineChart({
        xs: m.curve.map((c, i) => String(step ? c[step] : i + 1)), format: (v) => fmt.num(v, 3),
        label: `${name}: validation metrics by ${step || "step"}`, width: 360, height: 170,
        series: keys.map((key) => ({ name: key, points: m.curve.map((c, i) => [i, c[key]]) })),
      }),
      el("figcaption", {}, `${name} by ${step || "step"}: `, keys.map((key, i) =>
        el("span", { class: "series" }, el("span", { class: `key s${i}` }), ` ${key.replace("valid_", "")} `))));
  });
  const r = b.ranker;
  const ranker = r ? el("div", {},
    el("h4", {}, "for_you ranker (LightGBM LambdaMART)"),
    el("p", {}, num("/champion/ranker/queries", fmt.int(r.queries)), " queries, ",
      num("/champion/ranker/rows", fmt.int(r.rows)), " rows, best iteration ",
      num("/champion/ranker/best_iteration", r.best_iteration === null ? "–" : fmt.int(r.best_iteration)),
      ...Object.entries(r.holdout).filter(([key]) => key !== "iteration").map(([key, v]) =>
        el("span", {}, ` · ${key} `, num(pointer("champion", "ranker", "holdout", key), fmt.num(v, 4))))),
    el("figure", {}, hbarChart(r.top_features.map(([name, v]) => ({ label: name, value: v })),
      { format: (v) => fmt.int(v), label: "ranker feature importances (gain)" }),
    el("figcaption", {}, "the ten most important ranker features (total gain)")))
    : el("p", { class: "note" }, "This bundle has no ranker: the hybrid fuses the sources' ranks.");
  return section("Offline metrics (holdout, from the manifest)",
    table(["model", ...metrics, "best iteration"], rows, { id: "offline-metrics" }),
    curves.length ? el("div", { class: "figures" }, curves) : null, ranker);
}

function livePanel(live) {
  const rows = live.arms.map((a, i) => {
    const k = (...rest) => pointer("live", "arms", i, ...rest);
    return [a.arm, num(k("lists"), fmt.int(a.lists)), num(k("requests_per_s"), fmt.rate(a.requests_per_s)),
      num(k("latency_ms", "p50"), fmt.ms(a.latency_ms.p50)), num(k("latency_ms", "p95"), fmt.ms(a.latency_ms.p95)),
      num(k("latency_ms", "p99"), fmt.ms(a.latency_ms.p99)), num(k("fallback_rate"), fmt.pct(a.fallback_rate, 2)),
      el("span", {}, num(k("coverage"), fmt.pct(a.coverage, 1)), el("small", {}, " (", num(k("distinct_items"), fmt.int(a.distinct_items)), " items)")),
      num(k("top_share"), fmt.pct(a.top_share, 1))];
  });
  const all = live.arms[0];
  const hist = live.latency_histogram.map((b, i, arr) => ({
    label: b.le_ms === null ? `>${arr[i - 1].le_ms}` : `≤${b.le_ms}`, value: b.count,
  }));
  const top = live.top_items.map((t) => ({ label: t.title || t.item_id, value: t.share, title: `${t.title || t.item_id} (${t.item_id}): ${t.slots} slots` }));
  return section("Live traffic (this worker's recent served lists)",
    el("p", { class: "note" }, `Worker ${live.worker_pid}: the last `, num("/live/window_size", fmt.int(live.window_size)),
      " lists at most; request rate over the last ", num("/live/rate_window_s", fmt.int(live.rate_window_s)), " s; coverage of the champion's ",
      num("/live/catalog_items", fmt.int(live.catalog_items)), " items; top share = slots going to the top ",
      num("/live/top_fraction", fmt.pct(live.top_fraction, 0)), " of the catalog (",
      num("/live/arms/0/top_n", fmt.int(all.top_n)), " items)."),
    all.lists === 0 ? el("p", { class: "note" }, "No recommendation served by this worker yet.") : null,
    table(["arm", "lists", "requests", "p50", "p95", "p99", "fallback", "coverage", "top 1% share"], rows, { class: "wide", id: "live-arms" }),
    all.lists ? el("div", { class: "figures" },
      el("figure", {}, barChart(hist, { label: "latency histogram (ms)", width: 520, format: (v) => fmt.int(v) }),
        el("figcaption", {}, "latency of the lists in the window (ms)")),
      el("figure", {}, hbarChart(top, { label: "most served items", width: 520, format: (v) => fmt.pct(v, 1) }),
        el("figcaption", {}, "share of slots of the ten most served items"))) : null);
}

function availabilityPanel(title, a) {
  return section(title, el("p", {}, a.available ? badge("available", "ok") : badge("not on this server", "muted"), " ", a.note));
}

function otherBundles(h) {
  if (h.bundles.length < 2) return null;
  const rows = h.bundles.slice(1).map((b) => [b.name, el("code", {}, b.version), dateTime(b.created_at), b.path]);
  return section("Other loaded bundles (experiment variants)", table(["name", "version", "trained", "path"], rows));
}

export function healthView(root) {
  const body = el("div", { class: "health", "data-source": PATH });
  clear(root).append(body);
  return async function refresh() {
    try {
      const h = await getJSON(PATH);
      clear(body).append(...[
        el("div", { class: "columns" }, championPanel(h.champion), availabilityPanel("Model registry", h.registry)),
        livePanel(h.live), offlinePanel(h.champion), availabilityPanel("Drift", h.drift), otherBundles(h),
      ].filter(Boolean));
    } catch (error) {
      clear(body).append(errorBox(error));
    }
  };
}
