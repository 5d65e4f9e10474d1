"""Bayes' rule: from a generative model p(x, y) to a discriminative one p(y | x).

    p(y | x) = p(x, y) / Σ_y' p(x, y'),   and the denominator is p(x).

(The source note writes "= p_X(x)" *inside* the denominator's sum; it is the whole sum that
equals p_X(x).) The converse is impossible: p(y | x) says nothing about p(x).

In log space the sum becomes a logsumexp, computed stably by shifting by the maximum:

    log p(y | x) = log p(x, y) - logsumexp_y' log p(x, y').

Later, a class-conditional model (the conditional VAE's p(x | y)) plus a label prior p(y) gives
log p(x, y) = log p(x | y) + log p(y), and this function turns it into a classifier.
"""
import numpy as np

from . import functional as F
from .autograd import Tensor


def logsumexp(a, axis, keepdims=False):
    """log Σ e^a over ``axis`` for NumPy arrays, shifted by the max so nothing overflows.

    (The Tensor version, with its gradient, is :func:`scratchgen.functional.logsumexp`.)
    """
    a = np.asarray(a, dtype=np.float64)
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # NOTE: an all -inf slice must give -inf, not nan
    with np.errstate(divide="ignore"):
        out = np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def posterior_from_joint(log_joint, dim):
    """log p(y | x) from log p(x, y), normalising over axis ``dim`` (the y axis).

    ``log_joint`` is a Tensor (the result is differentiable) or an array-like (a float64 array
    is returned). Entries may be -inf (p(x, y) = 0), but every slice along ``dim`` needs one
    finite entry: p(x) = 0 leaves p(y | x) undefined, and that raises a ValueError.
    """
    data = log_joint.data if isinstance(log_joint, Tensor) else np.asarray(log_joint, dtype=np.float64)
    if data.ndim == 0:
        raise ValueError("posterior_from_joint needs at least one axis to normalise over, got a scalar")
    if not -data.ndim <= dim < data.ndim:
        raise ValueError(f"dim={dim} is out of range for log_joint of shape {data.shape}")
    if np.any(np.isnan(data)) or np.any(data == np.inf):
        raise ValueError("log_joint contains nan or +inf; log-probabilities must be < +inf")
    if np.any(np.all(data == -np.inf, axis=dim)):
        raise ValueError(f"some x has p(x, y) = 0 for every y along dim {dim} (all entries -inf), "
                         f"so p(x) = 0 and p(y | x) is undefined")
    if isinstance(log_joint, Tensor):
        return log_joint - F.logsumexp(log_joint, dim, keepdim=True)
    return data - logsumexp(data, axis=dim, keepdims=True)
