"""Batch scoring on every core: a function mapped over chunks of shoppers in worker processes,
and the progress line that goes with it.

Workers are forked from the calling process, so each inherits the fitted recommender (and
whatever else is in ``state``) as it is at the call: nothing is pickled or loaded again, and
the arrays stay shared copy-on-write. Only the chunks of ids go out and the chunk results come
back. Each worker runs on one thread (:func:`recsys.threads.set_worker_threads`): on this
project's 2-core machines BLAS, FAISS and LightGBM threads inside a process fight the other
process's, so the parallelism is one single-threaded worker per core.

Results come back in input order and each chunk is scored by the same function as with one
worker (in-process, no fork), so the output does not depend on ``workers``.

>>> # for rows in map_chunks(score_users, users, state=rec, workers=2):
>>> #     out.write(rows)
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import pickle
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any, TypeVar

from recsys.errors import ConfigError
from recsys.threads import set_worker_threads, training_threads

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")

# shoppers per task: small enough to balance the workers, large enough to amortise each
# task's pickling and queue hops (a chunk of 256 is ~0.5 s of scoring)
MAX_CHUNK = 256
_inherited: Any = None  # the state forked workers inherit; set only while a pool is open


def default_workers() -> int:
    """All the cores this process may use."""
    return training_threads()


def check_workers(workers: int | None) -> int:
    """``workers`` (None: all cores), refused below 1."""
    if workers is None:
        return default_workers()
    if workers < 1:
        raise ConfigError(f"--workers {workers} (expected >= 1)")
    return int(workers)


def chunk_size(n: int, workers: int) -> int:
    """About 8 chunks per worker, at most :data:`MAX_CHUNK` shoppers each."""
    return max(1, min(MAX_CHUNK, math.ceil(n / (8 * workers))))


class Workers:
    """``workers`` processes forked once, inheriting ``state``, for any number of
    :meth:`map` calls (a context manager). One pool at a time: the workers find ``state`` in a
    module global set while it is open. With one worker, or without the ``fork`` start method
    (then with a warning), :meth:`map` runs in this process.

    Forking costs the parent's page tables and each worker its first writes to inherited
    pages: a pool per call took 60% more CPU than one worker on the evaluate backtest's short
    calls (600 shoppers each), so a caller with many calls opens one pool for them.
    """

    def __init__(self, state: Any, workers: int | None = 1) -> None:
        self.state = state
        self.workers = check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        global _inherited
        if self.workers == 1:
            return self
        if "fork" not in multiprocessing.get_all_start_methods():
            warnings.warn("batch scoring runs in one process here: worker processes need the "
                          "'fork' start method (Linux)", RuntimeWarning, stacklevel=2)
            return self
        if _inherited is not None:
            raise RuntimeError("a batch-scoring pool is already open in this process")
        _inherited = self.state
        gc.freeze()    # the parent's objects stay out of the workers' collections (copy-on-write)
        self._pool = ProcessPoolExecutor(self.workers,
                                         mp_context=multiprocessing.get_context("fork"),
                                         initializer=set_worker_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        global _inherited
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            _inherited = None
            gc.unfreeze()

    def map(self, fn: Callable[[Any, Sequence[T]], R], items: Sequence[T], *,
            size: int | None = None, progress: Progress | None = None) -> Iterator[R]:
        """``fn(state, chunk)`` for consecutive chunks of ``items``, yielded in order. ``fn`` is
        sent to the workers by reference: a module-level function, or a
        :func:`functools.partial` of one."""
        size = size or chunk_size(len(items), self.workers)
        chunks = [items[i: i + size] for i in range(0, len(items), size)]
        if self._pool is None or len(chunks) == 1:
            return _in_process(fn, chunks, self.state, progress)
        return _in_workers(self._pool, fn, chunks, self.workers, progress)


def map_chunks(fn: Callable[[S, Sequence[T]], R], items: Sequence[T], *, state: S,
               workers: int | None = 1, size: int | None = None,
               progress: Progress | None = None) -> Iterator[R]:
    """``fn(state, chunk)`` for consecutive chunks of ``items``, yielded in order, on a pool of
    ``workers`` opened for this call (see :class:`Workers`)."""
    pool = Workers(state, workers)

    def run() -> Iterator[R]:
        with pool:
            yield from pool.map(fn, items, size=size, progress=progress)

    return run()


class Background:
    """``fn(state)`` in one forked process while the caller goes on (a context manager);
    :meth:`result` waits for it and returns what it returned, or raises what it raised. The
    child runs on one thread (:func:`recsys.threads.set_worker_threads`), like a batch worker,
    and is stopped if the block is left without asking for the result (an error meanwhile).
    With ``fork=False``, or without the ``fork`` start method, ``fn`` runs in this process
    when the result is asked for.

    >>> # with Background(fit_content, data, fork=True) as content:
    >>> #     fit_als(data)               # meanwhile, on the other core
    >>> #     model = content.result()
    """

    def __init__(self, fn: Callable[[S], R], state: S, *, fork: bool = True) -> None:
        self.fn, self.state = fn, state
        self.fork = fork and "fork" in multiprocessing.get_all_start_methods()
        self._process: Any = None
        self._reader: Any = None
        self._taken = False

    def __enter__(self) -> Background:
        if self.fork:
            context = multiprocessing.get_context("fork")
            self._reader, writer = context.Pipe(duplex=False)
            # forked: fn and state are inherited, not pickled
            self._process = context.Process(target=_run_background,
                                            args=(self.fn, self.state, writer), daemon=True)
            self._process.start()
            writer.close()
        return self

    def result(self) -> Any:
        if self._process is None:
            return self.fn(self.state)
        self._taken = True
        try:
            # plain pickle: multiprocessing's own pickler hands torch tensors over as shared
            # memory, which hung here
            ok, value = pickle.loads(self._reader.recv_bytes())
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the background process ended without a result (exit code "
                               f"{self._process.exitcode})") from None
        if not ok:
            raise value
        return value

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            if not self._taken:       # left early (an error): the result is not wanted
                self._process.terminate()
            self._process.join()
            self._reader.close()
            self._process = None


def _run_background(fn: Callable[[Any], Any], state: Any, writer: Any) -> None:
    set_worker_threads()
    try:
        payload = pickle.dumps((True, fn(state)), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
        try:
            payload = pickle.dumps((False, error))
        except Exception:  # noqa: BLE001 - an error that does not pickle: its words
            payload = pickle.dumps((False, RuntimeError(f"{type(error).__name__}: {error}")))
    writer.send_bytes(payload)
    writer.close()


def _in_process(fn: Callable[[S, Sequence[T]], R], chunks: list[Sequence[T]], state: S,
                progress: Progress | None) -> Iterator[R]:
    for chunk in chunks:
        result = fn(state, chunk)
        if progress is not None:
            progress.update(len(chunk))
        yield result


def _in_workers(pool: ProcessPoolExecutor, fn: Callable[[Any, Sequence[T]], R],
                chunks: list[Sequence[T]], workers: int,
                progress: Progress | None) -> Iterator[R]:
    pending: deque[tuple[Future[R], int]] = deque()
    todo = iter(chunks)
    for chunk in todo:                # a few chunks in flight per worker bound the memory
        pending.append((pool.submit(_call, fn, chunk), len(chunk)))
        if len(pending) >= 4 * workers:
            break
    try:
        while pending:
            future, n = pending.popleft()
            result = future.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((pool.submit(_call, fn, nxt), len(nxt)))
            if progress is not None:
                progress.update(n)
            yield result
    finally:
        for future, _ in pending:     # stopped early (an error): drop what is queued
            future.cancel()


def _call(fn: Callable[[Any, Sequence[T]], R], chunk: Sequence[T]) -> R:
    return fn(_inherited, chunk)


def progress_wanted(*, quiet: bool = False, force: bool = False,
                    stream: IO[str] | None = None) -> bool:
    """The progress line's default: shown when stderr is a terminal, never with ``quiet``,
    and with ``force`` (``--progress``) also into a log file or pipe."""
    if quiet:
        return False
    return force or (stream or sys.stderr).isatty()


class Progress:
    """``label: done/total shoppers (pct), rate/s, ETA`` on stderr.

    On a terminal the line is rewritten in place at most every half second and left standing
    when the job is done; into a file or pipe a line is written every 10 s and at the end.
    """

    def __init__(self, total: int, label: str, *, unit: str = "shoppers",
                 stream: IO[str] | None = None) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.done = 0
        self.started = self.shown = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.shown >= self.every:
            self.shown = now
            self._write(self.line(now), final=False)

    def close(self) -> None:
        """Write the final line (total time and mean rate)."""
        self._write(self.line(time.perf_counter()), final=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = (f"{self.label}: {self.done:,}/{self.total:,} {self.unit} "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:,.0f}/s")
        if self.done < self.total:
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            return f"{text}, ETA {duration(eta)}"
        return f"{text}, {duration(elapsed)}"

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` before a rate is known."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
