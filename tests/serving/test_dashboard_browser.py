"""Acceptance: the dashboard in headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright) against a real uvicorn server on one small bundle, after a short simulation.

* each view opens and every number it shows (each element marked ``data-key``, a JSON pointer)
  equals, to its displayed precision, the JSON it claims to show, fetched independently: the
  readout from ``GET /v1/experiments/{name}/results`` (read key) and from
  ``experiment_results`` on the store file (the code of ``recsys experiment report``); the
  window of served lists against the lists this test itself received, and against ``/metrics``;
* the experiments view refreshes by itself while open;
* picking a shopper shows their cards: the list ``POST /v1/recommendations`` answers for the
  same request, and nothing was recorded by the preview;
* any console error or warning, uncaught exception or failed request fails the test;
* without the key the page and its endpoints answer 401.

Screenshots of each view are taken here (not by hand): into ``docs/dashboard/`` with
``RECSYS_UPDATE_SCREENSHOTS=1``, else into a temporary directory.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.conftest import ADMIN_KEY, DASHBOARD_KEY, EXPERIMENT, READ_KEY, WRITE_KEY
from tests.serving.test_uvicorn import free_port

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip("/usr/bin/chromium is not installed (CI installs it: scripts/test.sh)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
# the committed screenshots are refreshed by a run with RECSYS_UPDATE_SCREENSHOTS=1; other runs
# take them too (and check them) in a temporary directory, so a test run leaves the tree clean
SHOTS = (ROOT / "docs" / "dashboard" if os.environ.get("RECSYS_UPDATE_SCREENSHOTS")
         else Path(tempfile.mkdtemp(prefix="dashboard-shots-")))
MAX_SHOT_BYTES = 300_000
NAME = EXPERIMENT["name"]
HOSTILE = '<img src=x onerror="document.title=1">'    # an experiment name that is not HTML
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
READ = {"X-API-Key": READ_KEY}
DASH = {"X-API-Key": DASHBOARD_KEY}


@dataclass
class Server:
    base: str
    store: Path
    app: Any
    lists: list[list[str]] = field(default_factory=list)   # every list served, in order
    fallbacks: int = 0

    def client(self, key: str = WRITE_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"X-API-Key": key}, timeout=30.0)

    def post(self, client: httpx.Client, path: str, body: Any) -> httpx.Response:
        """POST through ``client``, noting each list served (what the window should hold)."""
        response = client.post(path, json=body)
        if path == "/v1/recommendations" and response.status_code == 200:
            self.lists.append([i["item_id"] for i in response.json()["items"]])
            self.fallbacks += response.json()["fallback"]
        return response


@pytest.fixture(scope="module")
def server(serving_shop: Path, serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """One real uvicorn server (in a thread of this process) and a short simulation: 300
    shoppers of the test shop for 3 days, about 700 lists and 8,000 events."""
    import uvicorn

    from pipelines.simulate import SimConfig, simulate
    from recsys.data.synthetic_truth import ShopTruth
    from serving.app import create_app
    from serving.settings import ServingSettings

    work = tmp_path_factory.mktemp("dashboard")
    inactive = {"name": HOSTILE, "salt": "x", "traffic": 0.5, "active": False,
                "variants": [{"name": "only", "weight": 1.0, "pipeline": "als"}]}
    settings = ServingSettings.model_validate({
        "bundles": {"default": str(serving_bundle)}, "event_store": str(work / "events.db"),
        "experiments": [EXPERIMENT, inactive], "warmup_requests": 0, "erasure_poll_s": 0,
        "health": {"window": 5000},
        "keys": {"admin": ADMIN_KEY, "read": READ_KEY, "write": WRITE_KEY,
                 "dashboard": DASHBOARD_KEY}})
    app = create_app(settings)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    srv = Server(f"http://127.0.0.1:{port}", work / "events.db", app)
    try:
        truth = ShopTruth.load(serving_shop)
        with srv.client() as c:
            summary = simulate(lambda path, body: srv.post(c, path, body), truth,
                               SimConfig(users=len(truth.user_ids), days=3, seed=4,
                                         visits_per_day=1.0))
        assert summary.error_count == 0 and summary.requests == len(srv.lists) > 300
        yield srv
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page with the dashboard key, failing the test on any console error or warning,
    uncaught exception or failed request (except those a test says it expects)."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(
            base_url=base, viewport={"width": 1280, "height": 1000},
            http_credentials={"username": "dashboard", "password": DASHBOARD_KEY})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.expected: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and
                     self.problems.append(f"console {m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} {r.failure}"))

    def open(self, path: str) -> Any:
        self.page.goto(path)
        self.page.wait_for_selector("#status[data-state=ready]", timeout=20_000)
        return self.page

    def close(self) -> None:
        self.context.close()
        unexpected = [p for p in self.problems
                      if not any(e in p for e in self.expected)]
        assert not unexpected, "\n".join(unexpected)


@pytest.fixture
def watched(browser: Any, server: Server) -> Iterator[Watched]:
    w = Watched(browser, server.base)
    yield w
    w.close()


# ---------------------------------------------------------------------- reading numbers
def resolve(doc: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901)."""
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def shown(text: str) -> tuple[Any, float]:
    """A number as the page shows it -> (value, half its last displayed digit). "–" is None,
    yes/no are booleans; % means hundredths, " ms" and "/s" are units."""
    t = text.strip()
    if t == "–":
        return None, 0.0
    if t in ("yes", "no"):
        return t == "yes", 0.0
    scale = 1.0
    for suffix, factor in (("%", 0.01), (" ms", 1.0), ("/s", 1.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
    t = t.replace(",", "").replace("+", "")
    m = re.fullmatch(r"-?\d+(?:\.(\d+))?(?:e([+-]?\d+))?", t)
    assert m, f"not a number: {text!r}"
    step = 10.0 ** (-len(m.group(1) or "")) * 10.0 ** int(m.group(2) or 0)
    return float(t) * scale, 0.5 * step * scale


def check_numbers(page: Any, container: str, doc: Any, *, skip: tuple[str, ...] = ()) -> int:
    """Every ``[data-key]`` number inside ``container`` equals ``doc`` at its pointer, to the
    precision shown; returns how many were checked."""
    pairs = page.eval_on_selector_all(
        f"{container} [data-key]", "els => els.map(e => [e.dataset.key, e.textContent])")
    checked = 0
    for key, text in pairs:
        if key.startswith(skip):
            continue
        expected = resolve(doc, key)
        value, tol = shown(text)
        if expected is None or isinstance(expected, bool) or value is None:
            assert value == expected, f"{key}: page shows {text!r}, JSON has {expected!r}"
        else:
            assert abs(value - expected) <= tol * (1 + 1e-9) + 1e-12, (
                f"{key}: page shows {text!r}, JSON has {expected!r}")
        checked += 1
    return checked


def screenshot(page: Any, name: str, **kwargs: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    target = kwargs.pop("element", None)
    (target or page).screenshot(path=str(path), **kwargs)
    assert 0 < path.stat().st_size < MAX_SHOT_BYTES, f"{path}: {path.stat().st_size} bytes"


# ---------------------------------------------------------------------- keys
def test_without_the_key_the_page_and_its_endpoints_answer_401(server: Server,
                                                                browser: Any) -> None:
    paths = ["/dashboard", "/dashboard/assets/app.js", "/v1/dashboard/experiments",
             f"/v1/dashboard/experiments/{NAME}/results", "/v1/dashboard/health",
             "/v1/dashboard/shoppers", "/v1/dashboard/shoppers/u000001",
             "/v1/dashboard/preview/options"]
    with httpx.Client(base_url=server.base) as c:
        for headers in ({}, READ, {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}):
            answers = [c.get(p, headers=headers) for p in paths]
            answers.append(c.post("/v1/dashboard/preview", json={}, headers=headers))
            for r in answers:
                assert r.status_code == 401, (r.url, r.text)
                assert r.headers["www-authenticate"].startswith("Basic ")
        assert c.get("/dashboard", params={"api_key": DASHBOARD_KEY}).status_code == 401
        assert c.get("/dashboard", headers=DASH).status_code == 200
    # a browser without the key: Chromium gets the Basic challenge, has nothing to answer
    # with (a person would be asked), and does not show the page
    context = browser.new_context(base_url=server.base)
    try:
        with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            context.new_page().goto("/dashboard")
    finally:
        context.close()


# ---------------------------------------------------------------------- experiments
def test_experiments_view_shows_the_readout_and_refreshes(server: Server,
                                                          watched: Watched) -> None:
    from evaluation.experiment_readout import experiment_results
    from serving.event_store import SQLiteEventStore
    from serving.experiments import Experiment

    page = watched.open(f"/dashboard?refresh=1#experiments/{NAME}")
    page.wait_for_selector(f".readout[data-source$='/{NAME}/results'] #lift")
    with server.client(READ_KEY) as c:
        readout = c.get(f"/v1/experiments/{NAME}/results").json()
    with server.client(DASHBOARD_KEY) as c:
        listed = c.get("/v1/dashboard/experiments").json()
    assert check_numbers(page, "[data-source='/v1/dashboard/experiments']", listed) >= 8
    assert check_numbers(page, ".readout", readout) >= 150
    # the same numbers as recsys experiment report: its function, on the store file (the live
    # guardrails are the server's own observations, so those are compared with the API only)
    with SQLiteEventStore(server.store) as store:
        direct = experiment_results(store, Experiment.model_validate(EXPERIMENT))
    assert check_numbers(page, ".readout", direct, skip=("/guardrails",)) >= 150
    units = readout["summary"]["control"]["units"] + readout["summary"]["treatment"]["units"]
    assert min(readout["srm"]["observed"].values()) >= readout["min_units_per_look"]
    assert page.locator("#lift tbody tr").count() == len(readout["lift"]) == 5
    assert page.locator(".look").count() == len(readout["sequential"]) == 3
    assert page.locator(".readout svg.chart").count() >= 5
    # every experiment is listed, the inactive one too, and its name is text, not HTML
    buttons = page.locator("button.experiment")
    assert buttons.count() == 2
    assert buttons.nth(1).locator(".name").inner_text() == HOSTILE
    assert "inactive" in buttons.nth(1).inner_text() and "active" in buttons.nth(0).inner_text()
    assert page.locator("img").count() == 0 and page.title() == "recsys dashboard"
    screenshot(page, "experiments.png")
    # the sticky header would cover part of a panel's screenshot: unstick it meanwhile (through
    # the CSSOM; the page's policy refuses injected style sheets)
    sticky = "position => document.querySelector('header.top').style.position = position"
    page.evaluate(sticky, "static")
    screenshot(page, "experiments-looks.png",
               element=page.locator("section.panel", has_text="Always-valid daily looks"))
    page.evaluate(sticky, "")

    # new shoppers arrive: the open page shows them within its refresh interval (1 s here)
    with server.client() as c:
        for n in range(12):
            server.post(c, "/v1/recommendations", {"user_id": f"late-{n}", "k": 5})
    c_units = page.locator("[data-key='/summary/control/units']")
    t_units = page.locator("[data-key='/summary/treatment/units']")
    deadline = time.monotonic() + 15
    while shown(c_units.inner_text())[0] + shown(t_units.inner_text())[0] != units + 12:
        assert time.monotonic() < deadline, "the page did not refresh"
        page.wait_for_timeout(200)
    with server.client(READ_KEY) as c:
        readout = c.get(f"/v1/experiments/{NAME}/results").json()
    page.wait_for_timeout(300)      # let the rendering of that refresh finish
    assert check_numbers(page, ".readout", readout) >= 150


# ---------------------------------------------------------------------- model health
def test_health_view_shows_the_window_and_the_champion(server: Server,
                                                       watched: Watched) -> None:
    page = watched.page
    with page.expect_response(lambda r: r.url.endswith("/v1/dashboard/health")) as got:
        watched.open("/dashboard?refresh=0#health")
    received = got.value.json()
    page.wait_for_selector("#live-arms")
    assert check_numbers(page, "[data-source='/v1/dashboard/health']", received) >= 40
    live = received["live"]["arms"][0]
    # the window against the lists this test was served
    slots = Counter(i for items in server.lists for i in items)
    catalog = received["champion"]["catalog_items"]
    top_n = -(-catalog // 100)
    assert live["lists"] == len(server.lists)
    assert live["coverage"] == pytest.approx(len(slots) / catalog)
    assert live["top_share"] == pytest.approx(
        sum(c for _, c in slots.most_common(top_n)) / sum(slots.values()))
    assert live["fallback_rate"] == pytest.approx(server.fallbacks / len(server.lists))
    # and against /metrics, scraped now (no request was served in between)
    with server.client(READ_KEY) as c:
        metrics = c.get("/metrics").text
    for name, value in (("recsys_served_lists", live["lists"]),
                        ("recsys_served_coverage", live["coverage"]),
                        ("recsys_served_top_share", live["top_share"]),
                        ("recsys_served_fallback_rate", live["fallback_rate"])):
        m = re.search(rf'^{name}{{arm="all"}} (\S+)$', metrics, re.M)
        assert m and float(m.group(1)) == pytest.approx(value), name
    manifest = server.app.state.serving.bundles["default"].manifest
    assert received["champion"]["version"] == manifest.version
    assert page.get_by_text(manifest.version).count() >= 1
    assert "No model registry on this server yet" in page.inner_text("body")
    assert page.locator("svg.chart").count() >= 3
    screenshot(page, "health.png", full_page=True)


# ---------------------------------------------------------------------- storefront
def test_storefront_shows_a_shoppers_cards_and_records_nothing(server: Server,
                                                               watched: Watched) -> None:
    with server.client(READ_KEY) as c:
        exposures_before = {v: s["exposures"] for v, s in
                            c.get(f"/v1/experiments/{NAME}").json()["counts"].items()}
    page = watched.open("/dashboard#storefront")
    page.wait_for_selector("ol.cards li.card")
    shopper = page.locator("#shopper option").nth(1).get_attribute("value")
    with page.expect_response(lambda r: r.url.endswith("/v1/dashboard/preview")) as got:
        page.select_option("#shopper", shopper)
    preview = got.value.json()
    page.wait_for_selector(f".bought-panel[data-source$='/{shopper}'] li")
    cards = page.locator("ol.cards li.card")
    assert cards.count() == len(preview["items"]) == 10
    assert [cards.nth(i).get_attribute("data-item-id") for i in range(10)] == [
        i["item_id"] for i in preview["items"]]
    assert [cards.nth(i).locator(".title").inner_text() for i in range(10)] == [
        i["title"] for i in preview["items"]]
    assert check_numbers(page, "[data-source='preview']", preview) == 30  # rank, price, score
    with server.client(DASHBOARD_KEY) as c:
        bought = c.get(f"/v1/dashboard/shoppers/{shopper}").json()
    assert bought["purchases"]
    assert check_numbers(page, ".bought-panel", bought) == 1 + 2 * len(bought["purchases"])
    with server.client(READ_KEY) as c:
        exposures_after = {v: s["exposures"] for v, s in
                           c.get(f"/v1/experiments/{NAME}").json()["counts"].items()}
    assert exposures_after == exposures_before              # the preview recorded nothing
    # what the shop's endpoint answers for the same request (this one is recorded)
    with server.client() as c:
        shop = server.post(c, "/v1/recommendations",
                           {"user_id": shopper, "k": 10, "context": {"cart": []}}).json()
    assert [i["item_id"] for i in shop["items"]] == [i["item_id"] for i in preview["items"]]
    assert preview["arm"]["variant"] == shop["variant"] and preview["arm"]["assigned"]
    screenshot(page, "storefront.png")

    # an anonymous session with a cart, served by the control arm (popularity)
    cart = preview["items"][0]["item_id"]
    page.select_option("#who", "session")
    page.fill("#cart", cart)
    page.select_option("#arm", label=f"{NAME} / control")
    with page.expect_response(lambda r: r.url.endswith("/v1/dashboard/preview")) as got:
        page.click("#show")
    session = got.value.json()
    assert session["arm"]["pipeline"] == "popularity" and not session["arm"]["assigned"]
    page.wait_for_selector(f"ol.cards li.card[data-item-id='{session['items'][0]['item_id']}']")
    assert cart not in [i["item_id"] for i in session["items"]]     # the cart is not re-offered
    assert "control" in page.inner_text(".served")
    assert page.inner_text(".bought-panel").startswith("An anonymous session")


def test_surface_picker_fills_the_chosen_list(server: Server, watched: Watched) -> None:
    """The picker lists the request's surfaces (read from its schema); choosing buy_again sends
    it inside the shop's request, and the cards are what the shop's endpoint answers for it:
    only items the shopper bought before."""
    page = watched.open("/dashboard#storefront")
    page.wait_for_selector("ol.cards li.card")
    assert page.locator("#surface").is_visible()
    options = page.locator("#surface option")
    assert [options.nth(i).get_attribute("value") for i in range(options.count())] == [
        "for_you", "buy_again", "discover"]
    shopper = page.locator("#shopper option").nth(1).get_attribute("value")
    page.select_option("#shopper", shopper)
    page.wait_for_selector(f".bought-panel[data-source$='/{shopper}'] li")
    with page.expect_response(lambda r: r.url.endswith("/v1/dashboard/preview")) as got:
        page.select_option("#surface", "buy_again")
        page.click("#show")
    assert got.value.request.post_data_json["request"]["surface"] == "buy_again"
    preview = got.value.json()
    with server.client(DASHBOARD_KEY) as c:
        bought = {p["item_id"] for p in c.get(f"/v1/dashboard/shoppers/{shopper}").json()[
            "purchases"]}
    served = [i["item_id"] for i in preview["items"]]
    assert served and set(served) <= bought
    page.wait_for_selector(f"ol.cards li.card[data-item-id='{served[0]}']")
