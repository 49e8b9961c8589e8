"""Import the UCI Online Retail invoice lines as canonical purchase events and a catalog.

Source: every invoice line of a UK online gift shop, 2010-12-01 .. 2011-12-09 (541,909 rows;
columns InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country). Cleaning rules, applied in this order and counted one by one in ``notes``
(``removed_<rule>`` counts the rows a rule removed after the earlier rules; ``matching_<rule>``
counts every raw row the rule matches on its own):

1. ``cancellation``: InvoiceNo starts with ``C``;
2. ``return``: Quantity <= 0 (returns and stock adjustments);
3. ``non_product_code``: StockCode (upper-cased) not starting with five digits (postage,
   fees, discounts, manual lines, gift vouchers, marketplace listings), plus the two numeric
   codes whose description is a charge (:data:`SERVICE_DESCRIPTIONS`); all listed in notes;
4. ``missing_customer``: blank CustomerID (guest checkouts cannot be recommended to);
5. ``price_not_positive``: UnitPrice <= 0.

Then identical (invoice, item, unit price) lines are merged summing quantity, and every line
takes its invoice's first timestamp (30 kept invoices straddle a minute boundary). InvoiceDate is
UK wall-clock time and is read *as UTC*: this keeps the shop's hour of day as features see it;
summer (BST) instants are one hour off. Country is dropped (the canonical schema has none).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.importers import ImportResult, Note, finish
from recsys.errors import DataError

SOURCE_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                  "UnitPrice", "CustomerID")

# Ordered: the first category whose keywords occur (as whole words) in the item's title wins,
# so seasonal ranges come first and the broad "home_decor" last. Built by reading the most
# frequent title words; titles matching nothing are "other".
CATEGORY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("christmas", "CHRISTMAS XMAS ADVENT SANTA REINDEER SNOWFLAKE SNOWMAN BAUBLE BAUBLES "
                  "NATIVITY"),
    ("easter", "EASTER BUNNY BUNNIES CHICK CHICKS"),
    ("candles_lighting", "CANDLE CANDLES CANDLESTICK CANDLEHOLDER T-LIGHT T-LIGHTS TEALIGHT "
                         "LANTERN LANTERNS LIGHT LIGHTS LAMP LAMPSHADE INCENSE"),
    ("lunch_picnic", "LUNCH LUNCHBOX PICNIC"),
    ("bags", "BAG BAGS HANDBAG PURSE SHOPPER TOTE WALLET BACKPACK"),
    ("jewellery", "NECKLACE NECKLACES NECKL NECKLAC BRACELET BRACELETS BRACLET BANGLE EARRING "
                  "EARRINGS RING RINGS CHARM BEAD BEADS BEADED DIAMANTE BROOCH PENDANT BLING"),
    ("cards_wrap", "CARD CARDS WRAP WRAPPING ENVELOPE ENVELOPES RIBBON RIBBONS TAGS TISSUE"),
    ("stationery", "NOTEBOOK NOTEBOOKS PENCIL PENCILS PEN PENS ERASER ERASERS STICKER STICKERS "
                   "TAPE JOURNAL NOTEPAD MEMO CALENDAR DIARY RULER SKETCHBOOK CRAYONS CHALK "
                   "STAMP STAMPS BOOK MAGNET MAGNETS BADGE BADGES"),
    ("mugs_cups", "MUG MUGS CUP CUPS TEACUP SAUCER BEAKER"),
    ("tableware", "PLATE PLATES BOWL BOWLS CUTLERY NAPKIN NAPKINS DOILY DOILIES TRAY DISH JUG "
                  "TEAPOT COASTER COASTERS PLACEMATS TUMBLER TUMBLERS GLASSES STRAWS WINE "
                  "TABLECLOTH"),
    ("kitchen_baking", "BAKING CAKE CASES APRON KITCHEN PANTRY JAR JARS JAM SPOON SPOONS SCALES "
                       "TOWEL TOWELS COOKIE CUTTER CUTTERS TEA COFFEE SUGAR BREAD OVEN CHOPPING "
                       "MOULD PAN"),
    ("clocks", "CLOCK CLOCKS ALARM"),
    ("wall_decor", "SIGN SIGNS PLAQUE FRAME FRAMES MIRROR PICTURE POSTER ART HOOK HOOKS HANGER "
                   "HANGERS CHALKBOARD BLACKBOARD PHOTO PHOTOFRAME ALBUM"),
    ("home_textiles", "CUSHION CUSHIONS COVER THROW BLANKET QUILT DOORMAT MAT WATER BOTTLE "
                      "WARMER CURTAIN"),
    ("storage", "BOX BOXES TIN TINS BASKET BASKETS DRAWER CABINET STORAGE TRINKET CHEST HAMPER "
                "CRATE HOLDER RACK BIN"),
    ("garden", "GARDEN PLANT PLANTER WATERING FEEDER BIRDHOUSE POT POTS SEED SEEDS TROWEL "
               "THERMOMETER"),
    ("party", "PARTY BUNTING GARLAND BALLOONS BALLOON BANNER PAPER CHAIN HONEYCOMB"),
    ("toys_games", "TOY TOYS JIGSAW GAME GAMES DOLL DOLLS PUZZLE SKIPPING ROPE SPINNING DOMINOES "
                   "SOLDIER BUBBLES PLAYHOUSE SNAKES LADDERS KIT TEDDY"),
    ("craft_sewing", "SEWING CRAFT FELTCRAFT KNITTING BUTTON BUTTONS CROCHET PAINT STENCIL"),
    ("accessories", "UMBRELLA PARASOL SCARF GLOVES HAT HAIR SLIPPERS SLIPPER HANDWARMER KEYRING "
                    "MITTENS CLIP CLIPS COMB TIARA TIARAS LUGGAGE KEYRINGS FOB HAIRCLIP "
                    "HAIRBAND"),
    ("bath_beauty", "BATHROOM BATH SHOWER SOAP TOILETRIES WASHBAG COSMETIC TISSUES PLASTERS"),
    ("home_decor", "DECORATION DECORATIONS HANGING HEART ORNAMENT VASE DOORSTOP KNOB KNOBS "
                   "WREATH FLOWERS FLOWER TREE BELL BELLS BIRD BIRDS PAPERWEIGHT"),
)
OTHER = "other"

# Charges filed under ordinary numeric codes (23444, 23574), found by scanning every title for
# charge/postage/carriage/fee/voucher words; all other hits there were real products.
SERVICE_DESCRIPTIONS = ("NEXT DAY CARRIAGE", "PACKING CHARGE")

RULES = ("cancellation", "return", "non_product_code", "missing_customer", "price_not_positive")


def categorise(titles: pd.Series) -> pd.Series:
    """Map product titles to a category with :data:`CATEGORY_KEYWORDS` (first match wins).

    Example: ``categorise(pd.Series(["WHITE HANGING HEART T-LIGHT HOLDER"]))`` gives
    ``candles_lighting``; a title with no keyword gives ``other``.
    """
    upper = titles.astype(str).str.upper()
    out = pd.Series(OTHER, index=titles.index, dtype=object)
    free = np.ones(len(titles), dtype=bool)
    for name, words in CATEGORY_KEYWORDS:
        pattern = r"\b(?:" + "|".join(re.escape(w) for w in words.split()) + r")\b"
        hit = upper.str.contains(pattern, regex=True).to_numpy() & free
        out[hit] = name
        free &= ~hit
    return out.astype(str)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the UCI Online Retail CSV)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path.name}: cannot be read as CSV: {exc}") from exc
    missing = [c for c in SOURCE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {missing} for the Online Retail format "
                        f"(found {list(frame.columns)})")
    if frame.empty:
        raise DataError(f"{path.name}: no data rows")
    return frame


def _first_bad(path: Path, column: str, mask: pd.Series, raw: pd.Series, problem: str) -> None:
    """Raise a DataError naming the first row (1 = first data row) where ``mask`` holds."""
    bad = mask.to_numpy(dtype=bool)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path.name}: column '{column}', row {pos + 1}: {problem} "
                        f"{raw.iloc[pos]!r} ({int(bad.sum()):,} row(s) affected)")


def _number(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    _first_bad(path, column, values.isna(), frame[column], "not a number")
    return values


def import_online_retail(path: str | Path) -> ImportResult:
    """Import ``online_retail.csv(.gz)``: cleaned purchase events and a product catalog.

    Why these choices: see the module docstring and ``docs/importers.md``.

    Example::

        result = import_online_retail("../shared/datasets/online_retail/online_retail.csv.gz")
        result.notes["events"], result.notes["revenue_gbp"]
    """
    path = Path(path)
    raw = _read(path)
    quantity = _number(raw, "Quantity", path)
    unit_price = _number(raw, "UnitPrice", path)
    stock = raw["StockCode"].str.strip().str.upper()
    when = pd.to_datetime(raw["InvoiceDate"], format="ISO8601", errors="coerce")
    _first_bad(path, "InvoiceDate", when.isna(), raw["InvoiceDate"],
               "unparsable date (expected YYYY-MM-DD HH:MM:SS)")

    for column in ("InvoiceNo", "StockCode"):
        _first_bad(path, column, raw[column].isna(), raw[column], "empty value")
    customer = pd.to_numeric(raw["CustomerID"], errors="coerce")
    _first_bad(path, "CustomerID", raw["CustomerID"].notna() & (customer.isna()
               | (customer != np.floor(customer))), raw["CustomerID"], "not an integer id")

    service = raw["Description"].str.strip().str.upper().isin(SERVICE_DESCRIPTIONS)
    non_product = ~stock.str.match(r"^\d{5}").fillna(False) | stock.isin(stock[service].unique())
    masks = {
        "cancellation": raw["InvoiceNo"].str.upper().str.startswith("C").fillna(False),
        "return": quantity <= 0,
        "non_product_code": non_product,
        "missing_customer": raw["CustomerID"].isna(),
        "price_not_positive": unit_price <= 0,
    }
    notes: dict[str, Note] = {"rows_read": len(raw)}
    keep = np.ones(len(raw), dtype=bool)
    for rule in RULES:
        mask = masks[rule].to_numpy(dtype=bool)
        notes[f"removed_{rule}"] = int((mask & keep).sum())
        keep &= ~mask
    for rule in RULES:
        notes[f"matching_{rule}"] = int(masks[rule].sum())
    notes["non_product_codes"] = ", ".join(sorted(stock[non_product].dropna().unique()))
    notes["lines_kept"] = int(keep.sum())

    lines = pd.DataFrame({
        "invoice": raw["InvoiceNo"].str.strip(),
        C.ITEM_ID: stock,
        C.PRICE: unit_price,
        C.QUANTITY: quantity,
        C.TIMESTAMP: when,
        # "17850.0" -> "17850": the CSV stored the integer id as a float
        C.USER_ID: customer.astype("Int64").astype(str),
        "text": raw["Description"].str.strip(),
    })[keep]
    lines[C.TIMESTAMP] = lines.groupby("invoice")[C.TIMESTAMP].transform("min")
    retimed = (when[keep] != lines[C.TIMESTAMP]).to_numpy()
    notes["invoices_spanning_two_minutes"] = int(lines.loc[retimed, "invoice"].nunique())
    notes["lines_retimed_to_invoice_start"] = int(retimed.sum())

    keys = ["invoice", C.ITEM_ID, C.PRICE]
    events = (lines.groupby(keys, sort=False, observed=True)
              .agg(**{C.QUANTITY: (C.QUANTITY, "sum"), C.USER_ID: (C.USER_ID, "first"),
                      C.TIMESTAMP: (C.TIMESTAMP, "first")})
              .reset_index())
    notes["lines_merged_same_invoice_item_price"] = len(lines) - len(events)
    events = events.rename(columns={"invoice": C.SESSION_ID})
    events[C.EVENT_TYPE] = C.PURCHASE
    events[C.TIMESTAMP] = events[C.TIMESTAMP].dt.tz_localize("UTC")
    events = events.sort_values([C.TIMESTAMP, C.SESSION_ID, C.ITEM_ID], kind="stable")
    events = events[[C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE, C.QUANTITY, C.PRICE,
                     C.SESSION_ID]].reset_index(drop=True)

    items = _catalog(lines)
    revenue = float((events[C.QUANTITY] * events[C.PRICE]).sum())
    notes.update({
        "events": len(events),
        "customers": int(events[C.USER_ID].nunique()),
        "products": len(items),
        "invoices": int(events[C.SESSION_ID].nunique()),
        "revenue_gbp": round(revenue, 2),
        "first_event": str(events[C.TIMESTAMP].min()),
        "last_event": str(events[C.TIMESTAMP].max()),
        "categories": int(items[C.CATEGORY].nunique()),
        "category_other_share": round(float((items[C.CATEGORY] == OTHER).mean()), 4),
        "category_other_share_of_events": round(float(
            events[C.ITEM_ID].isin(items.loc[items[C.CATEGORY] == OTHER, C.ITEM_ID]).mean()), 4),
        "timezone": "InvoiceDate (UK wall clock) read as UTC",
    })
    return finish(events, items, notes, path.name)


def _catalog(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per StockCode from the kept lines: title = most frequent description, etc."""
    counts = (lines.groupby([C.ITEM_ID, "text"], observed=True).size()
              .rename("n").reset_index()
              .sort_values([C.ITEM_ID, "n", "text"], ascending=[True, False, True]))
    items = lines.groupby(C.ITEM_ID, sort=True).agg(
        **{C.PRICE: (C.PRICE, "median"), C.FIRST_SEEN: (C.TIMESTAMP, "min")})
    items[C.TITLE] = counts.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)["text"]
    items[C.TITLE] = items[C.TITLE].fillna(items.index.to_series())
    items[C.DESCRIPTION] = counts.groupby(C.ITEM_ID)["text"].agg(" | ".join)
    items[C.DESCRIPTION] = items[C.DESCRIPTION].fillna("")
    items[C.CATEGORY] = categorise(items[C.TITLE])
    items[C.PRICE] = items[C.PRICE].round(4)
    items[C.IN_STOCK] = True
    items[C.FIRST_SEEN] = items[C.FIRST_SEEN].dt.tz_localize("UTC")
    items = items.reset_index()
    return items[[C.ITEM_ID, C.TITLE, C.CATEGORY, C.PRICE, C.DESCRIPTION, C.IN_STOCK,
                  C.FIRST_SEEN]]
