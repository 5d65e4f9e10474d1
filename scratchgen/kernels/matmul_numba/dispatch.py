"""Which kernel runs a product, and the entry points that run it.

``matmul(a, b)`` is the ``"numba"`` entry of :mod:`scratchgen.kernels.matmul` (which checks the
arguments and holds the definition); ``matmul_3d`` runs a batch of products, ``summed_products`` a
batch added up. The choice reads the shape and the operands' layout (``choose_kernel``,
``narrow_plan``, ``kmajor_pays``, ``transpose_pays``); how many threads a call wakes is decided in
:mod:`scratchgen.kernels.threads`.
"""
import math

import numpy as np

from ..layouts import contiguous, is_rows, rows_of, rows_or_transposed, transpose_rows
from ..threads import pool_threads, sized_for
from .axpy import matmul_axpy
from .dot import matmul_dot, matmul_dot_summed
from .kmajor import matmul_kmajor
from .narrow_output import matmul_narrow, matmul_narrow_dot
from .sizes import (
    AXPY_MAX_K, DOT_MAX_M, DOT_TILE_FITS, NARROW_MOST_WORK, NARROW_ROW_BYTES, SMALL_A_BYTES, TILE_MIN_K,
    TILE_ROWS, TILE_ROW_BYTES)
from .tiles import matmul_tiles, matmul_tiles_small_a


def packing_dominates(n, m, itemsize):
    """True if the register tiles (``matmul_tiles``) would copy many numbers per multiply-add: they
    pack a's n·k and b's k·m numbers into panels for n·k·m multiply-adds, 1/n + 1/m copies per
    multiply-add, where the dot kernel reads a and bᵀ as they lie. Taken as too many when a copied
    number costs more than half a tile step's MR·NR multiply-adds (``cpu.register_tile_shape``):

        (n + m) · MR · NR >= 2 · n · m                AVX2, float32: MR·NR = 96, 1/n + 1/m >= 1/48

    (a copy into a panel is a scalar load and store, transposing; a tile step vectorises MR·NR
    multiply-adds into MR·NV). Measured (one thread, CPU time, AMD EPYC Zen 3, medians of 9
    alternating rounds, x @ Wᵀ with k = 256, 784, 3136; fraction of numpy's BLAS, 4x2 dot tile /
    tiles): n = 16 or 32, any m from 32 to 400: 0.44-1.18 / 0.31-0.70, dot everywhere; m = 32, n up to
    256: 0.56-0.96 / 0.47-0.71; 128 x 64 0.63-0.89 / 0.65-0.76; 256 x 64 0.62-0.76 / 0.72-0.80 and 128 x
    400 0.56-0.71 / 0.75-0.81, the tiles'; near the line (128 x 128, 64 x 400) each won at one k."""
    return (n + m) * TILE_ROWS * (TILE_ROW_BYTES // itemsize) >= 2 * n * m


def choose_kernel(n, k, m, batch, copies_for_dot=False, itemsize=4):
    """Which Numba kernel suits an (n, k) @ (k, m) product (measured: ``python -m scratchgen.bench``).

    ``copies_for_dot``: the operands' layout would make the dot kernel copy one of them while the
    axpy kernel could read both as they are; for outputs wide enough for axpy that copy decides it.
    (How many threads a product runs on is decided by its work, ``threads.sized_for``.)

    NOTE: by shape alone the packed axpy kernel is faster wherever the output is 49 or more
    columns wide, even for a long k (one thread, every product of the presets, fraction of numpy's
    BLAS: 0.6-0.97 against 0.27-0.76 for the dot kernel). Choosing it there made whole training
    steps 13-27% slower all the same (VAE, DCGAN, VQ-VAE, one process alternating the two rules):
    a layer's forward pass x @ Wᵀ reads W as rows of Bᵀ, which the dot kernel takes as it is and
    the axpy kernel must copy. So a long k still goes to the dot kernel unless that needs a copy
    — on CPUs with 32 vector registers (``DOT_TILE_FITS``). With 16 (AVX2) the 4x4 dot tile spills
    to memory: compiled for AMD Zen 3 (AVX2) and run on a Zen 4 (one thread, CPU time, load 3.8,
    GFLOP/s, dot / axpy packing b from Wᵀ): x @ Wᵀ for (128 x 784) @ (784 x 400) 54 / 74,
    (128 x 400) @ (400 x 784) 51 / 72, (64 x 3136) @ (3136 x 512) 53 / 72. There the axpy kernel
    takes every output at least DOT_MAX_M wide, unless the tiles would spend more on packing than
    the 4x2 dot tile (8 sums, 16 registers: ``_dot_tile_4x2``) loses on its loads
    (``packing_dominates``): the VQ-VAE's 1x1 layers, x @ Wᵀ for 16x6272 @ 6272x64ᵀ 0.54 -> 1.05 of
    numpy, 64x6272 @ 6272x32ᵀ 0.64 -> 0.89 (one thread, CPU time, AMD EPYC Zen 3, medians of 15
    alternating rounds). Where the axpy order serves and a is at most SMALL_A_BYTES, it runs on
    ``matmul_tiles_small_a`` ("small_a"), for a short k too (measured there).
    """
    if m < DOT_MAX_M:
        return "dot"        # narrow output: axpy rows too short to vectorise
    if k >= AXPY_MAX_K and not copies_for_dot and (DOT_TILE_FITS or packing_dominates(n, m, itemsize)):
        return "dot"        # a long inner axis suits the dot product
    if n * k * itemsize <= SMALL_A_BYTES:
        return "small_a"    # the axpy order on register tiles, a packed whole (``matmul_tiles_small_a``)
    return "axpy"


def transpose_pays(a, b):
    """Compute a (.., n, k) @ (.., k, m) product as (bᵀ aᵀ)ᵀ? Yes when the output is narrow (m below
    DOT_MAX_M, too short for the axpy kernel's vector loop) but tall (n at least DOT_MAX_M), and the
    flipped product moves fewer numbers than the dot kernel would: the flip reads bᵀ one number at
    a time (free) and aᵀ by rows (free when a is a transposed view; otherwise its n·k numbers are
    turned around while they are packed), and turns its n x m output around; the dot kernel copies
    a unless it is C-contiguous and b unless it is a transposed view.

    Measured (one thread, CPU time, fraction of numpy's BLAS, median of interleaved rounds): the
    weight gradient gᵀ @ x of the VAE's 400 -> 20 layer 0.28 -> 0.78; the transposed convolution
    64 -> 1 of the DCGAN, (196 x 64) @ (64 x 16) for 64 images, 0.20 -> 0.55; a 3x3 one of the
    VQ-VAE, (196 x 64) @ (64 x 9) for 128 images, 0.27 -> 0.81. Where the dot kernel reads its
    operands for free (x @ Wᵀ into the VAE's 20 latent units) it kept them: 0.89 against 0.85. And
    where both operands are C-contiguous (g @ W, the gradient of the VAE's latent code) the dot
    kernel copies only the small W: 22 -> 44 GFLOP/s for (128 x 400) @ (400 x 20) (Zen 4, load 2.8),
    the flip copied all of g (turning g around inside the packing instead: 38). (A transposed-view a
    with at least DOT_MAX_M rows and 12-16 float32 columns now takes ``matmul_kmajor`` first.)
    """
    m, n, k = b.shape[2], a.shape[1], a.shape[2]
    if not m < DOT_MAX_M <= n:
        return False
    dot_copies = (0 if is_rows(a) else n * k) + (0 if is_rows(b.swapaxes(-1, -2)) else k * m)
    flip_copies = (0 if is_rows(a.swapaxes(-1, -2)) else n * k) + n * m
    return flip_copies < dot_copies


def kmajor_pays(a, b, dtype):
    """Run a product on ``matmul_kmajor``? When a is a transposed view (aᵀ C-contiguous: a weight
    gradient's gᵀ, a convolution's g[n]ᵀ) with at least DOT_MAX_M rows, b's rows are C-contiguous, and
    the output is either

    * narrow, filling three quarters of the narrow tile's row or more (16 float32 columns), or
    * at least DOT_MAX_M wide, with a long k (TILE_MIN_K, as the packed tiles) or more rows than
      columns: with a short k, the axpy strips' vector loop along long output rows won
      (32x64ᵀ @ 64x6272: 0.92 of numpy against 0.78) and lost along short ones (6272x64ᵀ @ 64x100:
      0.60 against 0.79).

    Between the two (18 or 20 columns: 0.44-0.69 against 0.61-1.0), and for fewer rows (8x128ᵀ @
    128x400: 0.33-0.40 against 0.76-0.87), the narrow kernels were faster. (One thread, CPU time,
    AMD EPYC Zen 4 and the same compiled for a Zen 3.)

    Not for one a broadcast over a batch of b (a 1x1 convolution's dx[n] = w_matᵀ @ g[n]): not packing a
    saves nothing there, as ``matmul_tiles_small_a`` packs it once, and packing every b[z] up front cost
    more: 64x16ᵀ @ 16x49 for 128 images 367 -> 304 µs on one thread, 212 -> 177 on two (AMD EPYC Zen 3,
    one process alternating, medians of 15 rounds)."""
    n, k, m = a.shape[1], a.shape[2], b.shape[2]
    narrow = NARROW_ROW_BYTES // dtype.itemsize
    shape_pays = (k >= TILE_MIN_K or m < n) if m >= DOT_MAX_M else narrow * 3 // 4 <= m <= narrow
    # the shapes first: the layout tests make a view (~1 µs of a 20-40 µs narrow product's call)
    return (shape_pays and n >= DOT_MAX_M and (a.shape[0] > 1 or b.shape[0] == 1)
            and not a.flags.c_contiguous and a.dtype == b.dtype == dtype
            and is_rows(a.swapaxes(1, 2)) and is_rows(b))


def copies_for_dot(a, b):
    """True if the dot kernel would need a copy of a or of bᵀ and the axpy kernel none."""
    return not (is_rows(a) and is_rows(b.swapaxes(-1, -2))) and is_rows(b)


def narrow_plan(a, b, dtype):
    """How a product with a narrow output can run on ``matmul_narrow``, copying at most a small b:
    "rows" if b's rows can be read as they lie and the output has few rows (fewer than DOT_MAX_M, and
    no more than columns), or if the inner dimension is that short and the output wide: then all of b
    (k rows) stays in L1 and packing it is pure cost (the input gradient g @ W of the CVAE's 400 -> 8
    layer, 128x8 @ 8x400: 20.4 µs on the packed strips, 13.7 here, numpy 10.2; one thread, CPU time),
    and so is packing it from bᵀ when it is a transposed view: the narrow kernel turns it to rows
    itself (the decoder's first layer z @ Wᵀ, 128x20 @ 20x400ᵀ: 38.8 µs packed, 30.6 copied to rows
    first, numpy 26.6; 128x18 @ 18x400ᵀ 38.5 -> 34.7, numpy 24.4; Zen 4. Turned around inside the
    kernel instead of by ``rows_of``: see ``matmul_narrow``);
    "flip" if it has few columns and aᵀ's rows can (a transposed view, as ``gᵀ`` in a weight gradient
    ``gᵀ @ x``); else None (the dot kernel reads a C-contiguous a
    with a narrow b without copying a, and copying a for the flip took longer than the product)."""
    n, k, m = a.shape[1], a.shape[2], b.shape[2]
    if n < DOT_MAX_M and n <= m and b.dtype == dtype and is_rows(b):
        return "rows"
    if k < DOT_MAX_M <= m:
        return "rows"       # b has k < 32 rows: a copy of it, if it needs one, is cheap
    if m < DOT_MAX_M and m < n and a.dtype == dtype and is_rows(a.swapaxes(1, 2)):
        return "flip"
    if m < DOT_MAX_M and m < n and a.dtype == dtype and is_rows(a):
        return "dot"
    return None


def narrow(a, b, out, plan):
    """``matmul_narrow`` into ``out`` (written, not added to; zero for "dot") by ``plan`` ("rows" or
    "flip", see ``narrow_plan``),
    copying the operand read by rows if its layout does not suit (only when a caller forces it)."""
    dtype = out.dtype
    if plan == "dot":
        bt = b.swapaxes(1, 2)
        matmul_narrow_dot(rows_of(a, dtype), bt if bt.dtype == dtype and is_rows(bt) else contiguous(bt, dtype), out)
        return out
    if plan == "rows":
        matmul_narrow(*rows_or_transposed(a, dtype), *rows_or_transposed(b, dtype), out, False)
        return out
    # Cᵀ = Bᵀ Aᵀ: few rows now, and long ones; the kernel turns the narrow result around into out
    matmul_narrow(*rows_or_transposed(b.swapaxes(1, 2), dtype), *rows_or_transposed(a.swapaxes(1, 2), dtype),
                   out, True)
    return out


def matmul_3d(a, b, out_batch, kernel=None):
    """The Numba product of a (1|B, n, k) and b (1|B, k, m) into a new (out_batch, n, m) array.

    Any layout and float dtype is accepted. ``kernel`` ("dot", "axpy", "small_a", "kmajor" or
    "narrow") overrides the choice by shape. No operand is copied when its layout already suits the
    kernel: the dot kernel reads rows of A and of Bᵀ, so ``x @ wᵀ`` with a contiguous ``w`` is free;
    the axpy kernel reads rows of B and single numbers of A, and takes ``gᵀ @ x`` from g itself (``a_transposed``, copying
    each task's rows of a block by block); it runs on register tiles
    (``matmul_tiles``) for an inner dimension of at least TILE_MIN_K, on 4-row strips
    (``matmul_axpy``) below it, and on ``matmul_tiles_small_a`` for any k when a is small
    (``choose_kernel``). A product too small to pay for
    waking the thread pool runs on the calling thread alone (``threads.sized_for``); a product with
    a narrow output and fewer than NARROW_MOST_WORK multiply-adds runs on the narrow kernels, without
    any pool (``narrow_plan``). A transposed view times C-contiguous rows runs on ``matmul_kmajor``
    when ``kmajor_pays``; ``kernel="kmajor"`` forces it (copying operands whose layout does not suit).
    """
    dtype = np.result_type(a, b)
    n, k, m = a.shape[1], a.shape[2], b.shape[2]
    shape = (out_batch, n, m)
    if out_batch * n * m == 0 or k == 0:
        return np.zeros(shape, dtype=dtype)
    if kernel == "kmajor" or (kernel is None and kmajor_pays(a, b, dtype)):
        out = np.empty(shape, dtype=dtype)                  # every element written
        with sized_for(out_batch * n * k * m, ("matmul", "kmajor", a.shape, b.shape, dtype.char)):
            matmul_kmajor(rows_of(a.swapaxes(1, 2), dtype), rows_of(b, dtype), out, pool_threads())
        return out
    if kernel == "narrow":
        plan = narrow_plan(a, b, dtype) or ("rows" if n <= m else "flip")
        return narrow(a, b, (np.zeros if plan == "dot" else np.empty)(shape, dtype), plan)
    if kernel is None and out_batch * n * k * m < NARROW_MOST_WORK:
        plan = narrow_plan(a, b, dtype)
        if plan is not None:
            return narrow(a, b, (np.zeros if plan == "dot" else np.empty)(shape, dtype), plan)
    if kernel is None and transpose_pays(a, b):
        # Cᵀ = Bᵀ Aᵀ: a narrow product is the transpose of a wide one, which the axpy kernel reads
        # as it lies (Bᵀ one number at a time, Aᵀ by rows), and a narrow output is cheap to turn
        flipped = matmul_3d(b.swapaxes(1, 2), a.swapaxes(1, 2), out_batch, kernel="axpy")
        out = np.empty(shape, dtype=dtype)
        # NOTE: NumPy's transposing copy took 87 µs here for 64 x 16 x 196, this loop 60: 196x32ᵀ @ 32x16 for
        # 64 images 38.3 -> 41.1 GFLOP/s (one thread, CPU time, 15 alternating rounds; numpy's BLAS ~106)
        transpose_rows(flipped, out, 0, out.shape[1])
        return out
    kernel = kernel or choose_kernel(n, k, m, out_batch, copies_for_dot(a, b), dtype.itemsize)
    strips = kernel == "axpy" and k < TILE_MIN_K
    written = strips or kernel == "small_a"
    out = (np.empty if written else np.zeros)(shape, dtype=dtype)    # these never read out; the others add
    key = ("matmul", kernel, a.shape, a.strides, b.shape, b.strides, dtype.char)   # timed per shape and layout
    with sized_for(out_batch * n * k * m, key):
        if kernel == "dot":
            matmul_dot(rows_of(a, dtype), rows_of(b.swapaxes(-1, -2), dtype), out, pool_threads())
        else:
            packed = matmul_axpy if strips else matmul_tiles_small_a if kernel == "small_a" else matmul_tiles
            b_t = b.swapaxes(-1, -2)
            threads = pool_threads()                        # as sized_for set it: the tasks are cut for it
            a_in, a_transposed = rows_or_transposed(a, dtype)     # gᵀ @ x: read a from gᵀ itself
            if b.dtype == dtype and is_rows(b_t) and not is_rows(b):     # x @ Wᵀ: pack from W itself
                packed(a_in, b_t, out, a_transposed, True, threads)
            else:
                packed(a_in, rows_of(b, dtype), out, a_transposed, False, threads)
    return out


def summed_products(a, b):
    """Σ_z a[z] @ b[z] for a (B, n, k) and b (B, k, m) of one float dtype: the products of a batch added
    up, (n, m), on ``matmul_dot_summed`` (which reads rows of a and of bᵀ: a weight gradient's g[n] and
    the patches' P[n]ᵀ as they lie; other layouts are copied)."""
    dtype = np.result_type(a, b)
    nb, n, k, m = a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    out = np.zeros((n, m), dtype=dtype)
    if nb * n * k * m == 0:
        return out
    with sized_for(nb * n * k * m, ("matmul", "summed", a.shape, b.shape, dtype.char)):
        matmul_dot_summed(rows_of(a, dtype), rows_of(b.swapaxes(-1, -2), dtype), out, pool_threads())
    return out


def matmul(a, b):
    """a @ b for arrays of one float dtype, at least 2-D, whose inner dimensions agree (the
    caller, :func:`scratchgen.kernels.matmul.matmul`, has checked): batch dimensions broadcast."""
    batch = () if a.ndim == b.ndim == 2 else np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    dtype = a.dtype
    n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
    nbatch = math.prod(batch)
    if b.ndim == 2:
        # (..., n, k) @ (k, m): the batch folds into the rows of one big product
        rows = a.reshape(1, nbatch * n, k)
        return matmul_3d(rows, b.astype(dtype, copy=False)[None], 1).reshape(batch + (n, m))

    def as_3d(x):
        # a batch of 1 stays 1 (the kernels broadcast it); a partial broadcast is materialised
        if math.prod(x.shape[:-2]) == 1:
            return x.reshape((1,) + x.shape[-2:])
        return np.broadcast_to(x, batch + x.shape[-2:]).reshape((nbatch,) + x.shape[-2:])

    return matmul_3d(as_3d(a.astype(dtype, copy=False)), as_3d(b.astype(dtype, copy=False)),
                     nbatch).reshape(batch + (n, m))
