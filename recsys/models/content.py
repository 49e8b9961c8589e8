"""Neural content model: items embedded from their metadata, users as the pooled embeddings of
their history, trained with an in-batch sampled softmax.

Why: collaborative filtering knows nothing about an item nobody has bought yet. This model
embeds every catalog item from category, brand, price and words (see
:mod:`recsys.models.content_vocab` and :mod:`recsys.models.content_encoder`), so a new item has
neighbours and can be recommended on day one. A user is the L2-normalised weighted sum of their
history's item embeddings (weights = the interaction matrix row, which already carries
event-type weights and recency decay), so any history, including one of a user unseen in
training, can be scored without torch.

This module is numpy only: torch is imported where the encoder trains
(:mod:`recsys.models.content_train`) or where items are re-encoded
(:meth:`ContentModel.embed_items`), so loading and serving a bundle never imports it.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys.configfile import StrictModel, parse_config
from recsys.errors import BundleError, DataError
from recsys.models.base import TrainingData, ValidationData, VectorModel, top_k
from recsys.models.content_vocab import ItemFeatures, ItemVocab
from recsys.persist import read_arrays, read_config, read_meta, read_with, write_arrays, write_meta

if TYPE_CHECKING:
    from recsys.models.content_encoder import ItemEncoder

KIND = "content"
FORMAT_VERSION = 2
STATE_FILE = "content_encoder.pt"
ARRAYS = "content_arrays"
RECALL, NDCG = "valid_recall@20", "valid_ndcg@10"


class ContentConfig(StrictModel):
    """Hyper-parameters of :class:`ContentModel`. With the defaults, Online Retail (3.7k items,
    280k train events) fits in about 30 s on one CPU thread."""

    dim: int = Field(default=64, ge=2)  # output embedding size (what FAISS indexes)
    hidden_dim: int = Field(default=128, ge=1)
    category_dim: int = Field(default=32, ge=1)
    brand_dim: int = Field(default=16, ge=1)
    price_dim: int = Field(default=8, ge=1)
    text_dim: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    n_price_bins: int = Field(default=16, ge=1)  # quantile bins of log1p(price) over the catalog
    min_token_count: int = Field(default=2, ge=1)  # a word must occur in this many items to be used
    max_vocab: int = Field(default=20_000, ge=1)
    max_tokens: int = Field(default=32, ge=1)  # words per item (title first, then description)
    # history items pooled per training example; longer histories are subsampled each step
    max_history: int = Field(default=50, ge=1)
    # cosines lie in [-1, 1]; dividing by a small temperature makes the softmax peaked enough
    temperature: float = Field(default=0.1, gt=0)
    logq_correction: bool = True  # undo the popularity bias of in-batch negatives
    # uniform catalog negatives per batch: they push never-bought items down too, which makes
    # the model less popularity-driven; on Online Retail 128 cost a fifth of recall@20, so off
    random_negatives: int = Field(default=0, ge=0)
    batch_size: int = Field(default=1024, ge=2)  # also the number of in-batch negatives
    max_pairs_per_epoch: int = Field(default=50_000, ge=1)  # caps epoch time on big data
    # on Online Retail recall@20 still creeps up at 20; 15 keeps the full fit near 30 s
    epochs: int = Field(default=15, ge=1)
    # the served model (fitted on every event) continues the holdout's best encoder for this
    # many epochs; unset: it trains again from random weights for the holdout's best epoch count
    refit_epochs: int | None = Field(default=3, ge=1)
    # epochs without a better valid recall@20 before stopping (the best epoch is restored)
    patience: int = Field(default=3, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0
    # torch threads while fitting; 0 = the process thread policy (all cores). 1 because the
    # tensors are small: on 2 cores shared with other work, 2 threads ran 2-30x slower (each op
    # waits for both threads to be scheduled) and were rarely faster when the cores were idle
    threads: int = Field(default=1, ge=0)
    progress: bool = True  # tqdm bar over epochs; off anyway when stderr is not a terminal


def user_vectors_from(item_embeddings: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
    """L2-normalised weighted sums of item embeddings (users x dim); empty rows stay zero."""
    if user_items.shape[1] != item_embeddings.shape[0]:
        raise DataError(f"user_items has {user_items.shape[1]} columns "
                        f"(expected one per item: {item_embeddings.shape[0]})")
    vecs = np.asarray(sp.csr_matrix(user_items, dtype=np.float32) @ item_embeddings,
                      dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12), dtype=np.float32)


def cosine_scores(vectors: np.ndarray, item_embeddings: np.ndarray) -> np.ndarray:
    """``vectors @ item_embeddings.T`` as float32, computed in float64.

    Why float64: BLAS sums in an order that depends on the batch shape, and items with the same
    metadata have identical embeddings, so float32 ties would break differently for one user
    alone and in a batch. Rounding float64 results makes a row's scores batch-independent.
    """
    product = np.asarray(vectors, dtype=np.float64) @ item_embeddings.astype(np.float64).T
    return product.astype(np.float32)


class ContentModel(VectorModel):
    """Content-based two-tower-style recommender over item metadata.

    ``fit`` learns an item encoder (torch, CPU); afterwards ``item_embeddings_`` (float32,
    n_items x dim, unit rows) holds every item's vector and scoring is a numpy matmul.

    >>> model = ContentModel(ContentConfig(epochs=5)).fit(data, valid)  # doctest: +SKIP
    >>> ids, scores = model.recommend(0, data.matrix[[0]], k=10)  # doctest: +SKIP
    >>> neighbours, sims = model.similar_items(cold_item_id, k=10)  # doctest: +SKIP
    """

    name = "content"

    def __init__(self, config: ContentConfig | None = None, **overrides: Any) -> None:
        config = config or ContentConfig()
        if overrides:  # ContentModel(epochs=3): same validation as a config file
            config = parse_config(ContentConfig, {**config.model_dump(), **overrides}, "content")
        self.config = config
        self.vocab_: ItemVocab | None = None
        self.features_: ItemFeatures | None = None
        self.item_embeddings_: np.ndarray | None = None
        self.history_: list[dict[str, Any]] = []
        self.valid_metrics_: dict[str, float] = {}
        self.best_epoch_: int | None = None
        self._encoder: ItemEncoder | None = None
        self._state_path: Path | None = None     # a loaded model's weights, read on first need

    @property
    def n_items(self) -> int:
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        return int(self.item_embeddings_.shape[0])

    def fit(self, data: TrainingData, valid: ValidationData | None = None, *,
            start: ContentModel | None = None) -> Self:
        """Learn the item encoder; early-stop on ``valid`` recall@20 and keep the best epoch.
        ``start``: a fitted model to continue from (its vocabulary and weights) instead of
        random weights."""
        from recsys.models.content_train import TrainedEncoder, train_content

        begin = None
        if start is not None:
            start._check_fitted("item_embeddings_")
            assert start.vocab_ is not None and start.features_ is not None
            begin = TrainedEncoder(start.vocab_, start.features_, start.encoder(),
                                   start.item_vectors(), [], start.best_epoch_ or 0, {})
        trained = train_content(self.config, data, valid, begin)
        self.vocab_, self.features_ = trained.vocab, trained.features
        self._encoder, self._state_path = trained.encoder, None
        self.item_embeddings_ = trained.embeddings
        self.history_, self.best_epoch_ = trained.history, trained.best_epoch
        self.valid_metrics_ = trained.valid_metrics
        return self

    # ---- what the recommender asks (numpy only) -----------------------------------------------

    def item_vectors(self) -> np.ndarray:
        """Unit item embeddings (n_items x dim, float32, C-contiguous): what retrieval indexes."""
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        return self.item_embeddings_

    def item_unit_vectors(self) -> np.ndarray:
        return self.item_vectors()     # already unit length

    def user_vector(self, user: int, items: np.ndarray, weights: np.ndarray
                    ) -> np.ndarray | None:
        """The profile of (items, weights): their weighted, normalised embedding sum; None for
        an empty profile. ``user`` is unused: the model keeps nothing per user."""
        if len(items) == 0:
            return None
        vec = weights @ self.item_vectors()[items]
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    def forget_user(self, user: int) -> bool:
        """Nothing to forget: users exist only as their histories."""
        return False

    def user_vectors(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Unit user vectors (rows x dim) pooled from each row's history; zero if empty."""
        return user_vectors_from(self.item_vectors(), user_items)

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Cosine of each user's pooled history vector with every item (users x n_items)."""
        if user_items.shape[0] != len(userids):
            raise DataError(f"user_items has {user_items.shape[0]} rows for {len(userids)} users "
                            f"(expected 1 row for every user in userids)")
        return cosine_scores(self.user_vectors(user_items), self.item_vectors())

    def similar_items(self, itemid: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items of highest cosine with ``itemid`` (itself excluded)."""
        emb = self.item_vectors()
        if not 0 <= itemid < self.n_items:
            raise DataError(f"itemid = {itemid} (expected 0 <= itemid < {self.n_items})")
        sims = cosine_scores(emb[[itemid]], emb)
        sims[0, itemid] = -np.inf
        ids, vals = top_k(sims, k)
        return ids[0], vals[0]

    # ---- re-encoding (imports torch) --------------------------------------------------------

    def encoder(self) -> ItemEncoder:
        """The trained encoder; a loaded model reads its weights now (torch) and checks they
        reproduce the saved embeddings."""
        if self._encoder is None:
            self._check_fitted("vocab_")
            assert self._state_path is not None and self.vocab_ is not None
            assert self.features_ is not None
            import torch

            from recsys.models.content_train import new_encoder
            from recsys.threads import apply_to_torch

            apply_to_torch()

            path = self._state_path
            state = read_with(path, "content encoder weights",
                              lambda p: torch.load(p, map_location="cpu", weights_only=True))
            encoder = new_encoder(self.config, self.vocab_)
            try:
                encoder.load_state_dict(state)
            except (RuntimeError, KeyError, TypeError) as exc:
                raise BundleError(f"{path}: weights do not fit the encoder ({exc})") from None
            if not np.allclose(encoder.embed(self.features_), self.item_vectors(), atol=1e-4):
                raise BundleError(f"{path}: weights do not reproduce the saved item embeddings "
                                  f"(file damaged or from another model)")
            self._encoder = encoder
        return self._encoder

    def with_items(self, table: pd.DataFrame, rows: np.ndarray) -> ContentModel:
        """A copy whose items are ``table``'s rows (the old ones first, new ones appended),
        ``rows`` (every new row, and changed old ones) embedded from their metadata now. The
        original is left as it is."""
        assert self.features_ is not None and self.vocab_ is not None
        grown = copy.copy(self)
        f, n_old, n = self.features_, len(self.features_), len(table)
        arrays = [np.concatenate([a, np.zeros((n - n_old, *a.shape[1:]), a.dtype)])
                  for a in (f.category, f.brand, f.price_bin, f.tokens)]
        embeddings = np.zeros((n, self.item_vectors().shape[1]), np.float32)
        embeddings[:n_old] = self.item_vectors()
        if len(rows):
            changed = self.vocab_.transform(table.iloc[rows])
            for array, part in zip(arrays, (changed.category, changed.brand, changed.price_bin,
                                            changed.tokens), strict=True):
                array[rows] = part
            embeddings[rows] = self.encoder().embed(changed)
        grown.features_ = ItemFeatures(*arrays)
        grown.item_embeddings_ = np.ascontiguousarray(embeddings)
        return grown

    def embed_items(self, items: pd.DataFrame) -> np.ndarray:
        """Embeddings of (possibly new) catalog rows with the fitted vocabularies and encoder,
        e.g. to index an item added after training without retraining."""
        self._check_fitted("vocab_")
        assert self.vocab_ is not None
        return self.encoder().embed(self.vocab_.transform(items))

    # ---- persistence ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> list[str]:
        """The encoder ``state_dict``, the vocabularies/features/embeddings (npz) and the
        config + training history (JSON). Returns the file names."""
        self._check_fitted("item_embeddings_")
        assert self.vocab_ is not None and self.features_ is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._encoder is not None:
            import torch

            torch.save(self._encoder.state_dict(), directory / STATE_FILE)
        else:   # loaded and never re-encoded: the weights are the file it came from
            assert self._state_path is not None
            if self._state_path.resolve() != (directory / STATE_FILE).resolve():
                shutil.copyfile(self._state_path, directory / STATE_FILE)
        f = self.features_
        arrays: dict[str, Any] = {
            **self.vocab_.to_arrays(), "feat_category": f.category, "feat_brand": f.brand,
            "feat_price_bin": f.price_bin, "feat_tokens": f.tokens,
            "item_embeddings": self.item_embeddings_}
        return [STATE_FILE, write_arrays(directory, ARRAYS, arrays),
                write_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION,
                           config=self.config.model_dump(), history=self.history_,
                           best_epoch=self.best_epoch_, valid_metrics=self.valid_metrics_)]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild a fitted model from :meth:`save` output without torch; the encoder weights
        are read when first needed (:meth:`encoder`). A damaged file raises BundleError."""
        directory = Path(directory)
        meta = read_meta(directory, KIND, kind=KIND, version=FORMAT_VERSION)
        path = directory / f"{KIND}.json"
        model = cls(read_config(meta, path, ContentConfig))
        arrays = read_arrays(directory, ARRAYS, ("feat_category", "feat_brand", "feat_price_bin",
                                                 "feat_tokens", "item_embeddings"))
        try:
            model.vocab_ = ItemVocab.from_arrays(arrays)
        except KeyError as exc:
            raise BundleError(f"{directory / (ARRAYS + '.npz')}: missing array {exc}") from None
        model.features_ = ItemFeatures(arrays["feat_category"], arrays["feat_brand"],
                                       arrays["feat_price_bin"], arrays["feat_tokens"])
        model.item_embeddings_ = np.ascontiguousarray(arrays["item_embeddings"], np.float32)
        if not (directory / STATE_FILE).is_file():
            raise BundleError(f"{directory / STATE_FILE}: missing content encoder weights file")
        model._state_path = directory / STATE_FILE
        model.history_ = list(meta.get("history", []))
        model.best_epoch_ = meta.get("best_epoch")
        model.valid_metrics_ = dict(meta.get("valid_metrics", {}))
        return model
