// The experiments view: every experiment (status, traffic, variants, live counts) and, for the
// selected one, the readout of GET /v1/dashboard/experiments/{name}/results: the numbers of
// `recsys experiment report`, from the same code.
import { intervalChart, lineChart } from "./charts.js";
import {
  badge, clear, dateTime, day, DASH, el, errorBox, fmt, getJSON, num, pointer, section, table,
} from "./common.js";

const LIST = "/v1/dashboard/experiments";
const RATES = new Set(["ctr", "add_to_cart_rate", "conversion_rate"]);
const LABELS = {
  ctr: "CTR", add_to_cart_rate: "add-to-cart rate", conversion_rate: "conversion rate",
  revenue_per_unit: "revenue per unit", aov: "AOV",
};
const COUNTS = ["units", "exposures", "impressions", "clicks", "carts", "purchases", "orders"];

function metricFormat(metric) {
  return RATES.has(metric) ? (v) => fmt.pct(v, 2) : (v) => fmt.num(v, 2);
}

function label(metric) {
  return LABELS[metric] || metric.replaceAll("_", " ");
}

function yesNo(key, value, good = "yes") {
  if (value === null || value === undefined) return el("span", { "data-key": key }, DASH);
  const text = value ? "yes" : "no";
  return el("span", { class: `badge ${text === good ? "ok" : "warn"}`, "data-key": key }, text);
}

function bracket(lowKey, highKey, low, high, format) {
  return el("span", { class: "interval" }, "[", num(lowKey, format(low)), ", ", num(highKey, format(high)), "]");
}

export function resultsPath(name) {
  return `${LIST}/${encodeURIComponent(name)}/results`;
}

// ------------------------------------------------------------------ the list
function listEntry(exp, i, selected, select) {
  const status = exp.active ? badge("active", "ok") : badge("inactive", "muted");
  const units = exp.variants.map((v, j) => el("li", {},
    el("b", {}, v.name), " ", num(pointer("experiments", i, "variants", j, "weight"), fmt.pct(v.weight, 0)),
    ` · ${v.pipeline || "hybrid"}${v.bundle ? ` on ${v.bundle}` : ""} · `,
    num(pointer("experiments", i, "counts", v.name, "units"), fmt.int(exp.counts[v.name]?.units ?? 0)), " units"));
  return el("li", {},
    el("button", {
      type: "button", class: exp.name === selected ? "experiment selected" : "experiment",
      "data-experiment": exp.name, "aria-pressed": exp.name === selected ? "true" : "false",
      on: { click: () => select(exp.name) },
    },
    el("span", { class: "name" }, exp.name), " ", status,
    el("span", { class: "traffic" }, "traffic ", num(pointer("experiments", i, "traffic"), fmt.pct(exp.traffic, 0))),
    el("ul", { class: "variants" }, units)));
}

// ------------------------------------------------------------------ the readout
function summaryPanel(r) {
  const variants = r.variants.map((v) => v.name);
  const rows = COUNTS.map((c) => [c, ...variants.map((v) => num(pointer("summary", v, c), fmt.int(r.summary[v]?.[c])))]);
  rows.push(["revenue", ...variants.map((v) => num(pointer("summary", v, "revenue"), fmt.num(r.summary[v]?.revenue, 2)))]);
  for (const m of Object.keys(LABELS)) {
    const f = metricFormat(m);
    rows.push([label(m), ...variants.map((v) => {
      const iv = r.intervals?.[v]?.[m] || [null, null];
      return el("span", {}, num(pointer("summary", v, m), f(r.summary[v]?.[m])), " ",
        el("small", {}, bracket(pointer("intervals", v, m, 0), pointer("intervals", v, m, 1), iv[0], iv[1], f)));
    })]);
  }
  const chartRows = [];
  for (const m of RATES) {
    for (const v of variants) {
      const iv = r.intervals?.[v]?.[m] || [null, null];
      chartRows.push({ label: `${label(m)}, ${v}`, value: r.summary[v]?.[m], lo: iv[0], hi: iv[1], highlight: v !== r.control });
    }
  }
  return section("Per variant (95% intervals)", el("div", { class: "figures" },
    table(["", ...variants], rows, { class: "wide", id: "variant-summary" }),
    intervalChart(chartRows, { format: (v) => fmt.pct(v, 1), label: "rates by variant with 95% intervals", width: 440 })));
}

function liftPanel(r) {
  const rows = r.lift.map((row, i) => {
    const f = metricFormat(row.metric);
    const k = (field) => pointer("lift", i, field);
    return [label(row.metric), row.variant, num(k("control"), f(row.control)), num(k("treatment"), f(row.treatment)),
      el("span", {}, num(k("diff"), f(row.diff)), " ", el("small", {}, bracket(k("ci_low"), k("ci_high"), row.ci_low, row.ci_high, f))),
      el("span", {}, num(k("rel_lift"), fmt.signedPct(row.rel_lift)), " ",
        el("small", {}, bracket(k("rel_ci_low"), k("rel_ci_high"), row.rel_ci_low, row.rel_ci_high, (v) => fmt.signedPct(v)))),
      num(k("p_value"), fmt.p(row.p_value)), num(k("p_adjusted"), fmt.p(row.p_adjusted)),
      yesNo(k("significant_adjusted"), row.significant_adjusted)];
  });
  const forest = r.lift.map((row) => ({
    label: `${label(row.metric)} (${row.variant})`, value: row.rel_lift, lo: row.rel_ci_low, hi: row.rel_ci_high,
    highlight: row.significant_adjusted,
  }));
  const mt = r.multiple_testing;
  return section(`Lift against ${r.control}`,
    table(["metric", "variant", "control", "treatment", "difference [95% CI]", "relative lift [95% CI]",
      "p", "p (Holm)", "significant"], rows, { class: "wide", id: "lift" }),
    mt ? el("p", { class: "note" }, `p (Holm): adjusted over ${mt.tests} tests (${mt.family}); significant uses it at alpha ${r.alpha}.`) : null,
    intervalChart(forest, { format: (v) => fmt.signedPct(v, 0), label: "relative lift with 95% intervals" }));
}

function cupedPanel(r) {
  const c = r.cuped;
  if (!c.rows?.length) return section("CUPED (revenue per unit)", el("p", { class: "note" }, c.note || "not applied"));
  const rows = c.rows.map((row, i) => {
    const k = (field) => pointer("cuped", "rows", i, field);
    return [row.variant, num(k("diff"), fmt.num(row.diff, 2)),
      bracket(k("ci_low"), k("ci_high"), row.ci_low, row.ci_high, (v) => fmt.num(v, 2)),
      num(k("rel_lift"), fmt.signedPct(row.rel_lift)), num(k("p_value"), fmt.p(row.p_value)),
      num(k("variance_reduction"), fmt.pct(row.variance_reduction, 1))];
  });
  return section("CUPED (revenue per unit, adjusted by pre-period revenue)",
    table(["variant", "difference", "95% CI", "relative lift", "p", "variance removed"], rows), c.note ? el("p", { class: "note" }, c.note) : null);
}

function srmPanel(r) {
  const s = r.srm;
  if (!s) return section("Sample ratio", el("p", { class: "note" }, "no units yet"));
  const rows = Object.keys(s.observed).map((v) => [v, num(pointer("srm", "observed", v), fmt.int(s.observed[v])),
    num(pointer("srm", "expected", v), fmt.num(s.expected[v], 1))]);
  return section("Sample ratio",
    el("p", {}, "chi² ", num(pointer("srm", "chi2"), fmt.num(s.chi2, 3)), ", p = ", num(pointer("srm", "p_value"), fmt.p(s.p_value)),
      ` (flagged below ${s.threshold}) · mismatch: `, yesNo(pointer("srm", "mismatch"), s.mismatch, "no")),
    table(["variant", "units", "expected"], rows, { id: "srm" }));
}

function sequentialPanel(r) {
  const blocks = r.sequential.map((s, i) => {
    const f = metricFormat(s.metric);
    const xs = s.looks.map((l) => day(l.day));
    const k = (...rest) => pointer("sequential", i, ...rest);
    const rows = s.looks.map((l, j) => [day(l.day), el("span", {}, num(k("looks", j, "units_control"), fmt.int(l.units_control)), " / ",
      num(k("looks", j, "units_treatment"), fmt.int(l.units_treatment))),
    num(k("looks", j, "diff"), f(l.diff)), num(k("looks", j, "p_value"), fmt.p(l.p_value)),
    bracket(k("looks", j, "cs_low"), k("looks", j, "cs_high"), l.cs_low, l.cs_high, f),
    bracket(k("looks", j, "ci_low"), k("looks", j, "ci_high"), l.ci_low, l.ci_high, f),
    num(k("looks", j, "fixed_p_value"), fmt.p(l.fixed_p_value))]);
    const chart = lineChart({
      xs, zero: true, format: f, label: `${label(s.metric)}: cumulative difference by day`,
      band: s.looks.map((l, j) => [j, l.cs_low, l.cs_high]),
      series: [
        { name: "difference", points: s.looks.map((l, j) => [j, l.diff]) },
        { name: "fixed 95% CI, low", points: s.looks.map((l, j) => [j, l.ci_low]), cls: "dashed" },
        { name: "fixed 95% CI, high", points: s.looks.map((l, j) => [j, l.ci_high]), cls: "dashed" },
      ],
    });
    return el("div", { class: "look" },
      el("h4", {}, `${label(s.metric)}: ${s.variant} − ${r.control}`),
      el("p", {}, "always-valid p = ", num(k("p_value"), fmt.p(s.p_value)), " · rejected: ", yesNo(k("reject"), s.reject),
        s.first_reject_day ? ` (from ${day(s.first_reject_day)})` : "",
        s.empty_sequence_since ? ` · confidence sequence empty since ${day(s.empty_sequence_since)}` : "",
        s.tau2_source ? ` · τ² from ${s.tau2_source}` : ""),
      s.note ? el("p", { class: "note" }, s.note) : null,
      chart,
      el("p", { class: "legend" }, el("span", { class: "key line" }), " cumulative difference ",
        el("span", { class: "key band" }), " always-valid confidence sequence ",
        el("span", { class: "key dashed" }), " fixed-horizon 95% CI (invalid when peeked at)"),
      table(["day", "units c / t", "difference", "always-valid p", "confidence sequence", "fixed 95% CI", "fixed p"], rows));
  });
  return section(`Always-valid daily looks (mSPRT; a look needs ${r.min_units_per_look} units per variant)`, blocks);
}

function guardrailPanel(r) {
  const g = r.guardrails;
  const rows = g.checks.map((c, i) => [c.variant, c.metric,
    num(pointer("guardrails", "checks", i, "value"), fmt.num(c.value, 4)),
    num(pointer("guardrails", "checks", i, "threshold"), fmt.num(c.threshold, 4)),
    badge(c.status, c.status === "passed" ? "ok" : c.status === "failed" ? "bad" : "muted")]);
  return section("Guardrails",
    el("p", {}, "status: ", badge(g.status, g.status === "passed" ? "ok" : g.status === "failed" ? "bad" : "muted"),
      g.note ? ` ${g.note}` : ""),
    rows.length ? table(["variant", "guardrail", "value", "threshold", "status"], rows, { id: "guardrails" }) : null);
}

function readoutView(r) {
  const dq = r.data_quality;
  return [
    el("header", { class: "readout-head" },
      el("h2", {}, r.experiment),
      el("p", {}, `control arm: ${r.control} · alpha ${r.alpha} · ${dateTime(r.period.start)} to ${dateTime(r.period.end)} (`,
        num("/period/days", fmt.int(r.period.days)), " days) · readout at ", dateTime(r.generated_at)),
      dq ? el("p", { class: "note" }, "events read ", num("/data_quality/rows_read", fmt.int(dq.rows_read)),
        ", skipped ", num("/data_quality/rows_skipped", fmt.int(dq.rows_skipped))) : null),
    r.warnings.length ? el("ul", { class: "warnings" }, r.warnings.map((w) => el("li", {}, w))) : null,
    summaryPanel(r), liftPanel(r), srmPanel(r), sequentialPanel(r), cupedPanel(r), guardrailPanel(r),
  ];
}

// ------------------------------------------------------------------ the view
export function experimentsView(root, { selectedFromHash, onSelect }) {
  const list = el("ul", { class: "experiment-list", "data-source": LIST });
  const detail = el("div", { class: "readout" });
  clear(root).append(el("div", { class: "split" }, el("nav", { "aria-label": "experiments" }, list), detail));
  let selected = selectedFromHash;

  async function refresh() {
    const data = await getJSON(LIST);
    if (!selected || !data.experiments.some((e) => e.name === selected)) {
      selected = (data.experiments.find((e) => e.active) || data.experiments[0])?.name;
    }
    clear(list).append(...data.experiments.map((e, i) => listEntry(e, i, selected, select)));
    if (!selected) {
      clear(detail).append(el("p", { class: "note" }, "No experiment is configured on this server."));
      return;
    }
    const path = resultsPath(selected);
    try {
      const readout = await getJSON(path);
      detail.setAttribute("data-source", path);
      clear(detail).append(...readoutView(readout).filter(Boolean));
    } catch (error) {
      detail.removeAttribute("data-source");
      clear(detail).append(errorBox(error));
    }
  }

  function select(name) {
    selected = name;
    onSelect(name);
    refresh().catch((e) => clear(detail).append(errorBox(e)));
  }

  return refresh;
}
