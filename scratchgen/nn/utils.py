"""Gradient utilities."""
import math

import numpy as np

from ..autograd import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Rescale gradients in place so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of all gradients concatenated into one vector
    (parameters whose ``.grad`` is None are skipped). Every gradient is multiplied by
    min(1, max_norm / (total + 1e-6)), as in PyTorch (the 1e-6 guards against dividing by 0).
    Returns the total norm *before* clipping, as a float, so it can be logged.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    if not grads:
        return np.float64(0.0)
    if math.isinf(norm_type):
        total = max(float(np.abs(g).max(initial=0.0)) for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for g in grads)
        total = total ** (1 / norm_type)
    scale = min(1.0, max_norm / (total + 1e-6))
    if scale < 1.0:
        for g in grads:
            g *= g.dtype.type(scale)
    return np.float64(total)
