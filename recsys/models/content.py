"""Neural content model: items embedded from their metadata, users as the pooled embeddings of
their history, trained with an in-batch sampled softmax.

Why: collaborative filtering knows nothing about an item nobody has bought yet. This model
embeds every catalog item from category, brand, price and words (see
:mod:`recsys.models.content_encoder`), so a new item has neighbours and can be recommended on
day one. A user is the L2-normalised weighted sum of their history's item embeddings (weights =
the interaction matrix row, which already carries event-type weights and recency decay), so any
history, including one of a user unseen in training, can be scored without torch.

Training pairs are (user, item) entries of the train matrix, the user represented by their
*other* items (leave-one-out), so training sees the same pooling as scoring. Negatives are the
other targets of the batch, with a logQ correction for their popularity, optionally plus
uniformly drawn catalog items. Early stopping watches recall@20 on a
:class:`~recsys.models.base.ValidationData`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import trange

from recsys.configfile import StrictModel, parse_config
from recsys.errors import BundleError, DataError
from recsys.metrics import ndcg_at_k, recall_at_k
from recsys.models.base import Model, TrainingData, ValidationData, top_k, write_params
from recsys.models.content_encoder import ItemEncoder, ItemFeatures, ItemVocab
from recsys.threads import set_thread_policy

STATE_FILE = "content_encoder.pt"
ARRAYS_FILE = "content_arrays.npz"
PARAMS_NAME = "content"
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


class _PairSampler:
    """Draws (leave-one-out history, target) training examples from the train matrix."""

    def __init__(self, matrix: sp.csr_matrix, max_history: int) -> None:
        self.m = matrix
        self.max_history = max_history
        self.lengths = np.diff(matrix.indptr)
        self.user_of = np.repeat(np.arange(matrix.shape[0]), self.lengths)
        # a pair needs at least one other item in the user's history
        self.pool = np.flatnonzero(self.lengths[self.user_of] >= 2)
        counts = np.bincount(matrix.indices[self.pool], minlength=matrix.shape[1])
        self.target_prob = counts / max(len(self.pool), 1)

    def epoch(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``n`` distinct nnz positions, shuffled."""
        return rng.choice(self.pool, size=min(n, len(self.pool)), replace=False)

    def histories(self, pos: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat history items, their weights and per-example offsets (for ``embedding_bag``)."""
        user = self.user_of[pos]
        start, others = self.m.indptr[user], self.lengths[user] - 1
        target_at = pos - start
        n_hist = np.minimum(others, self.max_history)
        offsets = np.concatenate([[0], np.cumsum(n_hist)[:-1]])
        seg = np.repeat(np.arange(len(pos)), n_hist)
        j = np.arange(int(n_hist.sum())) - offsets[seg]
        # short rows: every other item; long rows: max_history draws (with replacement)
        r = np.where(others[seg] <= self.max_history, j,
                     (rng.random(len(seg)) * others[seg]).astype(np.int64))
        flat = start[seg] + r + (r >= target_at[seg])  # skip the target itself
        return self.m.indices[flat], self.m.data[flat].astype(np.float32), offsets


class ContentModel(Model):
    """Content-based two-tower-style recommender over item metadata (torch, CPU).

    ``fit`` learns an item encoder; afterwards ``item_embeddings_`` (float32, n_items x dim,
    unit rows) holds every item's vector and scoring is a numpy matmul.

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
        self.encoder_: ItemEncoder | None = None
        self.item_embeddings_: np.ndarray | None = None
        self.history_: list[dict[str, Any]] = []
        self.valid_metrics_: dict[str, float] = {}
        self.best_epoch_: int | None = None

    @property
    def n_items(self) -> int:
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        return int(self.item_embeddings_.shape[0])

    def _new_encoder(self, vocab: ItemVocab) -> ItemEncoder:
        c = self.config
        return ItemEncoder(vocab, dim=c.dim, hidden_dim=c.hidden_dim, category_dim=c.category_dim,
                           brand_dim=c.brand_dim, price_dim=c.price_dim, text_dim=c.text_dim,
                           dropout=c.dropout)

    # ---- training ---------------------------------------------------------------------------

    def fit(self, data: TrainingData, valid: ValidationData | None = None) -> Self:
        """Learn the item encoder; early-stop on ``valid`` recall@20 and keep the best epoch."""
        c = self.config
        if len(data.item_table) != len(data.items) or data.matrix.shape[1] != len(data.items):
            raise DataError(f"item_table has {len(data.item_table)} rows and the matrix "
                            f"{data.matrix.shape[1]} columns (expected {len(data.items)} items)")
        sampler = _PairSampler(data.matrix.tocsr(), c.max_history)
        if len(sampler.pool) == 0:
            raise DataError("content model: no user has 2 or more items in train, so there is "
                            "no (history, next item) pair to learn from")
        set_thread_policy("train")
        policy_threads = torch.get_num_threads()
        torch.set_num_threads(c.threads or policy_threads)
        try:
            torch.manual_seed(c.seed)
            vocab = ItemVocab.fit(data.item_table, n_price_bins=c.n_price_bins,
                                  min_count=c.min_token_count, max_vocab=c.max_vocab,
                                  max_tokens=c.max_tokens)
            features = vocab.transform(data.item_table)
            encoder = self._new_encoder(vocab)
            use_valid = valid if valid is not None and len(valid.userids) else None
            history, best_epoch = self._train(encoder, features, sampler, use_valid)
            self.item_embeddings_ = encoder.embed(features)
        finally:
            torch.set_num_threads(policy_threads)
        self.vocab_, self.features_, self.encoder_ = vocab, features, encoder
        self.history_, self.best_epoch_ = history, best_epoch
        self.valid_metrics_ = ({k: history[best_epoch - 1][k] for k in (RECALL, NDCG)}
                               if use_valid is not None else {})
        return self

    def _train(self, encoder: ItemEncoder, features: ItemFeatures, sampler: _PairSampler,
               valid: ValidationData | None) -> tuple[list[dict[str, Any]], int]:
        """The epoch loop with early stopping; leaves the best weights in ``encoder``."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        history: list[dict[str, Any]] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, best_recall, stale = 0, -np.inf, 0
        bar = trange(1, c.epochs + 1, desc="content", unit="epoch",
                     disable=not (c.progress and sys.stderr.isatty()))
        for epoch in bar:
            t0 = time.perf_counter()
            loss = self._train_epoch(encoder, features, sampler, optimizer, rng)
            metrics: dict[str, float | None] = {RECALL: None, NDCG: None}
            if valid is not None:
                metrics.update(self._evaluate(encoder.embed(features), valid))
            history.append({"epoch": epoch, "train_loss": loss, **metrics,
                            "seconds": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{loss:.4f}", recall20=metrics[RECALL])
            recall = metrics[RECALL]
            if recall is None:
                continue
            if recall > best_recall:
                best_recall, best_epoch, stale = recall, epoch, 0
                best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
            else:
                stale += 1
                if stale >= c.patience:
                    break
        bar.close()
        if best_state is None:
            return history, len(history)
        encoder.load_state_dict(best_state)
        return history, best_epoch

    def _train_epoch(self, encoder: ItemEncoder, features: ItemFeatures, sampler: _PairSampler,
                     optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> float:
        c = self.config
        encoder.train()
        positions = sampler.epoch(c.max_pairs_per_epoch, rng)
        n_items = len(features)
        total, n_batches = 0.0, 0
        for s in range(0, len(positions), c.batch_size):
            pos = positions[s:s + c.batch_size]
            if len(pos) < 2:  # a softmax over one candidate teaches nothing
                continue
            hist, weights, offsets = sampler.histories(pos, rng)
            targets = sampler.m.indices[pos]
            negatives = rng.integers(0, n_items, size=c.random_negatives)
            # encode each needed item once, then index into the result
            uniq, inv = np.unique(np.concatenate([hist, targets, negatives]), return_inverse=True)
            emb = encoder(*features.tensors(uniq))
            users = F.normalize(F.embedding_bag(
                torch.from_numpy(inv[:len(hist)]), emb, torch.from_numpy(offsets),
                mode="sum", per_sample_weights=torch.from_numpy(weights)), dim=1)
            candidates = emb[torch.from_numpy(inv[len(hist):])]
            logits = users @ candidates.T / c.temperature
            if c.logq_correction:
                expected = np.concatenate([len(pos) * sampler.target_prob[targets],
                                           np.full(len(negatives), len(negatives) / n_items)])
                logits = logits - torch.from_numpy(np.log(expected).astype(np.float32))
            # another row's target equal to mine is not a negative (accidental hit)
            cand_ids = np.concatenate([targets, negatives])
            hit = cand_ids[None, :] == targets[:, None]
            hit[np.arange(len(pos)), np.arange(len(pos))] = False
            logits = logits.masked_fill(torch.from_numpy(hit), float("-inf"))
            loss = F.cross_entropy(logits, torch.arange(len(pos)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.item())
            n_batches += 1
        return total / max(n_batches, 1)

    @staticmethod
    def _evaluate(item_embeddings: np.ndarray, valid: ValidationData,
                  chunk: int = 2048) -> dict[str, float]:
        """recall@20 and ndcg@10 of top-20 lists (train items filtered) for ``valid`` users."""
        recs = []
        for s in range(0, len(valid.userids), chunk):
            seen = valid.history[valid.userids[s:s + chunk]]
            scores = cosine_scores(user_vectors_from(item_embeddings, seen), item_embeddings)
            coo = seen.tocoo()
            scores[coo.row, coo.col] = -np.inf
            recs.append(top_k(scores, 20)[0])
        ids = np.concatenate(recs)
        return {RECALL: recall_at_k(ids, valid.relevant, 20),
                NDCG: ndcg_at_k(ids, valid.relevant, 10)}

    # ---- inference (numpy only) ---------------------------------------------------------------

    def user_vectors(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Unit user vectors (rows x dim) pooled from each row's history; zero if empty."""
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        return user_vectors_from(self.item_embeddings_, user_items)

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Cosine of each user's pooled history vector with every item (users x n_items)."""
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        if user_items.shape[0] != len(userids):
            raise DataError(f"user_items has {user_items.shape[0]} rows for {len(userids)} users "
                            f"(expected 1 row for every user in userids)")
        return cosine_scores(self.user_vectors(user_items), self.item_embeddings_)

    def similar_items(self, itemid: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items of highest cosine with ``itemid`` (itself excluded)."""
        self._check_fitted("item_embeddings_")
        assert self.item_embeddings_ is not None
        if not 0 <= itemid < self.n_items:
            raise DataError(f"itemid = {itemid} (expected 0 <= itemid < {self.n_items})")
        sims = cosine_scores(self.item_embeddings_[[itemid]], self.item_embeddings_)
        sims[0, itemid] = -np.inf
        ids, vals = top_k(sims, k)
        return ids[0], vals[0]

    def embed_items(self, items: pd.DataFrame) -> np.ndarray:
        """Embeddings of (possibly new) catalog rows with the fitted vocabularies and encoder,
        e.g. to index an item added after training without retraining."""
        self._check_fitted("encoder_")
        assert self.encoder_ is not None and self.vocab_ is not None
        return self.encoder_.embed(self.vocab_.transform(items))

    # ---- persistence ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> list[str]:
        """Write the encoder ``state_dict``, the vocabularies/features/embeddings (npz) and the
        config + training history (JSON). Returns the file names."""
        self._check_fitted("encoder_")
        assert self.encoder_ is not None and self.vocab_ is not None
        assert self.features_ is not None and self.item_embeddings_ is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.encoder_.state_dict(), directory / STATE_FILE)
        f = self.features_
        arrays: dict[str, Any] = {
            **self.vocab_.to_arrays(), "feat_category": f.category, "feat_brand": f.brand,
            "feat_price_bin": f.price_bin, "feat_tokens": f.tokens,
            "item_embeddings": self.item_embeddings_}
        np.savez(directory / ARRAYS_FILE, **arrays)
        params = write_params(directory, PARAMS_NAME, {
            "config": self.config.model_dump(), "history": self.history_,
            "best_epoch": self.best_epoch_, "valid_metrics": self.valid_metrics_})
        return [STATE_FILE, ARRAYS_FILE, params]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild a fitted model from :meth:`save` output; a damaged file raises BundleError."""
        directory = Path(directory)
        try:
            params = json.loads((directory / f"{PARAMS_NAME}.json").read_text())
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
            model = cls(parse_config(ContentConfig, params["config"], f"{directory}/content"))
            vocab = ItemVocab.from_arrays(arrays)
            features = ItemFeatures(arrays["feat_category"], arrays["feat_brand"],
                                    arrays["feat_price_bin"], arrays["feat_tokens"])
            encoder = model._new_encoder(vocab)
            encoder.load_state_dict(state)
        except Exception as exc:  # any unreadable/missing/mismatched piece means a bad bundle
            raise BundleError(f"{directory}: cannot load content model "
                              f"({type(exc).__name__}: {exc})") from exc
        embeddings = np.ascontiguousarray(arrays["item_embeddings"], dtype=np.float32)
        if not np.allclose(encoder.embed(features), embeddings, atol=1e-4):
            raise BundleError(f"{directory / STATE_FILE}: weights do not reproduce the saved "
                              f"item embeddings (file damaged or from another model)")
        model.vocab_, model.features_, model.encoder_ = vocab, features, encoder
        model.item_embeddings_ = embeddings
        model.history_ = params["history"]
        model.best_epoch_ = params["best_epoch"]
        model.valid_metrics_ = params["valid_metrics"]
        return model
