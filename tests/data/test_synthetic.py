from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys import columns as C
from recsys.data.synthetic import Shop, ShopConfig, generate_shop
from recsys.data.synthetic_truth import NEVER, ShopTruth
from recsys.data.validate import validate, validate_events, validate_items
from recsys.errors import ConfigError, DataError

SMALL = {"users": 800, "items": 500, "days": 40, "seed": 11}
AFTER_THE_PERIOD = pd.Timestamp("2030-01-01", tz="UTC")


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(ShopConfig(**SMALL))


def codes(shop: Shop, column: str) -> np.ndarray:
    return shop.events[column].cat.codes.to_numpy()


def seconds(shop: Shop) -> np.ndarray:
    return shop.events[C.TIMESTAMP].astype("int64").to_numpy() // 10**9


def of_type(shop: Shop, kind: str) -> np.ndarray:
    return (shop.events[C.EVENT_TYPE] == kind).to_numpy()


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# ---- config

def test_config_rejects_bad_values_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="users"):
        ShopConfig(users=0)
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        ShopConfig(colour="red")
    with pytest.raises(ConfigError, match="click_rate"):
        ShopConfig(click_rate=1.5)
    with pytest.raises(ConfigError, match="at least one item per category"):
        ShopConfig(items=5, n_categories=12)
    config = ShopConfig(start="2026-03-01T00:00:00")  # naive means UTC
    assert config.start.utcoffset() is not None and config.start.utcoffset().total_seconds() == 0
    with pytest.raises(ValidationError):
        config.users = 5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="no session"):
        generate_shop(ShopConfig(users=2, items=20, days=1, sessions_per_user_day=0.001))


def test_for_target_events_hits_the_target_roughly() -> None:
    config = ShopConfig.for_target_events(60_000, seed=5, days=30)
    assert config.days == 30 and config.seed == 5
    n = len(generate_shop(config).events)
    assert 0.8 * 60_000 < n < 1.2 * 60_000
    assert ShopConfig.for_target_events(10_000_000).users == pytest.approx(100_000, rel=0.1)
    with pytest.raises(ConfigError):
        ShopConfig.for_target_events(0)


# ---- determinism and the data contract

def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    config = {"users": 300, "items": 200, "days": 20}
    first = generate_shop(ShopConfig(**config, seed=1))
    again = generate_shop(ShopConfig(**config, seed=1))
    pd.testing.assert_frame_equal(first.events, again.events)
    pd.testing.assert_frame_equal(first.items, again.items)
    first.save(tmp_path / "a")
    again.save(tmp_path / "b")
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert set(digests(tmp_path / "a")) == {"events.parquet", "items.parquet", "truth.npz",
                                            "shop.json"}
    other = generate_shop(ShopConfig(**config, seed=2))
    assert not first.events.equals(other.events)
    assert not first.items[C.TITLE].equals(other.items[C.TITLE])


def test_output_is_canonical_and_validates_without_dropping_anything(shop: Shop,
                                                                     tmp_path: Path) -> None:
    assert tuple(shop.events.columns) == C.EVENT_COLUMNS
    assert tuple(shop.items.columns) == C.ITEM_COLUMNS
    assert shop.events[C.TIMESTAMP].is_monotonic_increasing
    assert str(shop.events[C.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    for column in (C.USER_ID, C.ITEM_ID, C.SESSION_ID, C.EVENT_TYPE, C.DEVICE):
        assert isinstance(shop.events[column].dtype, pd.CategoricalDtype), column
    assert shop.events[C.USER_ID].astype(str).str.fullmatch(r"u\d{6}").all()
    assert shop.events[C.ITEM_ID].astype(str).str.fullmatch(r"i\d{5}").all()
    items = validate_items(shop.items)
    events, report = validate_events(shop.events, items, now=AFTER_THE_PERIOD)
    assert report.dropped == {} and len(events) == len(shop.events)
    shop.save(tmp_path)
    dataset = validate(tmp_path, now=AFTER_THE_PERIOD)
    assert dataset.report.dropped == {}
    assert dataset.report.events_out == len(shop.events)
    assert len(dataset.items) == SMALL["items"]
    start, end = shop.config.period
    assert start <= seconds(shop).min() and seconds(shop).max() < end


# ---- what the data should show

def test_funnel_rates_are_plausible(shop: Shop) -> None:
    n = {kind: int(of_type(shop, kind).sum()) for kind in C.EVENT_TYPES}
    assert 0.2 < n[C.CLICK] / n[C.VIEW] < 0.5
    assert 0.1 < n[C.ADD_TO_CART] / n[C.CLICK] < 0.35
    assert 0.35 < n[C.PURCHASE] / n[C.ADD_TO_CART] < 0.75
    assert 0.01 < n[C.PURCHASE] / n[C.VIEW] < 0.10
    bought = shop.events[of_type(shop, C.PURCHASE)]
    assert (bought[C.QUANTITY] == 1).mean() > 0.7 and bought[C.QUANTITY].max() <= 3
    listed = shop.truth.item_price[bought[C.ITEM_ID].cat.codes.to_numpy()]
    paid = bought[C.PRICE].to_numpy()
    assert (paid <= listed + 1e-9).all() and (paid >= 0.79 * listed).all()
    assert 0.0 < (paid < listed).mean() < 0.5  # a few discounts


def test_every_click_follows_a_view_of_the_same_item_in_the_same_session(shop: Shop) -> None:
    keys = [C.SESSION_ID, C.ITEM_ID]
    views = shop.events[of_type(shop, C.VIEW)].groupby(keys, observed=True)[C.TIMESTAMP].min()
    later = shop.events[~of_type(shop, C.VIEW)].join(views.rename("viewed"), on=keys)
    assert later["viewed"].notna().all()
    assert (later[C.TIMESTAMP] > later["viewed"]).all()


def test_cold_items_get_events_but_never_before_launch(shop: Shop) -> None:
    truth = shop.truth
    first_seen = truth.item_first_seen[codes(shop, C.ITEM_ID)]
    assert (seconds(shop) >= first_seen).all()
    start, end = shop.config.period
    cold = np.flatnonzero(truth.item_first_seen >= start + 0.85 * (end - start))
    assert len(cold) >= 10
    with_events = np.isin(cold, codes(shop, C.ITEM_ID))
    assert with_events.mean() > 0.5
    bought = np.isin(cold, codes(shop, C.ITEM_ID)[of_type(shop, C.PURCHASE)])
    assert bought.sum() >= 3
    launched = shop.items[C.FIRST_SEEN] >= pd.Timestamp(start, unit="s", tz="UTC")
    assert launched.mean() == pytest.approx(shop.config.new_item_share, abs=0.01)


def test_category_popularity_is_skewed(shop: Shop) -> None:
    views = codes(shop, C.ITEM_ID)[of_type(shop, C.VIEW)]
    share = np.bincount(shop.truth.item_category[views], minlength=shop.config.n_categories)
    share = np.sort(share / share.sum())[::-1]
    assert share[0] > 2.5 / shop.config.n_categories
    assert share[0] / share[-1] > 5
    assert share[:3].sum() > 0.5


def test_purchases_follow_the_hidden_taste(shop: Shop) -> None:
    truth = shop.truth
    buy = of_type(shop, C.PURCHASE)
    users, items = codes(shop, C.USER_ID)[buy], codes(shop, C.ITEM_ID)[buy]
    top2 = np.argsort(-truth.user_category_affinity, axis=1)[:, :2]
    category = truth.item_category[items]
    in_top2 = (category[:, None] == top2[users]).any(axis=1)
    share = np.bincount(category, minlength=shop.config.n_categories) / len(category)
    chance = share[top2[users]].sum(axis=1).mean()  # if buyers ignored their own taste
    assert in_top2.mean() > 0.75 and in_top2.mean() > 2 * chance
    # new items are bought by the users whose favourite categories they belong to
    new = truth.item_is_new[items]
    assert new.sum() > 20 and in_top2[new].mean() > 0.75
    # brand affinity of what they bought beats a random brand of the same category
    bought = truth.user_brand_affinity[users, truth.item_brand[items]]
    rng = np.random.default_rng(0)
    per = shop.config.brands_per_category
    other = category * per + rng.integers(0, per, len(users))
    assert bought.mean() > truth.user_brand_affinity[users, other].mean() + 0.3


def test_views_concentrate_on_each_users_top_categories(shop: Shop) -> None:
    view = of_type(shop, C.VIEW)
    users, items = codes(shop, C.USER_ID)[view], codes(shop, C.ITEM_ID)[view]
    top3 = np.argsort(-shop.truth.user_category_affinity, axis=1)[:, :3]
    in_top3 = (shop.truth.item_category[items][:, None] == top3[users]).any(axis=1)
    assert in_top3.mean() > 0.7


def test_consumables_are_rebought_and_durables_are_not(shop: Shop) -> None:
    buy = of_type(shop, C.PURCHASE)
    pairs = pd.DataFrame({"u": codes(shop, C.USER_ID)[buy], "i": codes(shop, C.ITEM_ID)[buy]})
    counts = pairs.value_counts()
    repeated = counts[counts > 1].index.get_level_values("i").to_numpy()
    assert len(repeated) >= 10
    assert shop.truth.category_consumable[shop.truth.item_category[repeated]].all()


def test_stockouts_exist_and_stop_carts_and_purchases(shop: Shop) -> None:
    out = ~shop.items[C.IN_STOCK].to_numpy()
    assert 0.01 < out.mean() < 0.1
    assert ((shop.truth.item_stockout < NEVER) == out).all()
    late = seconds(shop) >= shop.truth.item_stockout[codes(shop, C.ITEM_ID)]
    buying = of_type(shop, C.ADD_TO_CART) | of_type(shop, C.PURCHASE)
    assert late.any() and not (late & buying).any()


def test_sessions_have_one_user_and_device_and_an_evening_peak(shop: Shop) -> None:
    per_session = shop.events.groupby(C.SESSION_ID, observed=True)[[C.USER_ID, C.DEVICE]].nunique()
    assert (per_session == 1).all().all()
    hours = shop.events[C.TIMESTAMP].dt.hour
    assert hours.between(18, 22).mean() > 4 * hours.between(2, 5).mean()
    assert shop.events[C.DEVICE].value_counts(normalize=True)["mobile"] > 0.3


def test_text_carries_the_category(shop: Shop) -> None:
    items = shop.items
    words = items[C.TITLE].str.lower() + " " + items[C.DESCRIPTION].str.lower()
    electronics = (items[C.CATEGORY] == "electronics").to_numpy()
    says_wireless = words.str.contains("wireless|bluetooth|battery|usb-c").to_numpy()
    assert says_wireless[electronics].mean() > 3 * says_wireless[~electronics].mean()
    assert items[C.TITLE].str.len().min() > 5 and items[C.TITLE].duplicated().mean() < 0.05


# ---- the truth object

def test_truth_round_trips_and_answers_vectorised_questions(shop: Shop, tmp_path: Path) -> None:
    shop.save(tmp_path)
    loaded = ShopTruth.load(tmp_path)
    assert loaded.params == shop.truth.params
    for name in ("user_category_affinity", "item_style", "item_first_seen", "user_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(shop.truth, name))
    users = np.array([0, 1, 2, 3])
    items = np.array([5, 6, 7, 8])
    by_int = loaded.utility(users, items)
    by_name = loaded.utility(shop.truth.user_ids[users], shop.truth.item_ids[items])
    np.testing.assert_allclose(by_int, by_name)
    np.testing.assert_allclose(by_int, shop.truth.utility(users, items))
    assert loaded.utility("u000000", items).shape == (4,)
    clicks = loaded.click_probability("u000000", "i00005", np.arange(1, 11))
    assert (np.diff(clicks) < 0).all() and (0 < clicks).all() and (clicks <= 1).all()
    buy = loaded.purchase_probability(users, items, devices=["app", "app", "mobile", "other"])
    assert ((0 <= buy) & (buy <= 1)).all()


def test_truth_respects_launches_and_stockouts(shop: Shop) -> None:
    truth = shop.truth
    start, _ = shop.config.period
    new = int(np.flatnonzero(truth.item_first_seen > start + 86400)[0])
    before = pd.Timestamp(start, unit="s", tz="UTC")
    assert truth.click_probability(0, new, 1, at=before) == 0
    assert truth.click_probability(0, new, 1) > 0  # at the end of the period it is launched
    gone = int(np.flatnonzero(~shop.items[C.IN_STOCK].to_numpy())[0])
    assert truth.purchase_probability(0, gone) == 0
    assert truth.purchase_probability(0, gone, at=int(truth.item_stockout[gone]) - 1) > 0
    # the freshness bonus fades: a new item is more attractive right after launch
    launch = int(truth.item_first_seen[new])
    assert truth.utility(0, new, at=launch) > truth.utility(0, new, at=launch + 30 * 86400)
    # every spelling of a time means the same instant
    stamp = pd.Timestamp(launch, unit="s", tz="UTC")
    spellings = [launch, [launch], stamp, stamp.tz_convert("Asia/Tokyo"), stamp.isoformat(),
                 np.array([stamp.tz_localize(None)], dtype="datetime64[ns]"),
                 pd.Series([stamp]), stamp.to_pydatetime()]
    for at in spellings:
        assert np.ravel(truth.seconds(at)).tolist() == [launch], at


def test_truth_rejects_unknown_ids_and_bad_positions(shop: Shop, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown user_id"):
        shop.truth.utility("nobody", "i00001")
    with pytest.raises(DataError, match="item_id"):
        shop.truth.utility(0, 10**6)
    with pytest.raises(DataError, match="positions"):
        shop.truth.click_probability(0, 1, 0)
    with pytest.raises(DataError, match="device"):
        shop.truth.purchase_probability(0, 1, devices="fridge")
    with pytest.raises(DataError):
        ShopTruth.load(tmp_path)  # nothing saved there
