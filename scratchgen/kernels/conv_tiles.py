"""Convolutions on register tiles that read their patches straight from the image (no im2col copy).

Every product of a convolution has one operand that is a patch matrix: P (positions x features)
in the forward pass and the weight gradient, the patches of the upstream gradient g in the input
gradient. A register tile (``matmul_numba.tiles.register_tile``) reads MR numbers of its left operand A
per step of k and *broadcasts* each to a whole vector: they are single loads, so they need not lie
side by side. Here A is never copied. Each of its entries is found in a flat, padded,
channels-last image ``src`` as the sum of two offsets, one for its row and one for its column:

    A[i, k] = src[row_src[i] + k_src[k]]

For the forward pass a row i is a position (n, y, x) and a column k a feature (u, v, c):

    row_src[(n, y, x)] = ((n·Hp + y·sh)·Wp + x·sw)·C        where the patch starts
    k_src[(u, v, c)]   = (u·Wp + v)·C + c                    where its feature lies from there

The weight gradient swaps the two roles (rows: features, k: positions) and reads the padded image
channels-first, NCHW, instead: its k steps then walk along an image row, one number after the other,
where channels-last they jumped from pixel to pixel, a cache line apart or more (``grad_weight_tables``).
The other operand B
(the weights, or g) is small and packed once per call into panels of NR columns, as
``register_tile`` reads them. The input gradient of a strided convolution (also the forward pass
of a transposed one) is cut into sh·sw convolutions with stride 1, one per *phase* (r mod sh,
s mod sw) of the output pixel, each a product of the same kind (``grad_input_tables``).

These replace fused kernels that copied each image's P (or a block of it) into a buffer and ran
the 4x4 dot tiles or the axpy strips on it. Measured (one thread, CPU time, AMD EPYC Zen 4, load
2.5-2.6, one process alternating the two, medians of 7 rounds; whole layers, forward + both
gradients): DCGAN convT 128->64 32.4 -> 30.1 ms, VQ-VAE 4x4 64->64 38.0 -> 33.2 ms, 3x3 64->64
21.0 -> 18.8 ms, 3x3 16->64 8.1 -> 6.0 ms; first calls of the three products in both dtypes into an
empty cache 16.5-18.7 -> 6.4 s of compiling (appendix A, §A.9).
"""
import math
import threading

import numba
import numpy as np
from numba import njit, prange

from .matmul_numba import FASTMATH, NARROW_ROW_BYTES, NARROW_ROWS, TILE_ROW_BYTES, TILE_ROWS
from .layouts import transposed
from .stack import stack_tile
from .tasks import claim_task, task_counter

# the narrow tile (NARROW_ROWS x NARROW_ROW_BYTES, from the matmul) serves products with only half a panel
# of columns here: the input gradient of a layer with 16 input channels
# one offset per row of a tile, of either shape (a stack array)
ROW_OFFSET_BYTES = max(TILE_ROWS, NARROW_ROWS) * np.dtype(np.uintp).itemsize
# rows per task of _gathered_rows: whole tiles of each shape, about ROW_BLOCK (96 rows of 3 or 6, 90 of 10;
# measured in _rows_block)
ROW_BLOCK = 96
WIDE_BLOCK = max(1, ROW_BLOCK // TILE_ROWS) * TILE_ROWS
NARROW_BLOCK = max(1, ROW_BLOCK // NARROW_ROWS) * NARROW_ROWS
BLOCK_OFFSET_BYTES = max(WIDE_BLOCK, NARROW_BLOCK) * np.dtype(np.intp).itemsize
# positions per task of the weight gradient, at most: each task sums dw over its own positions, and
# the tasks' partial sums are added in a fixed order (measured: see _gathered_k_chunks)
GRAD_WEIGHT_CHUNK = 1024
GRAD_WEIGHT_K_BLOCK = GRAD_WEIGHT_CHUNK  # positions per pass of a tile in the weight gradient (_gathered_k_chunks)
CHUNKS_MULTIPLE = 4                     # chunks come in multiples of 4: 1, 2 or 4 threads share them evenly
CHUNKS_BYTES = 32 * 2**20               # the chunks' partial sums of dw take at most this much memory (or 4 of them)


def weight_gradient_chunks(positions, partial_bytes):
    """(chunks, chunk): the weight gradient's N·L positions cut into a multiple of CHUNKS_MULTIPLE
    chunks of equal length, at most GRAD_WEIGHT_CHUNK (the last one may be shorter), and no more
    chunks than CHUNKS_BYTES holds partial sums of ``partial_bytes`` each (a layer with 512 channels
    in and out and a 3x3 kernel has a dw of 9.4 MB: 4 chunks then, however many positions). It depends
    on the shapes alone, never on the number of threads, so neither do the sums."""
    chunks = -(-positions // GRAD_WEIGHT_CHUNK)
    chunks = -(-chunks // CHUNKS_MULTIPLE) * CHUNKS_MULTIPLE
    most = max(CHUNKS_MULTIPLE, CHUNKS_BYTES // max(1, partial_bytes) // CHUNKS_MULTIPLE * CHUNKS_MULTIPLE)
    chunk = -(-positions // min(chunks, most))
    return -(-positions // chunk), chunk


# ---------------------------------------------------------------------------- Numba kernels
@njit(fastmath=FASTMATH, cache=True)
def gather_tile(mr, row_bytes, src, row_src, i, rows, k_src, k0, kc, panel, out, row_dst, col_stride, j, cols, add):
    """out[row_dst[i + r] + (j + s)·col_stride] (+)= Σ_k src[row_src[i + r] + k_src[k0 + k]] · panel[k0 + k, s]
    for r < rows (at most MR), s < cols (at most NR) and k < kc: one MR x NR register tile whose
    left operand is gathered from ``src`` through two offset tables (uintp) instead of a packed panel.
    With ``add`` the sums are added into ``out``, else they replace what it held. The tile's shape,
    MR = ``mr`` rows of ``row_bytes`` (NR numbers), must be constants when it compiles: the wide tile
    (TILE_ROWS, TILE_ROW_BYTES) or the narrow one (NARROW_ROWS, NARROW_ROW_BYTES).

        at[r] = row_src[i + r]                           (the last row repeated past ``rows``)
        acc = 0                                          (MR, NR), on the stack
        for k in range(kc):
            kk = k_src[k0 + k]
            for s in range(NR):                          the vector loop
                for r in range(MR):
                    acc[r, s] += src[at[r] + kk] · panel[k0 + k, s]
        out[row_dst[i + r] + (j + s)·col_stride] (+)= acc[r, s]

    Optimisations:
    - no packed copy of A: ``register_tile`` broadcasts its MR numbers of A one by one anyway, so
      reading them from MR places in the image costs the same loads; one more load per step of k
      fetches ``kk``. The inner loop (``inspect_asm``): 1 offset load, MR broadcasts, NR/8 loads
      of B and MR·NR/8 multiply-adds, no loads or stores of sums (6 x 32 float32 on Zen 4);
    - the offsets are unsigned: Numba then adds no test for negative indices in the loop; and the
      loop reads k_src and the panel through views that start at k0 (``ks``, ``rows_b``), indexed
      from 0: indexed as ``k_src[k0 + k]``, each step tested k0 + k for a negative index (k0 is an
      argument, so LLVM cannot rule it out) and multiplied it by the panel's row length, 32
      instructions a step for the 12 multiply-adds of a 3 x 32 tile against 25 (``inspect_asm``; the
      5 x 16 tile's 10: 30 against 23).
      Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, the kernels alone, one process
      alternating, 31 rounds, medians of per-round ratios): weight gradients of the VQ-VAE's 3x3
      16->64, 64->32 and 64->64 layers 0.978, 0.970 and 0.981 of their time; forward passes and input
      gradients 0.997-1.005 (there the multiply-adds, not the instructions around them, set the pace);
    - the row offsets ``at`` live on the stack too, so LLVM keeps them in registers;
    - with ``add`` False a tile stores its sums, so outputs that one tile completes need no zeroing;
    - NOTE: ``+ 0.0`` in that store (it changes nothing but the sign of a zero sum) keeps LLVM from
      recognising a plain copy and calling ``memcpy`` for every row of the tile (a call and a
      ``vzeroupper`` per 128 bytes); the loop is then vector loads and stores. With NR as its trip
      count instead, LLVM unrolled it into 32 scalar copies. Measured (2026-12-07, one thread, CPU
      time, load 2.7-3.2, one process alternating, medians of 25, twice): weight gradients of the
      DCGAN's and VQ-VAE's large layers 0.94-0.99 of their time, the 16->64 layer's input gradient
      (narrow tile, through ``_rows_block``) 0.89-0.90, forward passes 0.98-1.0; compiled for a Zen 3
      (AVX2) 0.94-1.06, 0.93 and 0.93-0.99; whole layers 0.975-0.999;
    - a narrow tile for products only half a panel wide: rows of half the width, and as many more
      of them as the registers hold (``cpu.register_tile_shape``: 10 x 16 float32 on Zen 4, 5 x 16
      on AVX2), the same number of running sums. On the wide tile half of every panel was zeros.
    - NOTE: why 6 x 32 and not another shape: with NV vectors a row, the tile's speed on Zen 4 follows
      NV / (NV + 1), as if each broadcast took a multiply-add's issue slot (a model that fits these
      numbers). Measured (2026-12-07, one thread, CPU time, load 1.0-1.4, forward passes on a copy of
      the tile with a channels-last output, the VQ-VAE's 3x3 and 4x4 64->64 layers, GFLOP/s): 12 x 16
      75-83, 6 x 32 91-111, 3 x 64 97-112, 6 x 64 with 512-bit vectors 97-113. Rows of one vector let
      LLVM fold each broadcast into its multiply-add (``{1to8}``), which did not pay: 24 x 8 61-66 (its
      24 row offsets spill from the 16 general registers), 59-70 packing A in the kernel; a 16 x 8
      weight-gradient tile, whose rows are consecutive channels (constant offsets), 63-89 against 89-105
      for 6 x 32 (appendix A, §A.9).
    Measured (one thread, CPU time, AMD EPYC Zen 4, load 2.5, GFLOP/s, three runs, fused kernel ->
    this tile): forward passes of the VQ-VAE's 3x3 64->64 layer 78-79 -> 90-92 and 4x4 64->64 layer
    72-76 -> 85-90; the tile alone on operands in L1, 98-105 (the packed ``register_tile``: 112).
    The narrow tile (2026-12-07, load 1.3-1.6, one process alternating in 21 rounds, medians): the
    VQ-VAE's input gradient of 3x3 16 -> 64 on (128, 16, 7, 7), separate passes (matmul and col2im;
    the wide tile with half-empty panels was no faster) -> narrow tile 2.70 -> 1.81 and 2.78 -> 2.07 ms;
    with 6 or 8 rows instead of 10, one run each, 0.61 and 0.65 of the separate passes' time against
    0.67-0.74 (within the noise), with 12 (the sums spill) 0.85. Compiled for a Zen 3 (AVX2, 5 x 16
    float32, load 2.2) on the same core: 2.95 -> 1.89 and 4.05 -> 2.26 ms.
    """
    # NOTE: the tile's shape must be a constant (a literal); every other argument must not be: a
    # constant passed from one kernel to another is typed as a literal too and compiles this function
    # once more (10 signatures where 4 do), so the callers write np.intp(0) and np.bool_(False)
    numba.literally(mr)
    numba.literally(row_bytes)
    acc = stack_tile(mr, row_bytes, out)
    at = stack_tile(1, ROW_OFFSET_BYTES, row_src)
    nr = acc.shape[1]
    for r in range(mr):
        at[0, r] = row_src[i + min(r, rows - 1)]
        for s in range(nr):
            acc[r, s] = 0.0
    ks, rows_b = k_src[k0: k0 + kc], panel[k0: k0 + kc]
    for k in range(kc):
        kk = ks[k]
        y = rows_b[k]
        for s in range(nr):
            ys = y[s]
            for r in range(mr):
                acc[r, s] += src[at[0, r] + kk] * ys
    if col_stride == 1:             # a row of the tile is a run of out: a vector loop
        for r in range(rows):
            run = out[row_dst[i + r] + j: row_dst[i + r] + j + cols]
            if add:
                for s in range(cols):
                    run[s] += acc[r, s]
            else:
                for s in range(cols):
                    run[s] = acc[r, s] + 0.0
    else:
        for r in range(rows):
            d = row_dst[i + r]
            if add:
                for s in range(cols):
                    out[d + (j + s) * col_stride] += acc[r, s]
            else:
                for s in range(cols):
                    out[d + (j + s) * col_stride] = acc[r, s]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gathered_rows(src, row_src, row_count, k_src, panels, out, row_dst, col_stride, n_cols, threads):
    """out[row_dst[p, i] + j·col_stride] = Σ_k src[row_src[p, i] + k_src[k]] · panels[p, j // NR, k, j % NR]
    for every phase p, row i < row_count[p] and column j < n_cols; ``out`` flat (only these elements
    are written: each is one tile's whole sum, so ``out`` need not be zero).

        for each block of rows, claimed by the threads in turn (tasks.claim_task):
            one phase (rows in runs of out):  _rows_block: the block's tiles into a buffer, then
                                              copied to out as runs of consecutive places
            several phases:
                for each phase p, each tile of MR rows i of the block, each panel of NR columns j:
                    gather_tile(all k)                 the whole k loop in registers, stored into out

    Used by the forward pass (one phase: rows are positions (n, y, x), columns output channels)
    and the input gradient (phases of the output pixels, ``grad_input_tables``). Panels NR/2 wide
    (NARROW_ROW_BYTES a row) run on the narrow tile, NARROW_ROWS rows at a time.

    Optimisations:
    - a tile runs the whole k loop (all kh·kw·C features) at once: its fixed cost, zeroing the
      sums and adding them into ``out``, is paid once per output element;
    - rows run over all images together, so only the last tile of the batch has unused rows (one
      image of 7x7 positions in tiles of 6 rows would leave a tenth of them unused);
    - tasks own disjoint rows of ``out``: every element is summed by one task in one order,
      whatever the number of threads;
    - threads claim the tasks in turn (``tasks.claim_task``) instead of each taking an equal share: a
      core that runs slower (another program on it, a host that shares it out) takes fewer blocks.
      Measured (2026-12-07, AMD EPYC Zen 3, 2 vCPUs, 11 processes, each timing the old kernels and these
      in turn, forced to 2 threads, medians of 15 rounds; whole layers: forward + both gradients, which
      include ``_gathered_k_chunks`` and the matmul kernels, all claiming their tasks now), new / old time
      per process, median and range: the VQ-VAE's 4x4 64->64 on (128, 64, 14, 14) 0.84 (0.78-1.10), 3x3
      64->64 0.89 (0.80-1.01), 16->64 0.91 (0.83-1.07), 1x1 32->64 0.94 (0.89-1.22); the DCGAN's 4x4 32->64
      0.99 (0.79-1.03). The gains come in the processes where the old kernels were slow (4x4 64->64:
      25.5-31.0 ms -> 21.0-24.0), where one core ran slower than the other; one thread: 0.99-1.01;
    - a task is a block of rows with all its phases, one after the other (with a task for each phase
      of each block, two threads claiming them in turn wrote the same cache lines of dx at once);
      the phases of one block of rows follow each other: taken phase after phase, each phase wrote
      every fourth pixel of the whole dx (stride 2) and each cache line of dx came from memory four
      times. The VQ-VAE's 4x4 64->64 input gradient on (128, 64, 14, 14): 12.6-14.6 -> 10.8-10.9 ms
      (one thread, CPU time, load 2.7; the fused kernel: 11.7-13.1);
    - with one phase (the forward pass, the input gradient with stride 1) the rows of a block are
      positions that follow each other in the NCHW ``out``, but a tile holds its sums the other way
      round, NR channels side by side: stored straight from the tile, each column of it went to
      ``out`` as a scatter instruction (LLVM's choice with AVX-512). ``_rows_block`` stores the
      tiles' rows into a buffer on the stack with vector stores and copies it to ``out`` a run at a
      time. Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 4, load 2.0, one process
      alternating old and new, medians of 15): forward passes of the DCGAN's 128->64 and 32->64, the
      VQ-VAE's 4x4 64->64, 3x3 64->64, 64->32 and 16->64 layers 0.985, 0.93, 0.93, 0.885, 0.925 and
      0.94 of their time, input gradients with stride 1 0.95, 0.91 and 0.94; whole layers (load 2.4,
      21 rounds) 3x3 64->64 17.1 -> 16.4, 64->32 10.0 -> 9.4, 16->64 6.3 -> 5.8 ms, the 4x4 layers
      within noise (0.98-1.02). Compiled for a Zen 3 (AVX2: no scatter instructions, the old stores
      were scalar) on the same core: 0.95-1.04, no change beyond the noise. With several phases the
      rows of a block are every other pixel, no runs: the buffer was no faster there (0.99-1.04).
    """
    phases, most = row_src.shape
    kk = k_src.shape[0]
    nr = panels.shape[3]
    narrow = nr * panels.itemsize == NARROW_ROW_BYTES          # half-width panels: the narrow tile
    mr = NARROW_ROWS if narrow else TILE_ROWS
    block = NARROW_BLOCK if narrow else WIDE_BLOCK
    blocks = (most + block - 1) // block
    counter = task_counter()
    for _ in prange(threads):                                   # each thread claims blocks until none are left
        task = claim_task(counter)
        while task < blocks:
            i0 = task * block
            if phases == 1:             # rows in runs of out: each block's sums first into a buffer
                i1 = min(i0 + block, row_count[0])
                if narrow:
                    _rows_block(NARROW_ROWS, NARROW_ROW_BYTES, NARROW_BLOCK, src, row_src[0], i0, i1, k_src,
                                panels[0], out, row_dst[0], col_stride, n_cols)
                else:
                    _rows_block(TILE_ROWS, TILE_ROW_BYTES, WIDE_BLOCK, src, row_src[0], i0, i1, k_src, panels[0],
                                out, row_dst[0], col_stride, n_cols)
            else:
                for p in range(phases):                                 # the phases of one block in a row
                    for i in range(i0, min(i0 + block, row_count[p]), mr):
                        for jp in range(panels.shape[1]):
                            rows = min(mr, row_count[p] - i, i0 + block - i)
                            j, cols = jp * nr, min(nr, n_cols - jp * nr)
                            if narrow:
                                gather_tile(NARROW_ROWS, NARROW_ROW_BYTES, src, row_src[p], i, rows, k_src,
                                            np.intp(0), kk, panels[p, jp], out, row_dst[p], col_stride, j, cols,
                                            np.bool_(False))
                            else:
                                gather_tile(TILE_ROWS, TILE_ROW_BYTES, src, row_src[p], i, rows, k_src, np.intp(0),
                                            kk, panels[p, jp], out, row_dst[p], col_stride, j, cols,
                                            np.bool_(False))
            task = claim_task(counter)


@njit(fastmath=FASTMATH, cache=True)
def _rows_block(mr, row_bytes, block, src, row_src, i0, i1, k_src, panels, out, row_dst, col_stride, n_cols):
    """``_gathered_rows`` for the rows i0 <= i < i1 of one phase (at most ``block``, a constant as ``mr``
    and ``row_bytes`` are): the tiles store their sums side by side in a buffer on the stack, and each
    panel's block of sums then goes to ``out`` column by column, as runs of the rows whose places in
    ``out`` follow each other (the positions of one image in an NCHW output).

        for each panel jp:
            for each tile of MR rows i of the block:
                sums[i: i+MR, :] = gather_tile(all k)               vector stores, one row of NR at a time
            for each run r..e of rows with row_dst[i0 + t + 1] = row_dst[i0 + t] + 1:
                for s < NR:
                    out[row_dst[i0 + r] + (jp·NR + s)·col_stride + (0 .. e - r)] = sums[r: e, s]

    NOTE: written from the tile straight into an NCHW out, each element is a store of its own, a
    column of the tile col_stride numbers from the next (LLVM makes them scatter instructions with
    AVX-512); measured in ``_gathered_rows``.

    Optimisations:
    - blocks of about ROW_BLOCK = 96 rows (whole tiles), not 30: a block's runs then hold whole images of
      7 x 7 positions, so fewer of out's cache lines are written in parts by two blocks. Measured
      (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, the kernel alone, one process, medians of
      21, GFLOP/s, blocks of 30 -> 96 rows): forward passes of the VQ-VAE's 3x3 16->64, 64->32, 64->64 and
      4x4 64->64 layers 70 -> 75, 89 -> 91, 90 -> 91, 90 -> 91; input gradients of the three 3x3 ones
      73 -> 75, 79 -> 82, 88 -> 89; 150, 195, 255 and 390 rows within noise of 96. Whole 3x3 layers (one
      process alternating, 41 rounds, two runs): 64->64 0.986 and 0.983 of their time, 64->32 0.988 and
      1.003, 16->64 0.985 and 0.988; the other layers within noise (0.99-1.01).
    - NOTE: the buffer turned into out 8 x 8 numbers at a time in registers (24 shuffles, an LLVM
      intrinsic) instead of one number at a time was no faster (forward and input gradients 0.99-1.01,
      one run 1.1 slower): the copy's cost is in out's cache lines, not in its instructions.
    - each run is copied from ``column``, a view of one column of ``sums``, indexed from 0 up: written as
      ``sums[r + t, s]``, every number paid Numba's test for a negative index (LLVM cannot tell that
      r + t >= 0 when r comes from a while loop): a compare and a conditional move per load, 53-56
      instructions per 8 numbers against 14 (``inspect_asm``). Measured (2026-12-07, one thread, CPU
      time, AMD EPYC Zen 3, AVX2, the kernel alone, one process alternating main's and this in 31
      rounds, medians of per-round ratios): forward passes of the VQ-VAE's 3x3 16->64, 64->32 and
      64->64 layers 0.934, 0.969 and 0.971 of their time, their input gradients 0.970, 0.960 and 0.962.
      Skipping the copy altogether (a wrong result, to see its cost) made the 16->64 forward pass 0.80-0.86
      of its time: the copy is dear where k is short (144 features there), as each output element
      costs it once whatever k is.
    """
    numba.literally(mr)
    numba.literally(row_bytes)
    numba.literally(block)
    sums = stack_tile(block, row_bytes, out)
    here = stack_tile(1, BLOCK_OFFSET_BYTES, row_dst)       # row r of the block at r·NR in ``sums``
    nr = sums.shape[1]
    rows = i1 - i0
    for r in range(rows):
        here[0, r] = r * nr
    for jp in range(panels.shape[0]):
        for i in range(0, rows, mr):
            gather_tile(mr, row_bytes, src, row_src[i0:], i, min(mr, rows - i), k_src, np.intp(0), k_src.shape[0],
                        panels[jp], sums.reshape(-1), here[0], np.intp(1), np.intp(0), nr, np.bool_(False))
        j = jp * nr
        r = 0
        while r < rows:
            e = r + 1
            while e < rows and row_dst[i0 + e] == row_dst[i0 + e - 1] + 1:
                e += 1
            for s in range(min(nr, n_cols - j)):
                start = row_dst[i0 + r] + (j + s) * col_stride
                run, column = out[start: start + e - r], sums[r: e, s]
                for t in range(e - r):
                    run[t] = column[t]
            r = e


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gathered_k_chunks(src, row_src, k_src, panels, chunk, k_block, partial, row_dst, n_cols, threads):
    """partial[t, row_dst[q] + j] = Σ_{k in chunk t} src[row_src[q] + k_src[k]] · panels[j // NR, k, j % NR]:
    the weight gradient dwᵀ (Q, O) summed over one chunk of positions k per task into ``partial``
    (chunks, Q·O), ``row_dst[q]`` = q·O (the first k block of a chunk writes, the others add). The
    caller adds the chunks' sums in order.

        for each chunk t of positions, claimed by the threads in turn (tasks.claim_task):
            for each pass of at most k_block positions of the chunk:
                for each panel of NR channels j, each tile of MR features q:
                    partial[t, q: q+MR, j: j+NR] (+)= gather_tile(that block)

    Optimisations:
    - tasks over positions, not over dw: a task reads each image it covers once, while all of dw's
      tiles pass over it (with tasks over blocks of dw, every task read the whole batch);
    - chunks whose length follows from the shape (``weight_gradient_chunks``), not one per thread,
      so the sums, and the order in which they are added, do not depend on the number of threads;
      a multiple of 4 equal chunks, so that 2 or 4 threads get the same work (7 chunks of 1024 and
      one of 128 left 2 threads with 4096 and 2176 positions);
    - k blocks: the image rows of k_block positions stay in L2 while every tile passes over them;
      a chunk is cut into passes of equal length (784 positions: 2 x 392, not 512 + 272).
      Measured (one thread, CPU time, load 2.5-2.7, GFLOP/s over three layers): passes of 128, 256 and
      512 positions within noise of each other (68-87), 1024 slower (55-62 on the 14x14 layers).
    - k_block (GRAD_WEIGHT_K_BLOCK) = GRAD_WEIGHT_CHUNK, one pass per chunk, since the image is read
      channels-first (``grad_weight_tables``), one number after the other along its rows. Measured
      (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, the kernel alone, medians of 15, GFLOP/s,
      passes of 112 / 196 / 392 / 784 positions): DCGAN convT 128->64 78 / 84 / 86 / 89, VQ-VAE 4x4
      64->64 82 / 86 / 87 / 91, 3x3 64->64 84 / 88 / 90 / 92, 64->32 85 / 90 / 92 / 95, 16->64 85 / 89 /
      92 / 94, DCGAN 32->64 84 / 88 / 91 / 95. (Channels-last, passes of 196 had been the best: 392 ->
      196, 47-62 -> 65-73 on the large layers, their panel of g then in L1.) Not measured on AVX-512.
    - panels NR/2 wide (a 1x1 layer's weight gradient with 16 float32 output channels, conv_numba's
      ``pointwise_tiles_pay``) run on the narrow tile, as in ``_gathered_rows``: on the wide one half of
      each panel was zeros. Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, medians of
      41): the VQ-VAE's 1x1 64->16 on (128, 64, 7, 7) 0.435 -> 0.297 ms (32->16: 0.285 -> 0.208); whole
      layer (one process alternating, 41 rounds, two runs) 1.31 -> 1.17 and 1.29 -> 1.15 ms.
    """
    chunks, features = partial.shape[0], row_src.shape[0]
    positions = k_src.shape[0]
    nr = panels.shape[2]
    narrow = nr * panels.itemsize == NARROW_ROW_BYTES          # half-width panels: the narrow tile
    mr = NARROW_ROWS if narrow else TILE_ROWS
    counter = task_counter()
    for _ in prange(threads):                                   # each thread claims chunks until none are left
        t = claim_task(counter)
        while t < chunks:
            k_end = min((t + 1) * chunk, positions)
            passes = (k_end - t * chunk + k_block - 1) // k_block
            step = (k_end - t * chunk + passes - 1) // passes      # passes of equal length, at most k_block
            for k0 in range(t * chunk, k_end, step):
                kc = min(step, k_end - k0)
                for jp in range(panels.shape[0]):
                    for q in range(0, features, mr):
                        rows, j, cols = min(mr, features - q), jp * nr, min(nr, n_cols - jp * nr)
                        if narrow:
                            gather_tile(NARROW_ROWS, NARROW_ROW_BYTES, src, row_src, q, rows, k_src, k0, kc,
                                        panels[jp], partial[t], row_dst, np.intp(1), j, cols, k0 > t * chunk)
                        else:
                            gather_tile(TILE_ROWS, TILE_ROW_BYTES, src, row_src, q, rows, k_src, k0, kc, panels[jp],
                                        partial[t], row_dst, np.intp(1), j, cols, k0 > t * chunk)
            t = claim_task(counter)


@njit(cache=True)
def pack_weights(w, panels):
    """panels[0, jp, (i, j, c), s] = w[jp·NR + s, c, i, j], zero past the last output channel: the
    forward pass's B, the weight turned to the features' order (i, j, c), NR output channels per panel.

        for each panel jp, channel c:
            for i, j:
                for s in range(NR):
                    panels[0, jp, (i·kw + j)·C + c, s] = w[jp·NR + s, c, i, j]       (or 0)

    Optimisations:
    - c outside (i, j): the NR rows of w that a panel reads hold the kh·kw numbers of one channel
      side by side, so each cache line of w read stays in L1 until all of its numbers are used.
      With (i, j) outside c they were read again for every (i, j): 0.09 -> 0.03 ms for the VQ-VAE's
      64 x 64 x 3 x 3 weight (one thread, CPU time, load 2.8). NOTE: for 128 x 64 x 4 x 4 both
      orders took 0.32 ms: its rows are 4 KB apart, so the NR rows a panel reads compete for the
      same few sets of the L1 cache (as the packed panels of ``matmul_axpy`` once did).
    """
    o, c, kh, kw = w.shape
    nr = panels.shape[3]
    for jp in range(panels.shape[1]):
        for cc in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = panels[0, jp, (i * kw + j) * c + cc]
                    for s in range(nr):
                        row[s] = w[jp * nr + s, cc, i, j] if jp * nr + s < o else 0.0


@njit(cache=True)
def pack_phase_weights(w, sh, sw, t_rows, u_cols, panels):
    """panels[(a, b), jp, (t', u', o), s] = w[o, jp·NR + s, a + sh·(T−1−t'), b + sw·(U−1−u')], zero
    past the kernel and past the last input channel: the input gradient's B, one set of panels per
    phase (a, b) (``grad_input_tables``).

        for each phase (a, b), panel jp, tap (t', u'), output channel o:
            i, j = a + sh·(T−1−t'), b + sw·(U−1−u')
            for s in range(NR):
                panels[(a, b), jp, (t', u', o), s] = w[o, jp·NR + s, i, j]   (or 0)

    Optimisations:
    - the flip, the split into phases and the transpose in one pass, each row written in memory
      order (NumPy's version, a zero-padded copy, a reshape into phases, a reversed view and a
      transpose, took 0.5 ms a call for the DCGAN's 128 x 64 x 4 x 4 weight, against 0.1 here).
    """
    o, c, kh, kw = w.shape
    nr = panels.shape[3]
    for a in range(sh):
        for b in range(sw):
            for jp in range(panels.shape[1]):
                for t in range(t_rows):
                    i = a + sh * (t_rows - 1 - t)
                    for u in range(u_cols):
                        j = b + sw * (u_cols - 1 - u)
                        for oo in range(o):
                            row = panels[a * sw + b, jp, (t * u_cols + u) * o + oo]
                            for s in range(nr):
                                cc = jp * nr + s
                                row[s] = w[oo, cc, i, j] if i < kh and j < kw and cc < c else 0.0


# ---------------------------------------------------------------------------- tables and panels
LINE_BYTES = 64         # a cache line (x86, Arm), and the widest vector (AVX-512)


def aligned_empty(shape, dtype, zero=False):
    """``np.empty(shape, dtype)`` (``np.zeros`` with ``zero``) whose first number starts a cache line: the
    tiles' packed panels (B), whose rows of TILE_ROW_BYTES then are whole cache lines.

    NOTE: NumPy's arrays start wherever ``malloc`` puts them, 16 bytes past a line boundary as often as on
    one; a row of a panel then spans three lines, not two, and half of the tile's vector loads of B cross
    a line. Measured (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, the kernels alone, one
    process, medians of 11, GFLOP/s, panels starting on a line -> 16 bytes past one): forward passes of
    the DCGAN's convT 128->64 (its input gradient's product), the VQ-VAE's 4x4 64->64, 3x3 64->64 and
    64->32 layers 88 -> 81, 91 -> 84, 90 -> 84, 90 -> 84; their weight gradients 66 -> 63, 67 -> 64,
    73 -> 70, 73 -> 70; where the image starts made no difference (88/88, 90/90, ...). Whole layers
    (forward + both gradients, one process alternating np.empty's panels and these, 31 rounds, medians,
    two runs, time of this / before): DCGAN convT 128->64 0.945 and 0.961, conv 32->64 0.960 and 0.972, VQ-VAE 4x4
    64->64 0.983 and 0.988, 3x3 64->64 0.991 and 0.950, 64->32 0.986 and 0.982, convT 64->64 0.949 and
    0.952; the 1x1 and 3x3 16->64 layers within noise (0.97-1.05). Not measured on AVX-512."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    memory = (np.zeros if zero else np.empty)(nbytes + LINE_BYTES, np.uint8)
    start = -memory.__array_interface__["data"][0] % LINE_BYTES     # (``.ctypes.data`` takes microseconds)
    return memory[start: start + nbytes].view(dtype).reshape(shape)


# The offset tables depend on the shapes only, and a training step meets the same shapes every
# time: they are made once per shape and kept (a few hundred KB at most).
_tables = {}
TABLES_KEPT = 64


def _cached(store, key, make, most):
    """store[key], made by ``make()`` the first time it is asked for; a store that already holds
    ``most`` entries is emptied first (a training step meets the same few shapes, so it rarely is)."""
    found = store.get(key)
    if found is None:
        if len(store) >= most:
            store.clear()
        found = store[key] = make()
    return found


def _patch_offsets(n, hp, wp, c, kh, kw, stride, out_hw):
    """(row_src, k_src) of the patch matrix of padded channels-last images (N, Hp, Wp, C): patch
    (n, y, x) starts at row_src = ((n·Hp + y·sh)·Wp + x·sw)·C, its feature (u, v, c) lies
    k_src = (u·Wp + v)·C + c further on."""
    y, x = np.arange(out_hw[0]) * stride[0], np.arange(out_hw[1]) * stride[1]
    starts = (np.arange(n)[:, None, None] * hp + y[None, :, None]) * wp + x[None, None, :]
    u, v, cc = np.arange(kh)[:, None, None], np.arange(kw)[None, :, None], np.arange(c)[None, None, :]
    return (starts.reshape(-1) * c).astype(np.uintp), ((u * wp + v) * c + cc).reshape(-1).astype(np.uintp)


def forward_tables(x_shape, w_shape, stride, padding, out_hw):
    """(row_src (1, N·L), row_count, k_src (Q,), row_dst (1, N·L)) for out[n, o, l] (flat) =
    Σ_q P[(n, l), q] · w_mat[o, q], read from the padded channels-last input."""
    def make():
        n, c, h, w = x_shape
        (o, _, kh, kw), positions = w_shape, out_hw[0] * out_hw[1]
        row_src, k_src = _patch_offsets(n, h + 2 * padding[0], w + 2 * padding[1], c, kh, kw, stride, out_hw)
        row_dst = (np.arange(n)[:, None] * (o * positions) + np.arange(positions)[None, :]).reshape(1, -1)
        return row_src[None], np.array([row_src.size], np.intp), k_src, row_dst.astype(np.intp)
    return _cached(_tables, ("forward", x_shape, w_shape, stride, padding), make, TABLES_KEPT)


def pointwise_tables(n, c, positions, o):
    """(row_src (1, N·L), row_count, k_src (C,), row_dst (1, N·L)) for out[n, o, l] = Σ_c src[n, c, l] · B[c, o]
    with src (N, C, L) an NCHW array read where it lies, and out (N, O, L): a 1x1 convolution with stride 1
    and no padding (its forward pass, or its input gradient with g as src), no channels-last copy.

        row_src[(n, l)] = n·C·L + l        k_src[c] = c·L        row_dst[(n, l)] = n·O·L + l"""
    def make():
        rows = np.arange(n)[:, None] * c * positions + np.arange(positions)[None, :]
        dst = np.arange(n)[:, None] * o * positions + np.arange(positions)[None, :]
        return (rows.reshape(1, -1).astype(np.uintp), np.array([n * positions], np.intp),
                (np.arange(c) * positions).astype(np.uintp), dst.reshape(1, -1).astype(np.intp))
    return _cached(_tables, ("pointwise", n, c, positions, o), make, TABLES_KEPT)


def pointwise_grad_weight_tables(n, c, positions, o):
    """(row_src (C,), k_src (N·L,), row_dst (C,)) for dwᵀ[c, o] = Σ_(n, l) x[n, c, l] · g[n, o, l] with x
    (N, C, L) read where it lies: the weight gradient of a 1x1 convolution with stride 1 and no padding.

        row_src[c] = c·L        k_src[(n, l)] = n·C·L + l        row_dst[c] = c·O"""
    def make():
        ks = np.arange(n)[:, None] * c * positions + np.arange(positions)[None, :]
        return ((np.arange(c) * positions).astype(np.uintp), ks.reshape(-1).astype(np.uintp),
                (np.arange(c) * o).astype(np.intp))
    return _cached(_tables, ("pointwise_grad_weight", n, c, positions, o), make, TABLES_KEPT)


def weight_panels(w, dtype, row_bytes=TILE_ROW_BYTES):
    """The forward pass's B for a weight w (O, C, kh, kw): (1, O/NR panels, kh·kw·C, NR), NR = ``row_bytes`` /
    itemsize (NARROW_ROW_BYTES for the narrow tile)."""
    nr = row_bytes // np.dtype(dtype).itemsize
    panels = aligned_empty((1, -(-w.shape[0] // nr), w[0].size, nr), dtype)
    pack_weights(w, panels)
    return panels


def grad_weight_tables(x_shape, w_shape, stride, padding, out_hw):
    """(row_src (Q,), k_src (N·L,), row_dst (Q,)) for dwᵀ[q, o] = Σ_(n, l) P[(n, l), q] · g[n, o, l], P read
    from the padded NCHW images (N, C, Hp, Wp) (``padded_nchw``), features q = (c, u, v) in w's order:

        row_src[(c, u, v)] = (c·Hp + u)·Wp + v            k_src[(n, y, x)] = (n·C·Hp + y·sh)·Wp + x·sw

    and row_dst[q] = q·O.

    NOTE: channels-last, as the forward pass reads them (features (u, v, c)), each step of k went to
    the next pixel, at least a cache line further on; the tiles ran at 66-75 GFLOP/s against 85-92
    here (2026-12-07, one thread, CPU time, AMD EPYC Zen 3, AVX2, the kernel alone, passes of 196
    positions both, medians of 15: DCGAN convT 128->64 69 -> 85, VQ-VAE 4x4 64->64 66 -> 85, 3x3 64->64
    73 -> 88, 64->32 74 -> 88, 16->64 73 -> 88, DCGAN 32->64 75 -> 87). Whole layers (forward + both
    gradients, this and passes of 784 against channels-last passes of 196, processes alternating, 4
    pairs of medians of 15): DCGAN convT 128->64 34.3 -> 31.3 ms, conv 32->64 8.90 -> 8.27, VQ-VAE 4x4
    64->64 36.4 -> 33.8, 3x3 64->64 18.0 -> 17.1, 64->32 9.58 -> 9.24, 16->64 5.29 -> 4.94, convT 64->64
    36.2 -> 33.7 ms; the 1x1 layers (which do not read these tables) 0.98-1.01."""
    def make():
        n, c, h, w = x_shape
        (o, _, kh, kw), (sh, sw) = w_shape, stride
        hp, wp = h + 2 * padding[0], w + 2 * padding[1]
        cc, u, v = np.arange(c)[:, None, None], np.arange(kh)[None, :, None], np.arange(kw)[None, None, :]
        features = ((cc * hp + u) * wp + v).reshape(-1)
        y, x = np.arange(out_hw[0]) * sh, np.arange(out_hw[1]) * sw
        positions = ((np.arange(n)[:, None, None] * c * hp + y[None, :, None]) * wp + x[None, None, :]).reshape(-1)
        return features.astype(np.uintp), positions.astype(np.uintp), (np.arange(features.size) * o).astype(np.intp)
    return _cached(_tables, ("grad_weight", x_shape, w_shape, stride, padding), make, TABLES_KEPT)


def grad_input_tables(x_shape, w_shape, stride, padding, out_hw):
    """The input gradient as sh·sw stride-1 products, one per phase of the output pixel.

    dx_pad[n, c, Y, X] = Σ_{o, i, j} g[n, o, y, x] · w[o, c, i, j] over Y = y·sh + i, X = x·sw + j.
    A pixel of phase (a, b) = (Y mod sh, X mod sw) meets the kernel rows i = a + sh·t only, with
    y = Y // sh − t (t < T = ceil(kh / sh)), and the columns likewise. Numbering t' = T − 1 − t and
    storing g channels-last with T − 1 zero rows on top and U − 1 zero columns on the left
    (``g_layout``), every pixel's terms are again a patch of T x U positions of that image:

        dx[n, c, Y − ph, X − pw] = Σ_{t', u', o} g_pad[n, Y // sh + t', X // sw + u', o] · w_ab[(t', u', o), c]
        w_ab[(t', u', o), c] = w[o, c, a + sh·(T − 1 − t'), b + sw·(U − 1 − u')]   (0 past the kernel)

    Returns (row_src (phases, R), row_count, k_src (T·U·O,), row_dst (phases, R), g_layout) where
    g_layout = (T, U, Hg, Wg): the padded g's kernel and shape. With stride 1 there is one phase
    and w_ab is the kernel turned by 180°: the input gradient is a convolution of g.
    """
    def make():
        n, c, h, w = x_shape
        (o, _, kh, kw), (sh, sw), (ph, pw) = w_shape, stride, padding
        t_rows, u_cols = -(-kh // sh), -(-kw // sw)
        hg = max(out_hw[0] + t_rows - 1, (ph + h - 1) // sh + t_rows)
        wg = max(out_hw[1] + u_cols - 1, (pw + w - 1) // sw + u_cols)
        rows_src, rows_dst, counts = [], [], []
        for a in range(sh):
            for b in range(sw):
                r = np.arange((a - ph) % sh, h, sh)        # image rows whose padded row Y = r + ph has Y mod sh = a
                s = np.arange((b - pw) % sw, w, sw)
                start = ((r[:, None] + ph) // sh * wg + (s[None, :] + pw) // sw) * o
                dst = r[:, None] * w + s[None, :]
                rows_src.append((np.arange(n)[:, None] * (hg * wg * o) + start.reshape(1, -1)).reshape(-1))
                rows_dst.append((np.arange(n)[:, None] * (c * h * w) + dst.reshape(1, -1)).reshape(-1))
                counts.append(rows_src[-1].size)
        most = max(counts)
        row_src, row_dst = np.zeros((len(counts), most), np.uintp), np.zeros((len(counts), most), np.intp)
        for p, (src, dst) in enumerate(zip(rows_src, rows_dst)):
            row_src[p, :src.size], row_dst[p, :dst.size] = src, dst
        tt, uu, oo = np.arange(t_rows)[:, None, None], np.arange(u_cols)[None, :, None], np.arange(o)[None, None, :]
        k_src = ((tt * wg + uu) * o + oo).reshape(-1).astype(np.uintp)
        return row_src, np.array(counts, np.intp), k_src, row_dst, (t_rows, u_cols, hg, wg)
    return _cached(_tables, ("grad_input", x_shape, w_shape, stride, padding), make, TABLES_KEPT)


def phase_weights(w, stride, t_rows, u_cols, dtype, row_bytes=TILE_ROW_BYTES):
    """The input gradient's B for a weight w (O, C, kh, kw): (sh·sw phases, C/NR panels, T·U·O, NR),
    NR = ``row_bytes`` / itemsize (NARROW_ROW_BYTES for the narrow tile)."""
    nr = row_bytes // np.dtype(dtype).itemsize
    panels = aligned_empty((stride[0] * stride[1], -(-w.shape[1] // nr), t_rows * u_cols * w.shape[0], nr), dtype)
    pack_phase_weights(w, stride[0], stride[1], t_rows, u_cols, panels)
    return panels


_scratch = threading.local()    # per thread: {(shape, dtype, top, left): a padded channels-last buffer}
SCRATCH_SHAPES = 16


def padded_nhwc(x, top, left, height, width, dtype, scratch=True):
    """x (N, C, H, W) channels-last inside zeros, (N, height, width, C), the image at rows top..
    and columns left..; in a scratch buffer the next call of the same shape reuses (``scratch``),
    else a new array.

    NOTE: a fresh zeroed array for every call cost more than the copy itself (the operating system
    hands out new pages one fault at a time); a reused buffer's border is zeroed once and never
    written, only its interior is overwritten (by ``_into_nhwc``, on the threads the caller's
    ``sized_for`` chose).

    Measured (2026-12-07, AMD EPYC Zen 3, wall time, medians of 41 calls, ms, NumPy's strided copy ->
    ``_into_nhwc``): one thread (128, 64, 7, 7) 0.250 -> 0.204, (128, 64, 14, 14) 0.775 -> 0.680,
    (64, 32, 14, 14) 0.176 -> 0.171, but (128, 32, 7, 7) 0.095 -> 0.139 and (128, 16, 7, 7) 0.059 -> 0.078;
    two threads 0.168 -> 0.103, 0.725 -> 0.397, 0.178 -> 0.132, 0.134 -> 0.078, 0.056 -> 0.065. Whole
    layers: see ``padded_nchw``."""
    n, c, h, w = x.shape
    shape = (n, height, width, c)
    if scratch:
        xh = _scratch_buffer(shape, dtype, top, left)
    else:
        xh = np.empty(shape, dtype=dtype)
        xh[:, :top], xh[:, top + h:], xh[:, top: top + h, :left], xh[:, top: top + h, left + w:] = 0, 0, 0, 0
    _into_nhwc(np.ascontiguousarray(x, dtype=dtype), top, left, xh)
    return xh


def padded_nchw(x, padding, dtype):
    """x (N, C, H, W) inside zero borders of ``padding`` (rows, columns), (N, C, Hp, Wp), C-contiguous: x
    itself if it is so already and has no padding, else in this thread's scratch buffer for its shape
    and padding (valid until the next call for them; see ``padded_nhwc``), copied by ``_into_nchw``.

    Measured (2026-12-07, AMD EPYC Zen 3, wall time, medians of 41 calls, ms, NumPy's slice assignment
    -> ``_into_nchw``): one thread (128, 64, 7, 7) 0.631 -> 0.539, (128, 32, 7, 7) 0.316 -> 0.271,
    (64, 32, 14, 14) 0.285 -> 0.261, (128, 16, 7, 7) 0.158 -> 0.138, (128, 64, 14, 14) 1.254 -> 1.039; two
    threads 0.636 -> 0.272, 0.325 -> 0.141, 0.290 -> 0.137, 0.158 -> 0.073, 1.124 -> 0.548. Whole layers
    with both copies (``scratchgen bench --only conv``, forward + both gradients, ms, three runs of each
    in turn): two threads, the VQ-VAE's 3x3 64->64 10.5-13.5 -> 8.9-9.8, 64->32 6.3-7.4 -> 4.9-5.4, 16->64
    3.3-4.2 -> 2.8-3.5, 4x4 64->64 24.8-28.1 -> 17.4-18.3, the DCGAN's transposed 128->64 20.0-25.4 ->
    16.7-17.8 and 32->64 5.6-6.8 -> 4.7-5.0 (the serial NumPy copies also made the two-thread times
    vary more from run to run); one thread 0.97-1.02 of the time (medians of the three runs)."""
    (n, c, h, w), (ph, pw) = x.shape, padding
    if ph == pw == 0:
        return np.ascontiguousarray(x, dtype=dtype)
    xp = _scratch_buffer((n, c, h + 2 * ph, w + 2 * pw), dtype, ph, pw, "nchw")
    _into_nchw(np.ascontiguousarray(x, dtype=dtype), ph, pw, xp)
    return xp


@njit(parallel=True, cache=True)
def _into_nhwc(x, top, left, xh):
    """xh[n, top + y, left + x, c] = x[n, c, y, x]: x (N, C, H, W) turned channels-last into the interior
    of xh (N, Hp, Wp, C); xh's border is left as it is (``padded_nhwc`` keeps it zero).

        for each image n in parallel:
            for each position (y, x):
                xh[n, top + y, left + x, :] = x[n, :, y, x]       C numbers H·W apart, from L1

    Optimisations:
    - an image at a time: x[n] (C·H·W numbers, 12.5 KB for 64 x 7 x 7) stays in L1 while its numbers
      are gathered one channel apart, and the images are shared among the threads (NumPy's strided copy,
      which this replaces, runs on one thread). Measured: see ``padded_nchw``.
    """
    n, c, h, w = x.shape
    for b in prange(n):
        for y in range(h):
            for xx in range(w):
                row = xh[b, top + y, left + xx]
                for ch in range(c):
                    row[ch] = x[b, ch, y, xx]


@njit(parallel=True, cache=True)
def _into_nchw(x, top, left, xp):
    """xp[n, c, top + y, left + x] = x[n, c, y, x]: x (N, C, H, W) into the interior of xp (N, C, Hp, Wp),
    whose border is left as it is (``padded_nchw`` keeps it zero).

        for each image n in parallel:
            for each channel c, row y:
                xp[n, c, top + y, left: left + W] = x[n, c, y, :]       a run of W numbers

    Optimisations:
    - the runs are slices of the flat arrays at offsets computed once per run: indexing the 4-D arrays
      number by number (four index products, each checked for a negative index) took 1.5-2.4 times as
      long on one thread;
    - the images are shared among the threads (NumPy's strided copy, which this replaces, runs on one
      thread). Measured: see ``padded_nchw``.
    """
    n, c, h, w = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    xf, xpf = x.reshape(-1), xp.reshape(-1)
    for b in prange(n):
        for ch in range(c):
            s0 = (b * c + ch) * h * w
            d0 = ((b * c + ch) * hp + top) * wp + left
            for y in range(h):
                src = xf[s0 + y * w: s0 + y * w + w]
                dst = xpf[d0 + y * wp: d0 + y * wp + w]
                for s in range(w):
                    dst[s] = src[s]


def _scratch_buffer(shape, dtype, top, left, layout="nhwc"):
    """This thread's buffer (N, height, width, C) (or (N, C, height, width) for the ``layout`` "nchw") for
    images placed at rows top.. and columns left.., zero where no image is written (made zero once,
    when first asked for)."""
    return _cached(_scratch.__dict__.setdefault(layout, {}), (shape, np.dtype(dtype), top, left),
                   lambda: np.zeros(shape, dtype=dtype), SCRATCH_SHAPES)


def channel_panels(g, dtype, row_bytes=TILE_ROW_BYTES):
    """g (N, O, L) -> (O/NR panels, N·L, NR): NR channels of every position, one position per row,
    zero past the last channel (the weight gradient's B); NR = ``row_bytes`` / itemsize (NARROW_ROW_BYTES
    for the narrow tile).

    NOTE: with as many channels as a panel holds (the VQ-VAE's 1x1 layers: 32 channels of x, 16 of g)
    that is one transpose per image: ``layouts.transposed``, on two threads where they pay, instead of
    NumPy's strided copy, which always ran on one. Measured (2026-12-07, AMD EPYC Zen 3, wall time, medians
    of 300 calls, µs, NumPy -> this on one thread / two): (128, 32, 49) 91 -> 91 / 48-64, (128, 16, 49)
    56 -> 50 / 41-46. Whole 1x1 layers of the VQ-VAE (forward + both gradients, two threads, one process
    timing main's kernels and these in turn, 40 rounds, four processes): 32->64 0.95-1.02 of the time,
    64->16 0.86-0.98."""
    n, o, positions = g.shape
    nr = row_bytes // np.dtype(dtype).itemsize
    panels = aligned_empty((-(-o // nr), n, positions, nr), dtype, zero=o % nr != 0)
    if o == nr:     # one panel, full: g turned around image by image (layouts.transposed, threads if they pay)
        transposed(g, dtype, out=panels[0])
        return panels.reshape(1, n * positions, nr)
    for jp in range(panels.shape[0]):
        block = g[:, jp * nr: (jp + 1) * nr]
        panels[jp, :, :, :block.shape[1]] = np.swapaxes(block, 1, 2)
    return panels.reshape(panels.shape[0], n * positions, nr)


@njit(parallel=True, cache=True)
def _turned_twice(g, top, left, g_pad, panels):
    """g (N, O, Ho, Wo) into both layouts the backward pass reads, in one pass over g:
    g_pad[n, top + y, left + x, o] = g[n, o, y, x] (the input gradient's A, ``grad_input_tables``) and
    panels[o // NR, (n, y, x), o % NR] = the same number (the weight gradient's B, ``channel_panels``),
    zero past the last channel.

        for each image n in parallel:
            for each position (y, x):
                g_pad[n, top + y, left + x, :] = g[n, :, y, x]             O numbers Ho·Wo apart, from L1
                for each panel jp:
                    panels[jp, (n, y, x), :] = g_pad[n, top + y, left + x, jp·NR: jp·NR + NR]

    Optimisations:
    - g is read once for both copies, where NumPy's strided copies (``padded_nhwc``, ``channel_panels``)
      read it twice; one image of g (O·Ho·Wo numbers, 12.5 KB for 64 x 7 x 7) stays in L1 while its
      numbers are gathered one channel apart. Measured (2026-12-07, one thread, CPU time, load 2.9,
      medians of 15): the VQ-VAE's g of (128, 64, 7, 7), 0.39-0.95 ms against 0.71-1.13 for the two
      NumPy copies; see ``conv_numba.backward`` for whole layers.
    - full panels copied without a test per number (the test for the zero columns past the last channel
      kept LLVM from making it a vector copy), the last, partial one with it. Measured (2026-12-07, one
      thread, CPU time, AMD EPYC Zen 3, AVX2, one process alternating, medians of 30, ms): g of
      (128, 64, 7, 7) 0.387 -> 0.223, (128, 32, 7, 7) 0.212 -> 0.140, (64, 64, 14, 14) 0.875 -> 0.551,
      (128, 40, 7, 7) 0.345 -> 0.249.
    """
    n, o, h, w = g.shape
    nr = panels.shape[2]
    full = o // nr                  # panels without a zero column
    for b in prange(n):
        for y in range(h):
            for x in range(w):
                row = g_pad[b, top + y, left + x]
                position = (b * h + y) * w + x
                for c in range(o):
                    row[c] = g[b, c, y, x]
                for jp in range(full):
                    panel_row, run = panels[jp, position], row[jp * nr: jp * nr + nr]
                    for s in range(nr):
                        panel_row[s] = run[s]
                if full < panels.shape[0]:
                    panel_row = panels[full, position]
                    for s in range(nr):
                        panel_row[s] = row[full * nr + s] if full * nr + s < o else 0.0


def turned_gradient(g, top, left, height, width, dtype):
    """(g_pad, panels): g (N, O, Ho, Wo) as ``padded_nhwc(g, top, left, height, width, dtype)`` makes it
    (in this thread's scratch buffer: valid until the next call for the same shape) and as
    ``channel_panels`` makes it, both from one pass over g (``_turned_twice``)."""
    n, o, h, w = g.shape
    nr = TILE_ROW_BYTES // np.dtype(dtype).itemsize
    g_pad = _scratch_buffer((n, height, width, o), dtype, top, left)
    panels = aligned_empty((-(-o // nr), n * h * w, nr), dtype)
    _turned_twice(np.ascontiguousarray(g, dtype=dtype), top, left, g_pad, panels)
    return g_pad, panels
