"""Checks the kernel tests share: closeness up to rounding, seeded arrays in any layout, a test run once per
backend, and Python run in a fresh process (for settings read at import)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scratchgen.kernels.backend import BACKENDS
from strategies import with_layout


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, expected, terms):
    """Equal up to rounding: ``terms`` products of O(1) numbers summed in another order.

    float32 rounding is ~6e-8 per operation, so 1e-5·terms is far below any wrong term (O(1)).
    """
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    tol = (1e-5 if actual.dtype == np.float32 else 1e-12) * max(terms, 1)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def rng_array(shape, dtype, seed, layout="contiguous"):
    return with_layout(np.random.default_rng(seed).standard_normal(shape).astype(dtype), layout)


# every dispatch test runs once per backend (a parameter, not a fixture: Hypothesis reuses a
# function-scoped fixture across examples)
on_both_backends = pytest.mark.parametrize("backend", BACKENDS)


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
