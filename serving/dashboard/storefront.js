// The storefront preview: a shopper (or an anonymous session with a cart), a surface and an
// arm; the list POST /v1/recommendations would answer, as cards, beside what the shopper bought.
// The preview endpoint runs the shop's code and records nothing (no exposure, no metrics).
import {
  append, badge, clear, dateTime, el, errorBox, fmt, getJSON, num, pointer, postJSON,
} from "./common.js";

const SHOPPERS = "/v1/dashboard/shoppers";
const OPTIONS = "/v1/dashboard/preview/options";
const PREVIEW = "/v1/dashboard/preview";

function ids(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function card(item, i) {
  const k = (field) => pointer("items", i, field);
  return el("li", { class: "card", "data-item-id": item.item_id },
    el("div", { class: "rank" }, num(k("rank"), String(item.rank))),
    el("h4", { class: "title" }, item.title ?? item.item_id),
    el("p", { class: "meta" }, el("span", { class: "category" }, item.category ?? "not in catalog"), " · ",
      el("code", {}, item.item_id), item.in_stock === false ? badge("out of stock", "warn") : null),
    el("p", { class: "figures" }, el("span", { class: "price" }, num(k("price"), fmt.num(item.price, 2))),
      el("span", { class: "score" }, "score ", num(k("score"), fmt.num(item.score, 4)))),
    el("ul", { class: "reasons" }, item.reasons.map((r) => el("li", {}, r))));
}

function purchases(shopper) {
  if (!shopper) return el("p", { class: "note" }, "An anonymous session has no purchases.");
  const head = el("p", {}, shopper.known ? badge("known to the champion", "ok") : badge("unknown: fallback", "warn"), " ",
    num("/events", fmt.int(shopper.events)), " events in the champion's history");
  if (!shopper.purchases.length) return el("div", {}, head, el("p", { class: "note" }, "No purchase yet."));
  return el("div", {}, head, el("ul", { class: "bought" }, shopper.purchases.map((p, i) => el("li", { "data-item-id": p.item_id },
    el("span", { class: "title" }, p.title ?? p.item_id), " ",
    el("small", {}, `${p.category ?? "?"} · `, num(pointer("purchases", i, "price"), fmt.num(p.price, 2)), " × ",
      num(pointer("purchases", i, "quantity"), fmt.int(p.quantity)), ` · ${dateTime(p.timestamp)}`,
      p.source === "store" ? " · since training" : "")))));
}

export function storefrontView(root) {
  const form = el("form", { class: "preview-form", autocomplete: "off" });
  const cards = el("ol", { class: "cards", "data-source": "preview" });
  const info = el("div", { class: "served" });
  const bought = el("div", { class: "bought-panel" });
  clear(root).append(form, el("div", { class: "storefront" },
    el("div", {}, el("h3", {}, "Recommended"), info, cards),
    el("aside", {}, el("h3", {}, "Bought before"), bought)));

  let options = null;
  const who = el("select", { id: "who", name: "who" },
    el("option", { value: "shopper" }, "a shopper"), el("option", { value: "session" }, "an anonymous session"));
  const shopper = el("select", { id: "shopper", name: "shopper" });
  const typed = el("input", { id: "user-id", name: "user_id", placeholder: "or type a user id", maxlength: 256 });
  const session = el("input", { id: "session-id", name: "session_id", value: "preview-session", maxlength: 256 });
  const cart = el("input", { id: "cart", name: "cart", placeholder: "item ids, comma separated" });
  const surface = el("select", { id: "surface", name: "surface" });
  const arm = el("select", { id: "arm", name: "arm" });
  const k = el("input", { id: "k", name: "k", type: "number", min: 1, value: 10 });
  const show = el("button", { id: "show", type: "submit" }, "Show");
  const surfaceField = el("label", {}, "surface ", surface);
  const surfaceNote = el("span", { class: "note", id: "surface-note" });
  const shopperFields = el("span", {}, shopper, " ", typed);
  const sessionFields = el("span", { hidden: true }, "session ", session);
  form.append(el("label", {}, "for ", who), " ", shopperFields, sessionFields, " ",
    el("label", {}, "cart ", cart), " ", surfaceField, surfaceNote, " ", el("label", {}, "arm ", arm), " ",
    el("label", {}, "k ", k), " ", show);

  who.addEventListener("change", () => {
    shopperFields.hidden = who.value !== "shopper";
    sessionFields.hidden = who.value !== "session";
  });
  shopper.addEventListener("change", () => { typed.value = ""; run(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); run(); });

  function armValue() {
    const choice = options.arms[Number(arm.value)];
    return choice.value;
  }

  function request() {
    const body = { k: Number(k.value) || 10, context: { cart: ids(cart.value) } };
    if (who.value === "shopper") body.user_id = typed.value.trim() || shopper.value;
    else body.session_id = session.value.trim() || "preview-session";
    if (options.surfaces.length && surface.value) body.surface = surface.value;
    return body;
  }

  async function run() {
    clear(info);
    const body = { request: request(), arm: armValue() };
    const userId = body.request.user_id;
    try {
      const [preview, history] = await Promise.all([
        postJSON(PREVIEW, body),
        userId ? getJSON(`${SHOPPERS}/${encodeURIComponent(userId)}`) : Promise.resolve(null),
      ]);
      const a = preview.arm;
      append(info, [el("p", {},
        a.experiment ? `${a.experiment} / ${a.variant}` : "no experiment", ` · ${a.pipeline} on ${a.bundle}`,
        a.assigned ? " (assigned by bucketing)" : " (chosen here)", " · model ", el("code", {}, preview.model_version), " ",
        preview.fallback ? badge("fallback", "warn") : null),
      el("p", { class: "note" }, "Preview only: no exposure and no metric was recorded."),
      preview.warnings.length ? el("ul", { class: "warnings" }, preview.warnings.map((w) => el("li", {}, w))) : null]);
      clear(cards).append(...preview.items.map(card));
      if (!preview.items.length) cards.append(el("li", { class: "note" }, "No item to show."));
      bought.setAttribute("data-source", userId ? `${SHOPPERS}/${encodeURIComponent(userId)}` : "");
      clear(bought).append(purchases(history));
    } catch (error) {
      clear(cards);
      clear(bought);
      info.append(errorBox(error));
    }
  }

  return async function load() {
    if (options) return;
    const [opts, list] = await Promise.all([getJSON(OPTIONS), getJSON(SHOPPERS)]);
    options = {
      surfaces: opts.surfaces,
      arms: [
        { label: "as assigned by the experiments", value: "assigned" },
        { label: "default bundle, no experiment", value: "default" },
        ...opts.experiments.flatMap((e) => e.variants.map((v) => ({
          label: `${e.name} / ${v}${e.active ? "" : " (inactive)"}`, value: { experiment: e.name, variant: v },
        }))),
      ],
    };
    k.setAttribute("max", opts.max_k);
    clear(arm).append(...options.arms.map((a, i) => el("option", { value: i }, a.label)));
    if (opts.surfaces.length) {
      clear(surface).append(...opts.surfaces.map((s) => el("option", { value: s, selected: s === opts.default_surface }, s)));
    } else {
      surfaceField.hidden = true;
      surfaceNote.textContent = "(this server's request has no surface field)";
    }
    clear(shopper).append(...list.shoppers.map((s) => el("option", { value: s.user_id },
      `${s.user_id} (${s.purchases} purchases)`)));
    if (list.shoppers.length) await run();
  };
}
