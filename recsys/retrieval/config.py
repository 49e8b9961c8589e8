"""How item indexes are built and filtered searches answered (see :mod:`recsys.retrieval`)."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from recsys.configfile import StrictModel


class RetrievalConfig(StrictModel):
    """How the item index is built and how filtered searches are answered.

    ``exact_max_items`` comes from ``benchmarks/retrieval_bench.py`` (d=64, k=200, one FAISS
    thread, 2-core AMD EPYC, p50 of 1000 single queries). Exact search costs ~11-13 us per 1k
    items: 0.14 / 0.21 / 0.47 / 1.1-1.3 / ~12 ms (CPU) at 10k / 20k / 50k / 100k / 1M. IVF on
    clustered vectors stays near 0.05-0.1 ms at every size (nprobe 6-24, recall@200
    0.97-0.99), but on vectors without cluster structure it needed nprobe 512 of 894 lists at
    50k and took 1.2 ms against 0.41 ms exact. So exact is kept while it is cheap even in the
    worst case, up to 50k items (under 0.5 ms, recall 1, no training); above that IVF wins by
    10x or more on clustered data.
    """

    # Catalog size up to which the exact IndexFlatIP is used (measurement in the docstring).
    exact_max_items: int = Field(50_000, ge=0)
    # Allowed masks covering at least this share of the catalog are applied after an
    # unfiltered search (over-fetching want / share * 1.25) instead of as a FAISS selector that
    # also widens nprobe: the serving mask (in stock, not bought) usually allows ~97%, and the
    # selector path then probed 2x the lists (+1 ms at 100k items).
    postfilter_share: float = Field(0.8, gt=0, le=1)
    # An IVF index that needs to probe more than this share of its lists to reach the target
    # recall scans so much that exact search is as fast and exact (ALS factors of a 100k-item
    # shop needed nprobe 192 of 1265 after the L2 reduction below, 384 without); the build
    # then keeps the exact index and records why.
    max_probe_share: float = Field(0.3, gt=0, le=1)
    # Candidates the ranker sees per user; recall is measured at this depth.
    candidate_depth: int = Field(200, ge=1)
    # nprobe is raised until recall@candidate_depth vs exact search reaches this.
    target_recall: float = Field(0.95, gt=0, le=1)
    # nlist = nlist_factor * sqrt(n_items): the usual FAISS rule of thumb (4 to 16 * sqrt(n)).
    nlist_factor: float = Field(4.0, gt=0)
    # k-means trains on at most this many points per list (FAISS warns below 39). One thread,
    # 1M x 64: training took 14 / 24 / 62 s with 39 / 64 / 128; at 100k, 39 to 256 points gave
    # the same recall@200 (0.92-0.95 at nprobe 4, >= 0.998 at 8). 64 keeps a margin above 39.
    train_points_per_list: int = Field(64, ge=39)
    # Candidate nprobe values, tried in increasing order. ~1.5x steps: each step costs one
    # search of the query sample at build time, and coarser steps overshoot nprobe (latency).
    nprobe_grid: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                                    384, 512)
    # At most this many query_sample rows are used to measure recall (seeded sample).
    recall_queries: int = Field(1000, ge=1)
    # Over-fetch for filtered search. Excluded ids are over-fetched exactly (k + len(exclude)
    # hits, then post-filtered). An allowed mask covering `share` of the catalog goes to FAISS
    # as an ID selector, and an IVF index then probes nprobe * overfetch / share lists: with 1
    # (as many allowed items scanned as items in an unfiltered search) recall@200 fell to
    # 0.89-0.95 at 100k items; 2 kept it at 0.96-0.98 (100k) and 0.99-1.0 (1M), shares 50%-5%.
    # (Fetching k * overfetch / share hits and post-filtering instead, as first tried, needed a
    # heap that big: 1.3 vs 0.17 ms CPU at 100k, 10% allowed, same recall.)
    overfetch: float = Field(2.0, ge=1)
    # Allowed sets below this share of the catalog skip ANN: an exact product over the allowed
    # rows is then about as cheap and exact. CPU p50 at 1M items: exact subset 2.0 / 4.5 ms at
    # 1% / 2% allowed, filtered IVF 3.3 ms at 2% and 1.7 ms at 5%; at 100k: exact subset
    # <= 0.3 ms at 1-2%, filtered IVF 0.7 ms at 5%. The crossover falls as the catalog grows.
    restrictive_share: float = Field(0.02, ge=0, le=1)
    # Seed of the FAISS k-means and of query sampling.
    seed: int = 0

    @field_validator("nprobe_grid")
    @classmethod
    def _grid_ascending(cls, grid: tuple[int, ...]) -> tuple[int, ...]:
        if not grid or any(p < 1 for p in grid) or list(grid) != sorted(set(grid)):
            raise ValueError("expected a non-empty, strictly increasing list of ints >= 1")
        return grid

    def nlist_for(self, n_items: int) -> int:
        """Number of IVF lists for ``n_items`` (at least 39 training points per list)."""
        return max(1, min(round(self.nlist_factor * math.sqrt(n_items)), n_items // 39))
