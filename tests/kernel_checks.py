"""Checks the kernel tests share (and the functional tests, for the convolution): closeness up to rounding,
seeded arrays in any layout, a test run once per backend, Python run in a fresh process (for settings read
at import), and conv2d written as its seven loops."""
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


def conv2d_loops(x, w, b, stride, padding):
    """conv2d by its definition, element by element: out[n, o, y, x] = b[o] +
    Σ_{c,i,j} x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j] (no bias if ``b`` is None)."""
    n_, c_, h, w_ = x.shape
    o_, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    out = np.zeros((n_, o_, ho, wo))
    for n in range(n_):
        for o in range(o_):
            for i in range(ho):
                for j in range(wo):
                    for c in range(c_):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < h and 0 <= s < w_:
                                    out[n, o, i, j] += x[n, c, r, s] * w[o, c, u, v]
    return out if b is None else out + b[None, :, None, None]
