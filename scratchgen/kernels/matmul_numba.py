"""The Numba matmul kernels: cache-blocked loop nests, one chosen by the output's width.

``matmul(a, b)`` here is the ``"numba"`` entry of :mod:`scratchgen.kernels.matmul` (which checks the
arguments and holds the definition). It picks one of two kernels by shape and layout (``choose_kernel``):

* ``_matmul_dot``   each C element is a dot product of a row of A and a row of Bᵀ, sixteen at
                    a time in a 4x4 tile held in registers; its vector loop runs along k. For a
                    long k whose operands it can read as they are (x @ Wᵀ), and for outputs too
                    narrow for axpy's vector loop, such as x @ W with the VAE's 20 latent units.
* ``_matmul_axpy``  C rows are sums of scaled B rows ("a x plus y"), four rows by four k at a
                    time, on a packed block of B. Its vector loop runs along the output row, so
                    a short k (the 20-d latent again, or a conv's 64 channels) costs no more.
  ``_matmul_tiles`` the same order for an inner dimension of at least TILE_MIN_K, on register
                    tiles: MR x NR blocks of C whose running sums stay in vector registers for
                    the whole k loop (``register_tile``, ``stack.stack_tile``), on packed panels.
  ``_matmul_tiles_small_a`` the register tiles for an A that fits in L2 (SMALL_A_BYTES), whatever
                    k: A packed whole once, each NR columns of B packed just before their tiles
                    read them (the presets' layers: x @ Wᵀ, g @ W, z @ Wᵀ into 6272 features).
  ``_matmul_kmajor`` the register tiles on operands read where they lie, for A a transposed view
                    (a weight gradient's gᵀ, a convolution's g[n]ᵀ hold each k's rows side by
                    side) and B's rows (``strided_tile``); narrow outputs on a narrow tile.
  ``_matmul_dot_summed`` the dot kernel's tiles for a sum of products over a batch, Σ_z A[z] @ B[z]
                    (``summed_products``: a few-feature convolution's weight gradient, summed over
                    its images).

Layouts: the dot kernel reads rows of A and of Bᵀ, the axpy kernel rows of B and single numbers
of A (any strides, so ``gᵀ @ x`` in a linear layer's backward pass needs no copy). The layout
helpers are in :mod:`scratchgen.kernels.layouts`; how many threads a product wakes is decided by
its size in :mod:`scratchgen.kernels.threads`.

Two thread pools: Numba's and OpenBLAS's (NumPy's) each keep their threads busy-waiting for a
while after a call; alternating the two then made every call ~10x slower until
``OPENBLAS_THREAD_TIMEOUT`` was set (``scratchgen/__init__.py`` does it before importing numpy;
``python -m scratchgen.bench`` measures alternating calls).
"""
import math

import numba
import numpy as np
from numba import njit, prange

from .cpu import register_tile_shape, vector_registers
from .layouts import contiguous, is_rows, rows_of, rows_or_transposed, transpose_rows
from .stack import stack_tile
from .tasks import claim_task, task_counter
from .threads import pool_threads, sized_for

# NOTE: "reassoc" lets LLVM split a sum over k into several partial sums (that is what makes the
# dot-product loop vectorise) and "contract" lets it fuse a*b + c into one FMA. Results then differ
# from a left-to-right sum by rounding only; NaN and inf keep their meaning (no "fast" flag).
FASTMATH = {"reassoc", "contract"}

ROW_BLOCK = 64          # rows of A (and C) in one parallel task of the dot kernel or the strips, at most
COL_BLOCK = 256         # rows of Bᵀ (columns of C) in one task: 256 rows of a K block stay in L2
K_BLOCK_BYTES = 4096    # inner dimension handled per pass: 8 rows of it (a 4x4 tile) fit in L1
AXPY_COL_BLOCK = 512    # columns of out in one axpy task: long rows amortise each strip's set-up
AXPY_K_BLOCK = 128      # rows of b per pass: a 128 x 512 block of b stays in L2
TILE_ROW_BLOCK = 32     # rows of a per task of the register tiles (rounded down to whole tiles)
# inner dimension from which the axpy order runs on register tiles, not strips: a tile's fixed cost
# (zeroing, adding into out) is worth 40-80 steps of k, and with k = 16 the tiles ran 64 x 16 @ 16 x 25088
# at 0.69-0.76 of numpy, the strips at 1.04; from k = 128 on the tiles won (e.g. 784 x 128ᵀ @ 128 x 400
# 0.85 -> 0.89, 400 x 128ᵀ @ 128 x 784 0.83 -> 0.90; one thread, Zen 4; appendix A, §A.8)
TILE_MIN_K = 128
PAD_BYTES = 64          # one cache line added to each packed row (see _matmul_axpy)
# an a of at most this many bytes runs on ``_matmul_tiles_small_a`` (packed whole, once per thread): the L2
# of the smallest core among the project's CPUs (AMD Zen 3: 512 KB; on it, the VAE's 128 x 784 a, 392 KB,
# still ran 0.88 -> 0.93 of numpy's time with it)
SMALL_A_BYTES = 512 * 1024
# a product with a narrow output and fewer multiply-adds than this runs on the narrow kernels, on the
# calling thread, with no pool and no Python bookkeeping (matmul_3d): at ~100 GFLOP/s that is 80 µs of
# work, which two threads would cut by 40 µs, about what the bookkeeping of a pooled call costs (8-11 µs)
# a few times over. NOTE: a shape rule, not a timed one: the narrow and the pooled kernels add in
# different orders, and a rule from measured costs (threads must save 8 measured parallel calls) sent the
# VAE's 128x400 @ 400x20 (1.0 million multiply-adds) one way in some processes and the other way in
# others, so two runs of the same seed could differ. 2^22 is far from every narrow product of the
# presets (0.2-1.0 million, and 6.4 million and more).
NARROW_MOST_WORK = 2 ** 22
AXPY_MAX_K = 256               # inner dimension below this: the axpy kernel, ...
DOT_MAX_M = 32                 # ... unless out has fewer columns than this: then the dot kernel
# a 4x4 dot tile holds 16 accumulators and 8 loaded vectors: 32 SIMD registers (AVX-512) hold
# them, 16 (AVX2) do not, and the spilled tile runs at about half speed (see choose_kernel)
DOT_TILE_FITS = vector_registers() >= 32
# the axpy kernel's register tile: TILE_ROWS rows of TILE_ROW_BYTES, as many rows as the CPU's vector
# registers hold (constants when the kernels compile: cpu.register_tile_shape says why)
TILE_ROWS, TILE_ROW_BYTES = register_tile_shape()
# the narrow tile: rows half as wide (16 float32, 8 float64), as many more as the registers hold, for
# products whose output has only half a tile row of columns (``_matmul_kmajor``, ``conv_tiles``)
NARROW_ROWS, NARROW_ROW_BYTES = register_tile_shape(row_bytes=TILE_ROW_BYTES // 2)
# a narrow product with at least NARROW_TILES_MIN_ROWS output rows (four tiles of rows share each column
# of b) and NARROW_TILES_MIN_K <= k < TILE_MIN_K runs on register tiles that read b in place
# (``_few_rows_tiles``), else on the strips; below 16 steps of k a tile's fixed cost (zeroing its sums,
# storing them) outweighs what it saves: measured in ``_few_rows_tiles``
NARROW_TILES_MIN_ROWS = 4 * TILE_ROWS
NARROW_TILES_MIN_K = 16


# ---------------------------------------------------------------------------- Numba kernels
@njit(fastmath=FASTMATH, cache=True)
def _dot_tile_4x4(a, bt, c, i, j, k0, k1):
    """c[i:i+4, j:j+4] += a[i:i+4, k0:k1] @ bt[j:j+4, k0:k1].T, sixteen dot products at once.

        for k in range(k0, k1):
            for r in 0..3: for s in 0..3:
                acc[r, s] += a[i+r, k] * bt[j+s, k]

    Optimisations:
    - the 16 accumulators are scalar locals, so they stay in registers for the whole k loop
      (a local array is written back to memory on every step: measured 20x slower);
    - each step loads 8 numbers and does 16 multiply-adds (one dot product: 2 loads per 1);
    - LLVM vectorises the loop over k, 8 float32 or 4 float64 per instruction, because the
      "reassoc" flag lets it keep partial sums (it adds them up after the loop);
    - rows are sliced before the loop, so every load is unit-stride from index 0.
    """
    a0 = a[i, k0:k1]
    a1 = a[i + 1, k0:k1]
    a2 = a[i + 2, k0:k1]
    a3 = a[i + 3, k0:k1]
    b0 = bt[j, k0:k1]
    b1 = bt[j + 1, k0:k1]
    b2 = bt[j + 2, k0:k1]
    b3 = bt[j + 3, k0:k1]
    # accumulators start from c, so consecutive K blocks add up (and take c's dtype)
    c00, c01, c02, c03 = c[i, j], c[i, j + 1], c[i, j + 2], c[i, j + 3]
    c10, c11, c12, c13 = c[i + 1, j], c[i + 1, j + 1], c[i + 1, j + 2], c[i + 1, j + 3]
    c20, c21, c22, c23 = c[i + 2, j], c[i + 2, j + 1], c[i + 2, j + 2], c[i + 2, j + 3]
    c30, c31, c32, c33 = c[i + 3, j], c[i + 3, j + 1], c[i + 3, j + 2], c[i + 3, j + 3]
    for k in range(k1 - k0):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        c00 += x0 * y0
        c01 += x0 * y1
        c02 += x0 * y2
        c03 += x0 * y3
        c10 += x1 * y0
        c11 += x1 * y1
        c12 += x1 * y2
        c13 += x1 * y3
        c20 += x2 * y0
        c21 += x2 * y1
        c22 += x2 * y2
        c23 += x2 * y3
        c30 += x3 * y0
        c31 += x3 * y1
        c32 += x3 * y2
        c33 += x3 * y3
    c[i, j], c[i, j + 1], c[i, j + 2], c[i, j + 3] = c00, c01, c02, c03
    c[i + 1, j], c[i + 1, j + 1], c[i + 1, j + 2], c[i + 1, j + 3] = c10, c11, c12, c13
    c[i + 2, j], c[i + 2, j + 1], c[i + 2, j + 2], c[i + 2, j + 3] = c20, c21, c22, c23
    c[i + 3, j], c[i + 3, j + 1], c[i + 3, j + 2], c[i + 3, j + 3] = c30, c31, c32, c33


@njit(fastmath=FASTMATH, cache=True)
def _dot_edge(a, bt, c, i0, i1, j0, j1, k0, k1):
    """c[i0:i1, j0:j1] += a[i0:i1, k0:k1] @ bt[j0:j1, k0:k1].T one dot product at a time (the
    bottom rows the 4x4 tiles do not cover; the columns right of them take ``_dot_column_4``)."""
    for i in range(i0, i1):
        arow = a[i, k0:k1]
        for j in range(j0, j1):
            brow = bt[j, k0:k1]
            acc = c[i, j]
            for k in range(k1 - k0):
                acc += arow[k] * brow[k]
            c[i, j] = acc


@njit(fastmath=FASTMATH, cache=True)
def _dot_tile_4x2(a, bt, c, i, j, k0, k1):
    """c[i:i+4, j:j+2] += a[i:i+4, k0:k1] @ bt[j:j+2, k0:k1].T: the dot tile for CPUs with 16 vector
    registers (``DOT_TILE_FITS`` False). Its 8 sums and the 6 vectors it loads per step fit in them;
    the 4x4 tile's 16 sums and 8 loads do not, and spill to memory. Compiled for a Zen 3 (AVX2) and
    run on a Zen 4 (one thread, CPU time, load 2.7, medians of 31 alternating rounds, GFLOP/s, 4x4 ->
    4x2; numpy's BLAS on the same operands): 128x400 @ 400x18 54.9 -> 79.4 (61.2), 128x400 @ 400x8
    54.7 -> 80.1 (91.9), 128x784 @ 784x20 58.7 -> 85.1 (64.0)."""
    a0, a1, a2, a3 = a[i, k0:k1], a[i + 1, k0:k1], a[i + 2, k0:k1], a[i + 3, k0:k1]
    b0, b1 = bt[j, k0:k1], bt[j + 1, k0:k1]
    c00, c01, c10, c11 = c[i, j], c[i, j + 1], c[i + 1, j], c[i + 1, j + 1]
    c20, c21, c30, c31 = c[i + 2, j], c[i + 2, j + 1], c[i + 3, j], c[i + 3, j + 1]
    for k in range(k1 - k0):
        x0, x1, x2, x3, y0, y1 = a0[k], a1[k], a2[k], a3[k], b0[k], b1[k]
        c00 += x0 * y0
        c01 += x0 * y1
        c10 += x1 * y0
        c11 += x1 * y1
        c20 += x2 * y0
        c21 += x2 * y1
        c30 += x3 * y0
        c31 += x3 * y1
    c[i, j], c[i, j + 1], c[i + 1, j], c[i + 1, j + 1] = c00, c01, c10, c11
    c[i + 2, j], c[i + 2, j + 1], c[i + 3, j], c[i + 3, j + 1] = c20, c21, c30, c31


@njit(fastmath=FASTMATH, cache=True)
def _dot_column_4(a, bt, c, i, j, k0, k1):
    """c[i:i+4, j] += a[i:i+4, k0:k1] @ bt[j, k0:k1]: four dot products with one row of bt, for the
    columns right of the last 4x4 (or 4x2) tile. Each step loads 5 numbers for 4 multiply-adds; one dot
    product at a time (``_dot_edge``) loads 2 for 1. The CVAE's 128x400 @ 400x18 (two edge
    columns): 70 -> 76 GFLOP/s as a kernel alone (one thread, CPU time, Zen 4)."""
    a0, a1, a2, a3, b = a[i, k0:k1], a[i + 1, k0:k1], a[i + 2, k0:k1], a[i + 3, k0:k1], bt[j, k0:k1]
    c0, c1, c2, c3 = c[i, j], c[i + 1, j], c[i + 2, j], c[i + 3, j]
    for k in range(k1 - k0):
        y = b[k]
        c0 += a0[k] * y
        c1 += a1[k] * y
        c2 += a2[k] * y
        c3 += a3[k] * y
    c[i, j], c[i + 1, j], c[i + 2, j], c[i + 3, j] = c0, c1, c2, c3


@njit(fastmath=FASTMATH, cache=True)
def dot_block(a, bt, c, i0, i1, j0, j1):
    """c[i0:i1, j0:j1] += a[i0:i1] @ bt[j0:j1].T, in slices of the inner dimension (all of it for one
    column: a matrix times a vector reads each number of a once, and slices only restart its loops:
    64x3136 @ 3136x1, the DCGAN discriminator's last layer, 15.2 -> 14.0 µs a call, numpy 15.3; one
    thread, CPU time, AMD EPYC Zen 3, the kernel's loops alone, medians of 21 x 1000 calls, 3 rounds;
    whole calls 21.2 -> 20.7 µs, 0.74 -> 0.86 of numpy in 3 alternating processes)."""
    kk = a.shape[1]
    k_block = max(1, kk) if j1 - j0 == 1 else K_BLOCK_BYTES // a.itemsize
    step = 4 if DOT_TILE_FITS else 2            # columns per tile: 4x4 (32 registers) or 4x2 (16)
    i_end = i0 + (i1 - i0) // 4 * 4
    j_end = j0 + (j1 - j0) // step * step
    for k0 in range(0, kk, k_block):
        k1 = min(k0 + k_block, kk)
        for i in range(i0, i_end, 4):
            for j in range(j0, j_end, step):
                if DOT_TILE_FITS:
                    _dot_tile_4x4(a, bt, c, i, j, k0, k1)
                else:
                    _dot_tile_4x2(a, bt, c, i, j, k0, k1)
            for j in range(j_end, j1):
                _dot_column_4(a, bt, c, i, j, k0, k1)
        _dot_edge(a, bt, c, i_end, i1, j0, j1, k0, k1)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_dot(a, bt, out, threads):
    """out[b] = a[b] @ bt[b].T for C-contiguous a (B|1, n, k), bt (B|1, m, k), out (B, n, m).

    ``out`` must be zero on entry. A batch size of 1 in ``a`` or ``bt`` is broadcast. The row blocks
    are cut for ``threads`` (``balanced_blocks``), in units of the tile's 4 rows.

        for each (batch, row block, column block), claimed by the threads in turn (tasks.claim_task):
            for k0 in range(0, k, k_block):
                for i in row block, 4 at a time:
                    for j in column block, 4 at a time:
                        out[i:i+4, j:j+4] += a[i:i+4, k0:k1] @ bt[j:j+4, k0:k1].T

    Optimisations:
    - Bᵀ instead of B makes both operands of every dot product unit-stride (the caller
      transposes once: O(k·m) work against O(n·k·m));
    - 4x4 register tiles (``_dot_tile_4x4``);
    - blocking: a K block of 4 rows of A stays in L1 while it meets every 4 rows of the Bᵀ
      block, which stays in L2 (a longer K block means fewer horizontal sums per output);
    - one parallel loop over independent output blocks: one pool wake-up per call, no two
      threads write the same element, no locks;
    - row blocks cut for the threads (``balanced_blocks``): with blocks of a fixed ROW_BLOCK rows, a
      small output with a long k, a 1x1 convolution's weight gradient 64x6272 @ 6272x32ᵀ, was one
      task, and ran on one thread whatever the pool held. Two threads, wall time, medians of 41
      alternating calls (AMD EPYC Zen 4, load 1.7), fixed -> cut blocks: 64x6272 @ 6272x32ᵀ 0.385 ->
      0.202 ms, 64x25088 @ 25088x16ᵀ 0.628 -> 0.437, 16x6272 @ 6272x64ᵀ 0.157 -> 0.090, 64x12544 @
      12544x16ᵀ 0.272 -> 0.196; 128-row products, already two blocks, unchanged (0.97-1.00).
    """
    nb, n, m = out.shape
    units = (n + 3) // 4                                    # the tiles' groups of 4 rows
    row_blocks = balanced_blocks(units, ROW_BLOCK // 4, threads)
    col_blocks = (m + COL_BLOCK - 1) // COL_BLOCK
    per_batch = row_blocks * col_blocks
    counter = task_counter()
    for _ in prange(threads):                           # each thread claims tasks until none are left
        task = claim_task(counter)
        while task < nb * per_batch:
            b, r = task // per_batch, task % per_batch
            rb, cb = r // col_blocks, r % col_blocks
            i0, i1 = rb * units // row_blocks * 4, min((rb + 1) * units // row_blocks * 4, n)
            j0 = cb * COL_BLOCK
            a_b = a[b if a.shape[0] > 1 else 0]
            bt_b = bt[b if bt.shape[0] > 1 else 0]
            dot_block(a_b, bt_b, out[b], i0, i1, j0, min(j0 + COL_BLOCK, m))
            task = claim_task(counter)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_dot_summed(a, bt, out, threads):
    """out += Σ_z a[z] @ bt[z].T for C-contiguous a (B, n, k), bt (B, m, k) and out (n, m): a sum of
    products over a batch, each term on the dot kernel's tiles (``dot_block``), added into out.

        for each block of rows of out, claimed by the threads in turn (tasks.claim_task):
            for z in range(B):
                out[rows] += a[z, rows] @ bt[z].T                 dot_block, the tiles add into out

    A convolution's weight gradient with few features: dw = Σ_n g[n] @ P[n] sums over the images
    (``conv_numba``), whose g[n] and patches both hold k (the positions) along their rows.
    Optimisations, against one product per z into a (B, n, m) array summed by NumPy afterwards (one
    thread, CPU time, AMD EPYC Zen 3, one process alternating, medians of 15; µs, numpy's BLAS on the
    same batch in brackets): 64x196 @ 196x16ᵀ for 64 images 651 -> 582 (468), for 128 1241 -> 1165
    (897), 32x196 @ 196x16ᵀ for 64 316 -> 290 (237); two threads 354 -> 302, 679 -> 610, 192 -> 163:
    - the sums go straight into out, no (B, n, m) array and no pass to add it up;
    - a task keeps its rows of out (in L1) for the whole batch.
    Each element of out is summed by one task in the order of z: the same numbers on any number of
    threads.
    """
    nb, n, _ = a.shape
    m = bt.shape[1]
    units = (n + 3) // 4                                    # the tiles' groups of 4 rows
    row_blocks = balanced_blocks(units, ROW_BLOCK // 4, threads)
    counter = task_counter()
    for _ in prange(threads):                           # each thread claims tasks until none are left
        task = claim_task(counter)
        while task < row_blocks:
            i0, i1 = task * units // row_blocks * 4, min((task + 1) * units // row_blocks * 4, n)
            for z in range(nb):
                for j0 in range(0, m, COL_BLOCK):
                    dot_block(a[z], bt[z], out, i0, i1, j0, min(j0 + COL_BLOCK, m))
            task = claim_task(counter)


@njit(fastmath=FASTMATH, cache=True)
def axpy_strip_4x4(a, i, k0, kc, width, panel, p0, strip):
    """strip[:, :width] += a[i:i+4, k0:k0+kc] @ panel[:kc, p0:p0+width], four output rows, four k at a
    time.

    ``panel`` (≥ kc, p0 + width) is a packed block of b (p0 = 0) or b's rows where they lie,
    ``strip`` (4, width + pad) four output rows copied into a buffer. Both are whole C-contiguous
    arrays and only their rows are sliced: a 2-D slice of them has unknown strides in Numba, and its
    loops stay scalar (measured 5x slower).

        for k in range(0, kc, 4):
            for j in range(width):
                for r in 0..3:
                    strip[r, j] += a[i+r, k0+k]·panel[k, j] + ... + a[i+r, k0+k+3]·panel[k+3, j]

    Optimisations:
    - the loop over j is innermost and unit-stride in ``panel`` and ``strip``, so LLVM vectorises
      it for any k, with no horizontal sums at the end (the dot-product tile needs a long k);
    - 4 rows x 4 k: each panel value loaded feeds 4 multiply-adds, each strip value loaded and
      stored takes 4, so a vector step does 16 FMAs for 8 loads and 4 stores, and the 16 numbers
      from a stay in registers for the whole j loop;
    - rows are sliced before the loops (indexing ``c[i, j]`` inside compiled to scalar code);
    - the last kc mod 4 steps two at a time, then one: each pass loads and stores the 4 rows of the
      strip, and one k at a time made k = 18 six passes where 16 needed four. On 128 x k @ k x 400,
      the narrow kernel alone (one thread, CPU time, AMD EPYC Zen 3, three alternating processes,
      noisy: another process running), k = 18 took 1.0-3.1 µs more than k = 20 before, 0.7-1.9 less
      after, of ~30;
    - ``a`` is only read one number at a time: any strides would do, but the callers hand it
      C-contiguous rows (from aᵀ they copy them out first), so that it compiles for one layout.
    """
    c0, c1, c2, c3 = strip[0, :width], strip[1, :width], strip[2, :width], strip[3, :width]
    a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
    k_end = kc // 4 * 4
    for k in range(0, k_end, 4):
        b0, b1 = panel[k, p0:p0 + width], panel[k + 1, p0:p0 + width]
        b2, b3 = panel[k + 2, p0:p0 + width], panel[k + 3, p0:p0 + width]
        x00, x01, x02, x03 = a0[k0 + k], a0[k0 + k + 1], a0[k0 + k + 2], a0[k0 + k + 3]
        x10, x11, x12, x13 = a1[k0 + k], a1[k0 + k + 1], a1[k0 + k + 2], a1[k0 + k + 3]
        x20, x21, x22, x23 = a2[k0 + k], a2[k0 + k + 1], a2[k0 + k + 2], a2[k0 + k + 3]
        x30, x31, x32, x33 = a3[k0 + k], a3[k0 + k + 1], a3[k0 + k + 2], a3[k0 + k + 3]
        for j in range(width):
            y0, y1, y2, y3 = b0[j], b1[j], b2[j], b3[j]
            c0[j] += x00 * y0 + x01 * y1 + x02 * y2 + x03 * y3
            c1[j] += x10 * y0 + x11 * y1 + x12 * y2 + x13 * y3
            c2[j] += x20 * y0 + x21 * y1 + x22 * y2 + x23 * y3
            c3[j] += x30 * y0 + x31 * y1 + x32 * y2 + x33 * y3
    if kc - k_end >= 2:                  # the last kc mod 4 steps: two at a time, then one
        k = k_end
        b0, b1 = panel[k, p0:p0 + width], panel[k + 1, p0:p0 + width]
        x00, x01, x10, x11 = a0[k0 + k], a0[k0 + k + 1], a1[k0 + k], a1[k0 + k + 1]
        x20, x21, x30, x31 = a2[k0 + k], a2[k0 + k + 1], a3[k0 + k], a3[k0 + k + 1]
        for j in range(width):
            y0, y1 = b0[j], b1[j]
            c0[j] += x00 * y0 + x01 * y1
            c1[j] += x10 * y0 + x11 * y1
            c2[j] += x20 * y0 + x21 * y1
            c3[j] += x30 * y0 + x31 * y1
        k_end += 2
    for k in range(k_end, kc):
        b0 = panel[k, p0:p0 + width]
        x0, x1, x2, x3 = a0[k0 + k], a1[k0 + k], a2[k0 + k], a3[k0 + k]
        for j in range(width):
            y = b0[j]
            c0[j] += x0 * y
            c1[j] += x1 * y
            c2[j] += x2 * y
            c3[j] += x3 * y


@njit(fastmath=FASTMATH, cache=True)
def axpy_row(a, i, k0, kc, width, panel, p0, c_row):
    """c_row += a[i, k0:k0+kc] @ panel[:kc, p0:p0+width], one row (the rows left over by the strips),
    four k at a time: each c_row value loaded and stored takes 4 multiply-adds instead of 1
    (measured, 1 x 400 @ 400 x 784, one thread: 26.1 -> 22.5 µs; 1 x 64 @ 64 x 3136: 18.5 -> 16.9)."""
    a_row = a[i]
    k_end = kc // 4 * 4
    for k in range(0, k_end, 4):
        b0, b1 = panel[k, p0:p0 + width], panel[k + 1, p0:p0 + width]
        b2, b3 = panel[k + 2, p0:p0 + width], panel[k + 3, p0:p0 + width]
        x0, x1, x2, x3 = a_row[k0 + k], a_row[k0 + k + 1], a_row[k0 + k + 2], a_row[k0 + k + 3]
        for j in range(width):
            c_row[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j]
    for k in range(k_end, kc):
        x, b_row = a_row[k0 + k], panel[k, p0:p0 + width]
        for j in range(width):
            c_row[j] += x * b_row[j]


@njit(cache=True)
def tile_block(task, n, tiles, mr, row_blocks, col_blocks):
    """(z, i0, i1, t0, t1): the rows i0..i1 and the column tiles t0..t1 of out[z] that task number ``task``
    of nb·col_blocks·row_blocks computes, *column blocks fastest*: threads claim tasks in turn
    (``tasks.claim_task``), so when the cores are equally fast and the column blocks a multiple of the
    threads, thread t takes tasks t, t + T, t + 2T, ... of the T threads, all in its own column blocks.
    Rows come in tiles of ``mr`` shared out as ``balanced_blocks`` says, and so do the ``tiles`` column
    tiles: register tiles (``_matmul_tiles``), cache lines of columns (``_matmul_axpy``), or one
    (``_matmul_kmajor``, whose tasks are blocks of rows)."""
    per_batch, row_tiles = row_blocks * col_blocks, (n + mr - 1) // mr
    z, rb, cb = task // per_batch, task % per_batch // col_blocks, task % col_blocks
    i0, i1 = rb * row_tiles // row_blocks * mr, min((rb + 1) * row_tiles // row_blocks * mr, n)
    return z, i0, i1, cb * tiles // col_blocks, (cb + 1) * tiles // col_blocks


@njit(cache=True)
def in_turn(task, tasks, threads):
    """The block that claim number ``task`` computes, of ``tasks`` (a multiple of ``threads``, else the
    same number): thread t of T threads taking turns at the same pace claims t, t + T, t + 2T, ..., and
    gets the blocks t·tasks/T, t·tasks/T + 1, ...: one contiguous share each, as ``prange`` gave."""
    if threads <= 1 or tasks % threads != 0:
        return task
    return task % threads * (tasks // threads) + task // threads


@njit(cache=True)
def balanced_blocks(units, most, threads):
    """How many blocks to cut ``units`` (rows, tiles) into: at least enough for blocks of ``most``
    units, and a multiple of ``threads`` (if there are that many units), so that threads of equal speed,
    claiming blocks in turn (``tasks.claim_task``), get the same work. Block b holds units
    [b·units // blocks, (b+1)·units // blocks).

    NOTE: before the tasks were claimed, Numba handed each thread one contiguous share of a ``prange``'s
    iterations. The VAE's 128 x 784 @ 784 x 400 product had 5 row blocks of 30, 30, 30, 30 and 8 rows:
    two threads got 90 and 38 rows and took 1.28x less time than one, not 2x. Claimed in turn, 5 blocks
    still leave one thread a block more than the other."""
    blocks = max(1, -(-units // most))
    if threads > 1 and units >= threads:
        blocks = min(units, -(-blocks // threads) * threads)
    return blocks


@njit(fastmath=FASTMATH, cache=True)
def _copy(src, r0, c0, rows, cols, dst, s0, d0):
    """dst[d0 + r, s0 + j] = src[r0 + r, c0 + j] for r < rows, j < cols: a block between an
    array and a packed buffer (either direction), row by row from sliced rows."""
    for r in range(rows):
        s, d = src[r0 + r, c0:c0 + cols], dst[d0 + r, s0:s0 + cols]
        for j in range(cols):
            d[j] = s[j]


@njit(fastmath=FASTMATH, cache=True)
def _copy_transposed(src, r0, c0, rows, cols, dst):
    """dst[r, j] = src[c0 + j, r0 + r] for r < rows, j < cols: a block of b packed from bᵀ (``src``),
    eight rows of bᵀ (unit stride) at a time into eight neighbouring columns of dst, so that each
    row of dst takes 8 numbers side by side (one 32-byte run) instead of one:

        for j in range(0, cols, 8):
            s0..s7 = src[c0 + j + 0..7, r0 : r0 + rows]       eight rows of bᵀ
            for r in range(rows):
                dst[r, j : j + 8] = s0[r], .., s7[r]

    One column at a time, each number went to its own row of dst, a cache line each. Measured
    (one thread, CPU time, AMD EPYC Zen 3, medians of 15 rounds x 20 calls; the register tiles'
    panels of 32 columns packed from bᵀ): 784 x 400 254 -> 116 µs, 400 x 784 255 -> 113, 100 x 6272
    494 -> 216 (the same with blocks of AXPY_K_BLOCK rows of dst, as before: 122, 120, 234). Whole
    products, x @ Wᵀ on the register tiles: 128x784 @ 784x400ᵀ 0.78 -> 0.80 of numpy, 128x400 @
    400x784ᵀ 0.78 -> 0.80 (3 alternating processes x 9 rounds; the strips' 64x100 @ 100x6272ᵀ
    unchanged, 0.72)."""
    j8 = cols // 8 * 8
    for j in range(0, j8, 8):
        s0, s1 = src[c0 + j, r0:r0 + rows], src[c0 + j + 1, r0:r0 + rows]
        s2, s3 = src[c0 + j + 2, r0:r0 + rows], src[c0 + j + 3, r0:r0 + rows]
        s4, s5 = src[c0 + j + 4, r0:r0 + rows], src[c0 + j + 5, r0:r0 + rows]
        s6, s7 = src[c0 + j + 6, r0:r0 + rows], src[c0 + j + 7, r0:r0 + rows]
        for r in range(rows):
            d = dst[r]
            d[j], d[j + 1], d[j + 2], d[j + 3] = s0[r], s1[r], s2[r], s3[r]
            d[j + 4], d[j + 5], d[j + 6], d[j + 7] = s4[r], s5[r], s6[r], s7[r]
    for j in range(j8, cols):
        s = src[c0 + j, r0:r0 + rows]
        for r in range(rows):
            dst[r, j] = s[r]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_axpy(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] in the axpy order on 4-row strips (for an inner dimension below
    TILE_MIN_K: ``_matmul_tiles`` above it), for C-contiguous a (B|1, n, k), b (B|1, k, m) and out
    (B, n, m) (its values on entry are not read); a batch size of 1 in ``a`` or ``b`` is broadcast.
    With ``b_transposed`` the array passed as ``b`` holds bᵀ instead, C-contiguous (B|1, m, k): a
    layer's x @ Wᵀ hands over W as it lies, and the packing below turns each block around. With
    ``a_transposed`` the array passed as ``a`` holds aᵀ (B|1, k, n), as a weight gradient's gᵀ @ x
    does: each task copies its rows of a out of it, block by block.
    ``threads``: the number of threads that run the call (the rows are cut for them).

        for each (batch, row block, column block), claimed by the threads in turn (tasks.claim_task):
            for k0 in range(0, k, AXPY_K_BLOCK):
                panel = b[k0:k1, cols]                      (packed; from bᵀ: _copy_transposed;
                                                             fewer than DOT_MAX_M rows: b itself)
                (from aᵀ: the block's rows of a, a[rows, k0:k1], copied out by _copy_transposed)
                for i in row block, 4 at a time:
                    strip = out[i:i+4, cols]                (copied into a buffer; 0 in the first block)
                    strip += a[i:i+4, k0:k1] @ panel        (axpy_strip_4x4)
                    out[i:i+4, cols] = strip

    Optimisations:
    - "axpy" order (out row += number x b row) vectorises along the output row, so a short k
      costs nothing extra (see ``axpy_strip_4x4`` for the 4x4 register use);
    - packing: the block of b (AXPY_K_BLOCK x AXPY_COL_BLOCK, 256 KB in float32: half of the
      smallest L2 of the project's CPUs) is copied once per task into a contiguous panel whose rows
      are PAD_BYTES longer than the block. When b's rows are a power of two long (1024 floats =
      4 KB) the four rows a strip reads at once otherwise map to the same cache sets and evict
      each other; the four output rows likewise, hence the strip buffer of the same padded width.
      Measured on an AMD EPYC (Zen 4 as LLVM reports it), one thread, CPU time, median of
      interleaved rounds, as a fraction of numpy's BLAS: 1024 x 1024 x 1024 0.41-0.52 -> 0.63-0.82;
      49x128 @ 128x1024 (x64) 0.59-0.75 -> 0.81-0.92; 64x3136 @ 3136x512 0.73 -> 0.80-0.97; whole
      training steps (one process alternating the old and the packed kernel, CPU time): VAE 0.93x,
      DCGAN 0.96x, VQ-VAE 0.98x the time;
    - no packing for fewer than DOT_MAX_M rows (at most 7 strips read each block): a packed block
      is read by so few strips that the copy costs more than it saves, and b's rows are read where
      they lie. Kernel alone, one thread, CPU time, AMD EPYC Zen 3, medians of 15 rounds, fraction of
      numpy's BLAS, packed -> in place: 16x64 @ 64x6272 0.80 -> 0.95, 20 rows 0.79 -> 0.82, 24 0.78 ->
      0.88, 28 0.79 -> 0.80, 16x16 @ 16x12544 0.87 -> 0.96, 16x100 @ 100x4096 0.82 -> 0.87; but 32 rows
      (8 strips) lost, 32x16 @ 16x12544 0.90 -> 0.84, 32x64ᵀ @ 64x6272 0.82 -> 0.77, and more rows lost
      more (128x64 @ 64x1024 0.81 -> 0.66). Whole calls: 16x64 @ 64x6272 (the VQ-VAE's) 0.79 -> 0.89
      (3 alternating processes);
    - packing from bᵀ: the transpose happens block by block while packing, instead of a
      separate pass that turns all of bᵀ around first (``layouts.rows_of``), as BLAS packing
      routines do. Measured (one thread, CPU time, AMD EPYC Zen 4, load 2.7, GFLOP/s, numpy's BLAS
      in brackets): the DCGAN generator's x @ Wᵀ, (64 x 100) @ (100 x 6272), 53 -> 77 (77); the VAE
      decoder's (128 x 20) @ (20 x 400), 47 -> 52 (76);
    - the first K block sets the strips to zero instead of reading ``out``, so ``out`` needs no zeroing
      beforehand: for a short k that was two of the few passes over the output (``np.zeros`` and the
      copy in). Measured (one thread, CPU time, medians of 9, AMD EPYC Zen 4, load 1, GFLOP/s, numpy's
      BLAS in brackets): the DCGAN's weight gradient 6272x64ᵀ @ 64x100 32 -> 54 (86), its 64x16 @
      16x12544 60 -> 68 (73), the VAE's 128x20 @ 20x400 65 -> 72 (81), the CVAE's 128x8 @ 8x400 46 -> 52
      (77);
    - each 4-row strip streams past the panel, which stays in L2, with its 4 rows in L1;
      tasks write disjoint blocks of ``out``, cut for ``threads`` threads as in ``_matmul_tiles``: whole
      blocks of columns per task when there are enough (``tile_block``), so that each task packs only
      its own block of b (with shares of the rows, both threads packed all of it). Blocks start
      on a cache line (blocks of any width cost a tenth on one thread). Two threads, wall time, medians
      of 300 calls, 3 alternating processes, AMD EPYC Zen 3, GFLOP/s: the DCGAN's 64x100 @ 100x6272ᵀ
      93-99 -> 113-115, 32x64ᵀ @ 64x6272 93-98 -> 101-107, 64x16 @ 16x12544 91-94 -> 95-96; one thread
      unchanged within noise;
    - one Numba type for every layout of a: C-contiguous a or aᵀ, told apart by a flag at run time.
      Each layout of an argument compiles a kernel once more (3-4 s for each of this kernel and
      ``_matmul_tiles``; a transposed 2-D view and a transposed batch are two layouts, 'F' and 'A'), and
      the copy of a's rows costs 1/width of the multiply-adds that read them. Measured against the
      strided reads it replaced (one thread, CPU time, medians of 41 calls, two runs, load 0.6-0.7,
      µs): 32x64ᵀ @ 64x6272 469 and 380 -> 359 and 355, 64x16ᵀ @ 16x6272 279 and 211 -> 196 and 202.
    """
    nb, n, m = out.shape
    kk = a.shape[1] if a_transposed else a.shape[2]
    pad = PAD_BYTES // out.itemsize
    strips = (n + 3) // 4
    # as in _matmul_tiles, each task takes whole blocks of columns when there are enough of them;
    # the blocks start on a cache line (units of PAD_BYTES)
    unit = PAD_BYTES // out.itemsize
    units = (m + unit - 1) // unit
    col_blocks = balanced_blocks(units, AXPY_COL_BLOCK // unit, threads)
    row_blocks = balanced_blocks(strips, ROW_BLOCK // 4, 1 if col_blocks % threads == 0 else threads)
    in_place = n < DOT_MAX_M and not b_transposed           # few strips read a block: b not packed
    counter = task_counter()
    for _ in prange(threads):                               # each thread claims tasks until none are left
        task = claim_task(counter)
        while task < nb * col_blocks * row_blocks:
            z, i0, i1, u0, u1 = tile_block(task, n, units, 4, row_blocks, col_blocks)
            j0, j1 = u0 * unit, min(u1 * unit, m)
            a_z, b_z, out_z = a[z if a.shape[0] > 1 else 0], b[z if b.shape[0] > 1 else 0], out[z]
            width = j1 - j0
            panel = np.empty((0 if in_place else AXPY_K_BLOCK, width + pad), dtype=out.dtype)
            strip = np.empty((4, width + pad), dtype=out.dtype)
            rows = np.empty((i1 - i0 if a_transposed else 0, min(AXPY_K_BLOCK, kk)), dtype=out.dtype)
            i_end = i0 + (i1 - i0) // 4 * 4
            for k0 in range(0, kk, AXPY_K_BLOCK):
                kc = min(AXPY_K_BLOCK, kk - k0)
                src, p0 = panel, 0                                       # b[k0 + k, j0 + j] is src[k, p0 + j]
                if in_place:
                    src, p0 = b_z[k0:k0 + kc], j0                        # b's rows as they lie
                elif b_transposed:
                    _copy_transposed(b_z, k0, j0, kc, width, panel)      # pack b's block from bᵀ
                else:
                    _copy(b_z, k0, j0, kc, width, panel, 0, 0)           # pack b's block
                a_k, i_a, k_a = a_z, 0, k0                               # a[i, k0 + k] is a_k[i - i_a, k_a + k]
                if a_transposed:
                    _copy_transposed(a_z, i0, k0, i1 - i0, kc, rows)     # a[i0:i1, k0:k0+kc] from aᵀ
                    a_k, i_a, k_a = rows, i0, 0
                for i in range(i0, i_end, 4):
                    if k0 == 0:                                          # the first K block starts the sums
                        strip[:, :width] = 0.0
                    else:
                        _copy(out_z, i, j0, 4, width, strip, 0, 0)       # 4 rows of out, in
                    axpy_strip_4x4(a_k, i - i_a, k_a, kc, width, src, p0, strip)
                    _copy(strip, 0, 0, 4, width, out_z, j0, i)           # and out again
                for i in range(i_end, i1):
                    row = out_z[i, j0:j1]
                    if k0 == 0:
                        row[:] = 0.0
                    axpy_row(a_k, i - i_a, k_a, kc, width, src, p0, row)
            task = claim_task(counter)


@njit(fastmath=FASTMATH, cache=True)
def register_tile(a_panel, b_panel, k0, kc, out, i, j, add):
    """out[i:i+MR, j:j+NR] (+)= a_panel[:kc]ᵀ @ b_panel[k0:k0+kc]: an MR x NR block of out, summed over
    kc values of k in registers (only the rows and columns that out has are written; added to them
    with ``add``, else written over them).

    ``a_panel`` (≥ kc, MR) holds MR rows of a, k-major (``pack_rows``); ``b_panel`` (≥ k0 + kc, NR)
    NR columns of b, one k per row (``pack_columns``). MR = TILE_ROWS and NR = TILE_ROW_BYTES /
    itemsize are constants when the kernel compiles (``cpu.register_tile_shape``).

        acc = 0                                          (MR, NR), on the stack
        for k in range(kc):
            x, y = a_panel[k], b_panel[k0 + k]           MR numbers of a, NR of b
            for s in range(NR):                          the vector loop
                for r in range(MR):
                    acc[r, s] += x[r] * y[s]             an outer product: MR x NR multiply-adds
        out[i:i+MR, j:j+NR] (+)= acc

    Optimisations:
    - the running sums stay in registers for the whole k loop: ``acc`` lives on the stack
      (``stack.stack_tile``), where LLVM can prove nothing else points to it. The loop then holds
      MR broadcasts of a, NR/8 (float32, 256-bit vectors) loads of b and MR·NR/8 multiply-adds, and
      no loads or stores of the sums. The same loop on an ``np.zeros`` accumulator loads and stores
      every sum at every k: the axpy strips before this kernel did 16 multiply-adds per 8 loads and
      4 stores. Measured (one thread, CPU time, AMD EPYC Zen 4, load 1.3; tile alone on packed
      panels, 60 x 128 x 512 per call): 94-95 GFLOP/s, numpy's BLAS 99-100 on 1024 x 1024;
    - ``s`` outside ``r``: LLVM fully unrolls the short loop over the MR rows first and then
      vectorises the loop over the NR columns. With ``r`` outside, it unrolled the loop over the
      columns instead and vectorised over the rows, with gathers and scatters (about 15x slower);
    - both operands are read from packed panels, unit stride, from index 0.
    """
    acc = stack_tile(TILE_ROWS, TILE_ROW_BYTES, out)
    nr = acc.shape[1]
    for r in range(TILE_ROWS):
        for s in range(nr):
            acc[r, s] = 0.0
    for k in range(kc):
        x, y = a_panel[k], b_panel[k0 + k]
        for s in range(nr):
            ys = y[s]
            for r in range(TILE_ROWS):
                acc[r, s] += x[r] * ys
    # NOTE: the write-back loops run to rows and cols known only at run time. With the constants
    # TILE_ROWS and NR instead, LLVM unrolled them fully before its vectoriser saw them, and added
    # the tile to out one number at a time (192 scalar additions for a 6 x 32 tile)
    rows, cols = min(TILE_ROWS, out.shape[0] - i), min(nr, out.shape[1] - j)
    for r in range(rows):
        row = out[i + r, j:j + cols]
        if add:
            for s in range(cols):
                row[s] += acc[r, s]
        else:
            for s in range(cols):
                row[s] = acc[r, s]


@njit(fastmath=FASTMATH, cache=True)
def pack_rows(a, a_transposed, i0, i1, k0, kc, panels):
    """panels[t, k, r] = a[i0 + t·MR + r, k0 + k] for k < kc, zero past row i1: rows i0..i1 of a,
    MR at a time, k-major, as ``register_tile`` reads them. With ``a_transposed``, ``a`` holds aᵀ,
    whose rows already hold the MR numbers of a panel's row side by side."""
    mr = panels.shape[2]
    if a_transposed:
        for t in range(panels.shape[0]):
            r0 = i0 + t * mr
            rows = min(mr, i1 - r0)
            for k in range(kc):
                src, dst = a[k0 + k, r0:r0 + rows], panels[t, k]
                for r in range(rows):
                    dst[r] = src[r]
                for r in range(rows, mr):
                    dst[r] = 0.0
        return
    for t in range(panels.shape[0]):
        for r in range(mr):
            i = i0 + t * mr + r
            if i < i1:
                src = a[i, k0:k0 + kc]
                for k in range(kc):
                    panels[t, k, r] = src[k]
            else:
                for k in range(kc):
                    panels[t, k, r] = 0.0


@njit(fastmath=FASTMATH, cache=True)
def pack_columns(b, j, b_transposed, panel):
    """panel[k, s] = b[k, j + s] for every k and s < NR, zero past b's last column: NR columns of b
    as ``register_tile`` reads them. With ``b_transposed``, ``b`` holds bᵀ (m, k) instead.

    From bᵀ the copy runs along bᵀ's rows (unit stride), eight at a time (``_copy_transposed``)."""
    kk, nr = panel.shape
    w = min(nr, (b.shape[0] if b_transposed else b.shape[1]) - j)
    if b_transposed:
        _copy_transposed(b, np.intp(0), j, kk, w, panel)
    else:
        for k in range(kk):
            src, row = b[k, j:j + w], panel[k]
            for s in range(w):
                row[s] = src[s]
    for k in range(kk):
        row = panel[k]
        for s in range(w, nr):
            row[s] = 0.0


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_tiles(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] in the axpy order on register tiles, for an inner dimension of at least
    TILE_MIN_K; the arguments are those of ``_matmul_axpy`` (a or, with ``a_transposed``, aᵀ
    C-contiguous, b or, with ``b_transposed``, bᵀ C-contiguous, out zero on entry, a batch of 1
    broadcast).

        for each (batch, NR columns of b) in parallel:           once per call
            panels[z, t] = b[z, :, t·NR : t·NR + NR]              (K, NR)   pack_columns
        for each (batch, row block, column block), claimed by the threads in turn (tasks.claim_task):
            for k0 in range(0, k, k_block):                      k_block = K_BLOCK_BYTES / itemsize
                rows = a[row block, k0:k1], MR rows at a time, k-major               pack_rows
                for each NR columns j of the column block:
                    for each MR rows i of the row block:
                        out[i:i+MR, j:j+NR] += rows[i]ᵀ @ panels[j][k0:k1]       register_tile

    Against the strips, in one process alternating numpy, the strips and the tiles (one thread, CPU
    time, AMD EPYC Zen 4, load 1.4, fraction of numpy's BLAS): 1024 x 1024 x 1024 float32 0.79 ->
    0.98, float64 0.69 -> 0.89; 128 x 784 @ 784 x 400 0.87 -> 0.94; 400 x 128ᵀ @ 128 x 784 0.83 -> 0.90.

    Optimisations (one thread, CPU time, AMD EPYC Zen 4, 1024 x 1024 x 1024 float32 as a fraction
    of numpy's BLAS measured in the same process, load 1.2-2.2):
    - register tiles (``register_tile``): the MR x NR running sums stay in registers for a whole
      K block; the strips of ``_matmul_axpy`` load and store their output rows at every 4 k. Alone,
      on panels in L1/L2 (60 x 128 x 512), the two inner loops ran at the same speed on the Zen 4
      (strips 99-101, tiles 101-102 GFLOP/s); compiled for AVX2 (16 registers) the tiles won, 104
      against 91. In the whole product, in the same blocking as below, strips 0.71 and tiles 0.92 of
      numpy (why they differ there and not alone is not pinned down; appendix A, §A.8);
    - b packed once per call, into panels of NR columns that every task reads: packing one block
      of b in every task, as the strips do, cost 14 µs of every 83 µs of tiles and left the whole
      product at 0.63; packed once, 0.81-0.83;
    - long K blocks and short row blocks: a tile adds its sums into out once per K block, and that
      write-back, the zeroing and the call cost about as much as 40-80 steps of k. K blocks of 128
      and row blocks of 60 rows: 26.6 ms; 1024 (K_BLOCK_BYTES) and 30 (TILE_ROW_BLOCK): 22.1 ms,
      numpy 21.3 (0.80 -> 0.96). A panel of a (30 rows x 1024 k, 120 KB) then stays in L2, and
      each tile streams its panel of b (128 KB) from L2 too; more rows per task were slower
      (60: 23.1 ms, 120 and more: 29-37 ms at K blocks of 256-1024);
    - a and b both unit stride from index 0 in the tile's loop; the edges are padded with zeros
      in the panels, so every tile runs the same loop;
    - packing from bᵀ: the transpose happens while packing (x @ Wᵀ reads W as it lies);
    - tasks write disjoint blocks of ``out``: each element summed in one order on any number of
      threads;
    - row blocks cut for the threads that run the call (``balanced_blocks``, ``threads``): Numba gave
      each thread one contiguous share of the tasks (before they were claimed in turn), and 128 rows in
      blocks of 30 left two threads 90 and 38 rows. Cut into 6 blocks of 18-24 rows: 128 x 784 @ 784 x 400
      on two threads 104 -> 115 GFLOP/s (medians of 60 alternating calls, AMD EPYC Zen 4, sleeping pool;
      numpy 149). The cut decides only who computes a block, never the order of a sum;
    - on several threads, each takes whole blocks of columns (``tile_block``: the column blocks are a
      multiple of the threads, and threads of equal speed claim tasks in turn, column blocks fastest), so
      that it reads only its own part of b's panels: shares of the rows
      made every thread stream all of b (1.25 MB for the VAE's 784 x 400 weight, more than one core's
      L2). Two threads, medians of 60 calls x 3 rounds, AMD EPYC Zen 3, GFLOP/s (numpy's BLAS): 128 x 784
      @ 784 x 400ᵀ 97 -> 110 (145), 128 x 400 @ 400 x 784ᵀ 97 -> 115 (152), 128 x 784 @ 784 x 400 120 ->
      131 (151), 1024 x 1024 x 1024 165 -> 169 (184); one thread unchanged. The VAE's step on two threads,
      four alternating processes of 60 steps each: 6.99-7.11 -> 6.50-6.66 ms.
    """
    nb, n, m = out.shape
    kk = a.shape[1] if a_transposed else a.shape[2]
    mr = TILE_ROWS
    nr = TILE_ROW_BYTES // out.itemsize
    tiles = (m + nr - 1) // nr
    panels = np.empty((b.shape[0], tiles, kk, nr), dtype=out.dtype)
    for task in prange(b.shape[0] * tiles):
        z, t = task // tiles, task % tiles
        pack_columns(b[z], t * nr, b_transposed, panels[z, t])
    k_block = K_BLOCK_BYTES // out.itemsize
    row_tiles = (n + mr - 1) // mr
    col_blocks = balanced_blocks(tiles, max(1, AXPY_COL_BLOCK // nr), threads)
    # each task takes whole column blocks when there are enough of them, else shares of the rows
    row_blocks = balanced_blocks(row_tiles, max(1, TILE_ROW_BLOCK // mr), 1 if col_blocks % threads == 0 else threads)
    counter = task_counter()
    for _ in prange(threads):                           # each thread claims tasks until none are left
        task = claim_task(counter)
        while task < nb * col_blocks * row_blocks:
            z, i0, i1, t0, t1 = tile_block(task, n, tiles, mr, row_blocks, col_blocks)
            a_z, p_z, out_z = a[z if a.shape[0] > 1 else 0], panels[z if b.shape[0] > 1 else 0], out[z]
            rows = np.empty(((i1 - i0 + mr - 1) // mr, min(k_block, kk), mr), dtype=out.dtype)
            for k0 in range(0, kk, k_block):
                kc = min(k_block, kk - k0)
                pack_rows(a_z, a_transposed, i0, i1, k0, kc, rows)
                for jt in range(t0, t1):
                    for it in range(rows.shape[0]):
                        register_tile(rows[it], p_z[jt], k0, kc, out_z, i0 + it * mr, jt * nr, True)
            task = claim_task(counter)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_tiles_small_a(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] on register tiles, for an a small enough to stay in L2 whole (at most
    SMALL_A_BYTES, ``choose_kernel``):
    the arguments are those of ``_matmul_tiles``, but out's values on entry are not read (each tile
    sums all of k at once and writes its sums).

        for each (batch z, NR columns j), claimed by the threads in turn (tasks.claim_task):
            rows = a[z], MR rows at a time, k-major, all of k            (pack_rows; once per thread and z)
            panel = b[z, :, j:j+NR]                                       (pack_columns, just before use)
            for each MR rows i:
                out[z, i:i+MR, j:j+NR] = rows[i]ᵀ @ panel                (register_tile, all k)

    Optimisations:
    - each column tile of b is packed just before its tiles read it, into a buffer that stays in
      L1 or L2, and read by every row of out at once: ``_matmul_tiles`` packs all of b first into one
      array and reads it back later, which for the DCGAN generator's 6272 x 100 weight writes 2.5 MB
      out to L3 and reads it in again. Packing the DCGAN's panels alone took 375 µs of its 1,340 (one
      thread, AMD EPYC Zen 3);
    - a packed once per thread and batch, whole: it is small (at most SMALL_A_BYTES), so its tiles stay
      in L2 while the column tiles pass;
    - one pass over k: out is written, not added to, and needs no zeroing first;
    - a task per column tile: nothing is packed twice however the tiles are shared out, and with
      many small tasks a faster core simply claims more of them.
    Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, whole ``matmul_3d`` calls, best of 30 in
    each of 3 alternating processes, medians, µs, the kernels chosen before -> this one, numpy's BLAS in
    brackets): the DCGAN's 64x100 @ 100x6272ᵀ 1413 -> 1206 (1074; the strips before, k below
    TILE_MIN_K); the VAE's 128x784 @ 784x400ᵀ 1138 -> 1086 (975), 128x400 @ 400x784ᵀ 1149 -> 1136 (1025),
    128x784 @ 784x400 1043 -> 1023 (938), 128x400 @ 400x784 1064 -> 1005 (935); the VQ-VAE's and the
    DCGAN's short k (strips before): 32x64 @ 64x6272ᵀ 526 -> 491 (389), 64x16 @ 16x12544 500 -> 466 (464),
    32x16 @ 16x12544 382 -> 254 (238), 64x32 @ 32x6272 442 -> 391 (381), 16x64 @ 64x6272 241 -> 231 (204).
    An a of 4 MB (1024 x 1024 x 1024) ran faster too on this CPU, in a first version of this kernel
    (25.1 -> 22.8 ms, numpy 23.0), but its
    tiles then stream a from L3 for every column tile: left to ``_matmul_tiles``, whose blocks were
    measured on more CPUs. Not measured on AVX-512.
    """
    nb, n, m = out.shape
    kk = a.shape[1] if a_transposed else a.shape[2]
    mr = TILE_ROWS
    nr = TILE_ROW_BYTES // out.itemsize
    tiles, row_tiles = (m + nr - 1) // nr, (n + mr - 1) // mr
    counter = task_counter()
    for _ in prange(threads):                           # each thread claims tasks until none are left
        rows = np.empty((row_tiles, kk, mr), dtype=out.dtype)
        panel = np.empty((kk, nr), dtype=out.dtype)
        packed_z = -1                                   # the batch whose a is in ``rows``
        task = claim_task(counter)
        while task < nb * tiles:
            z, jt = task // tiles, task % tiles
            za = z if a.shape[0] > 1 else 0
            if za != packed_z:
                pack_rows(a[za], a_transposed, 0, n, 0, kk, rows)
                packed_z = za
            pack_columns(b[z if b.shape[0] > 1 else 0], jt * nr, b_transposed, panel)
            for it in range(row_tiles):
                register_tile(rows[it], panel, 0, kk, out[z], it * mr, jt * nr, False)
            task = claim_task(counter)


@njit(fastmath=FASTMATH, cache=True)
def strided_tile(mr, row_bytes, a, a0, lda, b, b0, ldb, kc, out, o0, ldo, rows, cols, add):
    """out[o0 + r·ldo + s] (+)= Σ_{k < kc} a[a0 + k·lda + r] · b[b0 + k·ldb + s] for r < rows, s < cols:
    ``register_tile`` on operands read where they lie. ``a``, ``b`` and ``out`` are flat; a step of k
    moves ``lda`` numbers along a and ``ldb`` along b, so a may be the storage of a transposed view
    (aᵀ C-contiguous: lda = n) or a packed panel (lda = MR), b a matrix's rows (ldb = m) or a panel.
    The tile always reads MR numbers of a and NR of b per k: the caller makes sure they exist (a
    short last tile runs on a packed copy). MR = ``mr`` rows of ``row_bytes`` (NR numbers) are
    compile-time constants: the wide tile (TILE_ROWS, TILE_ROW_BYTES) or the narrow one.

        acc = 0                                          (MR, NR), on the stack
        for k in range(kc):
            for s in range(NR):                          the vector loop: b[pb : pb + NR]
                for r in range(MR):
                    acc[r, s] += a[pa + r] · b[pb + s]   MR broadcasts of a
            pa, pb = pa + lda, pb + ldb
        out[o0 + r·ldo : .. + cols] (+)= acc[r, :cols]   (with ``add`` False the sums replace out)

    NOTE: the indices are unsigned (``np.uintp``). With signed ones (``a[a0 + k*lda : ..]`` sliced in the
    loop) Numba wraps negative indices, and every step of k ran 16 integer instructions and two
    branches before its 12 loads and 20 multiply-adds: 196x32ᵀ @ 32x16 for 64 images 62 -> 69
    GFLOP/s (one thread, CPU time, Zen 4).
    """
    numba.literally(mr)
    numba.literally(row_bytes)
    acc = stack_tile(mr, row_bytes, out)
    nr = acc.shape[1]
    for r in range(mr):
        for s in range(nr):
            acc[r, s] = 0.0
    pa, pb, sa, sb = np.uintp(a0), np.uintp(b0), np.uintp(lda), np.uintp(ldb)
    for k in range(kc):
        for s in range(nr):
            ys = b[pb + np.uintp(s)]
            for r in range(mr):
                acc[r, s] += a[pa + np.uintp(r)] * ys
        pa += sa
        pb += sb
    for r in range(rows):
        po = np.uintp(o0 + r * ldo)
        if add:
            for s in range(cols):
                out[po + np.uintp(s)] += acc[r, s]
        else:
            for s in range(cols):
                out[po + np.uintp(s)] = acc[r, s] + 0.0     # NOTE: "+ 0.0": else LLVM calls memcpy per row


@njit(fastmath=FASTMATH, cache=True)
def _kmajor_tiles(mr, row_bytes, af, panels, of, z, za, zb, i0, i1, n, kk, m, j_base, k_block, edge):
    """The tiles of out[z, i0:i1, j_base:] (``_matmul_kmajor``): MR numbers of aᵀ[za] read in place per
    k (a short last tile of rows from ``edge``, a buffer of at least k_block x MR), b[zb] from its
    packed panels (panels[zb, t] holds columns j_base + t·NR onwards)."""
    numba.literally(mr)
    numba.literally(row_bytes)
    nr = row_bytes // of.itemsize
    col_tiles = panels.shape[1]
    pf = panels.reshape(-1)
    short = i0 + (i1 - i0) // mr * mr       # the first row of a short last tile (i1 if none)
    for k0 in range(0, kk, k_block):
        kc = min(k_block, kk - k0)
        if short < i1:                      # its rows, zero-padded: the tile reads MR numbers per k
            for k in range(kc):
                for r in range(mr):
                    edge[k * mr + r] = af[(za * kk + k0 + k) * n + short + r] if short + r < i1 else 0.0
        for jt in range(col_tiles):
            b0 = ((zb * col_tiles + jt) * kk + k0) * nr
            for i in range(i0, i1, mr):
                a_src, a0, lda = af, (za * kk + k0) * n + i, n
                if i >= short:
                    a_src, a0, lda = edge, 0, mr
                j = j_base + jt * nr
                strided_tile(mr, row_bytes, a_src, a0, lda, pf, b0, nr, kc, of, (z * n + i) * m + j, m,
                             min(mr, i1 - i), min(nr, m - j), k0 > 0)


@njit(fastmath=FASTMATH, cache=True)
def _kmajor_tail(af, tail, of, z, za, zb, i0, i1, n, kk, m, j0, rest, sums):
    """out[z, i, j0 + r] = Σ_k aᵀ[za, k, i] · b[zb, k, j0 + r] for i0 <= i < i1 and the last ``rest``
    columns (at most NARROW_ROWS), on the narrow tile turned around: its MR rows are those columns
    (broadcast from ``tail``, b's last columns k-major, zero-padded) and its NR columns are NR rows of
    out, read as a row of aᵀ, contiguous. Each tile's sums go to ``sums`` and from there to out.

    Why: with the last 4 of m = 100 columns on an ordinary narrow tile (16 columns wide) the DCGAN's
    6272x64ᵀ @ 64x100 spent 190 µs of 1,201 on them (m = 96: 1,012 µs; one thread, CPU time, AMD EPYC
    Zen 3): a tile of 5 rows by 16 columns computed 80 sums for 20 useful ones; turned around, 64 of 80."""
    nr = NARROW_ROW_BYTES // of.itemsize
    tf = tail.reshape(-1)
    for i in range(i0, i1, nr):
        cols = min(nr, i1 - i)
        src, b0, ldb = af, (za * kk) * n + i, n
        if i + nr > n:                      # the tile reads NR numbers of aᵀ per k: past its end here,
            edge = np.zeros(kk * nr, dtype=of.dtype)                  # so from aᵀ's last rows, zero-padded
            for k in range(kk):
                for s in range(n - i):
                    edge[k * nr + s] = af[(za * kk + k) * n + i + s]
            src, b0, ldb = edge, 0, nr
        strided_tile(NARROW_ROWS, NARROW_ROW_BYTES, tf, zb * kk * NARROW_ROWS, NARROW_ROWS, src, b0, ldb, kk,
                     sums, 0, nr, rest, cols, False)
        for s in range(cols):
            row = (z * n + i + s) * m + j0
            for r in range(rest):
                of[row + r] = sums[r * nr + s]


@njit(cache=True)
def kmajor_columns(m, wide, narrow):
    """How many of m columns ``_matmul_kmajor`` computes on wide tiles (``wide`` numbers a row), the
    rest on narrow ones (``narrow``): none if all fit one narrow tile, all but the last few if those
    fit one (m mod wide <= narrow), else all: the narrow tile then wastes fewer of its sums on
    zero-padded columns than a wide one would, and the wide tile does the rest."""
    if m <= narrow:
        return 0
    rest = m % wide
    return m - rest if 0 < rest <= narrow and m > wide else m


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _matmul_kmajor(a_t, b, out, threads):
    """out[z] = a_t[z]ᵀ @ b[z] on register tiles that read a where it lies: a_t (B|1, k, n) is the
    C-contiguous storage of a transposed view (a weight gradient's gᵀ, a convolution's gradient
    g[n]ᵀ), b (B|1, k, m) C-contiguous, out (B, n, m) (written, not added to); a batch of 1
    broadcast. Outputs at most half a tile row wide run on the narrow tile, and so do the last
    columns of a wider one when they would fill no more than it (``kmajor_columns``); when they are no more
    than the narrow tile's rows, on that tile turned around (``_kmajor_tail``).

        panels[z, t] = b[z, :, t·NR : t·NR + NR], zero-padded               once per call (pack_columns)
        for each (batch z, block of rows), claimed by the threads in turn (tasks.claim_task, in_turn):
            for k0 in range(0, k, k_block):
                for each NR columns j, each MR rows i of the block:
                    out[z, i:i+MR, j:j+NR] (+)= aᵀ[z, k0:k1, i:i+MR]ᵀ @ panels[z, j][k0:k1]   strided_tile

    Optimisations (one thread, CPU time, AMD EPYC Zen 4 and the same compiled for a Zen 3, load
    2.3-2.9, medians of 9 alternating rounds, fraction of numpy's BLAS):
    - a is not packed, and a narrow product is not flipped: the k-major aᵀ holds, for each k, the MR
      numbers a tile broadcasts side by side. ``_matmul_tiles`` copies a into panels first, and a
      narrow product was computed as Cᵀ = BᵀAᵀ and turned back. Zen 4 / Zen 3 build, before ->
      after: 196x32ᵀ @ 32x16 for 64 images 0.40 -> 0.54 / 0.29 -> 0.39, 6272x64ᵀ @ 64x100 0.55 ->
      0.83 / 0.51 -> 0.76, 784x128ᵀ @ 128x400 0.86 -> 0.91 / 0.86 -> 0.88;
    - b is packed all the same: read in place, a row of b every k lies m numbers from the last, and
      a tile of 3 rows (AVX2) loads 4 vectors of b per 12 multiply-adds: Zen 3 build, 784x128ᵀ @
      128x400 0.60 in place, 0.88 packed;
    - the narrow tile (NARROW_ROWS x NARROW_ROW_BYTES) for outputs of 16 float32 columns: a wide
      tile leaves half its sums unused (on 196x32ᵀ @ 32x16 for 64 images, with the tiles of
      ``conv_tiles`` reading a through offsets: 60 GFLOP/s narrow, 38 wide); and for the last
      columns of a wider output, when they fill half a wide tile row or less: the DCGAN's
      6272x64ᵀ @ 64x100 ran 4 wide tiles for 100 columns (128, a fifth of its multiply-adds on
      zeros), now 3 wide and a narrow one (112): 0.74 -> 0.80 of numpy; 784x128ᵀ @ 128x400 (384 + 16
      columns) 0.87 -> 0.90 (one thread, CPU time, AMD EPYC Zen 3, 3 alternating processes x 9 rounds).
    - the last 1..NARROW_ROWS columns of a wider output (the DCGAN's 100 = 3 x 32 + 4) on the narrow tile
      turned around (``_kmajor_tail``): those columns are its rows, rows of out its columns. One thread, CPU
      time, AMD EPYC Zen 3, one process timing main's kernel and this in turn, medians of 60, three
      processes: 6272x64ᵀ @ 64x100 1309, 1283, 1296 -> 1203, 1183, 1287 µs (784x128ᵀ @ 128x400, unchanged
      code, 0.99-1.04 of its time); two threads 658, 653 -> 617, 618;
    - claims numbered ``in_turn``: threads of equal speed each compute one contiguous half of the rows, as
      Numba's equal shares did, and a slower one still leaves the rest to the other. Numbered in claim
      order, the two threads took alternate blocks of rows and ran 3-7% slower than with the equal
      shares on cores that ran alike (784x128ᵀ @ 128x400 520 -> 546 µs; two threads, one process timing
      both in turn, medians of 200 calls, AMD EPYC Zen 3, 2026-12-07). In turn, against the equal shares, in
      9 processes x 3 products (784x128ᵀ @ 128x400, 400x128ᵀ @ 128x784, 6272x64ᵀ @ 64x100): 0.81-1.04 of
      their time, median 0.91; 1.00-1.03 in the one process whose cores ran alike (512 -> 517 µs).
    """
    nb, n, m = out.shape
    kk = a_t.shape[1]
    wide_nr, narrow_nr = TILE_ROW_BYTES // out.itemsize, NARROW_ROW_BYTES // out.itemsize
    m_wide = kmajor_columns(m, wide_nr, narrow_nr)          # columns on wide tiles, the rest narrow
    rest = m - m_wide
    flipped = m_wide > 0 and 0 < rest <= NARROW_ROWS        # the last few columns: a flipped narrow tile
    wide_tiles, narrow_tiles = (m_wide + wide_nr - 1) // wide_nr, 0 if flipped else (rest + narrow_nr - 1) // narrow_nr
    mr = TILE_ROWS if m_wide > 0 else NARROW_ROWS           # the tasks' rows come in whole tiles of this
    panels = np.empty((b.shape[0], wide_tiles, kk, wide_nr), dtype=out.dtype)
    narrow_panels = np.empty((b.shape[0], narrow_tiles, kk, narrow_nr), dtype=out.dtype)
    # b's last columns, k-major and zero-padded to the narrow tile's rows (``_kmajor_tail``)
    tail = np.zeros((b.shape[0] if flipped else 0, kk, NARROW_ROWS), dtype=out.dtype)
    col_tiles = wide_tiles + narrow_tiles
    for task in prange(b.shape[0] * col_tiles):
        zb, t = task // col_tiles, task % col_tiles
        if t < wide_tiles:
            pack_columns(b[zb], t * wide_nr, False, panels[zb, t])
        else:
            pack_columns(b[zb], m_wide + (t - wide_tiles) * narrow_nr, False, narrow_panels[zb, t - wide_tiles])
    for zb in range(tail.shape[0]):
        for k in range(kk):
            for r in range(rest):
                tail[zb, k, r] = b[zb, k, m_wide + r]
    af, of = a_t.reshape(-1), out.reshape(-1)
    k_block = K_BLOCK_BYTES // out.itemsize
    tiles = (n + mr - 1) // mr
    row_blocks = balanced_blocks(tiles, tiles if nb >= 4 * threads else max(1, TILE_ROW_BLOCK // mr), threads)
    counter = task_counter()
    for _ in prange(threads):                           # each thread claims tasks until none are left
        sums = np.empty(NARROW_ROWS * narrow_nr if flipped else 0, dtype=out.dtype)     # the flipped tile's
        task = claim_task(counter)
        while task < nb * row_blocks:
            z, i0, i1 = tile_block(in_turn(task, nb * row_blocks, threads), n, 1, mr, row_blocks, 1)[:3]
            za, zb = z if a_t.shape[0] > 1 else 0, z if b.shape[0] > 1 else 0
            # a buffer for a short last tile of rows, only in the task that has it (an allocation per task
            # cost 196x32ᵀ @ 32x16 for 64 images, 448 tasks, a fifth of its time)
            short = (m_wide > 0 and (i1 - i0) % TILE_ROWS != 0) or (m_wide < m and (i1 - i0) % NARROW_ROWS != 0)
            edge = np.zeros(min(k_block, kk) * max(TILE_ROWS, NARROW_ROWS), dtype=out.dtype) if short else af
            if m_wide > 0:
                _kmajor_tiles(TILE_ROWS, TILE_ROW_BYTES, af, panels, of, z, za, zb, i0, i1, n, kk, m, 0, k_block,
                              edge)
            if flipped:
                _kmajor_tail(af, tail, of, z, za, zb, i0, i1, n, kk, m, m_wide, rest, sums)
            elif m_wide < m:
                _kmajor_tiles(NARROW_ROWS, NARROW_ROW_BYTES, af, narrow_panels, of, z, za, zb, i0, i1, n, kk, m,
                              m_wide, k_block, edge)
            task = claim_task(counter)


@njit(fastmath=FASTMATH, cache=True)
def _few_rows(a, b, out):
    """out = a @ b for an output of few rows: a (r, k), b (k, w) and out (r, w) C-contiguous (out's
    values on entry are not read). The axpy kernel's strips, on the rows of b and of out as they lie:

        for k0 in range(0, k, AXPY_K_BLOCK):
            for i in range(0, r, 4):
                (first K block: out[i:i+4] = 0)
                out[i:i+4] += a[i:i+4, k0:k1] @ b[k0:k1]        (axpy_strip_4x4)
            the last r mod 4 rows one at a time                 (axpy_row)
    """
    r, w = out.shape
    kk = a.shape[1]
    r4 = r // 4 * 4
    if kk == 0:
        out[:] = 0.0
    for k0 in range(0, kk, AXPY_K_BLOCK):
        kc = min(AXPY_K_BLOCK, kk - k0)
        panel = b[k0:k0 + kc]               # slicing rows keeps b's rows contiguous: no packing
        for i in range(0, r4, 4):
            if k0 == 0:                     # zeroed here, in L1, just before the strip adds to them
                for rr in range(i, i + 4):
                    out[rr, :] = 0.0
            axpy_strip_4x4(a, i, k0, kc, w, panel, np.intp(0), out[i:i + 4])
        for i in range(r4, r):
            if k0 == 0:
                out[i, :] = 0.0
            axpy_row(a, i, k0, kc, w, panel, np.intp(0), out[i])


@njit(fastmath=FASTMATH, cache=True)
def _few_rows_tiles(a_k, b, out, panel):
    """out = a @ b for an output of few rows and a short k (below TILE_MIN_K), on register tiles that
    read b where it lies: ``a_k`` holds a k-major, a[i, k] = a_k[k·r + i] (r = out's rows), followed
    by at least max(TILE_ROWS, NARROW_ROWS) numbers of padding; b (k, w) and out (r, w) C-contiguous
    (out's values on entry are not read); ``panel`` a buffer of at least k·NR numbers for the last
    w mod NR columns, which are copied there zero-padded (a tile reads NR numbers of b per k).

        for each NR columns j of b (the last ones from the panel, on the narrow tile if they fit):
            for each MR rows i:
                out[i:i+MR, j:j+NR] = a[i:i+MR, :] @ b[:, j:j+NR]       strided_tile, all k at once

    Why (against ``_few_rows``'s strips): with k this short, b's k rows stay in L1, so the tiles read
    them in place and pack nothing, and each tile keeps its sums in registers for all of k and
    stores them once, where a strip loads and stores its four output rows every four steps of k.
    Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2; µs, strips -> tiles, numpy's
    BLAS in brackets):
    - whole ``matmul_3d`` calls, one process timing main's kernels and these in turn, medians of 25
      rounds: z @ Wᵀ into the decoder, 128x20 @ 20x400ᵀ 42.8 -> 37.4 (33.8) and the CVAE's 128x18 @
      18x400ᵀ 41.4 -> 35.1 (31.3); g @ W, 128x20 @ 20x400 41.9 -> 33.8 (32.8); products on unchanged
      paths in the same run 0.98-1.02 of their time;
    - ``_matmul_narrow`` alone, same method, 11 rounds: 128x18 @ 18x400 29.5 -> 27.8 (30.0), 128x32 @
      32x400 52.8 -> 43.0 (44.7), 128x64 @ 64x400 109 -> 86 (79), 20x18 @ 18x400 7.0 -> 6.5 (7.5); lost
      with k = 8 (128x8 @ 8x400 15.3 -> 16.2) and, in whole calls, with k = 1 (64x1 @ 1x3136 44 -> 60);
      in a first survey also with few rows (4x18 @ 18x400 1.5 -> 2.0, 8x128 @ 128x400 13.8 -> 14.2)
      and with k = 128 (20x128 @ 128x400 36.9 -> 41.7). So ``_matmul_narrow`` calls this only for at
      least NARROW_TILES_MIN_ROWS rows and NARROW_TILES_MIN_K <= k < TILE_MIN_K.

    NOTE: NR is taken from a stack tile's shape, a constant when the kernel compiles; computed as
    TILE_ROW_BYTES // out.itemsize (a value read at run time from the array) the same kernel took
    31.8 µs instead of 24.9 for 128x18 @ 18x400 and 20.4 instead of 14.6 for 128x8 @ 8x400 (a first
    version, one process; why the constant matters so much was not pinned down: the tiles' stores then
    run to a column count LLVM knows, which is all we can say)."""
    r, w = out.shape
    kk = b.shape[0]
    nr = stack_tile(1, TILE_ROW_BYTES, out).shape[1]
    narrow_nr = stack_tile(1, NARROW_ROW_BYTES, out).shape[1]
    wide = w // nr * nr
    rest = w - wide
    rest_nr = narrow_nr if rest <= narrow_nr else nr
    for k in range(kk if rest > 0 else 0):
        row = b[k]
        for s in range(rest):
            panel[k * rest_nr + s] = row[wide + s]
        for s in range(rest, rest_nr):
            panel[k * rest_nr + s] = 0.0
    bf, of = b.reshape(-1), out.reshape(-1)
    for j in range(0, wide, nr):
        for i in range(0, r, TILE_ROWS):
            strided_tile(TILE_ROWS, TILE_ROW_BYTES, a_k, i, r, bf, j, w, kk, of, i * w + j, w, min(TILE_ROWS, r - i),
                         nr, False)
    if 0 < rest <= narrow_nr:
        for i in range(0, r, NARROW_ROWS):
            strided_tile(NARROW_ROWS, NARROW_ROW_BYTES, a_k, i, r, panel, np.intp(0), narrow_nr, kk, of, i * w + wide,
                         w, min(NARROW_ROWS, r - i), rest, False)
    elif rest > 0:
        for i in range(0, r, TILE_ROWS):
            strided_tile(TILE_ROWS, TILE_ROW_BYTES, a_k, i, r, panel, np.intp(0), nr, kk, of, i * w + wide, w,
                         min(TILE_ROWS, r - i), rest, False)


@njit(fastmath=FASTMATH, cache=True)
def _matmul_narrow(a, a_transposed, b, b_transposed, out, out_turned):
    """out[z] = a[z] @ b[z] for an output of few rows, on the calling thread: a (B|1, r, k) or, with
    ``a_transposed``, aᵀ (B|1, k, r), b (B|1, k, w) or, with ``b_transposed``, bᵀ (B|1, w, k), and out
    (B, r, w), or with ``out_turned`` out[z]ᵀ (B, w, r), all C-contiguous (out's values on entry are
    not read); a batch size of 1 in ``a`` or ``b`` is broadcast. An output of few *columns* comes here
    transposed (``narrow``): Cᵀ = BᵀAᵀ has few rows, and long ones, and is turned back into C here.

        for z in range(B):
            (from bᵀ: b[z] turned around, k rows)
            if r >= NARROW_TILES_MIN_ROWS and NARROW_TILES_MIN_K <= k < TILE_MIN_K:
                a_k = a[z] k-major                        (from aᵀ: its rows copied)
                _few_rows_tiles(a_k, b[z], out[z])        register tiles reading b in place
            else:
                (from aᵀ: a[z]'s few rows copied out of it first)
                _few_rows(a[z], b[z], out[z])             the axpy strips
            (out_turned: each into a buffer, then out[z] = bufferᵀ, transpose_rows)

    Optimisations (one thread, CPU time, fraction of numpy's BLAS; AMD EPYC Zen 4, load 2.3):
    - no thread pool: a parallel kernel costs ~1.2 µs to start even on one thread and ~4.7 µs when
      it wakes the pool, a plain compiled function ~0.2 µs; for products of 8-30 µs in BLAS, that
      and the general path's Python bookkeeping (~10 µs per call) were a third of the time;
    - no packing: with few output rows each row of b is read by only those few, so a packed copy
      of b costs as much as the product (the packed axpy kernel: 1x64 @ 64x3136 0.07 of BLAS as a
      kernel alone; unpacked 1.0);
    - the long side is the vector loop: with few columns, the flipped product reads aᵀ (a weight
      gradient's gᵀ @ x) by rows as it lies. Kernels alone: 400x128ᵀ @ 128x20 0.72 -> 0.87 (the
      flipped packed axpy kernel -> this one), 8x128ᵀ @ 128x400 0.58 -> 0.82 (dot kernel -> this);
    - aᵀ in one Numba type with a (a flag): a's few rows copied here cost 0.2-0.3 µs; NumPy's copy
      (8x128ᵀ @ 128x400: 13.0 -> 14.1 µs) and strided reads in a kernel compiled per layout
      (about 1 s of compiling for each) cost more;
    - bᵀ turned around here, by the same flag (a layer's z @ Wᵀ into a wide output with a short k,
      whose k rows of b stay in L1), and out written, not added to, so that it needs no zeroing
      first: its rows are zeroed in L1 as the strips reach them. Each was a pass over memory in
      Python (``rows_of``, ``np.zeros``), 3-6 µs a call on top of the product's 30. With the strips'
      shorter tail (``axpy_strip_4x4``), whole calls (one thread, CPU time, AMD EPYC Zen 3, medians of
      3 alternating processes x 9 rounds, another process running; numpy's BLAS in brackets):
      128x20 @ 20x400ᵀ 46.6 -> 40.5 µs (32.7), 128x18 @ 18x400ᵀ 48.5 -> 39.3 (30.4), 128x8 @ 8x400
      20.0 -> 18.3 (17.5);
    - a flipped product turned back here (``out_turned``), four rows at a time (``transpose_rows``),
      instead of into a temporary that the caller turned afterwards: whole calls (one thread, CPU time,
      AMD EPYC Zen 3, one process timing both in turn, medians of 16 rounds; numpy's BLAS in brackets)
      400x128ᵀ @ 128x20 45.0 -> 43.1 µs (35.6), 400x128ᵀ @ 128x18 42.1 -> 39.5 (32.0); products that
      take no flip moved by 1-4% in the same run, so part of that is noise.

    NOTE: these products stay on one thread. Tried (appendix A, §A.15): the columns of out shared out
    among threads, same bits. Kernel alone, 2 threads: 20x128 @ 128x400 33 -> 23 µs; but where two
    threads summed into the same rows of out, the cache line where their columns met went back and
    forth between the cores, once per 4 steps of k (85 µs), and in whole calls the pool, idle between
    them, woke too slowly for ``threads.ThreadChoice`` ever to pick it (VAE step: 1 thread for every
    narrow product).
    """
    r, w = (out.shape[2], out.shape[1]) if out_turned else (out.shape[1], out.shape[2])
    kk = a.shape[1] if a_transposed else a.shape[2]
    tiles = r >= NARROW_TILES_MIN_ROWS and NARROW_TILES_MIN_K <= kk < TILE_MIN_K
    rows = np.empty((r if a_transposed and not tiles else 0, kk), dtype=out.dtype)
    a_k = np.empty(kk * r + max(TILE_ROWS, NARROW_ROWS) if tiles else 0, dtype=out.dtype)
    for t in range(kk * r if tiles else 0, a_k.size):     # only the padding needs zeros: a_k is filled below
        a_k[t] = 0.0
    panel = np.empty(kk * (TILE_ROW_BYTES // out.itemsize) if tiles else 0, dtype=out.dtype)
    b_rows = np.empty((kk if b_transposed else 0, w), dtype=out.dtype)
    part = np.empty((1 if out_turned else 0, r, w), dtype=out.dtype)
    for z in range(out.shape[0]):
        a_z, b_z = a[z if a.shape[0] > 1 else 0], b[z if b.shape[0] > 1 else 0]
        if tiles:
            if z > 0 and a.shape[0] == 1:
                pass                                    # a broadcast: a_k holds it already
            elif a_transposed:                          # a k-major, a_k[k·r + i] = a[i, k]: aᵀ's rows
                for k in range(kk):
                    src = a_z[k]
                    for i in range(r):
                        a_k[k * r + i] = src[i]
            else:
                for i in range(r):
                    src = a_z[i]
                    for k in range(kk):
                        a_k[k * r + i] = src[k]
        elif a_transposed:
            for k in range(kk):
                src = a_z[k]
                for i in range(r):
                    rows[i, k] = src[i]
            a_z = rows
        if b_transposed and (z == 0 or b.shape[0] > 1):
            _copy_transposed(b_z, np.intp(0), np.intp(0), kk, w, b_rows)
        target = part[0] if out_turned else out[z]
        if tiles:
            _few_rows_tiles(a_k, b_rows if b_transposed else b_z, target, panel)
        else:
            _few_rows(a_z, b_rows if b_transposed else b_z, target)
        if out_turned:
            transpose_rows(part, out[z:z + 1], np.intp(0), w)


@njit(fastmath=FASTMATH, cache=True)
def _matmul_narrow_dot(a, bt, out):
    """out[z] = a[z] @ bt[z]ᵀ for an output of few columns whose a is C-contiguous (a layer's
    g @ W), on the calling thread: the dot kernel's tiles (``dot_block``) without its pool.
    a (B|1, n, k) and bt (B|1, m, k) C-contiguous, out (B, n, m) zero on entry; in the dot kernel's
    blocks of ROW_BLOCK x COL_BLOCK. NOTE: passing the constants 0 as the first row and column would
    compile ``dot_block`` once more: a constant from one kernel to another is typed as a literal."""
    nb, n, m = out.shape
    for z in range(nb):
        a_z, bt_z = a[z if a.shape[0] > 1 else 0], bt[z if bt.shape[0] > 1 else 0]
        for i0 in range(0, n, ROW_BLOCK):
            for j0 in range(0, m, COL_BLOCK):
                dot_block(a_z, bt_z, out[z], i0, min(i0 + ROW_BLOCK, n), j0, min(j0 + COL_BLOCK, m))


# ---------------------------------------------------------------------------- choice and entry
def packing_dominates(n, m, itemsize):
    """True if the register tiles (``_matmul_tiles``) would copy many numbers per multiply-add: they
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
    ``_matmul_tiles_small_a`` ("small_a"), for a short k too (measured there).
    """
    if m < DOT_MAX_M:
        return "dot"        # narrow output: axpy rows too short to vectorise
    if k >= AXPY_MAX_K and not copies_for_dot and (DOT_TILE_FITS or packing_dominates(n, m, itemsize)):
        return "dot"        # a long inner axis suits the dot product
    if n * k * itemsize <= SMALL_A_BYTES:
        return "small_a"    # the axpy order on register tiles, a packed whole (``_matmul_tiles_small_a``)
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
    with at least DOT_MAX_M rows and 12-16 float32 columns now takes ``_matmul_kmajor`` first.)
    """
    m, n, k = b.shape[2], a.shape[1], a.shape[2]
    if not m < DOT_MAX_M <= n:
        return False
    dot_copies = (0 if is_rows(a) else n * k) + (0 if is_rows(b.swapaxes(-1, -2)) else k * m)
    flip_copies = (0 if is_rows(a.swapaxes(-1, -2)) else n * k) + n * m
    return flip_copies < dot_copies


def kmajor_pays(a, b, dtype):
    """Run a product on ``_matmul_kmajor``? When a is a transposed view (aᵀ C-contiguous: a weight
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
    saves nothing there, as ``_matmul_tiles_small_a`` packs it once, and packing every b[z] up front cost
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
    """How a product with a narrow output can run on ``_matmul_narrow``, copying at most a small b:
    "rows" if b's rows can be read as they lie and the output has few rows (fewer than DOT_MAX_M, and
    no more than columns), or if the inner dimension is that short and the output wide: then all of b
    (k rows) stays in L1 and packing it is pure cost (the input gradient g @ W of the CVAE's 400 -> 8
    layer, 128x8 @ 8x400: 20.4 µs on the packed strips, 13.7 here, numpy 10.2; one thread, CPU time),
    and so is packing it from bᵀ when it is a transposed view: the narrow kernel turns it to rows
    itself (the decoder's first layer z @ Wᵀ, 128x20 @ 20x400ᵀ: 38.8 µs packed, 30.6 copied to rows
    first, numpy 26.6; 128x18 @ 18x400ᵀ 38.5 -> 34.7, numpy 24.4; Zen 4. Turned around inside the
    kernel instead of by ``rows_of``: see ``_matmul_narrow``);
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
    """``_matmul_narrow`` into ``out`` (written, not added to; zero for "dot") by ``plan`` ("rows" or
    "flip", see ``narrow_plan``),
    copying the operand read by rows if its layout does not suit (only when a caller forces it)."""
    dtype = out.dtype
    if plan == "dot":
        bt = b.swapaxes(1, 2)
        _matmul_narrow_dot(rows_of(a, dtype), bt if bt.dtype == dtype and is_rows(bt) else contiguous(bt, dtype), out)
        return out
    if plan == "rows":
        _matmul_narrow(*rows_or_transposed(a, dtype), *rows_or_transposed(b, dtype), out, False)
        return out
    # Cᵀ = Bᵀ Aᵀ: few rows now, and long ones; the kernel turns the narrow result around into out
    _matmul_narrow(*rows_or_transposed(b.swapaxes(1, 2), dtype), *rows_or_transposed(a.swapaxes(1, 2), dtype),
                   out, True)
    return out


def matmul_3d(a, b, out_batch, kernel=None):
    """The Numba product of a (1|B, n, k) and b (1|B, k, m) into a new (out_batch, n, m) array.

    Any layout and float dtype is accepted. ``kernel`` ("dot", "axpy", "small_a", "kmajor" or
    "narrow") overrides the choice by shape. No operand is copied when its layout already suits the
    kernel: the dot kernel reads rows of A and of Bᵀ, so ``x @ wᵀ`` with a contiguous ``w`` is free;
    the axpy kernel reads rows of B and single numbers of A, and takes ``gᵀ @ x`` from g itself (``a_transposed``, copying
    each task's rows of a block by block); it runs on register tiles
    (``_matmul_tiles``) for an inner dimension of at least TILE_MIN_K, on 4-row strips
    (``_matmul_axpy``) below it, and on ``_matmul_tiles_small_a`` for any k when a is small
    (``choose_kernel``). A product too small to pay for
    waking the thread pool runs on the calling thread alone (``threads.sized_for``); a product with
    a narrow output and fewer than NARROW_MOST_WORK multiply-adds runs on the narrow kernels, without
    any pool (``narrow_plan``). A transposed view times C-contiguous rows runs on ``_matmul_kmajor``
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
            _matmul_kmajor(rows_of(a.swapaxes(1, 2), dtype), rows_of(b, dtype), out, pool_threads())
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
            _matmul_dot(rows_of(a, dtype), rows_of(b.swapaxes(-1, -2), dtype), out, pool_threads())
        else:
            packed = _matmul_axpy if strips else _matmul_tiles_small_a if kernel == "small_a" else _matmul_tiles
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
    up, (n, m), on ``_matmul_dot_summed`` (which reads rows of a and of bᵀ: a weight gradient's g[n] and
    the patches' P[n]ᵀ as they lie; other layouts are copied)."""
    dtype = np.result_type(a, b)
    nb, n, k, m = a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    out = np.zeros((n, m), dtype=dtype)
    if nb * n * k * m == 0:
        return out
    with sized_for(nb * n * k * m, ("matmul", "summed", a.shape, b.shape, dtype.char)):
        _matmul_dot_summed(rows_of(a, dtype), rows_of(b.swapaxes(-1, -2), dtype), out, pool_threads())
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
