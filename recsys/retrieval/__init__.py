"""FAISS candidate retrieval over item vectors (inner product), with filters that stay correct.

The first stage of :mod:`recsys.recommender`: given user vectors (ALS user factors, content
embeddings...) find the ``candidate_depth`` items with the largest inner product with them.

* Small catalogs use an exact ``IndexFlatIP``; large ones an ``IndexIVFFlat`` whose ``nprobe`` is
  chosen at build time as the smallest value reaching ``target_recall`` against exact search on
  real user vectors, and recorded in :attr:`ItemIndex.build_info_` for the bundle manifest.
* Filters: ``exclude`` ids are over-fetched and post-filtered; an ``allowed`` mask is passed to
  FAISS as an ``IDSelectorBitmap`` (IVF probing more lists the smaller the allowed share) and
  re-checked after. A very restrictive mask, or a row where ANN found too few eligible items,
  is answered by an exact matrix product over the allowed rows instead. A disallowed or
  excluded id is never returned.
* Search never touches thread settings: serving sets FAISS to one thread once, at start-up
  (:func:`recsys.threads.set_thread_policy`).

All ids are internal (0..n_items-1, the rows of the vectors).
"""

from recsys.retrieval.config import RetrievalConfig
from recsys.retrieval.index import ItemIndex
from recsys.retrieval.measure import recall_at, score_recall

__all__ = ["ItemIndex", "RetrievalConfig", "recall_at", "score_recall"]
