"""How many threads a kernel call should wake: all of them only when the work pays for it.

Numba runs a ``prange`` loop on a pool of threads that sleep between calls (``OMP_WAIT_POLICY=PASSIVE``,
set in ``kernels/__init__``). Waking them costs time whatever the loop does, so a small product
is faster on the calling thread alone: measured on a 2-core machine, the 784-400-20 VAE's training
step took longer on two threads than on one, because most of its products are small.

Two rules decide, one after the other; neither holds a number tuned to one machine.

1. **Can threads pay at all?** Measured once per process (``calibrate``, well under a
   millisecond): the time to wake the pool and join it again, and the time of one multiply-add
   on one thread. A call of ``work`` multiply-adds may use T threads only if the time they would
   save, ``work · t_madd · (1 - 1/T)``, is at least ``WAKEUPS_SAVED`` wake-ups — a margin for how
   much a wake-up varies on a busy machine (``threads_for``).
2. **Do they pay, here and now?** That first rule assumes the other cores are free. When another
   program keeps one busy, our second thread waits for its turn on that core, and the call waits
   for it: measured on a 2-core machine with one core taken by a training run, the VAE's
   128x784 @ 784x400 product took 886 µs on one thread and 883 µs on two, and the whole step
   9.0 ms on one thread and 9.2 on two. So a call site that names itself (``sized_for(work, key)``,
   the key being the kernel and its shapes, which repeat every training step) is timed: each
   choice keeps the wall times of its last ``SAMPLES`` calls, the one whose median is lower runs,
   and one call in ``RETRY_EVERY`` runs the other choice, so that a core set free (or taken)
   later is noticed (``ThreadChoice``).

The number of threads never changes a result: every output element is computed by one task, in the
same order, however many threads share the tasks. Only the speed depends on the choice.
"""
import collections
import contextlib
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

WAKEUPS_SAVED = 4       # threads must save this many pool wake-ups to be worth waking
SAMPLES = 5             # a choice is judged by the median wall time of its last SAMPLES calls
RETRY_EVERY = 32        # one call in RETRY_EVERY tries the other choice: at most 1/32 of the
#                         calls run the slower way (costing ~3% if it is twice as slow), and a
#                         change of the machine shows after 3 retries (the median of 5 moves)
MAX_KEYS = 4096         # call sites x shapes remembered (a long evaluation with many shapes)
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
    """Threads worth waking for ``work`` multiply-adds (or element copies), if the other cores are
    free: 1 or all of them (rule 1)."""
    threads = numba.get_num_threads()
    if threads == 1:
        return 1
    cost = calibrate()
    saved = work * cost["madd"] * (1 - 1 / threads)
    return threads if saved >= WAKEUPS_SAVED * cost["wake"] else 1


class ThreadChoice:
    """Rule 2 for one call site and shape: 1 thread or all, whichever its own recent calls ran faster.

        first calls:  each choice in turn until both have 3 timings (a first call may include
                      compiling, hence 3 and a median)
        then:         run the choice whose median of its last SAMPLES wall times is lower;
                      on every RETRY_EVERY-th call, run the other one instead (to stay up to date)

    ``sized_for`` asks ``next()`` and reports the wall time with ``record``.
    """

    def __init__(self, threads):
        self.options = (1, threads)
        self.times = {t: collections.deque(maxlen=SAMPLES) for t in self.options}
        self.calls = 0

    def best(self):
        """The choice with the lower median time (1 thread on a tie: it disturbs nobody)."""
        return min(self.options, key=lambda t: (statistics.median(self.times[t]), t))

    def next(self):
        """The number of threads the next call runs on."""
        self.calls += 1
        if min(len(v) for v in self.times.values()) < 3:
            return min(self.options, key=lambda t: len(self.times[t]))   # warm up both in turn
        best = self.best()
        if self.calls % RETRY_EVERY == 0:
            return self.options[1] if best == 1 else 1
        return best

    def record(self, threads, seconds):
        self.times[threads].append(seconds)


_choices = {}           # {(call site, shapes...): ThreadChoice}


def choice_for(key, threads):
    """The ``ThreadChoice`` of one call site and shape (made on first use)."""
    choice = _choices.get(key)
    if choice is None or choice.options[1] != threads:
        if len(_choices) >= MAX_KEYS:
            _choices.clear()
        choice = _choices[key] = ThreadChoice(threads)
    return choice


@contextlib.contextmanager
def sized_for(work, key=None):
    """Run the ``prange`` loops inside on 1 thread or on all (restored afterwards).

    Work below the break-even point (rule 1) always runs on the calling thread. Above it, a call
    site that passes a ``key`` (e.g. ``("matmul", kernel, a.shape, b.shape)``) is timed and runs on
    whichever its recent calls found faster (rule 2); without a key, on all threads.
    """
    threads = numba.get_num_threads()
    wanted = threads_for(work)
    choice = None
    if wanted > 1 and key is not None:
        choice = choice_for(key, threads)
        wanted = choice.next()
    if wanted != threads:
        numba.set_num_threads(wanted)
    start = time.perf_counter()
    try:
        yield wanted
        if choice is not None:
            choice.record(wanted, time.perf_counter() - start)
    finally:
        if wanted != threads:
            numba.set_num_threads(threads)
