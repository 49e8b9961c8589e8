"""``recsys simulate``: a closed loop between the API and the synthetic shop's ground truth.

Shoppers are users of a synthetic shop (``recsys generate``), whose hidden tastes are saved in
``truth.npz``. Each simulated day a seeded subset of them visits (Poisson visits, scaled by each
user's activity), at a time of day near their preferred hour and mostly on their own device,
sometimes with an item they like in the cart and a few liked items recently viewed. The
shopper asks ``POST /v1/recommendations`` for a list, looks at it, clicks each item with the
truth's position-biased ``click_probability``, adds a clicked item to the cart with the truth's
cart odds and buys it with the rest of ``purchase_probability``; every impression (with its
0-based position and the request id), click, cart and purchase (with the item's price) goes back
through ``POST /v1/events`` in batches. The API buckets the users into the experiment's
variants, so the experiment readout then measures what each variant's lists made people do.

Simulated time starts at the first midnight after the shop's period, so each shopper's own
shop history is the experiment's pre-period (CUPED). Everything random comes from ``seed``
(arrivals per day, behaviour per visit), and event ids are derived from it: the same seed
against the same server sends the same events, and a re-run is deduplicated by the store.

The core, :func:`simulate`, takes a ``post(path, json)`` callable, so it runs against a real
server (``httpx.Client``, keep-alive) or in-process (FastAPI's ``TestClient``)::

    recsys simulate --server http://127.0.0.1:8000 --data runs/shop --users 2000 --days 14
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recsys import columns as C
from recsys.data.synthetic import HOUR_WEIGHT
from recsys.data.synthetic_truth import DAY, DEVICE_SHARE, ShopTruth
from recsys.errors import ConfigError, DataError, RecsysError

RECOMMENDATIONS = "/v1/recommendations"
EVENTS = "/v1/events"
WRITE_KEY_ENV = "RECSYS_WRITE_KEY"


class ResponseLike(Protocol):
    """What ``post`` returns: an ``httpx.Response`` (TestClient's too)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


Post = Callable[[str, Any], ResponseLike]


@dataclass(frozen=True)
class SimConfig:
    """How many shoppers, for how long, and how they behave beyond the truth's funnel."""

    users: int = 1000            # shoppers drawn (without replacement) from the shop's users
    days: int = 14
    seed: int = 0
    k: int = 10                  # items asked for per request
    batch: int = 100             # events per POST /v1/events
    visits_per_day: float = 0.5  # mean visits per user and day, times the user's activity
    own_device: float = 0.8      # share of visits on the user's preferred device
    peak_hour_share: float = 0.7  # visits near the user's preferred hour (else a daily profile)
    cart_share: float = 0.3      # visits that arrive with one liked item in the cart
    max_recent_views: int = 2    # liked items viewed just before asking (0..this)
    taste_pool: int = 30         # cart and viewed items come from the user's top items by utility
    start: datetime | None = None  # default: the first midnight after the shop's period

    def __post_init__(self) -> None:
        for name in ("users", "days", "k", "batch", "taste_pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"simulate: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("own_device", "peak_hour_share", "cart_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"simulate: {name} must be in [0, 1], got "
                                  f"{getattr(self, name)}")
        if self.visits_per_day <= 0 or self.max_recent_views < 0 or self.seed < 0:
            raise ConfigError("simulate: visits_per_day must be > 0, max_recent_views and seed "
                              ">= 0")


@dataclass
class SimSummary:
    """What the simulation sent and what the API answered."""

    requests: int = 0
    request_errors: int = 0
    fallbacks: int = 0
    events_sent: int = 0
    events_inserted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    batch_errors: int = 0
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    by_variant: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)   # the first few, for the log
    start: str = ""
    end: str = ""
    seconds: float = 0.0

    @property
    def error_count(self) -> int:
        return self.request_errors + self.batch_errors + self.events_rejected

    def note_error(self, message: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(message)

    def lines(self) -> list[str]:
        out = [f"simulated {self.start} .. {self.end} in {self.seconds:.1f}s: "
               f"{self.requests:,} requests ({self.request_errors:,} failed, "
               f"{self.fallbacks:,} fallbacks), {self.events_sent:,} events sent "
               f"({self.events_inserted:,} stored, {self.events_duplicate:,} duplicates, "
               f"{self.events_rejected:,} rejected, {self.batch_errors:,} failed batches)",
               f"funnel: {self.impressions:,} impressions, {self.clicks:,} clicks, "
               f"{self.carts:,} carts, {self.purchases:,} purchases, revenue "
               f"{self.revenue:,.2f}"]
        for name, v in sorted(self.by_variant.items()):
            ctr = v["clicks"] / v["impressions"] if v["impressions"] else float("nan")
            out.append(f"  {name}: {int(v['requests']):,} requests, ctr {ctr:.4f}, "
                       f"{int(v['purchases']):,} purchases, revenue {v['revenue']:,.2f}")
        out += [f"  error: {e}" for e in self.errors]
        return out


def default_start(truth: ShopTruth) -> datetime:
    """The first midnight (UTC) at or after the end of the shop's period."""
    end = int(truth.params.end)
    return datetime.fromtimestamp(math.ceil(end / DAY) * DAY, UTC)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class _Sender:
    """Buffers events and posts them in batches, keeping the counts."""

    def __init__(self, post: Post, batch: int, summary: SimSummary) -> None:
        self.post, self.batch, self.summary = post, batch, summary
        self.buffer: list[dict[str, Any]] = []

    def add(self, events: list[dict[str, Any]]) -> None:
        self.buffer += events
        while len(self.buffer) >= self.batch:
            self._send(self.buffer[: self.batch])
            self.buffer = self.buffer[self.batch:]

    def flush(self) -> None:
        if self.buffer:
            self._send(self.buffer)
            self.buffer = []

    def _send(self, events: list[dict[str, Any]]) -> None:
        s = self.summary
        s.events_sent += len(events)
        try:
            response = self.post(EVENTS, {"events": events})
        except Exception as exc:  # a transport error loses this batch, not the run
            s.batch_errors += 1
            s.note_error(f"POST {EVENTS}: {type(exc).__name__}: {exc}")
            return
        if response.status_code not in (200, 202, 422):
            s.batch_errors += 1
            s.note_error(f"POST {EVENTS}: HTTP {response.status_code}: {response.text[:200]}")
            return
        body = response.json()
        s.events_inserted += int(body.get("inserted", 0))
        s.events_duplicate += int(body.get("duplicates", 0))
        s.events_rejected += int(body.get("rejected", 0))
        for err in body.get("errors", [])[:3]:
            s.note_error(f"event rejected: {err}")


class Shopper:
    """One user's behaviour from the truth: context draws and the funnel on a shown list."""

    def __init__(self, truth: ShopTruth, config: SimConfig) -> None:
        self.truth, self.config = truth, config
        self.n_items = len(truth.item_ids)
        self.hour_p = np.asarray(HOUR_WEIGHT, dtype=np.float64) / sum(HOUR_WEIGHT)
        # a dict, not truth.item_index: a pandas lookup per visit would cost more than the visit
        self.item_row = {str(item): i for i, item in enumerate(truth.item_ids)}

    def items(self, item_ids: list[str]) -> np.ndarray:
        """Internal ids of ``item_ids``; DataError names an item the shop does not have."""
        try:
            return np.array([self.item_row[i] for i in item_ids], dtype=np.int64)
        except KeyError as exc:
            raise DataError(f"unknown item_id {exc.args[0]!r}") from None

    def visit_time(self, user: int, day_start: int, rng: np.random.Generator) -> int:
        if rng.random() < self.config.peak_hour_share:
            hour = (float(self.truth.user_peak_hour[user]) + rng.normal(0.0, 1.0)) % 24
        else:
            hour = float(rng.choice(24, p=self.hour_p)) + rng.random()
        return day_start + int(hour * 3600)

    def device(self, user: int, rng: np.random.Generator) -> str:
        code = (int(self.truth.user_device[user]) if rng.random() < self.config.own_device
                else int(rng.choice(len(DEVICE_SHARE), p=DEVICE_SHARE)))
        return C.DEVICES[code]

    def context(self, user: int, t: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """(cart, recent views): items drawn from the softmax of the user's top available
        items by true utility at ``t``."""
        items = np.arange(self.n_items)
        utility = self.truth.pair_utility(np.full(self.n_items, user), items,
                                          np.full(self.n_items, t))
        utility = np.where(self.truth.available(items, np.full(self.n_items, t)), utility,
                           -np.inf)
        top = np.argsort(-utility, kind="stable")[: self.config.taste_pool]
        top = top[np.isfinite(utility[top])]
        n_views = int(rng.integers(0, self.config.max_recent_views + 1))
        want = n_views + (1 if rng.random() < self.config.cart_share else 0)
        if len(top) == 0 or want == 0:
            return [], []
        p = np.exp(utility[top] - utility[top].max())
        picked = rng.choice(top, size=min(want, len(top)), replace=False, p=p / p.sum())
        ids = [str(self.truth.item_ids[i]) for i in picked]
        cart = ids[n_views:]
        return cart, ids[:n_views]

    def funnel(self, user: int, items: np.ndarray, t: int, device: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per shown item (internal ids, in rank order): P(click) at its slot, P(cart | click)
        and P(buy | cart). P(click) is ``truth.click_probability`` (position bias
        ``1 / log2(rank + 1)``); cart and buy are the two stages whose product is
        ``truth.purchase_probability`` (0 when out of stock), from ``stage_probabilities``."""
        truth = self.truth
        n = len(items)
        p_click = truth.click_probability(user, items, np.arange(1, n + 1), at=t)
        users, times = np.full(n, user), np.full(n, t)
        z = truth.pair_utility(users, items, times) - truth.user_reference[users]
        _, cart, buy = truth.stage_probabilities(z, np.full(n, C.DEVICES.index(device)))
        return p_click, cart * truth.available(items, times), buy

    def react(self, user: int, items: np.ndarray, t: int, device: str,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Booleans per shown item: clicked, added to cart, bought."""
        p_click, p_cart, p_buy = self.funnel(user, items, t, device)
        draws = rng.random((3, len(items)))
        clicked = draws[0] < p_click
        carted = clicked & (draws[1] < p_cart)
        return clicked, carted, carted & (draws[2] < p_buy)


def visit_events(*, prefix: str, user_id: str, session_id: str, request_id: str, device: str,
                 t: int, shown: list[str], clicked: np.ndarray, carted: np.ndarray,
                 bought: np.ndarray, prices: np.ndarray) -> list[dict[str, Any]]:
    """The events one visit sends, in time order: impressions, then per clicked item its click
    and cart, then the purchases at checkout (one order: one timestamp)."""
    base = {"user_id": user_id, "session_id": session_id, "request_id": request_id,
            "device": device}
    out = [{**base, "event_id": f"{prefix}-imp{pos}", "item_id": item,
            "event_type": "impression", "timestamp": _iso(t + 1), "position": pos}
           for pos, item in enumerate(shown)]
    clock = t + 1
    for pos in np.flatnonzero(clicked):
        clock += 20
        out.append({**base, "event_id": f"{prefix}-clk{pos}", "item_id": shown[pos],
                    "event_type": "click", "timestamp": _iso(clock), "position": int(pos)})
        if carted[pos]:
            clock += 30
            out.append({**base, "event_id": f"{prefix}-atc{pos}", "item_id": shown[pos],
                        "event_type": "add_to_cart", "timestamp": _iso(clock),
                        "position": int(pos), "price": float(prices[pos])})
    checkout = clock + 60
    out += [{**base, "event_id": f"{prefix}-buy{pos}", "item_id": shown[pos],
             "event_type": "purchase", "timestamp": _iso(checkout), "position": int(pos),
             "price": float(prices[pos]), "quantity": 1}
            for pos in np.flatnonzero(bought)]
    return out


def simulate(post: Post, truth: ShopTruth, config: SimConfig, *,
             progress: Callable[[str], None] | None = None) -> SimSummary:
    """Run ``config.days`` simulated days of shoppers against the API behind ``post``.

    ``post(path, json_body)`` returns an ``httpx.Response``-like object: pass
    ``lambda p, b: client.post(p, json=b)`` with an ``httpx.Client`` or a ``TestClient``.

    >>> # summary = simulate(lambda p, b: client.post(p, json=b), ShopTruth.load(d), SimConfig())
    """
    n_users = len(truth.user_ids)
    if config.users > n_users:
        raise ConfigError(f"simulate: users = {config.users} but the shop has {n_users}")
    start = config.start or default_start(truth)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    first_day = int(start.timestamp())
    last = start + timedelta(days=config.days)
    if last > datetime.now(UTC) + timedelta(hours=1):
        raise ConfigError(f"simulate: simulated time would end at {last.isoformat()}, in the "
                          "future; the API rejects events from the future (fewer --days or an "
                          "earlier --start)")
    summary = SimSummary(start=start.isoformat(), end=last.isoformat())
    began = time.perf_counter()
    users = np.sort(np.random.default_rng([config.seed, 0]).choice(n_users, config.users,
                                                                   replace=False))
    activity = truth.user_activity[users].astype(np.float64)
    shopper = Shopper(truth, config)
    sender = _Sender(post, config.batch, summary)
    for day in range(config.days):
        day_start = first_day + day * DAY
        visits = np.random.default_rng([config.seed, 1, day]).poisson(
            config.visits_per_day * activity)
        plan = []
        for row in np.flatnonzero(visits):
            for visit in range(int(visits[row])):
                rng = np.random.default_rng([config.seed, 2, day, int(users[row]), visit])
                user = int(users[row])
                plan.append((shopper.visit_time(user, day_start, rng), user, visit, rng))
        plan.sort(key=lambda p: (p[0], p[1], p[2]))
        for t, user, visit, rng in plan:
            _one_visit(post, shopper, sender, summary, config, day, t, user, visit, rng)
        if progress is not None:
            progress(f"day {day + 1}/{config.days}: {len(plan):,} visits, "
                     f"{summary.requests:,} requests, {summary.events_sent:,} events so far")
    sender.flush()
    summary.seconds = time.perf_counter() - began
    return summary


def _one_visit(post: Post, shopper: Shopper, sender: _Sender, summary: SimSummary,
               config: SimConfig, day: int, t: int, user: int, visit: int,
               rng: np.random.Generator) -> None:
    truth = shopper.truth
    user_id = str(truth.user_ids[user])
    session_id = f"sim{config.seed}-{user_id}-d{day}-v{visit}"
    device = shopper.device(user, rng)
    cart, views = shopper.context(user, t, rng)
    body = {"user_id": user_id, "session_id": session_id, "k": config.k,
            "context": {"timestamp": _iso(t), "device": device, "cart": cart,
                        "recent_views": views}}
    summary.requests += 1
    try:
        response = post(RECOMMENDATIONS, body)
    except Exception as exc:  # count it and go on: one failed request is one lost visit
        summary.request_errors += 1
        summary.note_error(f"POST {RECOMMENDATIONS}: {type(exc).__name__}: {exc}")
        return
    if response.status_code != 200:
        summary.request_errors += 1
        summary.note_error(f"POST {RECOMMENDATIONS}: HTTP {response.status_code}: "
                           f"{response.text[:200]}")
        return
    answer = response.json()
    shown = [str(i["item_id"]) for i in answer["items"]]
    summary.fallbacks += bool(answer.get("fallback"))
    label = answer.get("variant") or "(no experiment)"
    stats = summary.by_variant.setdefault(label, dict.fromkeys(
        ("requests", "impressions", "clicks", "carts", "purchases", "revenue"), 0.0))
    stats["requests"] += 1
    if not shown:
        return
    try:
        items = shopper.items(shown)
    except DataError as exc:
        raise DataError(f"the API recommended items the shop's truth does not know ({exc}); "
                        "is the server's bundle trained on this --data shop?") from None
    clicked, carted, bought = shopper.react(user, items, t, device, rng)
    prices = truth.item_price[items]
    sender.add(visit_events(prefix=f"sim{config.seed}-d{day}-u{user}-v{visit}",
                            user_id=user_id, session_id=session_id,
                            request_id=str(answer["request_id"]), device=device, t=t,
                            shown=shown, clicked=clicked, carted=carted, bought=bought,
                            prices=prices))
    revenue = float(prices[bought].sum())
    for key, value in (("impressions", len(shown)), ("clicks", int(clicked.sum())),
                       ("carts", int(carted.sum())), ("purchases", int(bought.sum())),
                       ("revenue", revenue)):
        stats[key] += value
        setattr(summary, key, getattr(summary, key) + value)


# ---------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` command's arguments (for ``pipelines/cli.py``)."""
    parser.add_argument("--server", required=True, help="base URL of the API, e.g. "
                        "http://127.0.0.1:8000")
    parser.add_argument("--data", required=True, help="synthetic shop directory (with truth.npz "
                        "and shop.json, from `recsys generate`)")
    parser.add_argument("--users", type=int, default=1000, help="shoppers (default 1000)")
    parser.add_argument("--days", type=int, default=14, help="simulated days (default 14)")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--k", type=int, default=10, help="items per request (default 10)")
    parser.add_argument("--batch", type=int, default=100, help="events per POST (default 100)")
    parser.add_argument("--visits-per-day", type=float, default=0.5,
                        help="mean visits per user per day, times the user's activity "
                        "(default 0.5)")
    parser.add_argument("--start", help="first simulated instant (ISO 8601; default: the first "
                        "midnight after the shop's period)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per HTTP call (default 30)")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for /readyz before starting (default 60)")
    parser.add_argument("--json", help="also write the summary as JSON to this file")
    parser.add_argument("--key-env", default=WRITE_KEY_ENV,
                        help="environment variable holding the API's write key, sent in the "
                        f"X-API-Key header (default {WRITE_KEY_ENV}; keys never go on a "
                        "command line)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"--start: {exc}") from None
    return SimConfig(users=args.users, days=args.days, seed=args.seed, k=args.k,
                     batch=args.batch, visits_per_day=args.visits_per_day, start=start)


def wait_ready(client: Any, timeout: float) -> None:
    """Poll ``GET /readyz`` until it answers 200; RecsysError after ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            r = client.get("/readyz")
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise RecsysError(f"server not ready after {timeout:g}s ({last})")
        time.sleep(0.5)


def simulate_command(args: argparse.Namespace) -> None:
    """``recsys simulate``: drive the API at ``--server`` over HTTP with keep-alive; prints the
    summary. Raises RecsysError when every request failed."""
    import httpx

    config = config_from_args(args)
    truth = ShopTruth.load(args.data)
    key = os.environ.get(args.key_env)
    if not key:
        raise ConfigError(f"simulate posts events, which need the API's write (or admin) key: "
                          f"set the environment variable {args.key_env}")
    with httpx.Client(base_url=args.server, timeout=args.timeout,
                      headers={"X-API-Key": key}) as client:
        wait_ready(client, args.wait)
        summary = simulate(lambda path, body: client.post(path, json=body), truth, config,
                           progress=print)
    for line in summary.lines():
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    if summary.requests and summary.request_errors == summary.requests:
        raise RecsysError(f"all {summary.requests} requests failed; first error: "
                          f"{summary.errors[0] if summary.errors else '?'}")


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.simulate --server URL --data DIR ...``"""
    parser = argparse.ArgumentParser(prog="recsys simulate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        simulate_command(args)
    except RecsysError as exc:
        print(f"recsys simulate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
