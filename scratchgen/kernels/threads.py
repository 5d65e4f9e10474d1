"""How many threads a kernel call should wake: all of them only when the work pays for it.

Numba runs a ``prange`` loop on a pool of threads that wait between calls: spinning for a few
milliseconds, then asleep (libgomp's defaults; see the NOTE in ``kernels/__init__``). Starting and
joining them costs time whatever the loop does (1.8 µs on a spinning pool, 34 µs on a sleeping one,
measured on a 2-core AMD EPYC), so a small product is faster on the calling thread alone: measured on a
2-core machine, the 784-400-20 VAE's training step once took longer on two threads than on one,
because most of its products are small.

Two rules decide, one after the other; neither holds a number tuned to one machine.

1. **Can threads pay at all?** Measured once per process (``calibrate``, well under a
   millisecond; again later if another program held the cores at that moment): the fastest time to
   wake the pool and join it again, and the time of one multiply-add on one thread. A call of
   ``work`` multiply-adds may use T threads only if the time they would save,
   ``work · t_madd · (1 - 1/T)``, is at least ``WAKEUPS_SAVED`` wake-ups — a margin for how much a
   wake-up varies on a busy machine (``threads_for``).
2. **Do they pay, here and now?** That first rule assumes the other cores are free. When another
   program keeps one busy, our second thread waits for its turn on that core, and the call waits
   for it: measured on a 2-core machine with one core taken by a training run, the VAE's
   128x784 @ 784x400 product took 886 µs on one thread and 883 µs on two, and the whole step
   9.0 ms on one thread and 9.2 on two. So a call site that names itself (``sized_for(work, key)``,
   the key being the kernel and its shapes, which repeat every training step) is timed: each
   choice keeps the wall times of its last ``SAMPLES`` calls, all threads run only if their median
   beats one thread's fastest time, and now and then (every ``RETRY_EVERY`` to ``RETRY_MAX`` calls) the other choice runs, so that a
   core set free (or taken) later is noticed (``ThreadChoice``).

The number of threads never changes a result: every output element is computed by one task, in the
same order, however many threads share the tasks. Only the speed depends on the choice.
"""
import collections
import statistics
import time

import numba
import numpy as np
from numba import njit, prange
from numba.np.ufunc import parallel as _numba_parallel

WAKEUPS_SAVED = 4       # threads must save this many pool wake-ups to be worth waking
SAMPLES = 5             # a choice is judged by the median wall time of its last SAMPLES calls
RETRY_EVERY = 32        # calls between two tries of the other choice, at first (see ThreadChoice)
RETRY_MAX = 1024        # ... and at most, once a choice keeps winning
MAX_KEYS = 4096         # call sites x shapes remembered (a long evaluation with many shapes)
SLOW_WAKE = 1e-3        # seconds: a wake-up this slow is another program's time slice, not the pool's cost
RECALIBRATE = 30.0      # seconds after which a calibration that found only slow wake-ups is repeated
_calibration = {}       # {"wake": seconds per wake-up, "madd": seconds per multiply-add, "at": when}
# a number copied from a scattered place (through an index table, or across a transpose) costs about as
# much as this many of the vectorised multiply-adds ``calibrate`` times: measured (2026-12-07, AMD EPYC
# Zen 3, one thread) 0.089 ns a multiply-add against 0.46 ns a number transposing (128, 32, 49), 0.61 for
# im2col's gather and 0.83 for col2im's scattered additions. Counted as 1, such copies of 100-300 µs
# looked too short for a second thread to pay, and never tried one; on two they took 0.52-0.55 of the time.
SCATTERED_COPY_WORK = 8


@njit(parallel=True, cache=True)
def _touch(out):
    """The cheapest parallel loop: one task per thread, each adds 1 to its own element."""
    for t in prange(out.shape[0]):
        out[t] += 1.0


@njit(fastmath={"reassoc", "contract"}, cache=True)
def one_thread_madds(a, b, out):
    """out += a @ b on one thread in axpy order (a vectorised loop, like the kernels' inner loops)."""
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            x = a[i, k]
            for j in range(b.shape[1]):
                out[i, j] += x * b[k, j]


def pool_threads():
    """The number of threads a parallel loop runs on now: ``numba.get_num_threads()``, read without
    the process-wide lock that call takes every time to check that the pool has started.

    NOTE: with that lock ``get_num_threads`` took 0.7 µs a call against 0.16 (one thread, CPU time, AMD
    EPYC Zen 4), and a small product asked four times: the CVAE's 128x8 @ 8x400 took 27.7 -> 24.6 µs a
    call (medians of 5 x 3000 calls, one thread; 33.2 -> 31.1 on two). Once the pool has started, Numba's own
    ``get_num_threads`` just reads the count from the threading layer, as this does; before, or if a
    Numba version names things differently, it is called as usual."""
    if getattr(_numba_parallel, "_is_initialized", False):
        try:
            return _numba_parallel._get_num_threads()
        except AttributeError:
            pass
    return numba.get_num_threads()


def set_pool_threads(n):
    """Run the next parallel loops on ``n`` threads (1 <= n <= the pool's size): ``numba.set_num_threads``
    without its lock and checks, once the pool has started (as ``pool_threads`` reads the count).

    NOTE: ``sized_for`` sets the count twice for every call it runs on one thread: the checked call
    took 1.5 µs, this one 0.4 (AMD EPYC Zen 3)."""
    if getattr(_numba_parallel, "_is_initialized", False):
        try:
            return _numba_parallel._set_num_threads(n)
        except AttributeError:
            pass
    numba.set_num_threads(n)


def calibrate(repeats=15):
    """Measure (once) the pool's wake-up time and one multiply-add's time on one thread; again after
    RECALIBRATE seconds if every wake-up was slower than SLOW_WAKE.

    NOTE: rule 1 asks what threads cost when the other cores are free (rule 2 sees whether they
    are), so the wake-up is the fastest of the samples. With another program running on the second
    core, every wake-up of a 2-core pool waited for that program's time slice: 4-12 ms each, 8 ms
    the median (2026-12-07, AMD EPYC, a test suite on the other core), against 2 µs on a free core.
    Calibrated at such a moment, a process never used its second thread again (the median put the
    break-even at 330 million multiply-adds, the fastest sample still at 160-240 million), however
    free the machine became; so such a calibration is repeated (at most every RECALIBRATE seconds:
    15 slow samples take ~0.1 s)."""
    slow = _calibration and _calibration["wake"] > SLOW_WAKE
    if not _calibration or (slow and time.monotonic() - _calibration["at"] > RECALIBRATE):
        threads = pool_threads()
        out = np.zeros(threads)
        a, b = np.ones((32, 64), np.float32), np.ones((64, 64), np.float32)
        c = np.zeros((32, 64), np.float32)
        _touch(out)
        one_thread_madds(a, b, c)
        wake, madd = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            _touch(out)
            wake.append(time.perf_counter() - t)
            t = time.perf_counter()
            one_thread_madds(a, b, c)
            madd.append((time.perf_counter() - t) / a.size / b.shape[1])
        # the fastest of each is the machine's own speed: a slower one waited or was interrupted
        _calibration.update(wake=float(min(wake)), madd=float(min(madd)), at=time.monotonic())
    return dict(_calibration)


def threads_for(work):
    """Threads worth waking for ``work`` multiply-adds (a streaming copy counts a number as one, a
    scattered one as SCATTERED_COPY_WORK, an element-wise op as its callers say), if the other cores are
    free: 1 or all of them (rule 1)."""
    cost = _calibration if _calibration and _calibration["wake"] <= SLOW_WAKE else calibrate()
    if work * cost["madd"] < WAKEUPS_SAVED * cost["wake"]:
        return 1            # not even infinitely many threads would save enough (asked first: cheap)
    threads = pool_threads()
    saved = work * cost["madd"] * (1 - 1 / threads)
    return threads if saved >= WAKEUPS_SAVED * cost["wake"] else 1


class ThreadChoice:
    """Rule 2 for one call site and shape: 1 thread or all, whichever its own recent calls ran faster.

        first calls:  each choice in turn until both have 3 timings (a first call may include
                      compiling, hence 3 and a median)
        then:         run all threads if the median of their last SAMPLES wall times is below
                      the fastest of one thread's last SAMPLES, else one thread;
                      every `interval` calls, run the other one instead (a retry), to stay up to
                      date. The interval starts at RETRY_EVERY and doubles (up to RETRY_MAX) after
                      each retry that ran slower than the best choice's median, and falls back to
                      RETRY_EVERY after one that ran faster: a settled choice is questioned rarely,
                      a doubtful one often.

    The retries are what the rule costs: on a free machine, a kernel that two threads run in half
    the time spends 1/RETRY_EVERY of its calls at twice that (~3%) at first, 1/RETRY_MAX (~0.1%)
    once settled. ``sized_for`` asks ``next()`` and reports the wall time with ``record``.
    """

    def __init__(self, threads):
        self.options = (1, threads)
        self.times = {t: collections.deque(maxlen=SAMPLES) for t in self.options}
        self.interval = RETRY_EVERY
        self.since_retry = 0
        self.retrying = None        # the choice a retry is running, until its time is recorded
        self.spent = dict.fromkeys(self.options, 0.0)   # seconds run on each choice (``time_on_threads``)
        self.warming = True         # until both choices have 3 timings

    def best(self):
        """All threads if their median time beats one thread's *fastest* recent time, else 1.

        NOTE: a plain comparison of medians chose two threads half the time on a machine whose
        cores were both busy, where the two took the same time per call, and the VAE step ran
        3-5% slower than on one thread (9.16 against 8.71-8.89 ms, load 3.5): a second thread has
        costs the timing of the call does not see (it competes for the core and the caches it
        shares). So threads must win by more than the spread of one thread's own times."""
        many = self.options[1]
        return many if statistics.median(self.times[many]) < min(self.times[1]) else 1

    def next(self):
        """The number of threads the next call runs on."""
        if self.warming:
            one, many = (len(self.times[t]) for t in self.options)
            if min(one, many) < 3:
                return self.options[0] if one <= many else self.options[1]     # warm up both in turn
            self.warming = False
        best = self.best()
        self.since_retry += 1
        if self.since_retry < self.interval:
            return best
        self.since_retry = 0
        self.retrying = self.options[1] if best == 1 else 1
        return self.retrying

    def record(self, threads, seconds):
        if threads == self.retrying:
            self.retrying = None
            faster = seconds < statistics.median(self.times[self.best()])
            self.interval = RETRY_EVERY if faster else min(2 * self.interval, RETRY_MAX)
        self.times[threads].append(seconds)
        self.spent[threads] += seconds


_choices = {}           # {(call site, shapes...): ThreadChoice}


def choice_for(key, threads):
    """The ``ThreadChoice`` of one call site and shape (made on first use)."""
    choice = _choices.get(key)
    if choice is None or choice.options[1] != threads:
        if len(_choices) >= MAX_KEYS:
            _choices.clear()
        choice = _choices[key] = ThreadChoice(threads)
    return choice


def time_on_threads():
    """(seconds the timed call sites ran on all threads, seconds they ran in all) so far in this
    process: how much the second rule let the threads do (``scratchgen bench --only steps``)."""
    choices = list(_choices.values())
    return (sum(c.spent[c.options[1]] for c in choices), sum(sum(c.spent.values()) for c in choices))


class sized_for:  # noqa: N801  (used as a function: ``with sized_for(work, key):``)
    """Run the ``prange`` loops inside on 1 thread or on all (restored afterwards).

    Work below the break-even point (rule 1) always runs on the calling thread. Above it, a call
    site that passes a ``key`` (e.g. ``("matmul", kernel, a.shape, b.shape)``) is timed and runs on
    whichever its recent calls found faster (rule 2); without a key, on all threads.
    ``with sized_for(work, key) as threads:`` gives the number chosen.

    NOTE: a class rather than a ``contextlib.contextmanager`` generator, which cost 1.3 µs a call more;
    the VQ-VAE's step enters this 328 times (AMD EPYC Zen 3).
    """
    __slots__ = ("work", "key", "threads", "wanted", "choice", "start")

    def __init__(self, work, key=None):
        self.work, self.key = work, key

    def __enter__(self):
        self.threads = threads = pool_threads()
        wanted = threads_for(self.work)
        self.choice = None
        if wanted > 1 and self.key is not None:
            self.choice = choice_for(self.key, threads)
            wanted = self.choice.next()
        self.wanted = wanted
        if wanted != threads:
            set_pool_threads(wanted)
        self.start = time.perf_counter()
        return wanted

    def __exit__(self, exc_type, exc, traceback):
        if self.choice is not None and exc_type is None:
            self.choice.record(self.wanted, time.perf_counter() - self.start)
        if self.wanted != self.threads:
            set_pool_threads(self.threads)
        return False
