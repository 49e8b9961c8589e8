"""Item features from catalog metadata: the content model's inputs, without torch.

:class:`ItemVocab` is fitted on the catalog (categories, brands, log-price quantile bins, a word
vocabulary over title + description) and turns any item table into :class:`ItemFeatures`,
plain int arrays, which :class:`~recsys.models.content_encoder.ItemEncoder` maps to vectors.
Nothing here depends on interactions, so every item, bought or not, gets features.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys import columns as C
from recsys.errors import DataError

TOKEN_RE = re.compile(r"[a-z0-9]+")
UNKNOWN = "<unk>"  # index 0 of the category and brand vocabularies (brand: missing or unseen)
PAD = 0  # index 0 of the word vocabulary: padding, excluded from the mean


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens, each once, in order of first appearance.

    >>> tokenize("White Heart T-Light holder, white")
    ['white', 'heart', 't', 'light', 'holder']
    """
    return list(dict.fromkeys(TOKEN_RE.findall(text.lower())))


def _item_text(items: pd.DataFrame) -> list[str]:
    title = items[C.TITLE].astype(str)
    if C.DESCRIPTION in items:
        return (title + " " + items[C.DESCRIPTION].fillna("").astype(str)).tolist()
    return title.tolist()


def _brands(items: pd.DataFrame) -> pd.Series:
    if C.BRAND not in items:
        return pd.Series(UNKNOWN, index=items.index)
    return items[C.BRAND].astype("string").fillna(UNKNOWN).astype(str)


@dataclass(frozen=True)
class ItemFeatures:
    """Integer inputs of :class:`ItemEncoder`, one row per item.

    ``tokens`` is (n_items x max_tokens), padded with ``PAD``.
    """

    category: np.ndarray
    brand: np.ndarray
    price_bin: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.category)


@dataclass(frozen=True)
class ItemVocab:
    """What :meth:`fit` learned from the catalog: the vocabularies and the price bin edges."""

    categories: np.ndarray  # str, [UNKNOWN, ...]
    brands: np.ndarray  # str, [UNKNOWN, ...]
    words: np.ndarray  # str, ["", ...]: position = token id, 0 is padding
    price_edges: np.ndarray  # float64 inner edges of log1p(price) quantile bins
    max_tokens: int

    @classmethod
    def fit(cls, items: pd.DataFrame, *, n_price_bins: int = 16, min_count: int = 2,
            max_vocab: int = 20_000, max_tokens: int = 32) -> ItemVocab:
        """Vocabularies from the catalog. A word needs ``min_count`` items to enter (a word of
        one item cannot relate two items), the ``max_vocab`` most frequent are kept."""
        missing = [c for c in (C.TITLE, C.CATEGORY, C.PRICE) if c not in items]
        if missing:
            raise DataError(f"item table: missing column(s) {missing} for the content model")
        counts = Counter(w for text in _item_text(items) for w in tokenize(text))
        kept = sorted((w for w, n in counts.items() if n >= min_count),
                      key=lambda w: (-counts[w], w))[:max_vocab]
        log_price = np.log1p(items[C.PRICE].to_numpy(dtype=np.float64))
        finite = log_price[np.isfinite(log_price)]
        edges = (np.unique(np.quantile(finite, np.linspace(0, 1, n_price_bins + 1)[1:-1]))
                 if len(finite) else np.zeros(0))
        return cls(
            categories=np.array([UNKNOWN, *sorted(set(items[C.CATEGORY].astype(str)))]),
            brands=np.array([UNKNOWN, *sorted(set(_brands(items)) - {UNKNOWN})]),
            words=np.array(["", *kept]),
            price_edges=edges.astype(np.float64),
            max_tokens=max_tokens,
        )

    def inputs(self) -> dict[str, int]:
        """What the catalog gave the model: distinct categories and brands, price bins, words
        (0: that input is absent or the same for every item, so nothing is learned from it)."""
        categories = set(self.categories[1:].tolist()) - {C.UNKNOWN_CATEGORY}
        return {"categories": len(categories), "brands": len(self.brands) - 1,
                "price_bins": len(self.price_edges) + 1 if len(self.price_edges) else 0,
                "words": len(self.words) - 1}

    @property
    def n_price_bins(self) -> int:
        return len(self.price_edges) + 2  # the bins between edges, plus one for unknown price

    def transform(self, items: pd.DataFrame) -> ItemFeatures:
        """Integer features of ``items``; unseen categories/brands/words map to unknown/drop."""
        cat_index = pd.Index(self.categories)
        category = cat_index.get_indexer(items[C.CATEGORY].astype(str))
        brand = pd.Index(self.brands).get_indexer(_brands(items))
        log_price = np.log1p(items[C.PRICE].to_numpy(dtype=np.float64))
        price_bin = np.where(np.isfinite(log_price),
                             np.searchsorted(self.price_edges, log_price, side="right"),
                             len(self.price_edges) + 1)
        word_id = {w: i for i, w in enumerate(self.words) if i != PAD}
        tokens = np.full((len(items), self.max_tokens), PAD, dtype=np.int64)
        for row, text in enumerate(_item_text(items)):
            ids = [word_id[w] for w in tokenize(text) if w in word_id][: self.max_tokens]
            tokens[row, : len(ids)] = ids
        return ItemFeatures(np.maximum(category, 0).astype(np.int64),
                            np.maximum(brand, 0).astype(np.int64),
                            price_bin.astype(np.int64), tokens)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (unicode strings, so loading needs no pickle)."""
        return {"vocab_categories": self.categories.astype(str),
                "vocab_brands": self.brands.astype(str),
                "vocab_words": self.words.astype(str),
                "vocab_price_edges": self.price_edges,
                "vocab_max_tokens": np.array(self.max_tokens)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> ItemVocab:
        return cls(np.asarray(arrays["vocab_categories"]), np.asarray(arrays["vocab_brands"]),
                   np.asarray(arrays["vocab_words"]), np.asarray(arrays["vocab_price_edges"]),
                   int(arrays["vocab_max_tokens"]))
