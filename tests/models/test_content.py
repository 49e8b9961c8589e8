"""Content model: the shared contract on the checkerboard (its items carry parity words), plus
what only a content model can do: neighbours for never-bought items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import columns as C
from recsys.errors import BundleError, ConfigError, DataError
from recsys.metrics import recall_at_k
from recsys.models.base import Model, TrainingData, ValidationData, make_validation
from recsys.models.content import ContentConfig, ContentModel
from tests.models.conftest import START, build_training
from tests.models.contract import ModelContract

FAST = {"epochs": 6, "batch_size": 128, "progress": False, "seed": 0}


class TestContent(ModelContract):
    def make_model(self) -> Model:
        return ContentModel(ContentConfig(**FAST))


WORDS = {
    "kitchen": "pan pot knife spoon ladle whisk kettle grater",
    "garden": "rake hoe shovel seed hose trowel planter shears",
    "toys": "doll ball puzzle kite robot yoyo blocks marble",
    "books": "novel poem atlas diary comic essay fable memoir",
}
PER_CATEGORY, COLD_PER_CATEGORY = 30, 8


def _shop(seed: int = 0) -> tuple[TrainingData, pd.DataFrame, np.ndarray]:
    """4 categories with their own words, brands and price level; the last 8 items of each
    category have no event at all. Each user shops in one category. Returns (train data,
    held-out events, cold item ids)."""
    rng = np.random.default_rng(seed)
    rows, cold = [], []
    for c, (cat, words) in enumerate(WORDS.items()):
        vocab = words.split()
        for j in range(PER_CATEGORY):
            name = f"{cat}{j:02d}"
            rows.append({C.ITEM_ID: name, C.CATEGORY: cat,
                         C.TITLE: " ".join(rng.choice(vocab, 3, replace=False)) + " deluxe",
                         C.DESCRIPTION: " ".join(rng.choice(vocab, 4)) + " for the home",
                         C.BRAND: f"{cat}-brand{j % 2}" if j % 5 else None,
                         C.PRICE: float(np.round(5 * 4**c * rng.uniform(0.8, 1.25), 2))})
            if j >= PER_CATEGORY - COLD_PER_CATEGORY:
                cold.append(name)
    items = pd.DataFrame(rows)
    cats = list(WORDS)
    train, held = [], []
    for u in range(160):
        cat = cats[u % 4]
        bought = rng.choice(PER_CATEGORY - COLD_PER_CATEGORY, 8, replace=False)
        for n, j in enumerate(bought):
            when = START + pd.Timedelta(minutes=u * 10 + n)
            (held if n >= 6 else train).append((f"u{u:03d}", f"{cat}{j:02d}", when))
    frame = pd.DataFrame(train + held, columns=[C.USER_ID, C.ITEM_ID, C.TIMESTAMP])
    frame[C.EVENT_TYPE] = C.PURCHASE
    data = build_training(frame.iloc[:len(train)], items)
    return data, frame.iloc[len(train):], data.items.to_internal(cold)


@pytest.fixture(scope="module")
def shop() -> tuple[TrainingData, ValidationData, np.ndarray]:
    data, held, cold = _shop()
    return data, make_validation(data, held, max_users=None), cold


@pytest.fixture(scope="module")
def fitted(shop) -> ContentModel:
    data, valid, _ = shop
    return ContentModel(ContentConfig(**{**FAST, "epochs": 8})).fit(data, valid)


def test_cold_items_have_same_category_neighbours(shop, fitted: ContentModel) -> None:
    data, _, cold = shop
    category = data.item_table[C.CATEGORY].to_numpy()
    emb = fitted.item_embeddings_
    assert emb is not None and emb.dtype == np.float32 and emb.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert data.matrix[:, cold].nnz == 0, "fixture: cold items must have no event"
    for item in cold:
        ids, _ = fitted.similar_items(int(item), k=10)
        share = np.mean(category[ids] == category[item])
        assert share >= 0.7, f"cold item {item}: only {share:.0%} same-category neighbours"


def test_learns_from_history(shop, fitted: ContentModel) -> None:
    # a user who shops in one category gets that category's items first
    data, valid, _ = shop
    assert fitted.valid_metrics_["valid_recall@20"] > 0.3
    category = data.item_table[C.CATEGORY].to_numpy()
    ids, _ = fitted.recommend(valid.userids, valid.history[valid.userids], k=5)
    own = category[data.matrix[valid.userids].indices[data.matrix[valid.userids].indptr[:-1]]]
    assert np.mean(category[ids] == own[:, None]) > 0.9


def test_unseen_user_history_and_shapes(fitted: ContentModel) -> None:
    n = fitted.n_items
    history = sp.csr_matrix(([1.0, 3.0], ([0, 0], [1, 2])), shape=(2, n), dtype=np.float32)
    vecs = fitted.user_vectors(history)
    assert vecs.shape == (2, fitted.config.dim) and vecs.dtype == np.float32
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0, rel=1e-5)
    assert not vecs[1].any(), "an empty history gives a zero vector"
    scores = fitted.score(np.array([-1, -2]), history)
    np.testing.assert_allclose(scores, vecs @ fitted.item_embeddings_.T, rtol=1e-6)
    with pytest.raises(DataError, match="columns"):
        fitted.user_vectors(sp.csr_matrix((1, n + 1), dtype=np.float32))


def test_history_records_each_epoch(fitted: ContentModel) -> None:
    keys = {"epoch", "train_loss", "valid_recall@20", "valid_ndcg@10", "seconds"}
    assert fitted.history_ and all(set(h) == keys for h in fitted.history_)
    assert [h["epoch"] for h in fitted.history_] == list(range(1, len(fitted.history_) + 1))


def test_early_stopping_restores_best_epoch(shop) -> None:
    # relevant = never-bought items of the user's category: close in content at the start, then
    # pushed down by the uniform random negatives, so recall@20 peaks early and falls
    data, valid, cold = shop
    category = data.item_table[C.CATEGORY].to_numpy()
    relevant = [np.intersect1d(cold, np.flatnonzero(category == category[rel[0]]))
                for rel in valid.relevant]
    cold_valid = ValidationData(valid.userids, relevant, valid.history)
    model = ContentModel(ContentConfig(**{**FAST, "epochs": 15, "patience": 2,
                                        "random_negatives": 16}))
    model.fit(data, cold_valid)
    recalls = [h["valid_recall@20"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmax(recalls)) + 1
    assert len(recalls) == model.best_epoch_ + 2 < 15, "did not stop after `patience` epochs"
    assert recalls[-1] < recalls[model.best_epoch_ - 1]
    # the restored weights reproduce the best recorded metric, not the last one
    ids, _ = model.recommend(valid.userids, valid.history[valid.userids], k=20)
    best = recalls[model.best_epoch_ - 1]
    assert recall_at_k(ids, relevant, 20) == pytest.approx(best, abs=1e-12)
    assert model.valid_metrics_["valid_recall@20"] == best


def test_same_seed_same_embeddings(shop) -> None:
    data, _, _ = shop
    config = ContentConfig(**{**FAST, "epochs": 2})
    a = ContentModel(config).fit(data).item_embeddings_
    b = ContentModel(config).fit(data).item_embeddings_
    c = ContentModel(config.model_copy(update={"seed": 1})).fit(data).item_embeddings_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_and_new_items(fitted: ContentModel, shop, tmp_path: Path) -> None:
    data, valid, _ = shop
    names = fitted.save(tmp_path)
    assert sorted(names) == ["content.json", "content_arrays.npz", "content_encoder.pt"]
    loaded = ContentModel.load(tmp_path)
    history = valid.history[valid.userids]
    np.testing.assert_array_equal(fitted.score(valid.userids, history),
                                  loaded.score(valid.userids, history))
    assert loaded.history_ == fitted.history_ and loaded.best_epoch_ == fitted.best_epoch_
    # the loaded encoder embeds catalog rows exactly as at fit time
    np.testing.assert_allclose(loaded.embed_items(data.item_table), fitted.item_embeddings_,
                               atol=1e-6)


def test_damaged_state_dict_is_a_bundle_error(fitted: ContentModel, shop,
                                              tmp_path: Path) -> None:
    """Loading reads the arrays only (no torch); the weights are read, and checked against the
    saved embeddings, when items are first re-encoded."""
    data, _, _ = shop
    fitted.save(tmp_path)
    state = tmp_path / "content_encoder.pt"
    raw = state.read_bytes()
    state.write_bytes(raw[: len(raw) // 2])
    loaded = ContentModel.load(tmp_path)
    np.testing.assert_array_equal(loaded.item_vectors(), fitted.item_vectors())
    with pytest.raises(BundleError, match="content_encoder.pt"):
        loaded.embed_items(data.item_table)
    state.unlink()
    with pytest.raises(BundleError, match="content_encoder.pt"):
        ContentModel.load(tmp_path)


def test_config_errors() -> None:
    assert ContentModel(epochs=3).config.epochs == 3
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        ContentModel(epoch=3)
    with pytest.raises(ConfigError, match="temperature"):
        ContentModel(temperature=0)


def test_needs_some_history() -> None:
    items = pd.DataFrame({C.ITEM_ID: ["a", "b"], C.TITLE: ["x", "y"], C.CATEGORY: "c",
                          C.PRICE: 1.0})
    events = pd.DataFrame({C.USER_ID: ["u1", "u2"], C.ITEM_ID: ["a", "b"],
                           C.TIMESTAMP: START, C.EVENT_TYPE: C.PURCHASE})
    with pytest.raises(DataError, match="2 or more items"):
        ContentModel(**FAST).fit(build_training(events, items))


def test_continues_from_a_fitted_model_without_changing_it(shop, fitted: ContentModel) -> None:
    # the served model continues the holdout's encoder: a step on from the fitted weights keeps
    # their embeddings nearly as they were; a step from random weights is far from them
    data, _, _ = shop
    before = fitted.item_embeddings_.copy()
    one = {**FAST, "epochs": 1, "max_pairs_per_epoch": 128}   # one step
    continued = ContentModel(ContentConfig(**one)).fit(data, start=fitted)
    fresh = ContentModel(ContentConfig(**one)).fit(data)
    np.testing.assert_array_equal(fitted.item_embeddings_, before)
    assert continued.vocab_ is fitted.vocab_
    assert not np.array_equal(continued.item_embeddings_, before)
    kept = np.mean(np.sum(continued.item_embeddings_ * before, axis=1))
    anew = np.mean(np.sum(fresh.item_embeddings_ * before, axis=1))
    assert kept > 0.9 > anew, (kept, anew)


def test_says_what_the_catalog_gave_it() -> None:
    from recsys.models.content_vocab import ItemVocab

    items = pd.DataFrame({C.ITEM_ID: ["a", "b", "c", "d"], C.TITLE: ["red mug", "red cup",
                                                                     "c", "d"],
                          C.CATEGORY: ["unknown"] * 4, C.PRICE: [1.0, 2.0, np.nan, 4.0]})
    used = ItemVocab.fit(items, n_price_bins=2).inputs()
    assert used == {"categories": 0, "brands": 0, "price_bins": 2, "words": 1}
    barcodes = items.assign(**{C.TITLE: items[C.ITEM_ID], C.PRICE: np.nan})
    assert ItemVocab.fit(barcodes).inputs()["words"] == 0
    assert ItemVocab.fit(barcodes).inputs()["price_bins"] == 0
