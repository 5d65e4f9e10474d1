"""The Numba convolution: conv2d lowered onto register tiles or onto the matmul kernels.

The ``"numba"`` entries of :mod:`scratchgen.kernels.conv` (which holds the definitions, the
argument checks and the NumPy references): ``forward``, ``grad_input``, ``grad_weight``. Each is a
matrix product with the "patch matrix" P (N·Ho·Wo, kH·kW·C), one row per receptive field — *im2col*:

    forward      out[n] = w_mat @ P[n]ᵀ                 (w_mat: w as (O, kH·kW·C), features (i, j, c))
    grad_weight  dw     = Σ_n g[n] @ P[n]
    grad_input   dP[n]  = g[n]ᵀ @ w_mat, then *col2im* adds each patch row back into dx

Three ways to run each product, chosen per product by its shape (``tiles_pay``, ``pointwise_tiles_pay``):

* on register tiles that read P straight from the padded image, P never copied
  (:mod:`scratchgen.kernels.conv_tiles`): channels-last in the forward pass, channels-first in the
  weight gradient; the input gradient there runs as stride-1 products of g's patches, one per phase
  of the output pixel, with no col2im;
* for a 1x1 kernel with stride 1 and no padding, on the same tiles reading x (or g) where it lies, NCHW:
  its P is x's images, (C, H·W) each (``in_place``, ``pointwise_tiles_pay``);
* for few features or few channels, im2col and col2im as passes of their own (``_im2col_images``,
  ``_col2im_rows``) around batched calls of ``matmul_3d``, one product per image with the weights
  broadcast (``_patches`` keeps each image's P[n]ᵀ, (Q, L)): thin products whose panels of 32 channels
  would be mostly empty on the tiles. Their operands and results are NCHW, as the layer's x, g and
  output are, so nothing is turned around. A 1x1 kernel without padding needs neither pass: its
  P[n]ᵀ is x[n] itself, and its patches do not overlap, so its input gradient is dx[n] = w_matᵀ @ g[n]
  (``_pointwise_grad_input``).

The weight gradient there sums the images' products inside one kernel (``summed_products``). Measured
(2026-12-07, AMD EPYC Zen 3, AVX2, 2 vCPUs; whole layers, forward + both gradients, one process timing the
kernels before this layout (products over all N·L positions at once, on copies with the batch and
channel axes swapped: x or P, g, the output, dx) and these in turn, 21 rounds, medians, two processes):
on two threads the DCGAN's conv 1->32 0.89-0.96 of its time, transposed 64->1 0.89-0.94, the VQ-VAE's
conv 1->64 0.84-0.88, transposed 64->1 0.84-0.98, 1x1 32->64 0.71-0.92, 1x1 64->16 0.87-0.93 (a 3x3 16->64
layer, unchanged, 0.96-1.04); on one thread 0.82-1.04 (the unchanged layer 1.01-1.03). The turns were
parallel passes of their own, each waking the threads for little work.
"""
import numpy as np
from numba import njit, prange

from .matmul_numba import TILE_MIN_K, TILE_ROW_BYTES, matmul_3d, summed_products
from . import conv_tiles
from .threads import SCATTERED_COPY_WORK, sized_for


def _out_hw(x_shape, w_shape, stride, padding):
    """(Ho, Wo) of a conv2d whose arguments the caller has checked (the formula of ``conv.py``)."""
    return ((x_shape[2] + 2 * padding[0] - w_shape[2]) // stride[0] + 1,
            (x_shape[3] + 2 * padding[1] - w_shape[3]) // stride[1] + 1)


# ---------------------------------------------------------------------------- Numba kernels
@njit(parallel=True, cache=True)
def _im2col_images(xp, base, off, out):
    """Each image's patch matrix transposed, ``out`` (N, Q, L): P[n, p, q] goes to out[n, q, p],
    gathered from the padded NCHW images flattened one per row, ``xp`` (N, C·Hp·Wp), through two index
    tables (``_offsets``): patch p starts at base[p], its feature q = (i, j, c) lies off[q] further on.

        for (n, q) in parallel:
            for p in range(L):
                out[n, q, p] = xp[n, base[p] + off[q]]

    Optimisations:
    - each task writes one row of ``out`` (L numbers) in memory order, one indexed load per number
      (``base`` stays in L1), no bounds tests: the padding supplies the zeros. (Copying runs of
      Wo numbers per image row instead was slower, for the short rows of 7x7 and 14x14 images:
      0.36 against 0.22 ms for the VQ-VAE's 1x1 layer on (128, 64, 7, 7), in an earlier layout.)
    - tasks own disjoint rows, so no two threads write the same memory.
    """
    images, features, positions = out.shape
    for t in prange(images * features):
        n, q = t // features, t % features
        row, src, shift = out[n, q], xp[n], off[q]
        for p in range(positions):
            row[p] = src[base[p] + shift]


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
    channel — and adding them as runs from a channels-last image, as an earlier fused kernel did, was 5x
    slower: 0.70 against 0.15 ms for the DCGAN's (64, 1, 28, 28).)
    """
    n_img, positions, features = rows.shape
    c, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    (_, hp, wp), (ph, pw) = pad_shape, padding
    for n in prange(n_img):
        flat = np.zeros(c * hp * wp, dtype=dx.dtype)
        for p in range(positions):
            row, start = rows[n, p], base[p]
            for q in range(features):
                flat[start + off[q]] += row[q]
        # NOTE: loops, not ``dx[n] = acc[:, ph: ph + h, pw: pw + w]``: Numba compiles its general
        # slice assignment into the kernel, 3 s of compiling per dtype against 1.3 s for the loops
        for ch in range(c):
            for i in range(h):
                start = (ch * hp + ph + i) * wp + pw
                src, dst = flat[start: start + w], dx[n, ch, i]
                for j in range(w):
                    dst[j] = src[j]


# ---------------------------------------------------------------------------- lowering
def weight_rows(w, dtype):
    """w (O, C, kh, kw) as a (1, O, kh·kw·C) matrix whose columns follow the patch features (i, j, c)."""
    return np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)), dtype=dtype).reshape(1, w.shape[0], -1)


def _nhwc(x, padding, dtype):
    """x (N, C, H, W) as padded channels-last images (N, Hp, Wp, C), C-contiguous, in a scratch buffer
    that the next call for the same shape and padding reuses: valid until then (the kernels read it
    at once). See ``conv_tiles.padded_nhwc``.

    Measured (one thread, CPU time): 15.4 ms of a 196 ms VQ-VAE step built these images with fresh
    arrays and a Numba loop, 10.8 ms with reused buffers and NumPy's strided copy (itself 25-40% faster
    than that loop). The copy is a Numba loop again (``conv_tiles._into_nhwc``), an image at a time and
    on the threads: about as fast as NumPy's on one thread, up to twice as fast on two. NOTE: the
    buffer is kept per shape *and padding*: two inputs of different sizes can have the same padded
    shape (4 rows padded by 1, 6 rows by 0), and the second must not find the first's numbers in its
    border."""
    (_, _, h, w), (ph, pw) = x.shape, padding
    return conv_tiles.padded_nhwc(x, ph, pw, h + 2 * ph, w + 2 * pw, dtype)


def kept_copy(x, w_shape, stride, padding):
    """The copy of x that a layer's forward pass and weight gradient both read, made once for the
    two, or None: each image's patch matrix transposed, (N, Q, L) (``_patches``), if the separate
    passes run both products (``tiles_pay``), which both multiply it. A layer keeps it from its forward
    pass (``forward``) to its weight gradient (``grad_weight``). The register tiles make their own copies of x when they run,
    from the layer's x: channels-last in the forward pass (``_nhwc``), channels-first and padded in the
    weight gradient (``conv_tiles.padded_nchw``), each in a scratch buffer read at once.

    Measured (one thread, CPU time, AMD EPYC Zen 4, load 3): building the channels-last images took
    3.7 ms of an 81 ms DCGAN step and 12.4 ms of a 189 ms VQ-VAE step, about half of it for inputs a
    forward pass had already turned around (the weight gradient read them channels-last then, and
    a copy was kept for it; it reads them channels-first now: ``conv_tiles.grad_weight_tables``).
    Keeping the patches (2026-12-07, load 0.8-1.0, medians of 15 calls): im2col took 0.13 of the 1.9 ms of the
    VQ-VAE's 1x1 32 -> 64 layer, 0.22 of the 1.5 ms of its 1x1 64 -> 16, 0.33 of the 5.9 ms of its 4x4
    1 -> 64, once per layer now instead of twice. The price: the patches (kh·kw times the input's size)
    stay alive until the backward pass. A 1x1 kernel with stride 1 and no padding (``in_place``) keeps
    nothing: its patches are x itself, on the tiles and on the matmul kernels."""
    if x.size == 0 or 0 in w_shape or in_place(w_shape, stride, padding):     # in place: P is x itself
        return None
    if tiles_pay("forward", w_shape, x.dtype) or tiles_pay("grad_weight", w_shape, x.dtype):
        return None
    kh, kw = w_shape[2:]
    return _patches(x, kh, kw, stride, padding, _out_hw(x.shape, w_shape, stride, padding), x.dtype)


def _image(x_copy, x, padding, dtype):
    """x's padded channels-last images: ``x_copy`` if it holds them (a caller's copy), else made now."""
    return x_copy if x_copy is not None and x_copy.ndim == 4 else _nhwc(x, padding, dtype)


def _patches_of(x_copy, x, kh, kw, stride, padding, out_hw, dtype):
    """x's patch matrices, one per image, transposed, (N, Q, L): ``x_copy`` if it holds them (``kept_copy``'s
    copy is 3-D; the channels-last images a caller may hold instead are 4-D), else made now."""
    if x_copy is not None and x_copy.ndim == 3:
        return x_copy
    return _patches(x, kh, kw, stride, padding, out_hw, dtype)


_offset_tables = {}     # {shapes: (base, off)}: a layer meets the same shapes every step


def _offsets(c, h, w, kh, kw, stride, padding, out_hw):
    """(base, off) for padded NCHW images (C, Hp, Wp) flattened: patch p = (y, x) starts at
    base[p] = y·sh·Wp + x·sw and its feature q = (i, j, c) lies off[q] = (c·Hp + i)·Wp + j further on,
    so P[n, p, q] = x_pad[n].flat[base[p] + off[q]]. Made once per shape and kept (the callers only
    read them): the NumPy expressions took 15.7 µs a call for the DCGAN's one-channel 28x28 layer
    (11.0 for a 64-channel 14x14 one), against 0.5 µs to find them again; a layer with im2col asks
    twice per step, and its whole forward and backward pass takes 0.8-1.1 ms."""
    def make():
        hp, wp = h + 2 * padding[0], w + 2 * padding[1]
        y, x = np.arange(out_hw[0]) * stride[0], np.arange(out_hw[1]) * stride[1]
        base = (y[:, None] * wp + x[None, :]).reshape(-1)
        i, j, cc = np.arange(kh)[:, None, None], np.arange(kw)[None, :, None], np.arange(c)[None, None, :]
        off = ((cc * hp + i) * wp + j).reshape(-1)
        return base.astype(np.intp), off.astype(np.intp)
    key = (c, h, w, kh, kw, tuple(stride), tuple(padding), tuple(out_hw))
    return conv_tiles._cached(_offset_tables, key, make, conv_tiles.TABLES_KEPT)


def _patches(x, kh, kw, stride, padding, out_hw, dtype):
    """P (N, Q, L) for x (N, C, H, W): image n's patch matrix transposed, a row per feature q = (i, j, c)
    (Q = kh·kw·C) holding its values at the L = Ho·Wo positions, C-contiguous: im2col, one image at a time.

    A 1x1 kernel without padding has one pixel per patch: P[n] is then x[n] at the pixels the stride
    visits, (C, Ho·Wo), as it lies (stride 1: x itself, no copy) or one strided copy."""
    n, c, h, w = x.shape
    if (kh, kw) == (1, 1) and tuple(padding) == (0, 0):
        return np.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]], dtype=dtype).reshape(n, c, -1)
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    xp = conv_tiles.padded_nchw(x, padding, dtype).reshape(n, -1)      # a scratch buffer, read at once
    out = np.empty((n, off.size, base.size), dtype=dtype)
    with sized_for(SCATTERED_COPY_WORK * out.size, ("im2col", x.shape, kh, kw, stride, padding)):
        _im2col_images(xp, base, off, out)
    return out


def _col2im(rows, x_shape, kh, kw, stride, padding, out_hw, dtype):
    """The adjoint of im2col: dx (N, C, H, W) from patch gradients ``rows`` (N, L, Q)."""
    n, c, h, w = x_shape
    base, off = _offsets(c, h, w, kh, kw, stride, padding, out_hw)
    dx = np.empty(x_shape, dtype=dtype)
    with sized_for(SCATTERED_COPY_WORK * rows.size, ("col2im", x_shape, kh, kw, stride, padding)):
        _col2im_rows(np.ascontiguousarray(rows, dtype=dtype), base, off, (c, h + 2 * padding[0], w + 2 * padding[1]),
                     padding, dx)
    return dx


def _panel_bytes(columns, dtype):
    """Bytes per row of the panels (and of the tile) for a product ``columns`` wide: half a tile row
    (the narrow tile, ``conv_tiles.NARROW_ROWS`` rows) if that holds all columns, else a whole one."""
    if columns * np.dtype(dtype).itemsize <= conv_tiles.NARROW_ROW_BYTES:
        return conv_tiles.NARROW_ROW_BYTES
    return TILE_ROW_BYTES


def _pointwise_grad_input(grad_out, w, x_shape, stride, out_hw, dtype):
    """The input gradient of a 1x1 convolution without padding: dx at the pixels the stride visits is
    dx[n] = w_matᵀ (C, O) @ g[n] (O, L), zero elsewhere: one batched product over the images, g read
    as it lies, the result in NCHW order (for stride 1, dx itself)."""
    (n, c), (sh, sw) = x_shape[:2], stride
    g = np.asarray(grad_out, dtype=dtype).reshape(n, grad_out.shape[1], -1)
    dx_n = matmul_3d(np.swapaxes(weight_rows(w, dtype), 1, 2), g, n)           # (N, C, L)
    if (sh, sw) == (1, 1):
        return dx_n.reshape(x_shape)
    dx = np.zeros(x_shape, dtype=dtype)
    dx[:, :, ::sh, ::sw] = dx_n.reshape((n, c) + tuple(out_hw))
    return dx


def tiles_pay(product, w_shape, dtype, tiles=None):
    """Run ``product`` ("forward", "grad_input" or "grad_weight") of a conv2d with weight ``w_shape``
    (O, C, kh, kw) on the register tiles of ``conv_tiles``? ``tiles`` True/False overrides the rule
    (the tests use it to reach both paths with small shapes).

    A tile is NR numbers of its product's columns wide (32 float32, 16 float64) and pays a fixed
    price per output element, so the tiles need full panels of columns and, in the forward pass,
    where k is the Q = kh·kw·C features, a long k (TILE_MIN_K, as the matmul's tiles). The input
    gradient also has a narrow tile, NR/2 wide (``_panel_bytes``), so half a panel is enough there:

        forward      columns O, k Q                 O >= NR and Q >= TILE_MIN_K
        grad_input   columns C                      C >= NR/2
        grad_weight  columns O, rows Q, k N·L       O >= NR and Q > NR

    Measured (one thread, CPU time, AMD EPYC Zen 4, load 2.6, one process alternating the two ways
    in 9 rounds, medians, ms, tiles / separate passes, forward, input gradient, weight gradient):
    1x1 32 -> 64 on (128, 32, 7, 7) 0.67/0.66, 0.74/1.59, 0.82/0.75; 1x1 64 -> 16 0.69/0.61,
    0.60/1.15, 0.67/0.59; 3x3 16 -> 64 1.42/2.31, 2.49/2.57, 1.49/2.34. Earlier (load 2.5, not
    interleaved) 4x4 1 -> 64 on (128, 1, 28, 28): 2.10/1.45, 20.6/1.25, 2.72/1.86. The separate
    passes run long, thin products on the matmul kernels. The input gradient of 3x3 16 -> 64 then
    moved to the narrow tile (2026-12-07, load 1.3-1.5, 21 alternating rounds, medians): 2.70 -> 1.81
    and 2.78 -> 2.07 ms.
    """
    if tiles is not None:
        return tiles
    o, c, kh, kw = w_shape
    nr = TILE_ROW_BYTES // np.dtype(dtype).itemsize
    if product == "forward":
        return o >= nr and c * kh * kw >= TILE_MIN_K
    if product == "grad_input":
        return c >= nr // 2
    return o >= nr and c * kh * kw > nr


# a 1x1 product reads its operand in place on the tiles from this inner dimension on (see pointwise_tiles_pay)
POINTWISE_MIN_K = TILE_MIN_K // 2


def in_place(w_shape, stride, padding):
    """A 1x1 kernel with stride 1 and no padding: the patch matrix P is x itself, each image's (C, H·W)
    read channels-first (and the input gradient's patches are g's), so the register tiles can read the
    NCHW arrays where they lie (``conv_tiles.pointwise_tables``)."""
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def pointwise_tiles_pay(product, w_shape, dtype, tiles=None):
    """For an ``in_place`` layer: run ``product`` on the register tiles reading x or g in place (NCHW),
    rather than on the matmul kernels around turned copies? ``tiles`` True/False overrides the rule.

        forward      k = C, columns O          C >= POINTWISE_MIN_K and O >= NR/2
        grad_input   k = O, columns C          O >= POINTWISE_MIN_K and C >= NR/2
        grad_weight  rows and columns: the larger and the smaller of C and O,
                     larger >= NR and smaller >= NR/2 (``_pointwise_grad_weight``)

    Panels of NR/2 columns run on the narrow tile. A tile's fixed cost (zeroing its sums, storing them)
    is paid once per output element, so the forward pass and the input gradient want a long enough k:
    half the matmul's TILE_MIN_K, as nothing is packed here. Measured (2026-12-07, one thread, CPU time,
    AMD EPYC Zen 3, AVX2, medians of 31, ms, matmul kernels and their copies -> tiles in place), on
    (128, C, 7, 7): forward 32 -> 64 (k 32) 0.64 -> 0.66, 64 -> 16 (k 64, narrow) 0.41 -> 0.28, 16 -> 64
    (k 16) 0.42 -> 0.53; input gradient 32 -> 64 (k 64) 0.64 -> 0.51, 64 -> 16 (k 16) 0.41 -> 0.53,
    16 -> 64 (k 64, narrow) 0.39 -> 0.28; weight gradient 32 -> 64 0.70 -> 0.54, 64 -> 16 0.48 -> 0.41,
    16 -> 64 0.34 -> 0.38 with g turned, 0.36 -> 0.30 with x (``_pointwise_grad_weight``). Whole layers
    (forward + both gradients, one process alternating the old dispatch and this, 41 rounds, medians,
    two runs): 32 -> 64 2.06 -> 2.02 and 1.93 -> 1.87 ms (only its gradients read in place), 64 -> 16
    1.57 -> 1.42 and 1.46 -> 1.37 ms (all three products, and no copy of x kept: ``kept_copy``); later
    steps are in ``_pointwise_grad_weight`` and ``conv_tiles._gathered_k_chunks``. Not measured on AVX-512.
    """
    if tiles is not None:
        return tiles
    o, c = w_shape[:2]
    nr = TILE_ROW_BYTES // np.dtype(dtype).itemsize
    if product == "forward":
        return c >= POINTWISE_MIN_K and o >= nr // 2
    if product == "grad_input":
        return o >= POINTWISE_MIN_K and c >= nr // 2
    return max(c, o) >= nr and min(c, o) >= nr // 2


def _forward_numba(x, w, stride, padding, out_hw, dtype, tiles=None, x_copy=None):
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    positions, features = out_hw[0] * out_hw[1], w[0].size
    if in_place(w.shape, stride, padding) and pointwise_tiles_pay("forward", w.shape, dtype, tiles):
        # out[n, o, l] = Σ_c x[n, c, l] · w[o, c] on register tiles that read x where it lies
        row_src, counts, k_src, row_dst = conv_tiles.pointwise_tables(n, x.shape[1], positions, o)
        panels = conv_tiles.weight_panels(w, dtype, _panel_bytes(o, dtype))
        out = np.empty(n * o * positions, dtype=dtype)       # every element written once
        with sized_for(out.size * features, ("conv_forward_pointwise", x.shape, w.shape)) as threads:
            conv_tiles._gathered_rows(np.ascontiguousarray(x, dtype=dtype).reshape(-1), row_src, counts, k_src, panels,
                                      out, row_dst, positions, o, threads)
    elif tiles_pay("forward", w.shape, dtype, tiles):
        # out[n, o, l] = Σ_q P[(n, l), q] · w_mat[o, q] on register tiles that read P from the image
        row_src, counts, k_src, row_dst = conv_tiles.forward_tables(x.shape, w.shape, stride, padding, out_hw)
        out = np.empty(n * o * positions, dtype=dtype)       # every element written once
        with sized_for(out.size * features, ("conv_forward_tiles", x.shape, w.shape, stride, padding)) as threads:
            xh = _image(x_copy, x, padding, dtype)
            conv_tiles._gathered_rows(xh.reshape(-1), row_src, counts, k_src, conv_tiles.weight_panels(w, dtype),
                                      out, row_dst, positions, o, threads)
    else:   # few features: out[n] = w_mat (O, Q) @ P[n] (Q, L) for every image, batched, NCHW out
        out = matmul_3d(weight_rows(w, dtype), _patches_of(x_copy, x, kh, kw, stride, padding, out_hw, dtype), n)
    return out.reshape((n, o) + tuple(out_hw))


def _pointwise_grad_weight(x, grad_out, w_shape, dtype):
    """dw[o, c] = Σ_(n, l) x[n, c, l] · g[n, o, l] of an ``in_place`` layer on the register tiles: one of x
    and g is read where it lies, as the tiles' gathered operand A, the other is turned into panels of
    channels (B, ``conv_tiles.channel_panels``): the one with fewer channels, so the copy is the smaller.

    Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, one process alternating, medians of
    41): the VQ-VAE's 1x1 32->64 on (128, 32, 7, 7), g turned (64 channels) -> x turned (32), 0.54 -> 0.47
    ms (the matmul kernels: 0.69); whole layer (one process alternating, 41 rounds, two runs) 1.86 -> 1.74
    and 1.92 -> 1.79 ms. With x turned, a 1x1 16->64 layer runs here too: 0.36 -> 0.30 ms."""
    o, c = w_shape[:2]
    n, positions = x.shape[0], grad_out[0, 0].size
    turn_x = c < o
    a, b, rows_n, cols_n = (grad_out, x, o, c) if turn_x else (x, grad_out, c, o)
    rows, ks, row_dst = conv_tiles.pointwise_grad_weight_tables(n, rows_n, positions, cols_n)
    chunks, chunk = conv_tiles.weight_gradient_chunks(ks.size, c * o * np.dtype(dtype).itemsize)
    partial = np.empty((chunks, c * o), dtype=dtype)
    with sized_for(grad_out.size * c, ("conv_grad_weight_pointwise", x.shape, w_shape)) as threads:
        panels = conv_tiles.channel_panels(np.asarray(b, dtype=dtype).reshape(n, cols_n, positions), dtype,
                                           _panel_bytes(cols_n, dtype))
        conv_tiles._gathered_k_chunks(np.ascontiguousarray(a, dtype=dtype).reshape(-1), rows, ks, panels, chunk,
                                      conv_tiles.GRAD_WEIGHT_K_BLOCK, partial, row_dst, cols_n, threads)
    sums = partial[0] if partial.shape[0] == 1 else partial.sum(axis=0)       # (rows_n, cols_n)
    return (sums.reshape(o, c) if turn_x else np.ascontiguousarray(sums.reshape(c, o).T)).reshape(w_shape)


def _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, dtype, tiles=None, x_copy=None, g_panels=None):
    o, c, kh, kw = w_shape
    n, positions, features = x.shape[0], out_hw[0] * out_hw[1], c * kh * kw
    if in_place(w_shape, stride, padding) and pointwise_tiles_pay("grad_weight", w_shape, dtype, tiles):
        return _pointwise_grad_weight(x, grad_out, w_shape, dtype)
    if tiles_pay("grad_weight", w_shape, dtype, tiles):
        # dwᵀ[q, o] = Σ_(n, l) P[(n, l), q] · g[n, o, l] on register tiles that read P from the padded
        # NCHW images, in chunks of positions whose sums are added in a fixed order
        g = np.asarray(grad_out, dtype=dtype).reshape(n, o, positions)
        rows, ks, row_dst = conv_tiles.grad_weight_tables(x.shape, w_shape, stride, padding, out_hw)
        chunks, chunk = conv_tiles.weight_gradient_chunks(ks.size, features * o * np.dtype(dtype).itemsize)
        partial = np.empty((chunks, features * o), dtype=dtype)
        with sized_for(grad_out.size * features, ("conv_grad_weight_tiles", x.shape, w_shape, stride, padding)) \
                as threads:
            xp = conv_tiles.padded_nchw(x, padding, dtype)          # x's padded images, channels-first
            if g_panels is None:
                g_panels = conv_tiles.channel_panels(g, dtype)
            conv_tiles._gathered_k_chunks(xp.reshape(-1), rows, ks, g_panels, chunk, conv_tiles.GRAD_WEIGHT_K_BLOCK,
                                          partial, row_dst, o, threads)
        dw_t = partial[0] if partial.shape[0] == 1 else partial.sum(axis=0)       # (Q, O), features (c, u, v)
        return np.ascontiguousarray(dw_t.reshape(features, o).T).reshape(w_shape)
    # few features: dw_mat = Σ_n g[n] (O, L) @ P[n]ᵀ (L, Q), the images' products summed on the dot kernel
    # (which reads g[n] and the patches P[n] as they lie, positions along their rows)
    patches = _patches_of(x_copy, x, kh, kw, stride, padding, out_hw, dtype)
    g = np.asarray(grad_out, dtype=dtype).reshape(n, o, positions)
    dw = summed_products(g, np.swapaxes(patches, 1, 2))
    return np.ascontiguousarray(np.transpose(dw.reshape(o, kh, kw, c), (0, 3, 1, 2)))


def _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, dtype, tiles=None, g_pad=None):
    n, o = grad_out.shape[:2]
    kh, kw = w.shape[2:]
    positions = out_hw[0] * out_hw[1]
    if in_place(w.shape, stride, padding) and pointwise_tiles_pay("grad_input", w.shape, dtype, tiles):
        # dx[n, c, l] = Σ_o g[n, o, l] · w[o, c] on register tiles that read g where it lies
        c = x_shape[1]
        row_src, counts, k_src, row_dst = conv_tiles.pointwise_tables(n, o, positions, c)
        panels = conv_tiles.phase_weights(w, (1, 1), 1, 1, dtype, _panel_bytes(c, dtype))
        dx = np.empty(n * c * positions, dtype=dtype)        # every element written once
        with sized_for(grad_out.size * c, ("conv_grad_input_pointwise", x_shape, w.shape)) as threads:
            conv_tiles._gathered_rows(np.ascontiguousarray(grad_out, dtype=dtype).reshape(-1), row_src, counts, k_src,
                                      panels, dx, row_dst, positions, c, threads)
        return dx.reshape(x_shape)
    if (kh, kw) == (1, 1) and tuple(padding) == (0, 0) and not tiles:
        # a 1x1 kernel: every visited pixel is a patch of its own, so no patches overlap and col2im is
        # the identity (stride 1) or a strided copy: dx[n] = w_matᵀ @ g[n]
        return _pointwise_grad_input(grad_out, w, x_shape, stride, out_hw, dtype)
    if tiles_pay("grad_input", w.shape, dtype, tiles):
        # dx[n, c, r, s] = Σ over the taps of the pixel's phase of g_pad · w_ab, on register tiles that
        # read the patches of g from its padded channels-last copy (conv_tiles.grad_input_tables)
        rows, counts, ks, row_dst, (t_rows, u_cols, hg, wg) = conv_tiles.grad_input_tables(
            x_shape, w.shape, stride, padding, out_hw)
        c, h, wd = x_shape[1:]
        panels = conv_tiles.phase_weights(w, stride, t_rows, u_cols, dtype, _panel_bytes(w.shape[1], dtype))
        dx = np.empty(n * c * h * wd, dtype=dtype)           # every pixel written once, by its phase
        with sized_for(grad_out.size * w[0].size, ("conv_grad_input_tiles", x_shape, w.shape, stride, padding)) \
                as threads:
            if g_pad is None:
                g_pad = conv_tiles.padded_nhwc(grad_out, t_rows - 1, u_cols - 1, hg, wg, dtype)
            conv_tiles._gathered_rows(g_pad.reshape(-1), rows, counts, ks, panels, dx, row_dst, h * wd, c, threads)
        return dx.reshape(x_shape)
    # few features: dP (N, L, Q) = g[n]ᵀ @ w_mat on the matmul kernels (g[n]ᵀ read as a view, no copy),
    # then col2im adds each patch row back into dx
    w_mat = weight_rows(w, dtype)
    g_t = np.swapaxes(grad_out.reshape(n, o, positions), 1, 2)
    return _col2im(matmul_3d(g_t, w_mat, n), x_shape, kh, kw, stride, padding, out_hw, dtype)


# ---------------------------------------------------------------------------- entries
# Arguments come checked from conv.py: stride and padding are pairs, the dtypes already agree.

# ``tiles`` (True / False) overrides the choice between the register tiles and separate passes
# (``tiles_pay``), so that the tests reach both paths with small shapes.

def forward(x, w, stride, padding, tiles=None, x_copy=None):
    """conv2d of x (N, C, H, W) with w (O, C, kH, kW) -> (N, O, Ho, Wo); ``x_copy``: x's copy from
    ``kept_copy`` (or None)."""
    out_hw = _out_hw(x.shape, w.shape, stride, padding)
    if x.size == 0 or w.size == 0:
        return np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=x.dtype)
    return _forward_numba(x, w, stride, padding, out_hw, x.dtype, tiles, x_copy)


def grad_input(grad_out, w, x_shape, stride, padding, tiles=None):
    """conv2d's input gradient, of shape ``x_shape``."""
    if grad_out.size == 0 or w.size == 0:
        return np.zeros(x_shape, dtype=w.dtype)
    out_hw = _out_hw(x_shape, w.shape, stride, padding)
    return _grad_input_numba(grad_out, w, x_shape, stride, padding, out_hw, w.dtype, tiles)


def grad_weight(x, grad_out, w_shape, stride, padding, tiles=None, x_copy=None):
    """conv2d's weight gradient, of shape ``w_shape``; ``x_copy`` as in ``forward``."""
    if x.size == 0 or grad_out.size == 0:
        return np.zeros(w_shape, dtype=x.dtype)
    out_hw = _out_hw(x.shape, w_shape, stride, padding)
    return _grad_weight_numba(x, grad_out, w_shape, stride, padding, out_hw, x.dtype, tiles, x_copy)


def backward(x, grad_out, w, stride, padding, tiles=None, x_copy=None):
    """(dx, dw): ``grad_input`` and ``grad_weight`` of one layer together. Where both run on the tiles,
    each reads g turned around, the input gradient as padded channels-last images and the weight
    gradient as panels of NR channels; ``conv_tiles.turned_gradient`` makes both in one pass over g.

    Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 4, load 2.3-2.8; whole layers, forward +
    backward as ``F.conv2d`` runs them, one process alternating this and the two gradients called
    apart, 21 rounds, medians, two runs): DCGAN 32->64 0.988 and 0.979 of their time, VQ-VAE 4x4
    64->64 0.976 and 1.001, 3x3 64->64 0.976 and 0.976, 64->32 0.995 and 0.990, 16->64 0.965 and
    0.992; compiled for a Zen 3 (AVX2) 0.947, 1.001, 0.983, 0.981, 0.982. The same numbers, bit for bit.

    Elsewhere (a 1x1 kernel, or a product on the matmul kernels) each gradient reads g as it lies, NCHW:
    the two are computed apart.
    """
    out_hw = _out_hw(x.shape, w.shape, stride, padding)
    dtype, (kh, kw) = x.dtype, w.shape[2:]
    pointwise = (kh, kw) == (1, 1) and tuple(padding) == (0, 0) and not tiles
    if x.size == 0 or grad_out.size == 0 or w.size == 0 or in_place(w.shape, stride, padding):
        return (grad_input(grad_out, w, x.shape, stride, padding, tiles),
                grad_weight(x, grad_out, w.shape, stride, padding, tiles, x_copy))
    if (pointwise or not tiles_pay("grad_input", w.shape, dtype, tiles)
            or not tiles_pay("grad_weight", w.shape, dtype, tiles)):
        return (grad_input(grad_out, w, x.shape, stride, padding, tiles),
                grad_weight(x, grad_out, w.shape, stride, padding, tiles, x_copy))
    _, _, _, _, (t_rows, u_cols, hg, wg) = conv_tiles.grad_input_tables(x.shape, w.shape, stride, padding, out_hw)
    with sized_for(grad_out.size, ("conv_turned_gradient", grad_out.shape, hg, wg)):
        g_pad, g_panels = conv_tiles.turned_gradient(grad_out, t_rows - 1, u_cols - 1, hg, wg, dtype)
    return (_grad_input_numba(grad_out, w, x.shape, stride, padding, out_hw, dtype, tiles, g_pad=g_pad),
            _grad_weight_numba(x, grad_out, w.shape, stride, padding, out_hw, dtype, tiles, x_copy, g_panels=g_panels))
