"""scratchgen.kernels.threads, tasks and stack: how many threads a call wakes, how they claim tasks,
and the register tile's sums on the stack.
"""
import time

import numba
import numpy as np
import pytest

from scratchgen.kernels import conv_numba, layouts
from scratchgen.kernels import tasks, threads as mm_threads
from scratchgen.kernels.stack import heap_tile, stack_tile
from scratchgen.kernels.tasks import claim_task, task_counter

from kernel_checks import rng_array


def test_a_stack_tile_has_the_shape_its_row_bytes_give_each_dtype():
    @numba.njit
    def filled(like):
        tile = stack_tile(3, 128, like)
        for r in range(tile.shape[0]):
            for s in range(tile.shape[1]):
                tile[r, s] = r * 100 + s
        return tile.sum(), tile.shape[0], tile.shape[1]

    for dtype, cols in ((np.float32, 32), (np.float64, 16)):
        total, rows, width = filled(np.zeros(1, dtype))
        assert (rows, width) == (3, cols)
        assert total == sum(r * 100 + s for r in range(3) for s in range(cols))
    assert heap_tile(3, 128, np.zeros(1, np.float64)).shape == (3, 16)      # the plain-Python twin


@numba.njit(parallel=True)
def _claim_all(tasks, threads, claimed, per_thread):
    """Every thread claims tasks from one counter until none are left, counting what it got."""
    counter = task_counter()
    for t in numba.prange(threads):
        task = claim_task(counter)
        while task < tasks:
            claimed[task] += 1
            per_thread[t] += 1
            task = claim_task(counter)
    return counter[0]


def test_every_task_is_claimed_exactly_once_however_the_threads_race():
    # the counter's fetch-and-add is atomic: as a plain load and store, two threads racing through 300,000
    # tasks took some of them twice and skipped others (measured: it fails with the intrinsic replaced)
    threads = numba.get_num_threads()
    for _ in range(3):
        claimed, per_thread = np.zeros(300_000, np.intp), np.zeros(threads, np.intp)
        handed_out = _claim_all(claimed.size, threads, claimed, per_thread)
        assert (claimed == 1).all(), f"{(claimed == 0).sum()} tasks skipped, {(claimed > 1).sum()} taken twice"
        assert per_thread.sum() == claimed.size
        assert handed_out == claimed.size + threads       # each thread's last claim found no task left
    counter = task_counter()                              # and the plain-Python twin, with the JIT off
    assert [tasks._claim_task_python(counter) for _ in range(3)] == [0, 1, 2] and counter[0] == 3


def test_only_work_that_pays_for_the_wake_ups_wakes_the_pool():
    cost = mm_threads.calibrate()
    assert 0 < cost["madd"] < 1e-8 and 0 < cost["wake"] < 1.0
    assert mm_threads.pool_threads() == numba.get_num_threads()
    break_even = mm_threads.WAKEUPS_SAVED * cost["wake"] / cost["madd"]
    all_threads = numba.get_num_threads()
    assert mm_threads.threads_for(1) == 1
    assert mm_threads.threads_for(100 * break_even) == all_threads
    with pytest.raises(RuntimeError):
        with mm_threads.sized_for(1):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == all_threads      # restored after an error


def test_a_calibration_that_met_a_busy_core_is_repeated_later_and_a_good_one_is_kept(monkeypatch):
    # every wake-up slower than SLOW_WAKE means another program held the core: measured again after
    # RECALIBRATE seconds, not believed for the rest of the process (it would keep threads off for good)
    long_ago = time.monotonic() - 2 * mm_threads.RECALIBRATE
    monkeypatch.setattr(mm_threads, "_calibration", {"wake": 8e-3, "madd": 1e-10, "at": long_ago})
    mm_threads.threads_for(10**8)
    assert mm_threads._calibration["at"] > long_ago           # measured again
    fresh = {"wake": 8e-3, "madd": 1e-10, "at": time.monotonic()}
    monkeypatch.setattr(mm_threads, "_calibration", dict(fresh))
    assert mm_threads.threads_for(10**8) == 1 and mm_threads._calibration == fresh   # not yet
    good = {"wake": 2e-6, "madd": 1e-10, "at": long_ago}
    monkeypatch.setattr(mm_threads, "_calibration", dict(good))
    assert mm_threads.threads_for(10**8) == numba.get_num_threads() and mm_threads._calibration == good


def test_copies_from_scattered_places_weigh_more_than_a_multiply_add_in_the_thread_rule(monkeypatch):
    # im2col's gather, col2im's scattered additions and a transpose cost several vectorised multiply-adds a
    # number; counted as one, the DCGAN's one-channel im2col looked too short to try a second thread
    assert mm_threads.SCATTERED_COPY_WORK > 1
    asked = []

    class Recorder(mm_threads.sized_for):
        def __init__(self, work, key=None):
            asked.append((key[0] if key else None, work))
            super().__init__(work, key)

    monkeypatch.setattr(conv_numba, "sized_for", Recorder)
    monkeypatch.setattr(layouts, "sized_for", Recorder)
    monkeypatch.setattr(layouts, "threads_for", lambda work: asked.append(("threads_for", work)) or 2)
    x = rng_array((3, 1, 8, 8), np.float32, 28)
    cols = conv_numba._patches(x, 3, 3, (1, 1), (1, 1), (8, 8), np.float32)
    conv_numba._col2im(np.ascontiguousarray(cols.transpose(0, 2, 1)), x.shape, 3, 3, (1, 1), (1, 1), (8, 8), np.float32)
    big = rng_array((2, 70, 65), np.float32, 29)
    layouts.transposed(big, np.float32)
    weights = {name: work for name, work in asked}
    assert weights["im2col"] == mm_threads.SCATTERED_COPY_WORK * cols.size
    assert weights["col2im"] == mm_threads.SCATTERED_COPY_WORK * cols.size
    assert weights["threads_for"] == weights["transpose"] == mm_threads.SCATTERED_COPY_WORK * big.size


def run_calls(choice, seconds_on, calls):
    """Let ``choice`` pick the threads of ``calls`` calls, each taking ``seconds_on[threads]``; the picks."""
    picks = []
    for _ in range(calls):
        t = choice.next()
        choice.record(t, seconds_on[t])
        picks.append(t)
    return picks


def test_a_timed_call_site_keeps_the_faster_choice_and_retries_the_other_less_and_less():
    choice, every = mm_threads.ThreadChoice(2), mm_threads.RETRY_EVERY
    # a core taken by another program: two threads slower than one
    picks = run_calls(choice, {1: 1.0, 2: 1.3}, 6 + every * (1 + 2 + 4 + 8))
    assert sorted(picks[:6]) == [1, 1, 1, 2, 2, 2]              # both warmed up first
    retries = [i for i, t in enumerate(picks[6:], 1) if t == 2]
    assert retries == [every, 3 * every, 7 * every, 15 * every]   # each losing retry doubles the wait
    assert choice.interval == 16 * every
    # the core is free again: the next retry wins, the ones after it come soon, two threads take over
    picks = run_calls(choice, {1: 1.0, 2: 0.6}, 16 * every + 3 * every)
    assert choice.best() == 2 and picks[-every:].count(2) >= every - 1
    assert mm_threads.RETRY_MAX >= choice.interval


def test_one_slow_first_call_does_not_decide_a_call_site():
    choice = mm_threads.ThreadChoice(2)
    t = choice.next()
    choice.record(t, 100.0 if t == 2 else 1.0)                 # e.g. compiling on the first call
    run_calls(choice, {1: 1.0, 2: 0.5}, 5)
    assert choice.best() == 2 and choice.next() == 2


def test_only_work_above_the_break_even_point_is_timed():
    mm_threads._choices.clear()
    with mm_threads.sized_for(1, key=("test", "small")) as used:
        assert used == 1
    assert ("test", "small") not in mm_threads._choices
    with mm_threads.sized_for(10**12, key=("test", "big")) as used:
        assert used == numba.get_num_threads() or numba.get_num_threads() == 1
    if numba.get_num_threads() > 1:
        assert len(mm_threads._choices[("test", "big")].times[used]) == 1
