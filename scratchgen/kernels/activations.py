"""The ReLU, the leaky ReLU (Maas, Hannun & Ng, 2013) and softplus with their gradients: NumPy
references and one Numba pass each.

    leaky ReLU   y = x where x > 0, α x elsewhere         dx = g where x > 0, α g elsewhere
    ReLU         y = max(x, 0)                            dx = g where x > 0, 0 · g elsewhere
    softplus     y = log(1 + e^x)                         dx = g σ(x)

:func:`scratchgen.functional.leaky_relu` calls ``leaky_relu_forward(x, α)`` and, in its backward
rule, ``leaky_relu_backward(g, x, α)``, through the tables ``FORWARD`` and ``BACKWARD``
(:mod:`scratchgen.kernels.backend`); ``Tensor.relu`` calls ``relu_forward`` and ``relu_backward``
(tables ``RELU_FORWARD``, ``RELU_BACKWARD``). Both implementations give the same bits: x·1 is x,
each output is one product rounded once, and the ReLU keeps NumPy's ``maximum``: NaN stays NaN,
and 0 · g is −0 for a negative g (NaN for an infinite one). :func:`scratchgen.functional.softplus` calls
``softplus_forward(x)``, which returns σ(x) beside y for the backward rule (table ``SOFTPLUS``).
"""
import numpy as np
from numba import njit, prange

from .backend import implementation
from .threads import sized_for


# ---------------------------------------------------------------------------- NumPy reference
def _slope(x, alpha):
    """1 where x > 0, α elsewhere, in x's dtype (a float64 α would promote a float32 product)."""
    return np.where(x > 0, x.dtype.type(1), x.dtype.type(alpha))


def leaky_relu_forward_reference(x, alpha):
    """y = x · (1 if x > 0 else α), elementwise."""
    return x * _slope(x, alpha)


def leaky_relu_backward_reference(g, x, alpha):
    """dx = g · (1 if x > 0 else α), elementwise."""
    return g * _slope(x, alpha)


# ---------------------------------------------------------------------------- Numba kernel
@njit(parallel=True, cache=True)
def _scale_where_negative(v, x, alpha, out):
    """out[i] = v[i] if x[i] > 0 else α·v[i], over flat arrays (v is x itself in the forward pass).

        for i in parallel: out[i] = v[i] if x[i] > 0 else alpha * v[i]

    Optimisations:
    - one pass, reading x (and g) once and writing once, and no branch per element: the loop
      compiles to a vector compare, multiply and select. The reference's ``np.where`` on data of
      random sign branches per element and writes a temporary. Measured (one thread, CPU time,
      AMD EPYC Zen 4, load 2.6), the DCGAN discriminator's (64, 32, 14, 14) activation, forward /
      backward: reference 1.52 / 1.50 ms, this kernel 0.047 / 0.062 ms; a whole DCGAN training
      step (three discriminator passes) spent about 5 ms in the reference;
    - no fastmath flag is needed, and none is used: the result is NumPy's, bit for bit.
    """
    for i in prange(v.size):
        out[i] = v[i] if x[i] > 0 else alpha * v[i]


def _fused(v, x, alpha, fallback):
    """``_scale_where_negative`` on contiguous copies where needed; other dtypes or shapes call
    ``fallback()`` (the NumPy reference of the same result)."""
    dtype = np.result_type(v, x)
    if dtype not in (np.float32, np.float64) or v.shape != x.shape:
        return fallback()
    out = np.empty(x.shape, dtype)
    # α rounded to x's dtype first, as the reference's slope array is
    alpha = dtype.type(x.dtype.type(alpha))
    with sized_for(x.size, ("scale_where_negative", x.shape)):
        _scale_where_negative(np.ascontiguousarray(v, dtype).reshape(-1),
                              np.ascontiguousarray(x, dtype).reshape(-1), alpha, out.reshape(-1))
    return out


def leaky_relu_forward_numba(x, alpha):
    """``leaky_relu_forward`` in one pass (``_scale_where_negative`` with v = x)."""
    return _fused(x, x, alpha, lambda: leaky_relu_forward_reference(x, alpha))


def leaky_relu_backward_numba(g, x, alpha):
    """``leaky_relu_backward`` in one pass (``_scale_where_negative`` with v = g)."""
    return _fused(g, x, alpha, lambda: leaky_relu_backward_reference(g, x, alpha))


def relu_forward_reference(x):
    """y = max(x, 0), elementwise (NumPy's ``maximum``: a NaN stays NaN)."""
    return np.maximum(x, 0)


def relu_backward_reference(g, x):
    """dx = g · [x > 0], elementwise."""
    return g * (x > 0)


@njit(parallel=True, cache=True)
def _clip_below_zero(x, out):
    """out[i] = x[i] if x[i] > 0 or x[i] is NaN, else 0, over flat arrays: np.maximum(x, 0) as NumPy's
    vector loop computes it (a NaN passes through, −0 gives +0). One pass, a vector select.

    Optimisations: none beyond the single pass; measured (one thread, CPU time, Zen 4, load 2.4),
    forward / backward, reference -> Numba: the DCGAN generator's (64, 64, 14, 14) 0.30 / 0.24 ->
    0.08 / 0.13 ms, its (64, 6272) 0.15 / 0.11 -> 0.04 / 0.06 ms (the backward's reference makes a
    boolean mask, then a product)."""
    for i in prange(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0


def relu_forward_numba(x):
    """``relu_forward`` in one pass (``_clip_below_zero``); dtypes other than float32/64 go to NumPy."""
    if x.dtype not in (np.float32, np.float64):
        return relu_forward_reference(x)
    out = np.empty(x.shape, x.dtype)
    with sized_for(x.size, ("clip_below_zero", x.shape)):
        _clip_below_zero(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


def relu_backward_numba(g, x):
    """``relu_backward`` in one pass: the leaky ReLU's gradient with slope 0 (``_scale_where_negative``)."""
    return _fused(g, x, 0.0, lambda: relu_backward_reference(g, x))


RELU_FORWARD = {"numpy": relu_forward_reference, "numba": relu_forward_numba}
RELU_BACKWARD = {"numpy": relu_backward_reference, "numba": relu_backward_numba}


def relu_forward(x):
    """max(x, 0) of an array, on the backend in use."""
    return implementation(RELU_FORWARD)(x)


def relu_backward(g, x):
    """The ReLU's gradient for the upstream gradient ``g`` (x's shape), on the backend in use."""
    return implementation(RELU_BACKWARD)(g, x)


# ---------------------------------------------------------------------------- softplus
def softplus_forward_reference(x):
    """(log(1 + e^x), σ(x)) elementwise, both from one e = e^-|x| (never e^x, which overflows):

        log(1 + e^x) = max(x, 0) + log1p(e)         σ(x) = 1 / (1 + e) if x >= 0 else e / (1 + e)

    σ(x) is computed as ``Tensor.sigmoid`` computes it, bit for bit (its numerator, 1 or e, is
    ``max(e, x >= 0)`` since e <= 1)."""
    e = np.exp(-np.abs(x))
    return np.maximum(x, 0) + np.log1p(e), np.maximum(e, x >= 0) / (1 + e)


# log1p(e) = 2 atanh(s) = 2 (s + s³/3 + s⁵/5 + ...) with s = e / (2 + e) <= 1/3: each term is at most
# 1/9 of the one before, so seven terms leave a relative error below (1/9)^7 / 15 = 1.4e-8, a quarter
# of float32's rounding step. The sum is computed in float64 (Python's floats), rounded once at the end.
ATANH_TERMS = tuple(1 / (2 * k + 1) for k in range(7))      # 1, 1/3, 1/5, ..., 1/13
TINY = 2.0 ** -24       # below this, log1p(e) = e - e²/2 + ... rounds to e in float32


@njit(parallel=True, cache=True)
def _softplus_and_sigmoid(x, e, out, sig):
    """out[i] = log(1 + e^x[i]) and sig[i] = σ(x[i]) from e[i] = e^-|x[i]| (float32, flat arrays):

        for i in parallel:
            s = e[i] / (2 + e[i])                                   in float64
            out[i] = max(x[i], 0) + (e[i] if e[i] < TINY else 2 s (1 + s²/3 + ... + s¹²/13))
            sig[i] = (1 if x[i] >= 0 else e[i]) / (1 + e[i])        in float32, as NumPy rounds it

    Optimisations:
    - ``np.log1p`` (in the reference) calls the C library once per element on CPUs without AVX-512:
      NumPy has vector code for ``exp`` and ``log`` but, there, not for ``log1p``. The series above is
      additions and multiplications only, which LLVM vectorises; ``e`` comes from NumPy's vector
      ``exp``. Measured (one thread, CPU time, AMD EPYC Zen 3 with AVX2, the VAE's 128 x 784 logits,
      medians of 200-300 calls): the reference 970-1,094 µs; ``np.exp`` 160-190 µs + this pass 155-160 µs,
      351 µs with the allocations (in float32 arithmetic the pass took 70 µs, but its results were up to
      3.6 ulps from the exact value where float64's are 2.5, all of that e's own rounding);
    - σ comes out of the same pass, so the backward rule is one product, g · σ;
    - no fastmath: σ's bits are NumPy's, and the series is summed in the order written.
    """
    one = np.float32(1)
    for i in prange(x.size):
        a, ei = x[i], e[i]
        s = ei / (2.0 + ei)
        s2 = s * s
        p = 0.0
        for c in ATANH_TERMS[::-1]:
            p = p * s2 + c
        out[i] = max(a, 0.0) + (ei if ei < TINY else 2.0 * s * p)
        sig[i] = (one if a >= 0 else ei) / (one + ei)


def softplus_forward_numba(x):
    """``softplus_forward`` with the log1p and σ in one Numba pass (``_softplus_and_sigmoid``) for
    float32; float64 (the dtype of gradient checks: small arrays, every bit wanted) takes the reference."""
    if x.dtype != np.float32:
        return softplus_forward_reference(x)
    x = np.ascontiguousarray(x)
    e = np.abs(x)
    np.exp(np.negative(e, out=e), out=e)
    out, sig = np.empty_like(x), np.empty_like(x)
    with sized_for(SOFTPLUS_WORK * x.size, ("softplus", x.shape)):
        _softplus_and_sigmoid(x.reshape(-1), e.reshape(-1), out.reshape(-1), sig.reshape(-1))
    return out, sig


SOFTPLUS_WORK = 8       # an element costs about as much as 8 multiply-adds (threads.sized_for)
SOFTPLUS = {"numpy": softplus_forward_reference, "numba": softplus_forward_numba}


def softplus_forward(x):
    """(log(1 + e^x), σ(x)) of a float array, on the backend in use."""
    return implementation(SOFTPLUS)(x)


FORWARD = {"numpy": leaky_relu_forward_reference, "numba": leaky_relu_forward_numba}
BACKWARD = {"numpy": leaky_relu_backward_reference, "numba": leaky_relu_backward_numba}


def leaky_relu_forward(x, alpha):
    """The leaky ReLU of a float array with negative slope ``alpha``, on the backend in use."""
    return implementation(FORWARD)(x, alpha)


def leaky_relu_backward(g, x, alpha):
    """Its gradient for the upstream gradient ``g`` (x's shape), on the backend in use."""
    return implementation(BACKWARD)(g, x, alpha)
