"""Matrix multiplication: its definition, and the one function every caller uses.

    C[i, j] = Σ_k A[i, k] · B[k, j]

``matmul(a, b)`` follows ``np.matmul``: operands are (..., n, k) @ (..., k, m) with the batch
dimensions broadcast; a 1-D operand is promoted to a matrix (a row for ``a``, a column for
``b``) and that axis is removed from the result again. The result's dtype is float32 if both
operands are float32 and float64 otherwise (float64 with float32 gives float64); other dtypes
are refused.

The two implementations (:mod:`scratchgen.kernels.backend`):

* ``"numpy"``: ``matmul_reference``, the formula above as one ``np.einsum`` — NumPy's own
  sum-of-products loop, not BLAS, so it is an independent check of the kernels;
* ``"numba"``: ``scratchgen.kernels.matmul_numba.matmul``, the cache-blocked Numba kernels
  (read that module for how they are made fast).

Timings of the kernels against NumPy's BLAS: ``python -m scratchgen.bench``.
"""
import numpy as np

from . import matmul_numba
from .backend import implementation
from .layouts import result_dtype


def matmul_reference(a, b):
    """C[..., i, j] = Σ_k A[..., i, k] · B[..., k, j], written as that sum.

    Both operands must be at least 2-D and of one dtype; batch dimensions broadcast as in
    ``np.matmul``.
    """
    return np.einsum("...ik,...kj->...ij", a, b)


IMPLEMENTATIONS = {"numpy": matmul_reference, "numba": matmul_numba.matmul}


def _shape_error(a_shape, b_shape, why):
    return ValueError(f"matmul: {why}: {a_shape} @ {b_shape}")


def matmul(a, b):
    """``a @ b`` with NumPy's rules (batch broadcasting, 1-D promotion) on the selected backend."""
    a, b = np.asarray(a), np.asarray(b)
    a_shape, b_shape = a.shape, b.shape
    if a.ndim == 0 or b.ndim == 0:
        raise _shape_error(a_shape, b_shape, "operands must be at least 1-D (use * for scalars)")
    dtype = result_dtype(a, b)
    drop_row, drop_col = a.ndim == 1, b.ndim == 1
    if drop_row:
        a = a[None, :]
    if drop_col:
        b = b[:, None]
    if a.shape[-1] != b.shape[-2]:
        raise _shape_error(a_shape, b_shape, "inner dimensions differ")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise _shape_error(a_shape, b_shape, "batch dimensions do not broadcast") from None
    out = implementation(IMPLEMENTATIONS)(a.astype(dtype, copy=False), b.astype(dtype, copy=False))
    if drop_row:
        out = out[..., 0, :]
    if drop_col:
        out = out[..., 0]
    return out
