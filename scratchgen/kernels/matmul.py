"""Matrix multiplication: its definition, and the one function every caller uses.

    C[i, j] = Σ_k A[i, k] · B[k, j]

``matmul(a, b)`` follows ``np.matmul`` for operands of two or more dimensions:
(..., n, k) @ (..., k, m) with the batch dimensions broadcast. A 1-D operand is refused here:
NumPy's vector rules (a row on the left, a column on the right, removed from the result again)
live in one place, the autograd op :func:`scratchgen.ops.matmul`, which reshapes the vector
before it calls this function. The result's dtype is float32 if both operands are float32 and
float64 otherwise (float64 with float32 gives float64); other dtypes are refused.

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
    """``a @ b`` for operands of at least two dimensions, with NumPy's batch broadcasting, on the
    selected backend. A vector is the caller's to promote (``Tensor @`` does it)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim < 2 or b.ndim < 2:
        raise _shape_error(a.shape, b.shape, "operands must be at least 2-D (a vector times a matrix is "
                                             "Tensor @, or reshape it to a row (1, k) or a column (k, 1))")
    dtype = result_dtype(a, b)
    if a.shape[-1] != b.shape[-2]:
        raise _shape_error(a.shape, b.shape, "inner dimensions differ")
    if a.ndim > 2 or b.ndim > 2:         # NOTE: 1.5 µs even for two matrices, a tenth of a small product
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise _shape_error(a.shape, b.shape, "batch dimensions do not broadcast") from None
    return implementation(IMPLEMENTATIONS)(a.astype(dtype, copy=False), b.astype(dtype, copy=False))
