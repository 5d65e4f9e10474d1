"""A convolution's bias: added to every position of its channel, and its gradient — the NumPy
reference and one Numba pass each.

For a layer's output y (N, C, L) (L = H·W positions) and a bias b (C,)::

    y[n, c, l] += b[c]                  db[c] = Σ_{n, l} g[n, c, l]

:func:`scratchgen.functional.conv2d` and ``conv_transpose2d`` add the bias into the output array
their kernel has just made (``add_bias``, in place) and compute the bias's gradient in the same
backward rule as the others (``bias_gradient``), through the tables ``ADD`` and ``GRADIENT``
(:mod:`scratchgen.kernels.backend`). Written as ``y + bias.reshape(1, -1, 1, 1)``, the addition was
an autograd node of its own: a new array as large as y, and a sum over the broadcast axes
(``autograd.unbroadcast``) that NumPy runs over runs of only L numbers. In the VQ-VAE's training
step the two took 2.6 and 3.1 ms of about 150 (one thread), both on the calling thread alone.
"""
import numpy as np
from numba import njit, prange

from .backend import implementation
from .batch_norm import channel_sum
from .layouts import is_rows, one_float_dtype
from .threads import sized_for


# ---------------------------------------------------------------------------- NumPy reference
def add_bias_reference(out, b):
    """out[n, c, l] += b[c] for out (N, C, L), in place."""
    out += b.reshape(1, -1, 1)


def bias_gradient_reference(g):
    """db[c] = Σ_{n, l} g[n, c, l] for g (N, C, L)."""
    return g.sum(axis=(0, 2))


# ---------------------------------------------------------------------------- Numba kernels
@njit(parallel=True, cache=True)
def _add_per_channel(out, b):
    """out[n, c, :] += b[c], one task per image.

        for n in parallel:
            for c: out[n, c, :] += b[c]               a run of L numbers: a vector loop
    """
    n_img, channels, length = out.shape
    for n in prange(n_img):
        for c in range(channels):
            row, v = out[n, c], b[c]
            for j in range(length):
                row[j] += v


@njit(parallel=True, cache=True)
def _channel_sums(g, sums):
    """sums[c] = Σ_{n, l} g[n, c, l] in float64, one task per channel.

        for c in parallel:
            sums[c] = Σ_n Σ_l g[n, c, l]              batch_norm.channel_sum: runs of L numbers

    Optimisations:
    - each channel summed by one task in one order: the result does not depend on the threads;
    - float64 sums for float32 data, as in batch norm's statistics (a channel of the VQ-VAE's
      largest layer has 25,088 numbers); the loop is bound by memory, so it costs nothing.
    """
    for c in prange(g.shape[1]):
        sums[c] = channel_sum(g, c)


def add_bias_numba(out, b):
    """``add_bias`` as one parallel pass (``_add_per_channel``) for a C-contiguous ``out``."""
    if not (one_float_dtype(out, b) and is_rows(out)):
        return add_bias_reference(out, b)
    with sized_for(out.size, ("add_bias", out.shape)):
        _add_per_channel(out, np.ascontiguousarray(b))


def bias_gradient_numba(g):
    """``bias_gradient`` as one parallel pass (``_channel_sums``), rounded to g's dtype at the end."""
    if not one_float_dtype(g):
        return bias_gradient_reference(g)
    sums = np.empty(g.shape[1])
    with sized_for(g.size, ("bias_gradient", g.shape)):
        _channel_sums(np.ascontiguousarray(g), sums)
    return sums.astype(g.dtype)


ADD = {"numpy": add_bias_reference, "numba": add_bias_numba}
GRADIENT = {"numpy": bias_gradient_reference, "numba": bias_gradient_numba}


def add_bias(out, b):
    """out (N, C, ...) += b (C,) broadcast over every position, in place, on the backend in use."""
    implementation(ADD)(out.reshape(out.shape[0], out.shape[1], -1), b)


def bias_gradient(g):
    """The bias's gradient (C,) for the upstream gradient g (N, C, ...), on the backend in use."""
    return implementation(GRADIENT)(g.reshape(g.shape[0], g.shape[1], -1))
