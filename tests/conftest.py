"""Shared pytest set-up: one reproducible Hypothesis profile for the whole suite, and the kernels
compiled ahead when the suite runs in two processes.

``SCRATCHGEN_HYPOTHESIS_PROFILE=thorough pytest`` runs more (still derandomized) examples.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

# No deadline (the first call of a Numba kernel compiles it), few examples (every gradient check
# perturbs every element), and derandomize so a failure reproduces on every machine.
settings.register_profile("scratchgen", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("scratchgen"), max_examples=300)
settings.load_profile(os.environ.get("SCRATCHGEN_HYPOTHESIS_PROFILE", "scratchgen"))


# With ``-n 2`` (pytest-xdist) both processes would start by compiling the same float32 kernels, each
# for itself, and then the same float64 ones: from a fresh clone that was 219 s for the suite, ~110 s of
# it compiling. Instead the first worker compiles every kernel for float32 and the second for float64
# before their first test (66 s each, side by side), and each loads the other's from Numba's cache.
# With a warm cache this costs each worker half a second; in one process (no -n) nothing happens here.
AHEAD = {"gw0": "float32", "gw1": "float64"}


@pytest.fixture(scope="session", autouse=True)
def kernels_compiled_ahead():
    dtype = AHEAD.get(os.environ.get("PYTEST_XDIST_WORKER", ""))
    if dtype is not None and os.environ.get("SCRATCHGEN_BACKEND", "numba").strip().lower() in ("", "numba"):
        from compile_ahead import compile_kernels
        compile_kernels(dtype)
