"""One thread policy per process, set on purpose.

Measured on our 2-core machines: numpy's BLAS threads and FAISS/torch OpenMP threads fight
(latencies up to 15x worse), and one FAISS query with 2 threads ran 2-5x slower than with 1.
implicit also warns when BLAS is multi-threaded, because its own OpenMP loop already uses the
cores. So:

* ``"train"``: BLAS 1 thread; implicit gets the cores (``training_threads()``), FAISS 1
  thread. torch gets the cores too, but the content model trains with ``threads = 1`` by
  default (its own config): its matrices are small, and 2 threads measured 2-30x slower than 1
  on a shared 2-core machine.
* ``"serve"``: everything single-threaded; parallelism comes from uvicorn workers.
* batch scoring (``recsys recommend``, ``recsys evaluate``): the same in each worker process
  (:func:`set_worker_threads`); parallelism comes from one worker per core
  (:mod:`recsys.batch`). Fitting forks such workers too (:mod:`recsys.fit`): the content model
  beside ALS and the sources, the rankers' queries and fits.

Call :func:`set_thread_policy` once, at the top of a CLI command or app start-up. torch is
never imported for this (serving does not need it); code that imports torch calls
:func:`apply_to_torch` after the import.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from threadpoolctl import threadpool_limits

Policy = Literal["train", "serve"]
_state: dict[str, object] = {}


def training_threads() -> int:
    """Threads for implicit/torch training: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def set_thread_policy(policy: Policy) -> None:
    """Apply ``policy`` to BLAS, FAISS and (when loaded) torch in this process (idempotent)."""
    if _state.get("policy") == policy:
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    _state["limits"] = threadpool_limits(limits=1, user_api="blas")
    import faiss  # local: keep `import recsys` light

    faiss.omp_set_num_threads(1)
    _state["policy"] = policy
    if "torch" in sys.modules:
        apply_to_torch()


def apply_to_torch() -> None:
    """Give torch the threads of the current policy (all cores to train, 1 to serve)."""
    import torch

    torch.set_num_threads(1 if _state.get("policy", "serve") == "serve" else training_threads())


def set_worker_threads() -> None:
    """One thread for BLAS, OpenMP (FAISS, LightGBM) and torch in a batch-scoring worker.

    A forked worker inherits its parent's policy, which after fitting is ``"train"`` (all
    cores): N such workers on N cores would each start N threads and fight. OpenMP is limited
    by threadpoolctl as well as through FAISS, so any OpenMP runtime loaded is covered.
    """
    _state.pop("policy", None)
    set_thread_policy("serve")
    _state["openmp"] = threadpool_limits(limits=1, user_api="openmp")
