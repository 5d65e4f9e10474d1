"""The Numba convolution: conv2d lowered onto the matmul kernels, with the im2col copy inside them.

The ``"numba"`` entries of :mod:`scratchgen.kernels.conv` (which holds the definitions, the
argument checks and the NumPy references): ``forward``, ``grad_input``, ``grad_weight``. Each is a
matrix product with the "patch matrix" P (N·Ho·Wo, kH·kW·C), one row per receptive field — *im2col*:

    forward      out[n] = w_mat @ P[n]ᵀ                 (w_mat: w as (O, kH·kW·C), features (i, j, c))
    grad_weight  dw     = Σ_n g[n] @ P[n]
    grad_input   dP[n]  = g[n]ᵀ @ w_mat, then *col2im* adds each patch row back into dx

The products run on the tiles of :mod:`scratchgen.kernels.matmul_numba`. For many features
(Q = kH·kW·C of at least ``FUSED_MIN_FEATURES``) the copy is done *inside* the product, one image
or one block of P at a time, into a buffer that stays in cache (``_conv_*_fused``); for few
features the product is long and thin, and im2col and col2im run as passes of their own over
the whole batch (``_im2col_columns``, ``_col2im_rows``) around one call of ``matmul_3d``.
"""
import threading

import numpy as np
from numba import njit, prange

from .matmul_numba import (AXPY_COL_BLOCK, AXPY_K_BLOCK, FASTMATH, PAD_BYTES, axpy_row, axpy_strip_4x4,
                           dot_block, choose_kernel, matmul_3d)
from .threads import sized_for

FUSED_MIN_FEATURES = 256    # features per patch from which the fused kernels pay (measured, see below)
GRAD_WEIGHT_BLOCK = AXPY_COL_BLOCK   # columns of dw per task of _conv_grad_weight_fused, at most (see fused_pays)


def _out_hw(x_shape, w_shape, stride, padding):
    """(Ho, Wo) of a conv2d whose arguments the caller has checked (the formula of ``conv.py``)."""
    return tuple((x_shape[d] + 2 * padding[d - 2] - w_shape[d]) // stride[d - 2] + 1 for d in (2, 3))


# ---------------------------------------------------------------------------- Numba kernels
# Feature order. A patch's features are numbered q = (i, j, c) — kernel row, kernel column,
# channel — so that in an image stored channels-last (NHWC, x_h[n, y, x, c]) with its zero border,
# one kernel row's kw·C features are kw·C *consecutive* numbers: a row of P is kh contiguous runs,
# copied at memory speed. The weight is read in the same order, w.transpose(0, 2, 3, 1).
# Measured (one thread, CPU time, Zen 4): the patch rows of the VQ-VAE's 3x3 layer on
# (128, 64, 7, 7) took 1.6 ms gathered one number at a time through an index table from the NCHW
# image, 0.3 ms copied in runs from the NHWC image (+ 0.3 ms to build that image).

@njit(cache=True)
def _from_nhwc(acc, ph, pw, wp, out):
    """out[c, r, s] = acc[r + ph, s + pw, c] for one image: the interior of a padded channels-last
    image (flat ``acc``) back in CHW order."""
    channels, h, w = out.shape
    for r in range(h):
        for s in range(w):
            at = ((r + ph) * wp + s + pw) * channels
            for c in range(channels):
                out[c, r, s] = acc[at + c]


@njit(cache=True)
def _run(q, q1, p, kw, sh, sw, wo, wp, channels):
    """(start, count): features q .. q + count - 1 of patch p = (y, x), all within one kernel row i
    and before q1, lie at start .. start + count - 1 of the flat padded channels-last image."""
    run = kw * channels
    i = q // run
    offset = q - i * run
    y, x = p // wo, p % wo
    return ((y * sh + i) * wp + x * sw) * channels + offset, min(run - offset, q1 - q)


@njit(cache=True)
def _pack_patches(xh, kw, sh, sw, wo, p0, p1, q0, q1, dst):
    """dst[p - p0, q - q0] = P[p, q] for positions p0 <= p < p1 and features q0 <= q < q1 of one
    image, copied from its padded channels-last form ``xh`` (Hp, Wp, C).

        for p in range(p0, p1):
            y, x = divmod(p, Wo)
            for each kernel row i that [q0, q1) meets:         # kw·C consecutive numbers of xh
                dst[p - p0, (that part of row i)] = xh[y·sh + i, x·sw: x·sw + kw, :] (same part)

    Optimisations:
    - whole runs of consecutive numbers, copied by a vectorised loop (no per-number index);
    - any block of P can be packed, so a product packs exactly the block it is about to read.
    """
    wp, channels = xh.shape[1], xh.shape[2]
    src = xh.reshape(-1)
    for p in range(p0, p1):
        row = dst[p - p0]
        q = q0
        while q < q1:
            at, count = _run(q, q1, p, kw, sh, sw, wo, wp, channels)
            seg, out = src[at: at + count], row[q - q0: q - q0 + count]
            for t in range(count):
                out[t] = seg[t]
            q += count


@njit(cache=True)
def _add_patch(acc, values, kw, sh, sw, wo, p, wp, channels, q0):
    """The adjoint of ``_pack_patches`` for one patch: acc[y·sh + i, x·sw + j, c] += values[q - q0]
    for the features q = (i, j, c) from q0 on of patch p = (y, x); ``acc`` is one padded
    channels-last image, flat. Contiguous runs again, so the additions are vectorised."""
    q, q1 = q0, q0 + values.shape[0]
    while q < q1:
        at, count = _run(q, q1, p, kw, sh, sw, wo, wp, channels)
        seg, src = acc[at: at + count], values[q - q0: q - q0 + count]
        for t in range(count):
            seg[t] += src[t]
        q += count


@njit(parallel=True, cache=True)
def _im2col_columns(xp, starts, off, out):
    """P transposed, ``out`` (Q, N·L): P[n, p, q] goes to out[q, n·L + p], gathered from the padded
    NCHW images flattened, ``xp`` (N·C·Hp·Wp,), through two index tables (``_offsets``): patch
    t = (n, p) starts at starts[t] = n·C·Hp·Wp + base[p], feature q = (i, j, c) lies
    off[q] = (c·Hp + i)·Wp + j further on.

        for q in parallel:
            for t in range(N·L):
                out[q, t] = xp[starts[t] + off[q]]

    Optimisations:
    - each task writes one long row of ``out`` in memory order, one indexed load per number
      (``starts`` stays in L2), no bounds tests: the padding supplies the zeros. (Copying runs of
      Wo numbers per image row instead was slower, for the short rows of 7x7 and 14x14 images:
      0.36 against 0.22 ms for the VQ-VAE's 1x1 layer on (128, 64, 7, 7).)
    - tasks own disjoint features q, so no two threads write the same memory.
    """
    for q in prange(off.shape[0]):
        row, shift = out[q], off[q]
        for t in range(starts.shape[0]):
            row[t] = xp[starts[t] + shift]


@njit(parallel=True, cache=True)
def _col2im_rows(rows, base, off, pad_shape, padding, dx):
    """The adjoint of im2col: add each entry of ``rows`` (N, L, Q) back onto the pixel it was copied
    from, through the index tables of ``_offsets``, then drop the padding.

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
    (Here, with few features, a patch row's runs are short — 4 numbers for a 4x4 kernel on one
    channel — and adding them as runs from a channels-last image, as ``_add_patch`` does, was 5x
    slower: 0.70 against 0.15 ms for the DCGAN's (64, 1, 28, 28).)
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


# ---------------------------------------------------------------------------- fused kernels
# For many features the patch matrix of a whole batch is large — 25 MB for the VQ-VAE's 4x4
# convolution on (128, 64, 14, 14), and as much again for dP — so writing it and reading it back
# went through main memory. These kernels pack one image's P, or one block of it, just before the
# tiles read it, into a buffer that stays in L1/L2.

@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_forward_fused(xh, w_mat, kw, sh, sw, wo, out):
    """out[n] (O, L) = w_mat (O, Q) @ P[n]ᵀ for every image n; ``out`` must be zero on entry.

        for n in parallel:
            buf = P[n]                               (L, Q)     _pack_patches
            out[n] += w_mat @ bufᵀ                   4x4 dot tiles, dot_block

    Optimisations:
    - im2col inside the task: one image's patches (113 KB for the VQ-VAE's 3x3 layer on 64
      channels) go to a buffer that stays in L2 and is read back at once by the dot tiles;
    - the dot tiles read both operands as they lie (rows of w_mat and of P[n]);
    - one task per image: disjoint outputs, the same additions in the same order on any number
      of threads.
    """
    n_img, o, positions = out.shape
    features = w_mat.shape[1]
    for n in prange(n_img):
        buf = np.empty((positions, features), dtype=out.dtype)
        _pack_patches(xh[n], kw, sh, sw, wo, 0, positions, 0, features, buf)
        dot_block(w_mat, buf, out[n], 0, o, 0, positions)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_grad_input_fused(g_rows, panels, kh, kw, sh, sw, wo, ph, pw, dx):
    """dx[n] = col2im(g[n]ᵀ @ w_mat) for every image n, four patch rows at a time.

    ``g_rows`` (N, L, O) holds g[n]ᵀ; ``panels`` (K blocks, column blocks, AXPY_K_BLOCK, width + pad)
    holds w_mat (O, Q), packed once for the axpy strips (``_panels``).

        for n in parallel:
            acc = 0                                          padded channels-last image, flat
            for each column block [q0, q1) of Q, each strip of 4 positions p:
                strip = g[n]ᵀ[p: p+4] @ w_mat[:, q0: q1]     axpy_strip_4x4, K block by K block
                add the strip's rows onto patches p .. p+3   _add_patch
            dx[n] = acc's interior, (C, H, W)                _from_nhwc

    Optimisations:
    - col2im inside the task: dP[n] never exists as a whole, only 4 rows of it, in L1;
    - w_mat is packed once per call and shared by all tasks (it stays in L2);
    - one task per image: the overlapping additions of one image need no locks, and every
      pixel adds its terms in the same order on any number of threads.
    """
    n_img, positions, o = g_rows.shape
    channels, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    hp, wp = h + 2 * ph, w + 2 * pw
    k_blocks, col_blocks, k_block, padded = panels.shape
    features = kh * kw * channels
    width_max = padded - PAD_BYTES // dx.itemsize
    for n in prange(n_img):
        acc = np.zeros(hp * wp * channels, dtype=dx.dtype)
        a = g_rows[n]
        strip = np.empty((4, padded), dtype=dx.dtype)
        for cb in range(col_blocks):
            q0 = cb * width_max
            width = min(width_max, features - q0)
            for p in range(0, positions, 4):
                rows = min(4, positions - p)
                strip[:, :width] = 0.0
                for kb in range(k_blocks):
                    k0 = kb * k_block
                    kc, panel = min(k_block, o - k0), panels[kb, cb]
                    if rows == 4:
                        axpy_strip_4x4(a, p, k0, kc, width, panel, strip)
                    else:
                        for r in range(rows):
                            axpy_row(a, p + r, k0, kc, width, panel, strip[r, :width])
                for r in range(rows):
                    _add_patch(acc, strip[r, :width], kw, sh, sw, wo, p + r, wp, channels, q0)
        _from_nhwc(acc, ph, pw, wp, dx[n])


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _conv_grad_weight_fused(xh, g, kw, sh, sw, wo, width_max, dw):
    """dw (O, Q) = Σ_n g[n] (O, L) @ P[n] (L, Q), one block of dw's columns per task.

        for each column block [q0, q1) in parallel:
            acc = 0                                          (O, q1 - q0), as strips of 4 rows
            for n in range(N):                               in order, on any number of threads
                for each block [p0, p1) of positions:
                    panel = P[n][p0: p1, q0: q1]             _pack_patches
                    acc[o: o+4] += g[n][o: o+4, p0: p1] @ panel     axpy_strip_4x4
            dw[:, q0: q1] = acc

    Optimisations:
    - im2col inside the task, one panel at a time, into a buffer in L2; the transposed patch
      matrix (Q, N·L) this product read before was 100 MB for the VQ-VAE's 4x4 layer;
    - each task packs only its own columns of P, so no number is copied twice;
    - the accumulator is a stack of (4, width) strips, each a whole array the axpy strip
      updates in place (no copies in and out per image).
    """
    n_img, o, positions = g.shape
    features = dw.shape[1]
    pad = PAD_BYTES // dw.itemsize
    col_blocks = (features + width_max - 1) // width_max
    o_end = o // 4 * 4
    for cb in prange(col_blocks):
        q0 = cb * width_max
        width = min(width_max, features - q0)
        acc = np.zeros(((o + 3) // 4, 4, width + pad), dtype=dw.dtype)
        panel = np.empty((AXPY_K_BLOCK, width + pad), dtype=dw.dtype)
        for n in range(n_img):
            a = g[n]
            for p0 in range(0, positions, AXPY_K_BLOCK):
                kc = min(AXPY_K_BLOCK, positions - p0)
                _pack_patches(xh[n], kw, sh, sw, wo, p0, p0 + kc, q0, q0 + width, panel)
                for i in range(0, o_end, 4):
                    axpy_strip_4x4(a, i, p0, kc, width, panel, acc[i // 4])
                for i in range(o_end, o):
                    axpy_row(a, i, p0, kc, width, panel, acc[i // 4, i % 4, :width])
        for i in range(o):
            row, src = dw[i, q0: q0 + width], acc[i // 4, i % 4]
            for t in range(width):
                row[t] = src[t]


# ---------------------------------------------------------------------------- lowering
def weight_rows(w, dtype):
    """w (O, C, kh, kw) as a (1, O, kh·kw·C) matrix whose columns follow the patch features (i, j, c)."""
    return np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)), dtype=dtype).reshape(1, w.shape[0], -1)


def _padded(x, padding, dtype):
    """x (N, C, H, W) with zero borders, (N, C, Hp, Wp), C-contiguous."""
    (n, c, h, w), (ph, pw) = x.shape, padding
    if ph == pw == 0:
        return np.ascontiguousarray(x, dtype=dtype)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dtype)
    xp[:, :, ph: ph + h, pw: pw + w] = x
    return xp


_scratch = threading.local()    # per thread: {(shape, dtype): a padded channels-last image buffer}
SCRATCH_SHAPES = 16             # buffers kept per thread, at most


def _nhwc(x, padding, dtype):
    """x (N, C, H, W) as padded channels-last images (N, Hp, Wp, C), C-contiguous, in a scratch buffer
    that the next call for the same shape reuses: valid until then (the kernels read it at once).

    NOTE: a fresh zeroed array for every call cost more than the copy itself — the operating
    system hands out new pages one fault at a time (8 MB for the VQ-VAE's (128, 64, 14, 14) input).
    The buffer's border is zeroed once and never written; only its interior is overwritten. Measured
    (one thread, CPU time): 15.4 ms of a 196 ms VQ-VAE step built these images with fresh arrays and
    a Numba loop, 10.8 ms with reused buffers and NumPy's strided copy (itself 25-40% faster than the loop).
    """
    (n, c, h, w), (ph, pw) = x.shape, padding
    shape, buffers = (n, h + 2 * ph, w + 2 * pw, c), _scratch.__dict__.setdefault("nhwc", {})
    xh = buffers.get((shape, dtype))
    if xh is None:
        if len(buffers) >= SCRATCH_SHAPES:
            buffers.clear()
        xh = buffers[(shape, dtype)] = np.zeros(shape, dtype=dtype)
    xh[:, ph: ph + h, pw: pw + w, :] = np.transpose(x, (0, 2, 3, 1))
    return xh


def channels_last(x, w_shape, padding):
    """x as its own padded channels-last copy (N, Hp, Wp, C) if the fused kernels will read x for a
    weight of ``w_shape``, else None. A layer keeps it from its forward pass (``forward``) to its
    weight gradient (``grad_weight``): ``_nhwc``'s scratch buffer would by then hold another input
    (a GAN's discriminator sees real and fake images before either backward pass).

    Measured (one thread, CPU time, AMD EPYC Zen 4, load 3): building these images took 3.7 ms of
    an 81 ms DCGAN step and 12.4 ms of a 189 ms VQ-VAE step, about half of it for inputs a forward
    pass had already turned around."""
    if not fused_pays(w_shape[1] * w_shape[2] * w_shape[3]):
        return None
    (n, c, h, w), (ph, pw) = x.shape, padding
    xh = np.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    xh[:, :ph], xh[:, ph + h:], xh[:, ph: ph + h, :pw], xh[:, ph: ph + h, pw + w:] = 0, 0, 0, 0
    xh[:, ph: ph + h, pw: pw + w, :] = np.transpose(x, (0, 2, 3, 1))
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


def _im2col_t(x, kh, kw, stride, padding, out_hw, dtype):
    """Pᵀ (Q, N·L) for x (N, C, H, W): L = Ho·Wo positions, Q = kh·kw·C features (i, j, c)."""
    n, c, h, w = x.shape
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    xp = _padded(x, padding, dtype).reshape(-1)
    starts = (np.arange(n)[:, None] * (xp.size // n) + base[None, :]).reshape(-1)
    out = np.empty((off.size, starts.size), dtype=dtype)
    with sized_for(out.size, ("im2col", x.shape, kh, kw, stride, padding)):
        _im2col_columns(xp, starts, off, out)
    return out


def _col2im(rows, x_shape, kh, kw, stride, padding, out_hw, dtype):
    """The adjoint of im2col: dx (N, C, H, W) from patch gradients ``rows`` (N, L, Q)."""
    n, c, h, w = x_shape
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    dx = np.empty(x_shape, dtype=dtype)
    with sized_for(rows.size, ("col2im", x_shape, kh, kw, stride, padding)):
        _col2im_rows(np.ascontiguousarray(rows, dtype=dtype), base, off, (c, h + 2 * padding[0], w + 2 * padding[1]),
                     padding, dx)
    return dx


def fused_pays(features, fused=None):
    """Fuse im2col into the products? For Q = kh·kw·C of at least FUSED_MIN_FEATURES.

    Measured (one thread, CPU time, Zen 4, load 3-4), input gradient and weight gradient, ms,
    separate passes / fused: Q = 576 (3x3 on 64 channels, (128, 64, 7, 7)) 9.3 / 8.0 and
    10.5 / 8.5; Q = 144 (3x3 on 16 channels) 2.6 / 2.5 and 2.5 / 2.5; Q = 128 (1x1 on 128) 6.0 / 6.3
    and 4.2 / 4.9; Q = 16 (4x4 on one channel) 2.0 / 5.3 and 1.4 / 3.8. The weight gradient's column
    blocks are AXPY_COL_BLOCK (512) wide at most: 64, 128, 256 and 512 took 19.4, 14.8, 12.3 and 10.9 ms
    for the VQ-VAE's 4x4 layer on (128, 64, 14, 14) (longer rows for the strips). With few features the
    fused kernels' rows (Q numbers) are too short for the axpy strips' vector loop, while the
    separate products run along N·L. ``fused`` True/False overrides the rule (the tests use it).
    """
    return features >= FUSED_MIN_FEATURES if fused is None else fused


def _forward_numba(x, w, stride, padding, out_hw, dtype, fused=None, x_nhwc=None):
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    w_mat = weight_rows(w, dtype)
    if fused_pays(features, fused):
        # out[n] (O, L) = w_mat (O, Q) @ P[n]ᵀ, P[n] packed image by image inside the kernel
        out = np.zeros((n, o, positions), dtype=dtype)
        with sized_for(out.size * features,
                       ("conv_forward_fused", x.shape, w.shape, stride, padding)):
            xh = x_nhwc if x_nhwc is not None else _nhwc(x, padding, dtype)
            _conv_forward_fused(xh, w_mat[0], kw, stride[0], stride[1], out_hw[1], out)
    else:   # few features: one long product (O, Q) @ Pᵀ (Q, N·L), on the axpy kernel's long rows
        out = matmul_3d(w_mat, _im2col_t(x, kh, kw, stride, padding, out_hw, dtype)[None], 1)
        out = np.ascontiguousarray(np.swapaxes(out.reshape(o, n, positions), 0, 1))   # (O, N, L) -> (N, O, L)
    return out.reshape((n, o) + tuple(out_hw))


def _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, dtype, fused=None, x_nhwc=None):
    o, c, kh, kw = w_shape
    n, positions, features = x.shape[0], out_hw[0] * out_hw[1], c * kh * kw
    if fused_pays(features, fused):
        # dw (O, Q) = Σ_n g[n] (O, L) @ P[n] (L, Q), P packed block by block inside the kernel; an
        # even number of column blocks, so that two threads share them evenly
        g = np.ascontiguousarray(grad_out, dtype=dtype).reshape(n, o, positions)
        blocks = 2 * -(-features // (2 * GRAD_WEIGHT_BLOCK))
        dw = np.empty((o, features), dtype=dtype)
        with sized_for(grad_out.size * features,
                       ("conv_grad_weight_fused", x.shape, w_shape, stride, padding)):
            xh = x_nhwc if x_nhwc is not None else _nhwc(x, padding, dtype)
            _conv_grad_weight_fused(xh, g, kw, stride[0], stride[1], out_hw[1],
                                    -(-features // blocks), dw)
    else:   # few features: one product with all N·L positions as its inner axis, gᵀ (O, N·L) @ P
        g_t = np.ascontiguousarray(np.swapaxes(grad_out.reshape(n, o, positions), 0, 1), dtype=dtype)
        cols = _im2col_t(x, kh, kw, stride, padding, out_hw, dtype)
        dw = matmul_3d(g_t.reshape(1, o, n * positions), cols.T[None], 1)
    return np.ascontiguousarray(np.transpose(dw.reshape(o, kh, kw, c), (0, 3, 1, 2)))


def _panels(w_mat, dtype):
    """w_mat (O, Q) cut into (K blocks, column blocks, AXPY_K_BLOCK, width + pad) panels for the axpy
    strips, packed once per call (rows one cache line longer, as in ``_matmul_axpy``)."""
    o, q = w_mat.shape
    width = min(AXPY_COL_BLOCK, q)
    panels = np.zeros((-(-o // AXPY_K_BLOCK), -(-q // width), AXPY_K_BLOCK, width + PAD_BYTES // w_mat.itemsize),
                      dtype=dtype)
    for k in range(panels.shape[0]):
        for j in range(panels.shape[1]):
            block = w_mat[k * AXPY_K_BLOCK: (k + 1) * AXPY_K_BLOCK, j * width: (j + 1) * width]
            panels[k, j, :block.shape[0], :block.shape[1]] = block
    return panels


def _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, dtype, fused=None):
    n, o = grad_out.shape[:2]
    kh, kw = w.shape[2:]
    (ph, pw), (h, wd) = padding, x_shape[2:]
    if stride == (1, 1) and ph < kh and pw < kw:
        # with stride 1 the input gradient is itself a convolution: of g with the kernel turned by
        # 180° and its two channel axes swapped, padded by k - 1 - p, which the forward kernels do
        # without any col2im: dx[n, c, r, s] = Σ_{o, i, j} g_pad[n, o, r + i, s + j] · w[o, c, kh-1-i, kw-1-j].
        # Measured (one thread, CPU time, load 5): the VQ-VAE's 3x3 layers on (128, 64, 7, 7),
        # 64 -> 32 and 64 -> 64 channels, 4.7 -> 4.0 and 7.6 -> 6.4 ms; 16 -> 64: 2.3 -> 2.0 ms
        flipped = np.ascontiguousarray(np.swapaxes(w[:, :, ::-1, ::-1], 0, 1))
        return _forward_numba(grad_out, flipped, (1, 1), (kh - 1 - ph, kw - 1 - pw), (h, wd), dtype, fused)
    positions = out_hw[0] * out_hw[1]
    w_mat = weight_rows(w, dtype)
    if fused_pays(w[0].size, fused):
        # dP[n] (L, Q) = g[n]ᵀ (L, O) @ w_mat (O, Q), added back into dx four rows at a time
        g_rows = np.ascontiguousarray(np.swapaxes(grad_out.reshape(n, o, positions), 1, 2), dtype=dtype)
        dx = np.empty(x_shape, dtype=dtype)
        with sized_for(grad_out.size * w[0].size,
                       ("conv_grad_input_fused", x_shape, w.shape, stride, padding)):
            _conv_grad_input_fused(g_rows, _panels(w_mat[0], dtype), kh, kw, stride[0], stride[1], out_hw[1],
                                   padding[0], padding[1], dx)
        return dx
    # few features: dP (N, L, Q) = g[n]ᵀ @ w_mat on the matmul kernels (g[n]ᵀ read as a view, no copy),
    # then col2im adds each patch row back into dx
    g_t = np.swapaxes(grad_out.reshape(n, o, positions), 1, 2)
    return _col2im(matmul_3d(g_t, w_mat, n), x_shape, kh, kw, stride, padding, out_hw, dtype)


# ---------------------------------------------------------------------------- entries
# Arguments come checked from conv.py: stride and padding are pairs, the dtypes already agree.

# ``fused`` (True / False) overrides the choice between the fused kernels and separate passes
# (``fused_pays``), so that the tests reach both paths with small shapes.

def forward(x, w, stride, padding, fused=None, x_nhwc=None):
    """conv2d of x (N, C, H, W) with w (O, C, kH, kW) -> (N, O, Ho, Wo); ``x_nhwc``: x already
    turned around by ``channels_last`` (or None)."""
    out_hw = _out_hw(x.shape, w.shape, stride, padding)
    if x.size == 0 or w.size == 0:
        return np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=x.dtype)
    return _forward_numba(x, w, stride, padding, out_hw, x.dtype, fused, x_nhwc)


def grad_input(grad_out, w, x_shape, stride, padding, fused=None):
    """conv2d's input gradient, of shape ``x_shape``."""
    if grad_out.size == 0 or w.size == 0:
        return np.zeros(x_shape, dtype=w.dtype)
    out_hw = _out_hw(x_shape, w.shape, stride, padding)
    return _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, w.dtype, fused)


def grad_weight(x, grad_out, w_shape, stride, padding, fused=None, x_nhwc=None):
    """conv2d's weight gradient, of shape ``w_shape``; ``x_nhwc`` as in ``forward``."""
    if x.size == 0 or grad_out.size == 0:
        return np.zeros(w_shape, dtype=x.dtype)
    out_hw = _out_hw(x.shape, w_shape, stride, padding)
    return _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, x.dtype, fused, x_nhwc)
