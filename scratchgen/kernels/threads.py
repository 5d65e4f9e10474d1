"""How many threads a kernel call should wake: all of them only when the work pays for it.

Numba runs a ``prange`` loop on a pool of threads that sleep between calls (``OMP_WAIT_POLICY=PASSIVE``,
set in ``kernels/__init__``). Waking them costs time whatever the loop does, so a small product
is faster on the calling thread alone: measured on a 2-core machine, the 784-400-20 VAE's training
step took longer on two threads than on one, because most of its products are small.

The break-even point is measured, not guessed, once per process (``calibrate``, well under a
millisecond): the time to wake the pool and join it again, and the time of one multiply-add on
one thread. A call of ``work`` multiply-adds then uses T threads only if the time they save,
``work · t_madd · (1 - 1/T)``, is at least ``WAKEUPS_SAVED`` wake-ups — a margin for how much a
wake-up varies on a busy machine. The number of threads never changes a result: every output
element is computed by one task, in the same order, however many threads share the tasks.
"""
import contextlib
import time

import numba
import numpy as np
from numba import njit, prange

WAKEUPS_SAVED = 4       # threads must save this many pool wake-ups to be worth waking
_calibration = {}       # {"wake": seconds per wake-up, "madd": seconds per multiply-add}


@njit(parallel=True, cache=True)
def _touch(out):
    """The cheapest parallel loop: one task per thread, each adds 1 to its own element."""
    for t in prange(out.shape[0]):
        out[t] += 1.0


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _madds(a, b, out):
    """out += a @ b on one thread in axpy order (a vectorised loop, like the kernels' inner loops)."""
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            x = a[i, k]
            for j in range(b.shape[1]):
                out[i, j] += x * b[k, j]


def calibrate(repeats=15):
    """Measure (once) the pool's wake-up time and one multiply-add's time on one thread."""
    if not _calibration:
        threads = numba.get_num_threads()
        out = np.zeros(threads)
        a, b = np.ones((32, 64), np.float32), np.ones((64, 64), np.float32)
        c = np.zeros((32, 64), np.float32)
        _touch(out)
        _madds(a, b, c)
        wake, madd = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            _touch(out)
            wake.append(time.perf_counter() - t)
            t = time.perf_counter()
            _madds(a, b, c)
            madd.append((time.perf_counter() - t) / a.size / b.shape[1])
        # the median wake-up is what a call typically pays; the fastest multiply-add is the
        # machine's own speed (a slower one was interrupted)
        _calibration.update(wake=float(np.median(wake)), madd=float(min(madd)))
    return dict(_calibration)


def threads_for(work):
    """Threads worth waking for ``work`` multiply-adds (or element copies): 1 or all of them."""
    threads = numba.get_num_threads()
    if threads == 1:
        return 1
    cost = calibrate()
    saved = work * cost["madd"] * (1 - 1 / threads)
    return threads if saved >= WAKEUPS_SAVED * cost["wake"] else 1


@contextlib.contextmanager
def sized_for(work):
    """Run the ``prange`` loops inside on ``threads_for(work)`` threads (restored afterwards)."""
    threads = numba.get_num_threads()
    wanted = threads_for(work)
    if wanted == threads:
        yield threads
        return
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(threads)
