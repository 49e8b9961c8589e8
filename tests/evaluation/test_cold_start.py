"""Items launched in the test period: the content model finds them, popularity cannot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation.cold_start import cold_item_recall
from recsys.bundle import load_bundle
from recsys.data.split import time_split
from recsys.data.validate import load_dataset


def test_content_model_recommends_cold_items(tiny_shop: Path, tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    dataset = load_dataset(tiny_shop)
    s = bundle.manifest["data"]["split"]
    split = time_split(dataset.events, valid_start=pd.Timestamp(s["valid_start"]),
                       test_start=pd.Timestamp(s["test_start"]))
    result = cold_item_recall(bundle, split, dataset.items, k=20)
    assert result.cold_items > 0 and result.users > 0
    content, popularity = result.recall["content"], result.recall["popularity_category"]
    assert content > 0.05
    assert content >= 3 * popularity, result
