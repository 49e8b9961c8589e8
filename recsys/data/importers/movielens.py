"""Import MovieLens 100K (ratings, not purchases) as canonical view/purchase events.

Mapping, chosen so the e-commerce funnel has a meaning on a ratings log:

* every rating is a ``view`` ("the user watched it"), at the rating's Unix time;
* a rating of 4 or 5 also gives a ``purchase`` at the same time ("liked it" stands in for
  "converted"), so purchase-based metrics measure liked-item recommendation, as is usual for
  implicit-feedback MovieLens benchmarks;
* events have no price (NaN), quantity 1, no session and no device.

Items: title from ``u.item`` (it carries the year); category = the first genre flag set, in
``u.genre`` order (unknown, Action, Adventure, Animation, Children's, Comedy, ...); description =
all genres joined plus the release year; price 0, meaning *unknown* (the data has no prices);
first_seen = release date at 00:00 UTC when it parses (one movie, id 267, has none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.data.importers import ImportResult, Note, finish
from recsys.errors import DataError

LIKED_RATING = 4
ITEM_FIELDS = ("item", "title", "release", "video_release", "imdb_url")
DATE_FORMAT = "%d-%b-%Y"  # 01-Jan-1995


def _find(directory: Path, *names: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {' or '.join(names)} found (expected the MovieLens 100K "
                    f"files u.data(.gz), u.item, u.genre)")


def _read_genres(path: Path) -> list[str]:
    frame = pd.read_csv(path, sep="|", header=None, names=["genre", "index"], dtype=str,
                        encoding="latin-1", keep_default_na=False).dropna()
    frame = frame[frame["genre"].str.strip() != ""]
    index = pd.to_numeric(frame["index"], errors="coerce")
    if index.isna().any() or not (index.sort_values().to_numpy() == np.arange(len(index))).all():
        raise DataError(f"{path.name}: expected lines 'genre|0' .. 'genre|n-1', got "
                        f"{frame.head(3).to_dict('records')}")
    return frame.assign(index=index).sort_values("index")["genre"].str.strip().tolist()


def _read_ratings(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", header=None, dtype=str,
                            names=["user", "item", "rating", "time"])
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path.name}: cannot be read as tab-separated ratings: {exc}") from exc
    numbers = frame.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1).to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path.name}: row {pos + 1}: expected 'user<TAB>item<TAB>rating<TAB>"
                        f"unix time' as integers, got {frame.iloc[pos].tolist()}")
    out_of_range = ~numbers["rating"].between(1, 5).to_numpy()
    if out_of_range.any():
        pos = int(np.flatnonzero(out_of_range)[0])
        raise DataError(f"{path.name}: column 'rating', row {pos + 1}: value "
                        f"{frame['rating'].iloc[pos]!r} outside 1..5")
    return pd.DataFrame({
        C.USER_ID: frame["user"].str.strip(),
        C.ITEM_ID: frame["item"].str.strip(),
        "rating": numbers["rating"].astype(int),
        C.TIMESTAMP: pd.to_datetime(numbers["time"].astype("int64"), unit="s", utc=True),
    })


def _read_items(path: Path, genres: list[str]) -> pd.DataFrame:
    names = [*ITEM_FIELDS, *genres]
    try:
        frame = pd.read_csv(path, sep="|", header=None, dtype=str, encoding="latin-1",
                            keep_default_na=False, names=names)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path.name}: cannot be read as '|'-separated movies with "
                        f"{len(names)} fields: {exc}") from exc
    flags = frame[genres].apply(pd.to_numeric, errors="coerce")
    if flags.isna().any().any() or not flags.isin([0, 1]).all().all():
        raise DataError(f"{path.name}: the last {len(genres)} fields must be 0/1 genre flags")
    flags = flags.astype(bool)
    released = pd.to_datetime(frame["release"], format=DATE_FORMAT, errors="coerce", utc=True)
    # the first flag set, in u.genre order; a movie with no flag at all falls back to "unknown"
    first = np.where(flags.any(axis=1), flags.to_numpy().argmax(axis=1), 0)
    genre_names = np.asarray(genres, dtype=object)
    listed = _joined(flags, genres)
    year = released.dt.year.astype("Int64").astype("string")
    description = (listed + "; released " + year).fillna(listed)
    title = frame["title"].str.strip()
    return pd.DataFrame({
        C.ITEM_ID: frame["item"].str.strip(),
        C.TITLE: title.where(title != "", frame["item"].str.strip()),
        C.CATEGORY: genre_names[first],
        C.PRICE: 0.0,
        C.DESCRIPTION: description.astype(str),
        C.IN_STOCK: True,
        C.FIRST_SEEN: released,
    })


def _joined(flags: pd.DataFrame, genres: list[str]) -> pd.Series:
    """'Animation, Children's, Comedy' per movie (a loop over the 19 columns, not the rows)."""
    joined = pd.Series("", index=flags.index, dtype="string")
    for genre in genres:
        joined = joined + np.where(flags[genre].to_numpy(), f"{genre}, ", "")
    return joined.str.removesuffix(", ")


def import_movielens(directory: str | Path) -> ImportResult:
    """Import a MovieLens 100K directory (``u.data``/``u.data.gz``, ``u.item``, ``u.genre``).

    Example::

        result = import_movielens("../shared/datasets/movielens_100k")
        result.notes["views"], result.notes["purchases"]   # 100000, 55375
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected the MovieLens 100K folder)")
    genres = _read_genres(_find(directory, "u.genre"))
    items = _read_items(_find(directory, "u.item"), genres)
    ratings = _read_ratings(_find(directory, "u.data.gz", "u.data"))

    notes: dict[str, Note] = {"ratings_read": len(ratings)}
    known = ratings[C.ITEM_ID].isin(items[C.ITEM_ID]).to_numpy()
    notes["removed_item_not_in_u_item"] = int((~known).sum())
    duplicate = ratings.duplicated([C.USER_ID, C.ITEM_ID], keep="first").to_numpy()
    notes["removed_repeated_user_item_rating"] = int((duplicate & known).sum())
    ratings = ratings[known & ~duplicate]

    liked = ratings[ratings["rating"] >= LIKED_RATING]
    events = pd.concat([ratings.assign(**{C.EVENT_TYPE: C.VIEW}),
                        liked.assign(**{C.EVENT_TYPE: C.PURCHASE})], ignore_index=True)
    # views before purchases at the same instant, as a funnel would log them
    events["_order"] = (events[C.EVENT_TYPE] == C.PURCHASE).astype(int)
    events = events.sort_values([C.TIMESTAMP, C.USER_ID, C.ITEM_ID, "_order"], kind="stable")
    events = events[[C.USER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE]].reset_index(drop=True)
    events[C.QUANTITY] = 1
    events[C.PRICE] = np.nan

    for rating in range(1, 6):
        notes[f"ratings_{rating}"] = int((ratings["rating"] == rating).sum())
    notes.update({
        "views": int((events[C.EVENT_TYPE] == C.VIEW).sum()),
        "purchases": int((events[C.EVENT_TYPE] == C.PURCHASE).sum()),
        "purchase_rule": f"rating >= {LIKED_RATING}",
        "users": int(events[C.USER_ID].nunique()),
        "items": len(items),
        "items_rated": int(events[C.ITEM_ID].nunique()),
        "items_without_release_date": int(items[C.FIRST_SEEN].isna().sum()),
        "first_event": str(events[C.TIMESTAMP].min()),
        "last_event": str(events[C.TIMESTAMP].max()),
        "category_rule": "first genre flag in u.genre order",
    })
    for genre, count in items[C.CATEGORY].value_counts().items():
        notes[f"category_{genre}"] = int(count)
    return finish(events, items, notes, directory.name)
