"""The axpy kernel: each row of C is a sum of scaled rows of B ("a times x plus y").

``matmul_axpy`` builds four rows of C at a time, four steps of k at a time, on a packed block of B;
its vector loop runs along the output row, so a short inner dimension (the 20-d latent, a
convolution's few channels) costs no more than a long one. From ``TILE_MIN_K`` on, the register
tiles (:mod:`.tiles`) run the same order faster.
"""
import numpy as np

from numba import njit, prange

from ..tasks import claim_task, task_counter
from .blocks import balanced_blocks, tile_block
from .packing import copy_block, copy_transposed
from .sizes import AXPY_COL_BLOCK, AXPY_K_BLOCK, DOT_MAX_M, FASTMATH, PAD_BYTES, ROW_BLOCK


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


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_axpy(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] in the axpy order on 4-row strips (for an inner dimension below
    TILE_MIN_K: ``matmul_tiles`` above it), for C-contiguous a (B|1, n, k), b (B|1, k, m) and out
    (B, n, m) (its values on entry are not read); a batch size of 1 in ``a`` or ``b`` is broadcast.
    With ``b_transposed`` the array passed as ``b`` holds bᵀ instead, C-contiguous (B|1, m, k): a
    layer's x @ Wᵀ hands over W as it lies, and the packing below turns each block around. With
    ``a_transposed`` the array passed as ``a`` holds aᵀ (B|1, k, n), as a weight gradient's gᵀ @ x
    does: each task copies its rows of a out of it, block by block.
    ``threads``: the number of threads that run the call (the rows are cut for them).

        for each (batch, row block, column block), claimed by the threads in turn (tasks.claim_task):
            for k0 in range(0, k, AXPY_K_BLOCK):
                panel = b[k0:k1, cols]                      (packed; from bᵀ: copy_transposed;
                                                             fewer than DOT_MAX_M rows: b itself)
                (from aᵀ: the block's rows of a, a[rows, k0:k1], copied out by copy_transposed)
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
      tasks write disjoint blocks of ``out``, cut for ``threads`` threads as in ``matmul_tiles``: whole
      blocks of columns per task when there are enough (``tile_block``), so that each task packs only
      its own block of b (with shares of the rows, both threads packed all of it). Blocks start
      on a cache line (blocks of any width cost a tenth on one thread). Two threads, wall time, medians
      of 300 calls, 3 alternating processes, AMD EPYC Zen 3, GFLOP/s: the DCGAN's 64x100 @ 100x6272ᵀ
      93-99 -> 113-115, 32x64ᵀ @ 64x6272 93-98 -> 101-107, 64x16 @ 16x12544 91-94 -> 95-96; one thread
      unchanged within noise;
    - one Numba type for every layout of a: C-contiguous a or aᵀ, told apart by a flag at run time.
      Each layout of an argument compiles a kernel once more (3-4 s for each of this kernel and
      ``matmul_tiles``; a transposed 2-D view and a transposed batch are two layouts, 'F' and 'A'), and
      the copy of a's rows costs 1/width of the multiply-adds that read them. Measured against the
      strided reads it replaced (one thread, CPU time, medians of 41 calls, two runs, load 0.6-0.7,
      µs): 32x64ᵀ @ 64x6272 469 and 380 -> 359 and 355, 64x16ᵀ @ 16x6272 279 and 211 -> 196 and 202.
    """
    nb, n, m = out.shape
    kk = a.shape[1] if a_transposed else a.shape[2]
    pad = PAD_BYTES // out.itemsize
    strips = (n + 3) // 4
    # as in matmul_tiles, each task takes whole blocks of columns when there are enough of them;
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
                    copy_transposed(b_z, k0, j0, kc, width, panel)      # pack b's block from bᵀ
                else:
                    copy_block(b_z, k0, j0, kc, width, panel, 0, 0)           # pack b's block
                a_k, i_a, k_a = a_z, 0, k0                               # a[i, k0 + k] is a_k[i - i_a, k_a + k]
                if a_transposed:
                    copy_transposed(a_z, i0, k0, i1 - i0, kc, rows)     # a[i0:i1, k0:k0+kc] from aᵀ
                    a_k, i_a, k_a = rows, i0, 0
                for i in range(i0, i_end, 4):
                    if k0 == 0:                                          # the first K block starts the sums
                        strip[:, :width] = 0.0
                    else:
                        copy_block(out_z, i, j0, 4, width, strip, 0, 0)       # 4 rows of out, in
                    axpy_strip_4x4(a_k, i - i_a, k_a, kc, width, src, p0, strip)
                    copy_block(strip, 0, 0, 4, width, out_z, j0, i)           # and out again
                for i in range(i_end, i1):
                    row = out_z[i, j0:j1]
                    if k0 == 0:
                        row[:] = 0.0
                    axpy_row(a_k, i - i_a, k_a, kc, width, src, p0, row)
            task = claim_task(counter)
