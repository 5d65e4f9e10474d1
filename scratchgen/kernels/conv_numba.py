"""The Numba convolution: im2col and col2im kernels, and conv2d lowered onto the matmul kernels.

The ``"numba"`` entries of :mod:`scratchgen.kernels.conv` (which holds the definitions, the
argument checks and the NumPy references): ``forward``, ``grad_input``, ``grad_weight``. Each
copies receptive fields into a "patch matrix" P (N·Ho·Wo, C·kH·kW) — *im2col* — so that

    forward      out[n] = w_mat @ P[n]ᵀ                 (w_mat = w.reshape(O, C·kH·kW))
    grad_weight  dw     = Σ_n g[n] @ P[n]
    grad_input   dP[n]  = g[n]ᵀ @ w_mat, then *col2im* adds each patch row back into dx

and the products run on :mod:`scratchgen.kernels.matmul_numba`.
"""
import numpy as np
from numba import njit, prange

from .matmul_numba import choose_kernel, matmul_3d
from .threads import sized_for


def _out_hw(x_shape, w_shape, stride, padding):
    """(Ho, Wo) of a conv2d whose arguments the caller has checked (the formula of ``conv.py``)."""
    return tuple((x_shape[d] + 2 * padding[d - 2] - w_shape[d]) // stride[d - 2] + 1 for d in (2, 3))


# ---------------------------------------------------------------------------- Numba kernels
# The Numba kernels work on the zero-padded images flattened, x_pad (N, C·Hp·Wp), and two tables of
# offsets into one such image: patch p = (y, x) starts at base[p] = y·sh·Wp + x·sw, and its feature
# q = (c, i, j) lies off[q] = (c·Hp + i)·Wp + j further on. Every entry of the patch matrix is then
#
#     P[n, p, q] = x_pad[n, base[p] + off[q]]
#
# with no bounds checks (the padding supplies the zeros) and no divisions in the inner loops.

@njit(parallel=True, cache=True)
def _im2col_rows(xp, base, off, out):
    """One row of ``out`` (N, L, Q) per patch: its receptive field, flattened in the order of
    ``w.reshape(O, -1)``.

        for (n, p) in parallel:
            for q in range(Q):
                out[n, p, q] = xp[n, base[p] + off[q]]

    Optimisations:
    - ``out`` is written in memory order; ``off`` (Q numbers) stays in L1 and the loads become
      vector gathers (no branches: the padding is part of ``xp``);
    - one task per patch row, so parallel tasks write disjoint memory.
    """
    n_img, positions, features = out.shape
    for task in prange(n_img * positions):
        n, p = task // positions, task % positions
        src, row, start = xp[n], out[n, p], base[p]
        for q in range(features):
            row[q] = src[start + off[q]]


@njit(parallel=True, cache=True)
def _im2col_columns(xp, starts, off, out):
    """The transpose layout, ``out`` (Q, N·L): P[n, p, q] goes to out[q, n·L + p]. ``starts`` holds
    where each of the N·L patches starts in the flattened batch: starts[n·L + p] = n·C·Hp·Wp + base[p].

        for q in parallel:
            for t in range(N·L):
                out[q, t] = xp.flat[starts[t] + off[q]]

    Optimisations:
    - each task writes one long row of ``out`` in memory order (one gather per element, through
      ``starts``, which stays in L2), the right operand of the weight gradient as it is;
    - tasks own disjoint features q, so no two threads write the same memory.
    """
    flat = xp.reshape(-1)
    for q in prange(off.shape[0]):
        row, shift = out[q], off[q]
        for t in range(starts.shape[0]):
            row[t] = flat[starts[t] + shift]


@njit(parallel=True, cache=True)
def _col2im_rows(rows, base, off, pad_shape, padding, dx):
    """The adjoint of ``_im2col_rows``: add each entry of ``rows`` (N, L, Q) back onto the pixel
    it was copied from, then drop the padding.

        for n in parallel:
            dx_pad = 0                                      (C, Hp, Wp), flat
            for p, q:
                dx_pad[base[p] + off[q]] += rows[n, p, q]
            dx[n] = dx_pad[:, ph: ph + H, pw: pw + W]

    Optimisations:
    - ``rows`` is read in memory order and one image's ``dx_pad`` stays in cache while its
      overlapping windows add up; the padding takes the additions that fall outside the image,
      so the inner loop has no branches;
    - one task per image, so the scattered additions need no locks or atomics.
    """
    n_img, positions, features = rows.shape
    h, w = dx.shape[2], dx.shape[3]
    ph, pw = padding
    for n in prange(n_img):
        acc = np.zeros(pad_shape, dtype=dx.dtype)
        flat = acc.reshape(-1)
        for p in range(positions):
            row, start = rows[n, p], base[p]
            for q in range(features):
                flat[start + off[q]] += row[q]
        dx[n] = acc[:, ph: ph + h, pw: pw + w]


# ---------------------------------------------------------------------------- lowering
def _offsets(c, h, w, kh, kw, stride, padding, out_hw):
    """(base, off): P[n, p, q] = x_pad[n].flat[base[p] + off[q]] for padded images (C, Hp, Wp)."""
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    y, x = np.arange(out_hw[0]) * stride[0], np.arange(out_hw[1]) * stride[1]
    base = (y[:, None] * wp + x[None, :]).reshape(-1)
    cc, i, j = np.arange(c)[:, None, None], np.arange(kh)[None, :, None], np.arange(kw)[None, None, :]
    off = ((cc * hp + i) * wp + j).reshape(-1)
    return base.astype(np.intp), off.astype(np.intp)


def _padded(x, padding, dtype):
    """x (N, C, H, W) with zero borders, flattened to (N, C·Hp·Wp), C-contiguous."""
    (n, c, h, w), (ph, pw) = x.shape, padding
    if ph == pw == 0:
        return np.ascontiguousarray(x, dtype=dtype).reshape(n, -1)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dtype)
    xp[:, :, ph: ph + h, pw: pw + w] = x
    return xp.reshape(n, -1)


def _im2col(x, kh, kw, stride, padding, out_hw, layout, dtype):
    """im2col of x into one of two layouts, with L = Ho·Wo positions and Q = C·kh·kw features:
    "rows" (N, L, Q) or "columns" (Q, N·L)."""
    n, c, h, w = x.shape
    positions, features = out_hw[0] * out_hw[1], c * kh * kw
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    xp = _padded(x, padding, dtype)
    if layout == "rows":
        out = np.empty((n, positions, features), dtype=dtype)
        with sized_for(out.size):
            _im2col_rows(xp, base, off, out)
    else:
        out = np.empty((features, n * positions), dtype=dtype)
        starts = (np.arange(n)[:, None] * xp.shape[1] + base[None, :]).reshape(-1)
        with sized_for(out.size):
            _im2col_columns(xp, starts, off, out)
    return out


def _col2im(rows, x_shape, kh, kw, stride, padding, out_hw, dtype):
    """The adjoint of ``_im2col(..., "rows")``: dx (N, C, H, W) from patch gradients (N, L, Q)."""
    n, c, h, w = x_shape
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    dx = np.empty(x_shape, dtype=dtype)
    with sized_for(rows.size):
        _col2im_rows(rows, base, off, (c, h + 2 * padding[0], w + 2 * padding[1]), padding, dx)
    return dx


def _forward_numba(x, w, stride, padding, out_hw, dtype):
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    w_mat = np.ascontiguousarray(w, dtype=dtype).reshape(1, o, features)
    if choose_kernel(o, features, positions, n) == "dot":
        # out[n] (O, L) = w_mat (O, Q) @ P[n]ᵀ: the dot kernel reads P[n] (L, Q) as it is
        p = _im2col(x, kh, kw, stride, padding, out_hw, "rows", dtype)
        out = matmul_3d(w_mat, np.swapaxes(p, 1, 2), n)
    else:   # few features (e.g. one input channel): the axpy kernel wants long rows of Pᵀ (Q, N·L)
        out = matmul_3d(w_mat, _im2col(x, kh, kw, stride, padding, out_hw, "columns", dtype)[None], 1)
        out = np.ascontiguousarray(np.swapaxes(out.reshape(o, n, positions), 0, 1))   # (O, N, L) -> (N, O, L)
    return out.reshape((n, o) + tuple(out_hw))


def _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, dtype):
    o, c, kh, kw = w_shape
    n, positions, features = x.shape[0], out_hw[0] * out_hw[1], c * kh * kw
    # dw (O, Q) = Σ_n g[n] (O, L) @ P[n] (L, Q): one product with all N·L positions as inner axis
    g_t = np.ascontiguousarray(np.swapaxes(grad_out.reshape(n, o, positions), 0, 1), dtype=dtype)
    g_t = g_t.reshape(1, o, n * positions)
    cols = _im2col(x, kh, kw, stride, padding, out_hw, "columns", dtype)   # = Pᵀ (Q, N·L)
    return matmul_3d(g_t, cols.T[None], 1).reshape(w_shape)


def _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, dtype):
    n, o = grad_out.shape[:2]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    # dP[n] (L, Q) = g[n]ᵀ (L, O) @ w_mat (O, Q), then col2im adds each patch row back into dx.
    # g[n]ᵀ is a transposed view: the axpy kernel reads it one number at a time, with no copy
    g_t = np.swapaxes(grad_out.reshape(n, o, positions), 1, 2)
    d_rows = matmul_3d(g_t, np.ascontiguousarray(w, dtype=dtype).reshape(1, o, features), n)
    return _col2im(d_rows, x_shape, kh, kw, stride, padding, out_hw, dtype)


# ---------------------------------------------------------------------------- entries
# Arguments come checked from conv.py: stride and padding are pairs, the dtypes already agree.

def forward(x, w, stride, padding):
    """conv2d of x (N, C, H, W) with w (O, C, kH, kW) -> (N, O, Ho, Wo)."""
    out_hw = _out_hw(x.shape, w.shape, stride, padding)
    if x.size == 0 or w.size == 0:
        return np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=x.dtype)
    return _forward_numba(x, w, stride, padding, out_hw, x.dtype)


def grad_input(grad_out, w, x_shape, stride, padding):
    """conv2d's input gradient, of shape ``x_shape``."""
    if grad_out.size == 0 or w.size == 0:
        return np.zeros(x_shape, dtype=w.dtype)
    out_hw = _out_hw(x_shape, w.shape, stride, padding)
    return _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, w.dtype)


def grad_weight(x, grad_out, w_shape, stride, padding):
    """conv2d's weight gradient, of shape ``w_shape``."""
    if x.size == 0 or grad_out.size == 0:
        return np.zeros(w_shape, dtype=x.dtype)
    out_hw = _out_hw(x.shape, w_shape, stride, padding)
    return _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, x.dtype)
