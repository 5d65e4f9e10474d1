"""Adam's update (Kingma & Ba, 2015): the NumPy reference and a fused Numba pass with its bits.

For a parameter p with gradient g at step t (weight decay λ adds λ·p to g first)::

    m ← β1 m + (1 − β1) g        v ← β2 v + (1 − β2) g²
    p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + eps)

``adam_update`` updates p, m and v in place through the table
``IMPLEMENTATIONS = {"numpy": adam_update_reference, "numba": adam_update_numba}``
(:mod:`scratchgen.kernels.backend`); ``optim.Adam.step`` calls it once per parameter.

* ``adam_update_reference``: about ten NumPy expressions, each a pass over the parameter that
  writes a temporary array. For the 653k parameters of the 784-400-20 VAE that took 3.3 ms per
  step when timed alone and ~7 ms inside a training step (cProfile).
* ``adam_update_numba``: reads p, g, m and v once and writes p, m and v once (``_adam_kernel``):
  0.7 ms alone, 1.2 ms inside the training step — and the reference's exact bits. Arrays the
  kernel cannot take (``fits``) go to the reference.
"""
import math

import numpy as np
from numba import njit, prange

from .backend import implementation
from .threads import sized_for

UPDATE_WORK = 8     # an element's update costs about as much as 8 multiply-adds (threads.sized_for)


def adam_update_reference(param, grad, exp_avg, exp_avg_sq, *, lr, betas, eps, weight_decay,
                          bias1, bias2):
    """The update in NumPy, in place; ``bias1 = 1 - β1^t`` and ``bias2 = 1 - β2^t``.

    NOTE: ``_adam_kernel`` reproduces these operations bit for bit, so a change here must be
    made there too (``tests/test_optim.py`` compares the two).
    """
    beta1, beta2 = betas
    g = grad
    if weight_decay:
        g = g + weight_decay * param
    # NOTE: m + (1 - β1)(g - m) equals β1 m + (1 - β1) g; it is the form PyTorch evaluates.
    exp_avg += (1 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    denom = np.sqrt(exp_avg_sq) / math.sqrt(bias2) + eps
    param -= (lr / bias1) * exp_avg / denom


def fits(param, grad, exp_avg, exp_avg_sq):
    """Can the kernel update these arrays in place? Otherwise the reference runs.

    The kernel walks flat views, so the three arrays it writes must be C-contiguous (a
    non-contiguous ``grad`` is copied instead); it handles float32 and float64, and a gradient
    of another shape is left to NumPy's broadcasting rules (and its error messages).
    """
    return (param.dtype in (np.float32, np.float64) and grad.dtype == param.dtype
            and grad.shape == param.shape == exp_avg.shape == exp_avg_sq.shape
            and all(a.flags.c_contiguous and a.flags.writeable and a.dtype == param.dtype
                    for a in (param, exp_avg, exp_avg_sq)))


def fused_update(param, grad, exp_avg, exp_avg_sq, *, lr, betas, eps, weight_decay, bias1, bias2):
    """Update ``param``, ``exp_avg`` and ``exp_avg_sq`` in place with ``_adam_kernel``, bit for bit
    as ``adam_update_reference``, for arrays that ``fits`` accepts.

    ``bias1 = 1 - β1^t`` and ``bias2 = 1 - β2^t`` come from the caller, computed as there.

    NOTE: in the NumPy code every Python float meets a float32 array, and NumPy 2 (NEP 50, "weak"
    Python scalars) first rounds the float to float32; the arithmetic on the Python side
    (1 - β1, lr / bias1, √bias2) stays float64. Each ``dtype(...)`` below is one of those
    roundings, so the kernel sees exactly the scalars the reference's ufuncs see.
    """
    dtype = param.dtype.type
    beta1, beta2 = betas
    with sized_for(UPDATE_WORK * param.size, ("adam", param.size, param.dtype.char)):
        _adam_kernel(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1),
                     exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                     bool(weight_decay), dtype(weight_decay), dtype(1 - beta1), dtype(beta2),
                     dtype(1 - beta2), dtype(math.sqrt(bias2)), dtype(eps), dtype(lr / bias1))


@njit(parallel=True, cache=True, error_model="numpy")
def _adam_kernel(p, g, m, v, decay, weight_decay, one_minus_beta1, beta2, one_minus_beta2,
                 sqrt_bias2, eps, step_size):
    """One pass of Adam over flat arrays; every scalar already has the arrays' dtype.

        for i in parallel:
            g_i = g[i] + λ p[i]                     (only if weight decay is on)
            m[i] = m[i] + (1 - β1) (g_i - m[i])
            v[i] = v[i] β2 + ((1 - β2) g_i) g_i
            p[i] = p[i] - (step_size m[i]) / (√v[i] / √bias2 + eps)

    Optimisations:
    - one pass: each element is loaded and stored once, no temporaries (the NumPy code makes
      about ten passes, most of them writing a temporary array the size of the parameter);
    - the loop has no branch that depends on the data (``decay`` is the same for every i, so
      LLVM moves the test out of the loop) and vectorises (vsqrtps/vdivps on 512-bit registers
      in the assembly here);
    - threads where they pay (``threads.sized_for``: large parameters, and only if timing finds
      them faster). Each element is updated by itself, so the bits do not depend on the threads.
      Measured (2026-12-07, AMD EPYC Zen 4, load 0.3, medians of 101 calls, µs, the serial loop /
      this one): the VAE's 784 x 400 weight (313,600 numbers) on one thread 127 / 129, on two
      126 / 67; 400 numbers on one thread 1.7 / 2.7 (the cost of a parallel loop that runs on one
      thread). On a busy machine, earlier, a ``prange`` version without the timing rule was slower
      (0.8-2.0 ms against 0.6 ms for all the VAE's parameters).

    NOTE: the result must equal the NumPy code bit for bit, so the operations are the same,
    in the same order, and rounded to the same dtype: no fastmath (it would fuse a*b + c into an
    FMA with one rounding instead of two, and reorder sums), and scalars of the arrays' dtype
    (a float64 scalar would promote the whole expression). np.sqrt rather than math.sqrt: run as
    plain Python (NUMBA_DISABLE_JIT=1), math.sqrt would turn a float32 into a float64.
    ``error_model="numpy"`` makes x / 0 give inf or nan as in NumPy instead of raising
    ZeroDivisionError (eps = 0 is allowed).
    """
    for i in prange(p.size):
        gi = g[i]
        if decay:
            gi = gi + weight_decay * p[i]
        mi = m[i] + one_minus_beta1 * (gi - m[i])
        vi = v[i] * beta2 + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - step_size * mi / (np.sqrt(vi) / sqrt_bias2 + eps)


def adam_update_numba(param, grad, exp_avg, exp_avg_sq, **hyper):
    """The fused kernel where it ``fits``, else the reference (float16, non-contiguous state)."""
    if fits(param, grad, exp_avg, exp_avg_sq):
        fused_update(param, grad, exp_avg, exp_avg_sq, **hyper)
    else:
        adam_update_reference(param, grad, exp_avg, exp_avg_sq, **hyper)


IMPLEMENTATIONS = {"numpy": adam_update_reference, "numba": adam_update_numba}


def adam_update(param, grad, exp_avg, exp_avg_sq, *, lr, betas, eps, weight_decay, bias1, bias2):
    """One Adam step for one parameter, in place, on the backend in use (same bits on both)."""
    implementation(IMPLEMENTATIONS)(param, grad, exp_avg, exp_avg_sq, lr=lr, betas=betas, eps=eps,
                                    weight_decay=weight_decay, bias1=bias1, bias2=bias2)
