"""Items launched after the cutoff: the content model finds them, popularity cannot."""

from __future__ import annotations

from pathlib import Path

from evaluation.cold_start import cold_item_recall
from recsys import columns as C
from recsys.data.validate import load_dataset


def test_content_model_recommends_cold_items(tiny_shop: Path, tiny_folds: list) -> None:
    fold = tiny_folds[0]
    dataset = load_dataset(tiny_shop)
    before = dataset.events[dataset.events[C.TIMESTAMP] < fold.start]
    result = cold_item_recall(fold.rec, before, fold.events, fold.start, dataset.items, k=20)
    assert result.cold_items > 0 and result.users > 0
    content, popularity = result.recall["content"], result.recall["popularity_category"]
    assert content > 0.05
    assert content >= 3 * popularity, result
