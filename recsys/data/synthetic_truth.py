"""The hidden world behind the synthetic shop: its categories, catalog and shoppers' tastes.

:mod:`recsys.data.synthetic` draws the catalog (:func:`draw_catalog`: prices, launches,
stock-outs, titles and descriptions from the vocabularies below) and the users
(:func:`draw_users`) here, then saves a :class:`ShopTruth` beside the events: the arrays that
produced every view, click and purchase. Evaluation can compare a model with the truth, and a
simulator can ask the same vectorised questions the generator asked::

    truth = ShopTruth.load("runs/demo/data")
    truth.utility("u000001", ["i00007", "i00042"])
    truth.click_probability("u000001", ["i00007", "i00042"], positions=[1, 2])

The model: ``utility(u, i, t) = log(category_affinity[u, cat(i)] + floor)
+ brand_affinity[u, brand(i)] - price_sensitivity[u] * log(price(i) / category median)
+ appeal(i) + style(u) . style(i) + freshness(i, t)``, where appeal is brand popularity plus
quality. A click needs the item examined (``1 / log2(position + 1)``) and found relevant
(``sigmoid(logit(click_rate) + click_slope * z)``, ``z`` = utility minus the user's typical
browsing utility); add-to-cart and purchase are further sigmoids of ``z``, zero while the item is
not launched or out of stock.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.errors import DataError

if TYPE_CHECKING:
    from recsys.data.synthetic import ShopConfig

DAY = 86400
DEVICE_SHARE = (0.30, 0.45, 0.07, 0.15, 0.03)  # desktop, mobile, tablet, app, other
PEAK_HOURS, PEAK_SHARE = (8.0, 12.5, 20.5, 22.5), (0.15, 0.2, 0.45, 0.2)  # breakfast..late night
TRUTH_FILE = "truth.npz"
SHOP_FILE = "shop.json"
FORMAT = "recsys-synthetic-shop/1"
NEVER = np.iinfo(np.int64).max  # stock-out time of an item that never runs out


@dataclass(frozen=True)
class CategorySpec:
    """One category: a name, a typical price, whether people re-buy it, and its words."""

    name: str
    median_price: float
    consumable: bool
    nouns: str
    adjectives: str
    terms: str


# Ordered roughly by how large the category is in a general store: with Zipf popularity, the
# first ones get the most items and the most shoppers.
CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("electronics", 120, False,
                 "headphones speaker charger cable monitor keyboard mouse camera router earbuds",
                 "wireless bluetooth portable digital rechargeable noise-cancelling hd 4k",
                 "battery usb-c display resolution watt charging pixel processor bass hdmi"),
    CategorySpec("home & kitchen", 35, False,
                 "pan skillet kettle blender knife mug toaster pot spatula cutting-board",
                 "nonstick stainless ceramic cast-iron dishwasher-safe insulated electric wooden",
                 "cookware kitchen recipe heat induction handle countertop brew simmer oven lid"),
    CategorySpec("fashion", 40, False,
                 "jacket shirt sneakers dress jeans hoodie scarf boots sweater belt",
                 "slim-fit cotton denim wool leather casual knitted tailored",
                 "fabric size fit stitching collar sleeve waist outfit wardrobe seasonal"),
    CategorySpec("beauty", 18, True,
                 "serum moisturizer lipstick shampoo conditioner mascara cleanser sunscreen toner",
                 "hydrating nourishing fragrance-free matte vegan glowing long-lasting repairing",
                 "skin hair complexion spf collagen vitamin hyaluronic pores scent dermatologist"),
    CategorySpec("grocery", 6, True,
                 "coffee tea pasta olive-oil cereal granola chocolate honey rice crackers",
                 "roasted whole-grain gluten-free fair-trade crunchy decaf extra-virgin artisan",
                 "flavor breakfast pantry roast blend ingredients protein fiber serving aroma"),
    CategorySpec("sports & outdoors", 45, False,
                 "tent backpack yoga-mat dumbbell helmet water-bottle running-shoes sleeping-bag",
                 "lightweight breathable adjustable waterproof ergonomic foldable sweat-wicking",
                 "workout trail hiking camping fitness training endurance grip gym cardio"),
    CategorySpec("toys & games", 25, False,
                 "puzzle board-game building-blocks doll action-figure plush rc-car kite playset",
                 "educational colorful interactive collectible battery-powered stackable creative",
                 "kids play family fun ages imagination players pieces stem party"),
    CategorySpec("books", 14, False,
                 "novel cookbook biography guide anthology workbook atlas memoir thriller",
                 "bestselling illustrated hardcover paperback annotated award-winning revised",
                 "chapter author edition pages reader story history fiction narrative series"),
    CategorySpec("pet supplies", 20, True,
                 "dog-food cat-litter chew-toy leash pet-bed treats scratching-post bird-seed",
                 "grain-free odor-control chewable reflective orthopedic clumping meaty",
                 "puppy kitten dog cat paws veterinarian nutrition grooming breed fur"),
    CategorySpec("garden", 30, False,
                 "hose planter pruning-shears seeds fertilizer watering-can trowel compost-bin",
                 "frost-resistant galvanized expandable self-watering cordless perennial",
                 "soil plants lawn bloom harvest roots seedlings yard sunlight mulch"),
    CategorySpec("automotive", 40, False,
                 "dash-cam floor-mats tire-inflator wiper-blades car-wax seat-cover jump-starter",
                 "all-weather universal anti-slip high-gloss rugged heavy-duty",
                 "vehicle engine dashboard tire windshield driver road trunk suv highway"),
    CategorySpec("office supplies", 12, True,
                 "notebook pens stapler printer-paper sticky-notes binder highlighters envelopes",
                 "refillable recycled ruled quick-dry acid-free archival magnetic",
                 "office desk ink documents meeting filing school writing planner stationery"),
    CategorySpec("health", 15, True,
                 "vitamins protein-powder thermometer first-aid-kit bandages supplements omega-3",
                 "sugar-free clinical non-gmo fast-acting sterile plant-based",
                 "wellness immune dose capsules recovery joint sleep energy tablets muscle"),
    CategorySpec("baby", 22, True,
                 "diapers wipes stroller bottle pacifier onesie baby-monitor teether crib-sheet",
                 "hypoallergenic bpa-free unscented organic-cotton leak-proof tear-free",
                 "infant newborn toddler nursery feeding parents changing crib months"),
    CategorySpec("jewelry", 80, False,
                 "necklace ring earrings bracelet pendant watch anklet brooch cufflinks charm",
                 "sterling-silver gold-plated handcrafted dainty gemstone engraved",
                 "jewelry carat chain clasp elegant sparkle anniversary karat silver gold"),
    CategorySpec("household", 9, True,
                 "detergent dish-soap paper-towels trash-bags sponges laundry-pods light-bulbs",
                 "concentrated eco-friendly scented biodegradable ultra-soft multi-surface",
                 "cleaning laundry stains bathroom fresh refill odor surfaces rinse loads"),
)

# Words any category may use: title adjectives, description filler, price tiers, and one word
# pair per latent style dimension (negative, positive) so text reveals part of an item's style.
SHARED_ADJECTIVES = "new essential everyday deluxe original ultra plus select".split()
FILLER = ("with for and your the a of to in this is perfect great quality design made easy use "
          "ideal gift everyone daily home last").split()
BUDGET_WORDS = "value budget basic economy".split()
PREMIUM_WORDS = "premium luxury pro elite".split()
STYLE_WORDS: tuple[tuple[str, str], ...] = (
    ("classic", "modern"), ("minimal", "bold"), ("light", "sturdy"), ("compact", "spacious"),
    ("natural", "synthetic"), ("quiet", "vibrant"), ("simple", "advanced"), ("soft", "textured"),
)
SYLLABLES = ("ka ve lo ra mi no ta zen qu ar el on is ux bri cor dal fen gor hal jin kel lum mar "
             "nex or pax quin ros sol tav ul vor wex xen yor zal ber cy dro").split()


@dataclass(frozen=True)
class TruthParams:
    """Scalars of the behaviour model (saved in ``shop.json`` under ``truth``)."""

    start: int  # period start, Unix seconds
    end: int  # period end (exclusive), Unix seconds
    click_rate: float
    cart_rate: float
    purchase_rate: float
    click_slope: float
    cart_slope: float
    purchase_slope: float
    fresh_boost: float
    fresh_days: float
    category_floor: float
    device_cart_shift: tuple[float, ...]  # logit shift of add-to-cart per device (C.DEVICES)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def examination(positions: np.ndarray | list[int] | int) -> np.ndarray:
    """Chance that a shopper looks at slot ``position`` (1 = first): ``1 / log2(position + 1)``."""
    pos = np.asarray(positions, dtype=np.float64)
    if (pos < 1).any():
        raise DataError(f"positions must be >= 1 (1 = first slot), got {pos[pos < 1][0]:g}")
    return 1.0 / np.log2(pos + 1.0)


@dataclass(frozen=True, eq=False)
class ShopTruth:
    """Ground truth of a synthetic shop; id arguments accept external strings or internal ints.

    Internal ids are row numbers: user ``k`` is ``user_ids[k]``, item ``j`` is ``item_ids[j]``.
    ``user_style`` is stored already scaled, so the style term is a plain dot product.
    """

    params: TruthParams
    user_ids: np.ndarray  # (U,) str
    item_ids: np.ndarray  # (I,) str
    category_names: np.ndarray  # (K,) str
    brand_names: np.ndarray  # (B,) str
    category_median_price: np.ndarray  # (K,) float64
    category_consumable: np.ndarray  # (K,) bool
    user_category_affinity: np.ndarray  # (U, K) float32, rows sum to 1 (sparse Dirichlet)
    user_brand_affinity: np.ndarray  # (U, B) float32, utility units
    user_price_sensitivity: np.ndarray  # (U,) float32
    user_style: np.ndarray  # (U, d) float32
    user_reference: np.ndarray  # (U,) float32, typical utility of what the user browses
    user_activity: np.ndarray  # (U,) float32, mean 1: multiplies sessions per day
    user_device: np.ndarray  # (U,) int8 index into C.DEVICES
    user_peak_hour: np.ndarray  # (U,) float32, hour of day (UTC) the user prefers to shop
    user_staple: np.ndarray  # (U,) int32, consumable item the user re-buys, -1 if none
    item_category: np.ndarray  # (I,) int16
    item_brand: np.ndarray  # (I,) int16
    item_price: np.ndarray  # (I,) float64
    item_rel_log_price: np.ndarray  # (I,) float32, log(price / category median)
    item_appeal: np.ndarray  # (I,) float32, brand popularity + quality, same for every user
    item_quality: np.ndarray  # (I,) float32
    item_style: np.ndarray  # (I, d) float32
    item_first_seen: np.ndarray  # (I,) int64 Unix seconds
    item_stockout: np.ndarray  # (I,) int64 Unix seconds it ran out, NEVER if in stock
    item_is_new: np.ndarray  # (I,) bool, launched during the period

    # ---- ids and time
    @cached_property
    def _user_index(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def _item_index(self) -> pd.Index:
        return pd.Index(self.item_ids)

    @cached_property
    def category_utility(self) -> np.ndarray:
        """(U, K) utility of each category: ``log(affinity + floor)``."""
        return np.log(self.user_category_affinity + self.params.category_floor).astype(np.float32)

    def user_index(self, user_ids: Any) -> np.ndarray:
        """Internal ints for external ids (``"u000123"``) or ints; unknown ids raise DataError."""
        return _resolve(user_ids, self._user_index, "user_id")

    def item_index(self, item_ids: Any) -> np.ndarray:
        """Internal ints for external ids (``"i00042"``) or ints; unknown ids raise DataError."""
        return _resolve(item_ids, self._item_index, "item_id")

    def seconds(self, at: Any = None) -> np.ndarray:
        """Unix seconds of ``at``: None (end of the period), a timestamp or ISO string, Unix
        seconds as ints, or an array/Series of any of these."""
        if at is None:
            return np.asarray(self.params.end, dtype=np.int64)
        values = np.asarray(at)
        if values.dtype.kind in "iu":
            return values.astype(np.int64)
        if values.dtype.kind == "M":  # naive datetime64 means UTC
            return values.astype("datetime64[s]").astype(np.int64)
        if values.ndim == 0:
            stamp = pd.Timestamp(at)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            return np.asarray(stamp.value // 10**9, dtype=np.int64)
        parsed = pd.to_datetime(pd.Series(values.ravel()), utc=True)
        ns = parsed.astype("datetime64[ns, UTC]").astype("int64").to_numpy()
        return (ns // 10**9).reshape(values.shape)

    # ---- the behaviour model, on internal ids and Unix seconds (no checks: the generator's path)
    def pair_utility(self, users: np.ndarray, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Utility of (user, item) pairs at time ``t``; 1-D int arrays of equal length."""
        cat = self.category_utility[users, self.item_category[items]]
        brand = self.user_brand_affinity[users, self.item_brand[items]]
        price = self.user_price_sensitivity[users] * self.item_rel_log_price[items]
        style = np.einsum("ij,ij->i", self.user_style[users], self.item_style[items])
        return (cat + brand - price + self.item_appeal[items] + style
                + self.freshness(items, t)).astype(np.float64)

    def freshness(self, items: np.ndarray, t: np.ndarray | int) -> np.ndarray:
        """Novelty bonus of newly launched items, decaying with age (0 for the initial catalog)."""
        age_days = np.maximum(np.asarray(t) - self.item_first_seen[items], 0) / 86400.0
        decay = np.exp(-age_days / self.params.fresh_days)
        return np.where(self.item_is_new[items], self.params.fresh_boost * decay, 0.0)

    def available(self, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True where the item is launched and in stock at ``t``."""
        return (self.item_first_seen[items] <= t) & (t < self.item_stockout[items])

    def stage_probabilities(self, z: np.ndarray, device: np.ndarray | None = None,
                            intent: np.ndarray | float = 0.0
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(relevance, cart | click, purchase | cart) for centred utilities ``z``.

        ``intent`` is an extra logit on all three stages (a replenishment visit); ``device``
        (indices into C.DEVICES) shifts add-to-cart, as app and desktop shoppers convert more.
        """
        p = self.params
        shift = 0.0 if device is None else np.asarray(p.device_cart_shift)[device]
        relevance = _sigmoid(_logit(p.click_rate) + p.click_slope * z + intent)
        cart = _sigmoid(_logit(p.cart_rate) + p.cart_slope * z + shift + intent)
        purchase = _sigmoid(_logit(p.purchase_rate) + p.purchase_slope * z + intent)
        return relevance, cart, purchase

    # ---- the public, checked API
    def _pairs(self, user_ids: Any, item_ids: Any, at: Any, *extra: np.ndarray
               ) -> tuple[tuple[int, ...], list[np.ndarray]]:
        """Resolve ids and times and broadcast them (and ``extra``) together, flattened."""
        arrays = np.broadcast_arrays(self.user_index(user_ids), self.item_index(item_ids),
                                     self.seconds(at), *extra)
        return arrays[0].shape, [a.ravel() for a in arrays]

    def utility(self, user_ids: Any, item_ids: Any, at: Any = None) -> np.ndarray:
        """True utility of each (user, item) pair at ``at`` (default: end of the period).

        Arguments broadcast like numpy arrays: one user against many items works.
        """
        shape, (users, items, t) = self._pairs(user_ids, item_ids, at)
        return self.pair_utility(users, items, t).reshape(shape)

    def click_probability(self, user_ids: Any, item_ids: Any, positions: Any,
                          at: Any = None) -> np.ndarray:
        """P(click) when the item is shown at ``positions`` (1 = top); 0 before its launch.

        ``examination(position) * relevance``: the position bias is ``1 / log2(position + 1)``.
        """
        seen = examination(positions)
        shape, (users, items, t, seen) = self._pairs(user_ids, item_ids, at, seen)
        z = self.pair_utility(users, items, t) - self.user_reference[users]
        relevance = self.stage_probabilities(z)[0]
        launched = self.item_first_seen[items] <= t
        return (seen * relevance * launched).reshape(shape)

    def purchase_probability(self, user_ids: Any, item_ids: Any, at: Any = None,
                             devices: Any = None) -> np.ndarray:
        """P(purchase | click): add to cart, then buy; 0 if not launched or out of stock.

        ``devices`` (names from ``C.DEVICES``, optional) shift the add-to-cart odds.
        """
        codes = np.asarray(-1)
        if devices is not None:
            names = np.asarray(devices, dtype=object)
            codes = pd.Index(list(C.DEVICES)).get_indexer(pd.Index(names.ravel()))
            if (codes < 0).any():
                raise DataError(f"unknown device in {devices!r} (expected one of {C.DEVICES})")
            codes = codes.reshape(names.shape)
        shape, (users, items, t, device) = self._pairs(user_ids, item_ids, at, codes)
        z = self.pair_utility(users, items, t) - self.user_reference[users]
        _, cart, purchase = self.stage_probabilities(z, None if devices is None else device)
        return (cart * purchase * self.available(items, t)).reshape(shape)

    # ---- persistence
    def save(self, directory: str | Path, info: dict[str, Any] | None = None) -> Path:
        """Write ``truth.npz`` (arrays) and ``shop.json`` (``info`` plus the model's scalars).

        Both are byte-identical for identical inputs (fixed zip timestamps, sorted JSON keys).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "params"}
        with zipfile.ZipFile(directory / TRUTH_FILE, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(array),
                                              allow_pickle=False)
        doc = {"format": FORMAT, **(info or {}), "truth": _params_dict(self.params)}
        (directory / SHOP_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ShopTruth:
        """Read what :meth:`save` wrote; a missing or foreign file raises DataError."""
        directory = Path(directory)
        try:
            doc = json.loads((directory / SHOP_FILE).read_text())
            with np.load(directory / TRUTH_FILE, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{directory}: cannot read the synthetic shop truth ({exc})") from exc
        if doc.get("format") != FORMAT:
            raise DataError(f"{directory / SHOP_FILE}: format {doc.get('format')!r} "
                            f"(expected {FORMAT!r})")
        raw = doc["truth"]
        params = TruthParams(**{**raw, "device_cart_shift": tuple(raw["device_cart_shift"])})
        expected = {f.name for f in fields(cls)} - {"params"}
        if set(arrays) != expected:
            raise DataError(f"{directory / TRUTH_FILE}: arrays {sorted(set(arrays) ^ expected)} "
                            f"missing or unexpected")
        return cls(params=params, **arrays)


def _params_dict(params: TruthParams) -> dict[str, Any]:
    return {f.name: (list(v) if isinstance(v := getattr(params, f.name), tuple) else v)
            for f in fields(params)}


def _resolve(ids: Any, index: pd.Index, what: str) -> np.ndarray:
    values = np.asarray(ids)
    if values.dtype.kind in "iu":
        bad = (values < 0) | (values >= len(index))
        if bad.any():
            raise DataError(f"{what} {values[bad].ravel()[0]} out of range 0..{len(index) - 1}")
        return values.astype(np.int64)
    flat = np.ravel(values).astype(str)
    found = index.get_indexer(pd.Index(flat))
    if (found < 0).any():
        raise DataError(f"unknown {what} {flat[found < 0][0]!r}")
    return found.reshape(values.shape)


# ---- drawing the world (the generator's first steps)

@dataclass(frozen=True)
class Catalog:
    """Item attributes (named like the ShopTruth fields) and texts."""

    arrays: dict[str, np.ndarray]  # the item_* and brand_names fields of ShopTruth
    titles: np.ndarray
    descriptions: np.ndarray


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Normalised 1 / rank ** exponent."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def draw_catalog(cfg: ShopConfig, rng: np.random.Generator) -> Catalog:
    """Items: category, brand, log-normal price, quality, style, launch and stock-out times."""
    n, k, per = cfg.items, cfg.n_categories, cfg.brands_per_category
    start, end = cfg.period
    # one item per category first so none is empty, the rest Zipf-distributed
    rest = rng.choice(k, n - k, p=zipf_weights(k, cfg.category_zipf / 2))
    cat = rng.permutation(np.concatenate([np.arange(k), rest]))
    local_brand = rng.choice(per, n, p=zipf_weights(per, cfg.brand_zipf))
    brand = cat * per + local_brand
    median = np.array([s.median_price for s in CATEGORIES[:k]])[cat]
    brand_premium = rng.normal(0.0, 0.3, k * per)
    raw = median * np.exp(brand_premium[brand] + cfg.price_sigma * rng.standard_normal(n))
    price = np.floor(raw) + 0.99  # shop prices end in .99
    rel = np.log(price / median)
    quality = rng.normal(0.0, cfg.quality_sd, n)
    appeal = -cfg.brand_zipf * np.log1p(local_brand) + quality
    style = rng.standard_normal((n, cfg.style_dim), dtype=np.float32)
    # launches: the initial catalog is up to a year old; new items lean towards the period end
    first_seen = start - rng.integers(0, 365 * DAY, n)
    is_new = np.zeros(n, dtype=bool)
    is_new[rng.choice(n, min(round(cfg.new_item_share * n), n - 1), replace=False)] = True
    launch = rng.random(int(is_new.sum())) ** (1 / 1.5)
    first_seen[is_new] = start + (launch * (end - start - 3600)).astype(np.int64)
    stockout = np.full(n, NEVER, dtype=np.int64)
    out = rng.choice(n, round(cfg.stockout_share * n), replace=False)
    earliest = np.maximum(first_seen[out], start + (end - start) // 2)
    stockout[out] = earliest + (rng.random(len(out)) * (end - earliest)).astype(np.int64)
    names, brand_words = _brand_names(k * per, rng)
    titles, descriptions = _texts(cfg, cat, brand, rel, style, names, brand_words, rng)
    arrays = {
        "brand_names": names, "item_category": cat.astype(np.int16),
        "item_brand": brand.astype(np.int16), "item_price": price,
        "item_rel_log_price": rel.astype(np.float32), "item_appeal": appeal.astype(np.float32),
        "item_quality": quality.astype(np.float32), "item_style": style,
        "item_first_seen": first_seen.astype(np.int64), "item_stockout": stockout,
        "item_is_new": is_new,
    }
    return Catalog(arrays, titles, descriptions)


def _brand_names(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unique made-up brand names and 3 product-line words per brand (brand-only text)."""
    syl = np.array(SYLLABLES)
    two = np.char.add(syl[:, None], syl[None, :]).ravel()
    pool = np.unique(np.concatenate([two, np.char.add(two[:, None], syl[None, :]).ravel()]))
    chosen = pool[rng.choice(len(pool), 4 * n, replace=False)]
    return np.char.capitalize(chosen[:n]), chosen[n:].reshape(n, 3)


def _table(word_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged word lists -> a padded (rows, width) array and the true length of each row."""
    width = max(len(w) for w in word_lists)
    table = np.array([w + [""] * (width - len(w)) for w in word_lists])
    return table, np.array([len(w) for w in word_lists])


def _pick(table: np.ndarray, lengths: np.ndarray, rows: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    return table[rows, (rng.random(len(rows)) * lengths[rows]).astype(np.int64)]


def _join(columns: list[np.ndarray]) -> np.ndarray:
    """Join string columns with single spaces, skipping empty words."""
    out = columns[0]
    for col in columns[1:]:
        sep = np.where((out != "") & (col != ""), " ", "")
        out = np.char.add(np.char.add(out, sep), col)
    return out


def _texts(cfg: ShopConfig, cat: np.ndarray, brand: np.ndarray, rel: np.ndarray,
           style: np.ndarray, brand_names: np.ndarray, brand_words: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Titles and descriptions: category words + brand words + shared words, with noise."""
    n, specs = len(cat), CATEGORIES[:cfg.n_categories]
    nouns, n_nouns = _table([s.nouns.split() for s in specs])
    adjs, n_adjs = _table([s.adjectives.split() for s in specs])
    words, n_words = _table([(s.nouns + " " + s.adjectives + " " + s.terms).split()
                             for s in specs])
    shown = min(cfg.style_dim, len(STYLE_WORDS))
    top_dim = np.abs(style[:, :shown]).argmax(axis=1)
    style_word = np.array(STYLE_WORDS)[top_dim, (style[np.arange(n), top_dim] > 0).astype(int)]
    tier = np.where(rel > 0.4, np.array(PREMIUM_WORDS)[rng.integers(0, 4, n)],
                    np.where(rel < -0.4, np.array(BUDGET_WORDS)[rng.integers(0, 4, n)], ""))
    attribute = np.where(tier != "", tier, style_word)  # what the item is like, when told
    code = np.char.add(np.array(list("ABCDEFGHKMRSTVXZ"))[rng.integers(0, 16, n)],
                       rng.integers(10, 1000, n).astype(str))

    def maybe(values: np.ndarray, share: float) -> np.ndarray:
        return np.where(rng.random(n) < share, values, "")

    cap = np.char.capitalize
    title = _join([brand_names[brand], cap(maybe(tier, 0.5)),
                   cap(maybe(np.array(SHARED_ADJECTIVES)[rng.integers(0, 8, n)], 0.3)),
                   cap(maybe(style_word, 0.4)), cap(_pick(adjs, n_adjs, cat, rng)),
                   cap(_pick(nouns, n_nouns, cat, rng)), code])
    length = rng.integers(12, 25, n)
    p_noise = cfg.text_noise
    shares = np.array([0.5, 0.1, 0.32, 0.08]) * (1 - p_noise)
    cdf = np.cumsum(np.append(shares, p_noise))
    filler = np.array(FILLER)
    parts = []
    for j in range(int(length.max())):
        source = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        other = rng.integers(0, len(specs), n)
        word = np.select(
            [source == 0, source == 1, source == 2, source == 3],
            [_pick(words, n_words, cat, rng), brand_words[brand, rng.integers(0, 3, n)],
             filler[rng.integers(0, len(filler), n)], attribute],
            _pick(words, n_words, other, rng))
        parts.append(np.where(j < length, word, ""))
    description = np.char.add(np.char.capitalize(_join(parts)), ".")
    return title, description


def draw_users(cfg: ShopConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hidden tastes: sparse category mix, brand and style preferences, habits."""
    n, n_brands = cfg.users, cfg.n_categories * cfg.brands_per_category
    alpha = cfg.taste_concentration * zipf_weights(cfg.n_categories, cfg.category_zipf)
    peak = np.array(PEAK_HOURS)[rng.choice(len(PEAK_HOURS), n, p=PEAK_SHARE)]
    return {
        "user_category_affinity": rng.dirichlet(alpha, n).astype(np.float32),
        "user_brand_affinity": cfg.brand_sd * rng.standard_normal((n, n_brands),
                                                                  dtype=np.float32),
        "user_price_sensitivity": rng.lognormal(0.0, 0.5, n).astype(np.float32),
        "user_style": (float(cfg.style_weight / np.sqrt(cfg.style_dim))
                       * rng.standard_normal((n, cfg.style_dim), dtype=np.float32)),
        # heavy-tailed activity with mean 1: a few power users, many occasional ones
        "user_activity": rng.lognormal(-0.32, 0.8, n).astype(np.float32),
        "user_device": rng.choice(len(DEVICE_SHARE), n, p=DEVICE_SHARE).astype(np.int8),
        "user_peak_hour": ((peak + rng.normal(0.0, 1.0, n)) % 24).astype(np.float32),
    }
