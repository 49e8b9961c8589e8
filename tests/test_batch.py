"""recsys.batch: chunks in order whatever the workers, one thread per worker, the progress
line."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence

import pytest

from recsys.batch import (
    Background,
    Progress,
    chunk_size,
    duration,
    map_chunks,
    progress_wanted,
)
from recsys.errors import ConfigError


def tag(state: str, chunk: Sequence[int]) -> list[tuple[str, int, int]]:
    return [(state, x * x, os.getpid()) for x in chunk]


def fail_on_13(state: object, chunk: Sequence[int]) -> list[int]:
    if 13 in chunk:
        raise ValueError("13 is refused")
    return list(chunk)


def threads(state: object, chunk: Sequence[int]) -> list[dict[str, int]]:
    import faiss
    from threadpoolctl import threadpool_info

    seen = {info["user_api"]: info["num_threads"] for info in threadpool_info()}
    return [{"faiss": faiss.omp_get_max_threads(), **seen}]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_order_with_the_state(workers: int) -> None:
    chunks = list(map_chunks(tag, list(range(100)), state="s", workers=workers, size=7))
    flat = [row for chunk in chunks for row in chunk]
    assert [(s, sq) for s, sq, _ in flat] == [("s", x * x) for x in range(100)]
    pids = {pid for _, _, pid in flat}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids)


def test_a_worker_error_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="13 is refused"):
        list(map_chunks(fail_on_13, list(range(40)), state=None, workers=2, size=5))


def test_workers_below_one_are_refused() -> None:
    with pytest.raises(ConfigError, match="--workers 0"):
        map_chunks(tag, [1, 2], state="s", workers=0)


def test_each_worker_runs_one_thread_after_a_training_policy() -> None:
    import faiss

    from recsys.threads import set_thread_policy

    set_thread_policy("train")      # what a forked evaluate worker inherits after fitting
    faiss.omp_set_num_threads(2)    # ... and a parent with more threads than that
    try:
        seen = [r for c in map_chunks(threads, [0, 1], state=None, workers=2, size=1)
                for r in c]
    finally:
        faiss.omp_set_num_threads(1)
        set_thread_policy("serve")
    assert len(seen) == 2
    for info in seen:
        assert set(info.values()) == {1}, info


def test_chunks_balance_the_workers() -> None:
    assert chunk_size(100_000, 2) == 256
    assert chunk_size(160, 2) == 10
    assert chunk_size(3, 4) == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal_is_rewritten_in_place() -> None:
    out = FakeTerminal()
    bar = Progress(1000, "recommend", stream=out)
    bar.every = 0.0
    bar.update(250)
    bar.update(750)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\rrecommend: 250/1,000 shoppers (25%), ")
    assert "ETA " in text.split("\r")[1]
    assert text.split("\r")[-1].startswith("recommend: 1,000/1,000 shoppers (100%), ")
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_is_quiet_off_a_terminal_unless_forced() -> None:
    assert not progress_wanted(stream=io.StringIO())
    assert progress_wanted(stream=FakeTerminal())
    assert progress_wanted(force=True, stream=io.StringIO())
    assert not progress_wanted(quiet=True, force=True, stream=FakeTerminal())
    out = io.StringIO()
    bar = Progress(10, "x", stream=out)
    bar.update(5)       # within the first 10 s: nothing yet into a file
    bar.close()
    assert out.getvalue().count("\n") == 1 and "\r" not in out.getvalue()


def test_duration() -> None:
    assert [duration(s) for s in (4.4, 65, 3725, float("inf"))] == ["4s", "1m05s", "1h02m",
                                                                     "?"]


def test_a_pool_serves_several_maps_with_the_same_workers() -> None:
    from functools import partial

    from recsys.batch import Workers

    with Workers("s", 2) as pool:
        first = [r for c in pool.map(tag, list(range(20)), size=2) for r in c]
        second = [r for c in pool.map(partial(tag), list(range(20, 40)), size=2) for r in c]
        with pytest.raises(RuntimeError, match="already open"), Workers("t", 2):
            pass
    assert [sq for _, sq, _ in first + second] == [x * x for x in range(40)]
    pids = {p for *_, p in first + second}
    assert len(pids) <= 2 and os.getpid() not in pids         # two workers, forked once


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@pytest.mark.parametrize("fork", [True, False])
def test_background_returns_the_result_from_another_process(fork: bool) -> None:
    with Background(square_with_pid, 7, fork=fork) as job:
        assert os.getpid() > 0      # the caller goes on meanwhile
        value, pid = job.result()
    assert value == 49
    assert (pid != os.getpid()) if fork else (pid == os.getpid())


def refuse(x: int) -> int:
    raise ValueError(f"{x} is refused")


def test_background_raises_the_childs_error() -> None:
    with Background(refuse, 13, fork=True) as job, pytest.raises(ValueError, match="13 is"):
        job.result()


def sleep_long(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_leaving_the_block_early_stops_the_background_process() -> None:
    started = time.perf_counter()
    with pytest.raises(KeyError), Background(sleep_long, 60.0, fork=True) as job:
        raise KeyError("the caller failed meanwhile")
    assert time.perf_counter() - started < 10
    assert job._process is None
