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

from .matmul_numba import (AXPY_COL_BLOCK, AXPY_K_BLOCK, FASTMATH, PAD_BYTES, _axpy_row, _axpy_strip_4x4,
                           _dot_block, choose_kernel, matmul_3d)
from .threads import sized_for


def _out_hw(x_shape, w_shape, stride, padding):
    """(Ho, Wo) of a conv2d whose arguments the caller has checked (the formula of ``conv.py``)."""
    return tuple((x_shape[d] + 2 * padding[d - 2] - w_shape[d]) // stride[d - 2] + 1 for d in (2, 3))


# ---------------------------------------------------------------------------- Numba kernels
# Feature order. A patch's features are numbered q = (i, j, c) — kernel row, kernel column, channel —
# so that in an image stored channels-last (NHWC: x_h[n, y, x, c]) one kernel row's kw·C features
# are kw·C *consecutive* numbers: a patch row of P is kh contiguous runs, copied at memory speed.
# The weight is read in the same order, w_mat = w.transpose(0, 2, 3, 1).reshape(O, kh·kw·C).
# (Gathering every number through an index table from the NCHW image instead, feature order
# (c, i, j), took 1.6 ms for the VQ-VAE's 3x3 layer on 64 channels, (128, 64, 7, 7); the NHWC
# copy 0.3 ms, plus 0.3 ms to build the NHWC image. Zen 4, one thread, CPU time.)

@njit(parallel=True, cache=True)
def _nhwc_padded(x, ph, pw, out):
    """out[n, y + ph, x + pw, c] = x[n, c, y, x]: the channels-last copy of x inside a zero border
    (``out`` must be zero on entry).

        for n in parallel:
            for y, x:
                for c: out[n, y + ph, x + pw, c] = x[n, c, y, x]

    Optimisations:
    - one image (C·H·W numbers, a few KB to a few hundred) stays in L1/L2 while it is turned;
      the writes are in memory order;
    - one task per image: disjoint writes.
    """
    n_img, channels, h, w = x.shape
    for n in prange(n_img):
        src = x[n]
        for y in range(h):
            for xx in range(w):
                dst = out[n, y + ph, xx + pw]
                for c in range(channels):
                    dst[c] = src[c, y, xx]


@njit(parallel=True, cache=True)
def _im2col_rows(xh, kh, kw, sh, sw, ho, wo, out):
    """One row of ``out`` (N, L, Q) per patch, from the padded channels-last images ``xh``
    (N, Hp, Wp, C), features in the order (i, j, c):

        for (n, y) in parallel:
            for x in range(Wo):
                for i in range(kh):            # kw·C consecutive numbers of xh
                    out[n, y·Wo + x, i·kw·C: (i+1)·kw·C] = xh[n, y·sh + i, x·sw: x·sw + kw, :]

    Optimisations:
    - each run is a contiguous copy, which LLVM vectorises (no gathers, no index table);
    - one task per output row (n, y): disjoint writes, enough tasks for any thread count.
    """
    n_img, hp, wp, channels = xh.shape
    run = kw * channels
    for task in prange(n_img * ho):
        n, y = task // ho, task % ho
        src = xh[n].reshape(-1)
        for x in range(wo):
            row = out[n, y * wo + x]
            for i in range(kh):
                start = ((y * sh + i) * wp + x * sw) * channels
                seg, dst = src[start: start + run], row[i * run: (i + 1) * run]
                for q in range(run):
                    dst[q] = seg[q]


@njit(parallel=True, cache=True)
def _im2col_columns(xp, starts, off, out):
    """The transpose layout, ``out`` (Q, N·L): P[n, p, q] goes to out[q, n·L + p], gathered from the
    padded NCHW images flattened, ``xp`` (N·C·Hp·Wp,), through two index tables (``_offsets``):
    patch t = (n, p) starts at starts[t] = n·C·Hp·Wp + base[p], and feature q = (i, j, c) lies
    off[q] = (c·Hp + i)·Wp + j further on.

        for q in parallel:
            for t in range(N·L):
                out[q, t] = xp[starts[t] + off[q]]

    Optimisations:
    - each task writes one long row of ``out`` in memory order, one indexed load per number
      (``starts`` stays in L2); no bounds tests, the padding supplies the zeros. (Copying runs of
      Wo numbers per image row instead was slower: 0.36 against 0.22 ms for the VQ-VAE's 1x1
      layer on (128, 64, 7, 7), 6.9 against 5.0 ms for its 4x4 layer on (128, 64, 14, 14).)
    - tasks own disjoint features q, so no two threads write the same memory.
    """
    for q in prange(off.shape[0]):
        row, shift = out[q], off[q]
        for t in range(starts.shape[0]):
            row[t] = xp[starts[t] + shift]


@njit(parallel=True, cache=True)
def _col2im_rows(rows, kh, kw, sh, sw, ho, wo, ph, pw, wp, dx):
    """The adjoint of ``_im2col_rows``: add each patch row of ``rows`` (N, L, Q) back onto the pixels
    it was copied from, in a padded channels-last image, then write it to NCHW ``dx`` unpadded.

        for n in parallel:
            acc = 0                                          (Hp, Wp, C), flat
            for y, x, i:
                acc[y·sh + i, x·sw: x·sw + kw, :] += rows[n, y·Wo + x, i·kw·C: (i+1)·kw·C]
            dx[n, c, r, s] = acc[r + ph, s + pw, c]

    Optimisations:
    - the additions are contiguous runs of kw·C numbers (vectorised), into one image's
      accumulator, which stays in cache while the overlapping windows add up;
    - one task per image, so the overlapping additions need no locks or atomics.
    """
    n_img = rows.shape[0]
    channels, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    hp = h + 2 * ph
    run = kw * channels
    for n in prange(n_img):
        acc = np.zeros(hp * wp * channels, dtype=dx.dtype)
        for y in range(ho):
            for x in range(wo):
                row = rows[n, y * wo + x]
                for i in range(kh):
                    start = ((y * sh + i) * wp + x * sw) * channels
                    seg, src = acc[start: start + run], row[i * run: (i + 1) * run]
                    for q in range(run):
                        seg[q] += src[q]
        out = dx[n]
        for r in range(h):
            for s in range(w):
                at = ((r + ph) * wp + s + pw) * channels
                for c in range(channels):
                    out[c, r, s] = acc[at + c]


# ---------------------------------------------------------------------------- fused kernels
# The three products of a convolution, each with im2col (or col2im) done inside it, one image or one
# block of P at a time, into a buffer that stays in cache. The patch matrix of a whole batch is
# large — 25 MB for the VQ-VAE's 4x4 convolution on (128, 64, 14, 14), 100 MB in the transposed
# (columns) layout the weight gradient used — so writing it and reading it back went through main
# memory; a block of it packed just before the product reads it comes from L1/L2.

@njit(cache=True)
def _pack_patches(xh, kh, kw, sh, sw, wo, p0, p1, q0, q1, dst):
    """dst[p - p0, q - q0] = P[p, q] for positions p0 <= p < p1 and features q0 <= q < q1 of one
    image, copied from its padded channels-last form ``xh`` (Hp, Wp, C) (feature order (i, j, c)).

        for p in range(p0, p1):
            y, x = divmod(p, Wo)
            for each kernel row i that [q0, q1) meets:      # kw·C consecutive numbers of xh
                dst[p - p0, part of row i] = xh[y·sh + i, x·sw: x·sw + kw, :] (the same part)
    """
    wp, channels = xh.shape[1], xh.shape[2]
    run = kw * channels
    src = xh.reshape(-1)
    for p in range(p0, p1):
        y, x = p // wo, p % wo
        row = dst[p - p0]
        q = q0
        while q < q1:
            i = q // run
            start = q - i * run
            count = min(run - start, q1 - q)
            at = ((y * sh + i) * wp + x * sw) * channels + start
            seg, out = src[at: at + count], row[q - q0: q - q0 + count]
            for t in range(count):
                out[t] = seg[t]
            q += count


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_forward_fused(xh, w_mat, kh, kw, sh, sw, wo, out):
    """out[n] (O, L) = w_mat (O, Q) @ P[n]ᵀ for every image n, P[n] packed per image.

        for n in parallel:
            buf = P[n]                               (L, Q): _pack_patches
            out[n] += w_mat @ bufᵀ                   (4x4 dot tiles, _dot_block)

    ``out`` (N, O, L) must be zero on entry.

    Optimisations:
    - im2col inside the task: one image's patches (L·Q numbers: 113 KB for the VQ-VAE's 3x3
      layer on 64 channels) are written to a buffer that stays in L2 and read back at once by
      the dot tiles, instead of the whole batch's going out to main memory and back;
    - the dot kernel reads both operands as they are (rows of w_mat and of P[n]);
    - one task per image: disjoint outputs, the same order of additions for any thread count.
    """
    n_img, o = out.shape[0], out.shape[1]
    positions, features = out.shape[2], w_mat.shape[1]
    for n in prange(n_img):
        buf = np.empty((positions, features), dtype=out.dtype)
        _pack_patches(xh[n], kh, kw, sh, sw, wo, 0, positions, 0, features, buf)
        _dot_block(w_mat, buf, out[n], 0, o, 0, positions)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_grad_input_fused(g_rows, panels, kh, kw, sh, sw, wo, ph, pw, dx):
    """dx[n] = col2im(g[n]ᵀ @ w_mat) for every image n, a strip of four patch rows at a time.

    ``g_rows`` (N, L, O) holds g[n]ᵀ; ``panels`` (K blocks, column blocks, AXPY_K_BLOCK, width + pad)
    holds w_mat (O, Q) packed once for the axpy strips.

        for n in parallel:
            acc = 0                                          padded channels-last image, flat
            for each column block [q0, q1) of Q, each strip of 4 positions p:
                strip = g[n]ᵀ[p: p+4] @ w_mat[:, q0: q1]     (_axpy_strip_4x4, K block by K block)
                acc += strip, scattered back onto the 4 patches     (_add_patch_block)
            dx[n, c, r, s] = acc[r + ph, s + pw, c]

    Optimisations:
    - col2im inside the task: the patch gradients dP[n] never exist as a whole (4 rows at a
      time, in L1); the batch's dP (N, L, Q) was as large as its P;
    - w_mat is packed once per call and shared by all tasks (it stays in L2);
    - one task per image: the overlapping additions of one image need no locks, and every
      pixel adds its terms in the same order for any thread count.
    """
    n_img, positions = g_rows.shape[0], g_rows.shape[1]
    o = g_rows.shape[2]
    channels, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    hp, wp = h + 2 * ph, w + 2 * pw
    k_blocks, col_blocks, k_block, padded = panels.shape
    features = kh * kw * channels
    width_max = padded - PAD_BYTES // dx.itemsize
    p_end = positions // 4 * 4
    for n in prange(n_img):
        acc = np.zeros(hp * wp * channels, dtype=dx.dtype)
        a = g_rows[n]
        strip = np.empty((4, padded), dtype=dx.dtype)
        for cb in range(col_blocks):
            q0 = cb * width_max
            width = min(width_max, features - q0)
            for p in range(0, positions, 4):
                rows = 4 if p < p_end else positions - p
                strip[:, :width] = 0.0
                for kb in range(k_blocks):
                    kc = min(k_block, o - kb * k_block)
                    if rows == 4:
                        _axpy_strip_4x4(a, p, kb * k_block, kc, width, panels[kb, cb], strip)
                    else:
                        for r in range(rows):
                            _axpy_row(a, p + r, kb * k_block, kc, width, panels[kb, cb], strip[r, :width])
                for r in range(rows):
                    _add_patch_block(acc, strip[r, :width], kw, sh, sw, wo, p + r, wp, channels, q0)
        out = dx[n]
        for r in range(h):
            for s in range(w):
                at = ((r + ph) * wp + s + pw) * channels
                for c in range(channels):
                    out[c, r, s] = acc[at + c]


@njit(cache=True)
def _add_patch_block(acc, values, kw, sh, sw, wo, p, wp, channels, q0):
    """acc (a padded channels-last image, flat) += features q0 .. q0 + len(values) of patch p
    (the adjoint of ``_pack_patches`` for one row and one block of features)."""
    run = kw * channels
    y, x = p // wo, p % wo
    q, q1 = q0, q0 + values.shape[0]
    while q < q1:
        i = q // run
        start = q - i * run
        count = min(run - start, q1 - q)
        at = ((y * sh + i) * wp + x * sw) * channels + start
        seg, src = acc[at: at + count], values[q - q0: q - q0 + count]
        for t in range(count):
            seg[t] += src[t]
        q += count


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_grad_weight_fused(xh, g, kh, kw, sh, sw, wo, width_max, dw):
    """dw (O, Q) = Σ_n g[n] (O, L) @ P[n] (L, Q), one block of Q's columns per task.

        for each column block [q0, q1) in parallel:
            acc = 0                                          (O, q1 - q0), in strips of 4 rows
            for n in range(N):                               (in order: the same sums on any threads)
                for each K block [p0, p1) of positions:
                    panel = P[n][p0: p1, q0: q1]             (_pack_patches)
                    acc[o: o+4] += g[n][o: o+4, p0: p1] @ panel     (_axpy_strip_4x4)
            dw[:, q0: q1] = acc

    Optimisations:
    - im2col inside the task, one (positions x block) panel at a time, into a buffer in L2; the
      columns layout (Q, N·L) this product read before was 100 MB for the VQ-VAE's 4x4 layer;
    - each task packs only its own columns of P, so no patch is copied twice;
    - the accumulator is held as (O/4, 4, width) strips, whole arrays the axpy strip kernel
      updates in place (no copies in and out per image).
    """
    n_img, o, positions = g.shape
    features = dw.shape[1]
    pad = PAD_BYTES // dw.itemsize
    col_blocks = (features + width_max - 1) // width_max
    strips, o_end = (o + 3) // 4, o // 4 * 4
    for cb in prange(col_blocks):
        q0 = cb * width_max
        width = min(width_max, features - q0)
        acc = np.zeros((strips, 4, width + pad), dtype=dw.dtype)
        panel = np.empty((AXPY_K_BLOCK, width + pad), dtype=dw.dtype)
        for n in range(n_img):
            a = g[n]
            for p0 in range(0, positions, AXPY_K_BLOCK):
                kc = min(AXPY_K_BLOCK, positions - p0)
                _pack_patches(xh[n], kh, kw, sh, sw, wo, p0, p0 + kc, q0, q0 + width, panel)
                for i in range(0, o_end, 4):
                    _axpy_strip_4x4(a, i, p0, kc, width, panel, acc[i // 4])
                for i in range(o_end, o):
                    _axpy_row(a, i, p0, kc, width, panel, acc[i // 4, i % 4, :width])
        for i in range(o):
            row, src = dw[i, q0: q0 + width], acc[i // 4, i % 4]
            for t in range(width):
                row[t] = src[t]


# ---------------------------------------------------------------------------- lowering
def weight_rows(w, dtype):
    """w (O, C, kh, kw) as the (O, kh·kw·C) matrix whose columns follow the patch features (i, j, c)."""
    return np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)), dtype=dtype).reshape(1, w.shape[0], -1)


def _padded(x, padding, dtype):
    """x (N, C, H, W) with zero borders, (N, C, Hp, Wp), C-contiguous."""
    (n, c, h, w), (ph, pw) = x.shape, padding
    if ph == pw == 0:
        return np.ascontiguousarray(x, dtype=dtype)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dtype)
    xp[:, :, ph: ph + h, pw: pw + w] = x
    return xp


def _nhwc(x, padding, dtype):
    """x (N, C, H, W) as padded channels-last images (N, Hp, Wp, C), C-contiguous."""
    (n, c, h, w), (ph, pw) = x.shape, padding
    xh = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=dtype)
    with sized_for(x.size):
        _nhwc_padded(np.ascontiguousarray(x, dtype=dtype), ph, pw, xh)
    return xh


def _offsets(c, h, w, kh, kw, stride, padding, out_hw):
    """(base, off) for padded NCHW images (C, Hp, Wp) flattened: patch p = (y, x) starts at
    base[p] = y·sh·Wp + x·sw and its feature q = (i, j, c) lies off[q] = (c·Hp + i)·Wp + j further on,
    so P[n, p, q] = x_pad[n].flat[base[p] + off[q]]."""
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    y, x = np.arange(out_hw[0]) * stride[0], np.arange(out_hw[1]) * stride[1]
    base = (y[:, None] * wp + x[None, :]).reshape(-1)
    i, j, cc = np.arange(kh)[:, None, None], np.arange(kw)[None, :, None], np.arange(c)[None, None, :]
    off = ((cc * hp + i) * wp + j).reshape(-1)
    return base.astype(np.intp), off.astype(np.intp)


def _im2col(x, kh, kw, stride, padding, out_hw, layout, dtype):
    """im2col of x into one of two layouts, with L = Ho·Wo positions and Q = kh·kw·C features in
    the order (i, j, c): "rows" (N, L, Q) or "columns" (Q, N·L)."""
    n, c, h, w = x.shape
    (ho, wo), (sh, sw) = out_hw, stride
    if layout == "rows":
        out = np.empty((n, ho * wo, kh * kw * c), dtype=dtype)
        xh = _nhwc(x, padding, dtype)
        with sized_for(out.size):
            _im2col_rows(xh, kh, kw, sh, sw, ho, wo, out)
    else:
        out = np.empty((kh * kw * c, n * ho * wo), dtype=dtype)
        base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
        xp = _padded(x, padding, dtype).reshape(-1)
        starts = (np.arange(n)[:, None] * (xp.size // n) + base[None, :]).reshape(-1)
        with sized_for(out.size):
            _im2col_columns(xp, starts, off, out)
    return out


def _col2im(rows, x_shape, kh, kw, stride, padding, out_hw, dtype):
    """The adjoint of ``_im2col(..., "rows")``: dx (N, C, H, W) from patch gradients (N, L, Q)."""
    dx = np.empty(x_shape, dtype=dtype)
    with sized_for(rows.size):
        _col2im_rows(np.ascontiguousarray(rows, dtype=dtype), kh, kw, stride[0], stride[1], out_hw[0], out_hw[1],
                     padding[0], padding[1], x_shape[3] + 2 * padding[1], dx)
    return dx


def _forward_numba(x, w, stride, padding, out_hw, dtype):
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    w_mat = weight_rows(w, dtype)
    if choose_kernel(o, features, positions, n) == "dot":
        # out[n] (O, L) = w_mat (O, Q) @ P[n]ᵀ, P[n] packed image by image inside the kernel
        out = np.zeros((n, o, positions), dtype=dtype)
        with sized_for(out.size * features):
            _conv_forward_fused(_nhwc(x, padding, dtype), w_mat[0], kh, kw, stride[0], stride[1], out_hw[1], out)
    else:   # few features (e.g. one input channel): the axpy kernel wants long rows of Pᵀ (Q, N·L)
        out = matmul_3d(w_mat, _im2col(x, kh, kw, stride, padding, out_hw, "columns", dtype)[None], 1)
        out = np.ascontiguousarray(np.swapaxes(out.reshape(o, n, positions), 0, 1))   # (O, N, L) -> (N, O, L)
    return out.reshape((n, o) + tuple(out_hw))


GRAD_WEIGHT_BLOCK = 128     # columns of dw per task of _conv_grad_weight_fused
FUSED_MIN_FEATURES = 256   # fewer features: the separate products win (measured, see _grad_input_numba)


def _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, dtype, fused=None):
    o, c, kh, kw = w_shape
    n, positions, features = x.shape[0], out_hw[0] * out_hw[1], c * kh * kw
    fused = features >= FUSED_MIN_FEATURES if fused is None else fused
    if fused:
        # dw (O, Q) = Σ_n g[n] (O, L) @ P[n] (L, Q), P packed block by block inside the kernel
        g = np.ascontiguousarray(grad_out, dtype=dtype).reshape(n, o, positions)
        dw = np.empty((o, features), dtype=dtype)
        with sized_for(grad_out.size * features):
            _conv_grad_weight_fused(_nhwc(x, padding, dtype), g, kh, kw, stride[0], stride[1], out_hw[1],
                                    GRAD_WEIGHT_BLOCK, dw)
    else:
        # few features: one product with all N·L positions as inner axis, on Pᵀ (Q, N·L)
        g_t = np.ascontiguousarray(np.swapaxes(grad_out.reshape(n, o, positions), 0, 1), dtype=dtype)
        cols = _im2col(x, kh, kw, stride, padding, out_hw, "columns", dtype)
        dw = matmul_3d(g_t.reshape(1, o, n * positions), cols.T[None], 1)
    return np.ascontiguousarray(np.transpose(dw.reshape(o, kh, kw, c), (0, 3, 1, 2)))


def _panels(w_mat, dtype):
    """w_mat (O, Q) cut into (K blocks, column blocks, AXPY_K_BLOCK, AXPY_COL_BLOCK + pad) panels:
    the axpy strips' operand, packed once (rows padded by a cache line, see ``_matmul_axpy``)."""
    o, q = w_mat.shape
    kb, cb = -(-o // AXPY_K_BLOCK), -(-q // AXPY_COL_BLOCK)
    width = min(AXPY_COL_BLOCK, q)
    panels = np.zeros((kb, cb, AXPY_K_BLOCK, width + PAD_BYTES // np.dtype(dtype).itemsize), dtype=dtype)
    for k in range(kb):
        for j in range(cb):
            block = w_mat[k * AXPY_K_BLOCK: (k + 1) * AXPY_K_BLOCK, j * width: (j + 1) * width]
            panels[k, j, :block.shape[0], :block.shape[1]] = block
    return panels


def _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, dtype, fused=None):
    n, o = grad_out.shape[:2]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    fused = features >= FUSED_MIN_FEATURES if fused is None else fused
    if not fused:
        # few features: dP (N, L, Q) = g[n]ᵀ @ w_mat on the matmul kernels (g[n]ᵀ read as a view),
        # then col2im adds each patch row back into dx
        g_t = np.swapaxes(grad_out.reshape(n, o, positions), 1, 2)
        return _col2im(matmul_3d(g_t, weight_rows(w, dtype), n), x_shape, kh, kw, stride, padding, out_hw, dtype)
    # dP[n] (L, Q) = g[n]ᵀ (L, O) @ w_mat (O, Q), added back into dx (col2im) four rows at a time
    g_rows = np.ascontiguousarray(np.swapaxes(grad_out.reshape(n, o, positions), 1, 2), dtype=dtype)
    dx = np.empty(x_shape, dtype=dtype)
    with sized_for(grad_out.size * features):
        _conv_grad_input_fused(g_rows, _panels(weight_rows(w, dtype)[0], dtype), kh, kw, stride[0], stride[1],
                               out_hw[1], padding[0], padding[1], dx)
    return dx


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
