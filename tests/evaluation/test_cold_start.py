"""Items launched in the test period: the content model finds them, popularity cannot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.cold_start import cold_item_recall
from recsys.data.split import time_split
from recsys.data.validate import load_dataset
from recsys.recommender import HybridRecommender


def test_content_model_recommends_cold_items(tiny_shop: Path, tiny_bundle: Path) -> None:
    rec = HybridRecommender.load(tiny_bundle)
    assert rec.manifest is not None
    dataset = load_dataset(tiny_shop)
    data = rec.manifest.data
    split = time_split(dataset.events, valid_start=pd.Timestamp(data.valid_start),
                       test_start=pd.Timestamp(data.test_start))
    result = cold_item_recall(rec, split, dataset.items, k=20)
    assert result.cold_items > 0 and result.users > 0
    content, popularity = result.recall["content"], result.recall["popularity_category"]
    assert content > 0.05
    assert content >= 3 * popularity, result
