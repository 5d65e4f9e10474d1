"""The dot kernel: each element of C is a dot product of a row of A and a row of Bᵀ.

``matmul_dot`` computes sixteen of them at a time in a 4x4 tile held in registers, its vector loop
along k: for a long k whose operands it can read as they lie (x @ Wᵀ), and for outputs too narrow
for the axpy order's vector loop (x @ W into the VAE's 20 latent units). ``matmul_dot_summed`` runs
the same tiles over a batch and adds the products up, Σ_z A[z] @ B[z] (a few-feature convolution's
weight gradient, summed over its images).
"""
from numba import njit, prange

from ..tasks import claim_task, task_counter
from .blocks import balanced_blocks
from .sizes import COL_BLOCK, DOT_TILE_FITS, FASTMATH, K_BLOCK_BYTES, ROW_BLOCK


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
def matmul_dot(a, bt, out, threads):
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
def matmul_dot_summed(a, bt, out, threads):
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
