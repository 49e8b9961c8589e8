// The dashboard's entry point: three views behind tabs (#experiments, #health, #storefront),
// the refresh loop of the open view, and the status line. ?refresh=SECONDS sets how often the
// experiments and health views reload their JSON (default 30; 0 = never).
import { el, errorBox, stamp } from "./common.js";
import { experimentsView } from "./experiments.js";
import { healthView } from "./health.js";
import { storefrontView } from "./storefront.js";

const VIEWS = ["experiments", "health", "storefront"];
const params = new URLSearchParams(location.search);
const refreshSeconds = params.has("refresh") ? Math.max(0, Number(params.get("refresh")) || 0) : 30;
const status = document.getElementById("status");
const roots = Object.fromEntries(VIEWS.map((v) => [v, document.getElementById(`view-${v}`)]));
const loaders = {};
let timer = null;

function parseHash() {
  const [view, ...rest] = location.hash.replace(/^#/, "").split("/");
  return { view: VIEWS.includes(view) ? view : "experiments", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

function loader(view, arg) {
  if (!loaders[view]) {
    if (view === "experiments") {
      loaders[view] = experimentsView(roots[view], {
        selectedFromHash: arg,
        onSelect: (name) => history.replaceState(null, "", `#experiments/${encodeURIComponent(name)}`),
      });
    } else if (view === "health") {
      loaders[view] = healthView(roots[view]);
    } else {
      loaders[view] = storefrontView(roots[view]);
    }
  }
  return loaders[view];
}

async function load(view, arg) {
  if (status.dataset.state !== "ready") status.textContent = "loading…";   // else: keep the last time
  status.dataset.state = "loading";
  try {
    await loader(view, arg)();
    status.textContent = `updated ${stamp()}` + (view !== "storefront" && refreshSeconds ? ` · every ${refreshSeconds} s` : "");
    status.dataset.state = "ready";
  } catch (error) {
    status.textContent = "";
    status.dataset.state = "error";
    roots[view].prepend(errorBox(error));
  }
}

function show() {
  const { view, arg } = parseHash();
  for (const v of VIEWS) {
    roots[v].hidden = v !== view;
    document.querySelector(`nav.tabs a[data-view="${v}"]`).setAttribute("aria-current", v === view ? "page" : "false");
  }
  clearInterval(timer);
  load(view, arg);
  if (refreshSeconds > 0 && view !== "storefront") {
    timer = setInterval(() => load(view, null), refreshSeconds * 1000);
  }
}

window.addEventListener("hashchange", show);
document.getElementById("refresh-now").addEventListener("click", () => load(parseHash().view, null));
show();
