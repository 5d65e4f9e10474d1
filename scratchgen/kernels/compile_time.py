"""How long Numba spent compiling kernels in this process (loading them from the cache is free).

Numba compiles a kernel the first time it meets a new set of argument types, and with
``cache=True`` writes the machine code next to the source, so the next process loads it instead.
``compile_stats()`` says what this process compiled: the first run in a fresh clone pays for all
kernels, a second run should pay nothing (``scratchgen train`` prints it; ``scratchgen bench
--only coldstart`` checks both).
"""
import time

from numba.core import event

_stats = {"seconds": 0.0, "signatures": 0}


class _CompileClock(event.Listener):
    """Adds up the time of outermost compilations (a kernel that calls another compiles it inside)."""

    def __init__(self):
        self.depth, self.start = 0, 0.0

    def on_start(self, ev):
        if self.depth == 0:
            self.start = time.perf_counter()
        self.depth += 1

    def on_end(self, ev):
        self.depth -= 1
        _stats["signatures"] += 1
        if self.depth == 0:
            _stats["seconds"] += time.perf_counter() - self.start


event.register("numba:compile", _CompileClock())


def compile_stats():
    """``{"seconds": s, "signatures": n}`` compiled by Numba so far in this process."""
    return dict(_stats)


def compile_note():
    """One line for the end of a command: what compiling cost this run, or that nothing was compiled."""
    stats = compile_stats()
    if not stats["signatures"]:
        return "Numba compiled nothing: every kernel came from its cache."
    return (f"Numba compiled {stats['signatures']} kernel signatures in {stats['seconds']:.1f} s (once: later "
            f"runs load them from its cache).")
