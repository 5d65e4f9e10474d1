"""2-D convolution (cross-correlation) in NCHW layout: forward pass and both gradients.

    out[n, o, y, x] = Σ_{c, i, j} x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j]

with x (N, C, H, W), w (O, C, kH, kW), x_pad the input with ``ph`` zero rows above and below and
``pw`` zero columns left and right, and the output (N, O, Ho, Wo) where, as in PyTorch,

    Ho = (H + 2·ph − kH) // sh + 1        Wo = (W + 2·pw − kW) // sw + 1

The two gradients, for an upstream gradient g of the output's shape:

    dx_pad[n, c, y·sh + i, x·sw + j] += Σ_o g[n, o, y, x] · w[o, c, i, j]      (then crop)
    dw[o, c, i, j] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, c, y·sh + i, x·sw + j]

``conv2d_grad_input`` is also the forward pass of a transposed convolution, so it takes the
input's full shape: when the stride does not divide evenly, several heights H give the same Ho
(PyTorch's ``output_padding`` picks one) and the rows no window touches get zero gradient.

Two implementations of each, chosen by :mod:`scratchgen.kernels.backend`:

* NumPy (``*_reference``): a loop over the kH·kW kernel offsets; each offset is one einsum over a
  strided slice of the padded input. Reads like the formulas above.
* Numba: *im2col* lowering. Copy every receptive field into a row of a "patch matrix"
  P (N·Ho·Wo, C·kH·kW); then forward is P @ w_matᵀ, grad_weight is gᵀ @ P and grad_input is
  g @ w_mat followed by *col2im* (the adjoint copy, adding patches back into the image). The
  three products run on the fast matmul kernels of :mod:`scratchgen.kernels.matmul`.
"""
import numpy as np
from numba import njit, prange

from .backend import get_backend
from .matmul import _choose_kernel, matmul_3d, result_dtype


# ---------------------------------------------------------------------------- arguments
def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        first, second = value
        return int(first), int(second)
    except (TypeError, ValueError):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}") from None


def _output_size(op, x_shape, w_shape, stride, padding):
    """Validated (stride, padding, (Ho, Wo)) for input shape x_shape and weight shape w_shape."""
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if len(x_shape) != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: weight must be 4-D (C_out, C_in, kH, kW), got shape {tuple(w_shape)}")
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"{op}: input {tuple(x_shape)} has {x_shape[1]} channels but weight "
                         f"{tuple(w_shape)} expects {w_shape[1]} (weight is (C_out, C_in, kH, kW))")
    if min(stride) <= 0:
        raise ValueError(f"{op}: stride must be positive, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding}")
    padded = (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    if w_shape[2] > padded[0] or w_shape[3] > padded[1]:
        raise ValueError(f"{op}: kernel {tuple(w_shape[2:])} (weight {tuple(w_shape)}) is larger than "
                         f"the padded input {padded} (input {tuple(x_shape)}, padding {padding})")
    out_hw = ((padded[0] - w_shape[2]) // stride[0] + 1, (padded[1] - w_shape[3]) // stride[1] + 1)
    return stride, padding, out_hw


def _check_grad_out(op, grad_out, x_shape, w_shape, out_hw):
    expected = (x_shape[0], w_shape[0]) + tuple(out_hw)
    if grad_out.shape != expected:
        raise ValueError(f"{op}: grad_out has shape {grad_out.shape} but input {tuple(x_shape)} and "
                         f"weight {tuple(w_shape)} give an output of shape {expected}")


def _as_shape(shape, op, name):
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{op}: {name} must be a shape tuple, got {shape!r}") from None


# ---------------------------------------------------------------------------- NumPy definition
def _window(xp, i, j, stride, out_hw):
    """The (N, C, Ho, Wo) view of padded input ``xp`` that kernel offset (i, j) multiplies."""
    return xp[:, :, i: i + stride[0] * (out_hw[0] - 1) + 1: stride[0],
              j: j + stride[1] * (out_hw[1] - 1) + 1: stride[1]]


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))


def conv2d_forward_reference(x, w, stride, padding):
    """out[n, o, y, x] = Σ_{i, j} Σ_c x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j]."""
    stride, padding, out_hw = _output_size("conv2d", x.shape, w.shape, stride, padding)
    xp = _pad(x, padding)
    out = np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=np.result_type(x, w))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            out += np.einsum("nchw,oc->nohw", _window(xp, i, j, stride, out_hw), w[:, :, i, j],
                             optimize=True)
    return out


def conv2d_grad_input_reference(grad_out, w, x_shape, stride, padding):
    """dx_pad[n, c, y·sh + i, x·sw + j] += Σ_o g[n, o, y, x] · w[o, c, i, j]; dx = dx_pad cropped."""
    stride, padding, out_hw = _output_size("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_out("conv2d_grad_input", grad_out, x_shape, w.shape, out_hw)
    n, c, h, wd = x_shape
    dxp = np.zeros((n, c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=np.result_type(grad_out, w))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            _window(dxp, i, j, stride, out_hw)[...] += np.einsum("nohw,oc->nchw", grad_out,
                                                                 w[:, :, i, j], optimize=True)
    return dxp[:, :, padding[0]: padding[0] + h, padding[1]: padding[1] + wd]


def conv2d_grad_weight_reference(x, grad_out, w_shape, stride, padding):
    """dw[o, c, i, j] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, c, y·sh + i, x·sw + j]."""
    stride, padding, out_hw = _output_size("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_grad_out("conv2d_grad_weight", grad_out, x.shape, w_shape, out_hw)
    xp = _pad(x, padding)
    dw = np.zeros(w_shape, dtype=np.result_type(x, grad_out))
    for i in range(w_shape[2]):
        for j in range(w_shape[3]):
            dw[:, :, i, j] = np.einsum("nchw,nohw->oc", _window(xp, i, j, stride, out_hw), grad_out,
                                       optimize=True)
    return dw


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
        _im2col_rows(xp, base, off, out)
    else:
        out = np.empty((features, n * positions), dtype=dtype)
        starts = (np.arange(n)[:, None] * xp.shape[1] + base[None, :]).reshape(-1)
        _im2col_columns(xp, starts, off, out)
    return out


def _col2im(rows, x_shape, kh, kw, stride, padding, out_hw, dtype):
    """The adjoint of ``_im2col(..., "rows")``: dx (N, C, H, W) from patch gradients (N, L, Q)."""
    n, c, h, w = x_shape
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    dx = np.empty(x_shape, dtype=dtype)
    _col2im_rows(rows, base, off, (c, h + 2 * padding[0], w + 2 * padding[1]), padding, dx)
    return dx


def _forward_numba(x, w, stride, padding, out_hw, dtype):
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    w_mat = np.ascontiguousarray(w, dtype=dtype).reshape(1, o, features)
    if _choose_kernel(o, features, positions, n) == "dot":
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


# ---------------------------------------------------------------------------- dispatch
def conv2d_forward(x, w, stride=1, padding=0):
    """conv2d of x (N, C, H, W) with weight w (O, C, kH, kW), no bias -> (N, O, Ho, Wo)."""
    x, w = np.asarray(x), np.asarray(w)
    stride, padding, out_hw = _output_size("conv2d", x.shape, w.shape, stride, padding)
    dtype = result_dtype(x, w, op="conv2d")
    if get_backend() == "numpy" or x.size == 0 or w.size == 0:
        return conv2d_forward_reference(x.astype(dtype, copy=False), w.astype(dtype, copy=False),
                                        stride, padding)
    return _forward_numba(x, w, stride, padding, out_hw, dtype)


def conv2d_grad_input(grad_out, w, x_shape, stride=1, padding=0):
    """Gradient of conv2d with respect to its input of shape ``x_shape``, given grad_out."""
    grad_out, w = np.asarray(grad_out), np.asarray(w)
    x_shape = _as_shape(x_shape, "conv2d_grad_input", "x_shape")
    stride, padding, out_hw = _output_size("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_out("conv2d_grad_input", grad_out, x_shape, w.shape, out_hw)
    dtype = result_dtype(grad_out, w, op="conv2d_grad_input")
    if get_backend() == "numpy" or grad_out.size == 0 or w.size == 0:
        return conv2d_grad_input_reference(grad_out.astype(dtype, copy=False),
                                           w.astype(dtype, copy=False), x_shape, stride, padding)
    return _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, dtype)


def conv2d_grad_weight(x, grad_out, w_shape, stride=1, padding=0):
    """Gradient of conv2d with respect to its weight of shape ``w_shape``, given x and grad_out."""
    x, grad_out = np.asarray(x), np.asarray(grad_out)
    w_shape = _as_shape(w_shape, "conv2d_grad_weight", "w_shape")
    stride, padding, out_hw = _output_size("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_grad_out("conv2d_grad_weight", grad_out, x.shape, w_shape, out_hw)
    dtype = result_dtype(x, grad_out, op="conv2d_grad_weight")
    if get_backend() == "numpy" or x.size == 0 or grad_out.size == 0:
        return conv2d_grad_weight_reference(x.astype(dtype, copy=False),
                                            grad_out.astype(dtype, copy=False), w_shape, stride, padding)
    return _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, dtype)
