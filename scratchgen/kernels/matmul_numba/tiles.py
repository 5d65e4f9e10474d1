"""Register tiles, and the two kernels built on packed panels of them.

A register tile is an MR x NR block of C whose running sums stay in vector registers for the whole
k loop (``register_tile`` on packed panels, ``strided_tile`` on operands read where they lie; the
sums live in ``stack.stack_tile``). ``matmul_tiles`` packs A and B block by block;
``matmul_tiles_small_a`` packs an A small enough for L2 (``SMALL_A_BYTES``) once, whole, and each
NR columns of B just before their tiles read them.
"""
import numba
import numpy as np

from numba import njit, prange

from ..stack import stack_tile
from ..tasks import claim_task, task_counter
from .blocks import balanced_blocks, tile_block
from .packing import pack_columns, pack_rows
from .sizes import AXPY_COL_BLOCK, FASTMATH, K_BLOCK_BYTES, TILE_ROWS, TILE_ROW_BLOCK, TILE_ROW_BYTES


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
    - both operands are read from packed panels, unit stride, from index 0: b's through a view that
      starts at k0 (``rows_b``), so that no step tests k0 + k for a negative index (as
      ``conv_tiles.gather_tile`` explains; 28 instructions a step -> 23 here, though the 1024 x 1024
      product and the VAE's ran no faster for it: 0.99-1.01 of their time, the multiply-adds set the pace).
    """
    acc = stack_tile(TILE_ROWS, TILE_ROW_BYTES, out)
    nr = acc.shape[1]
    for r in range(TILE_ROWS):
        for s in range(nr):
            acc[r, s] = 0.0
    rows_b = b_panel[k0: k0 + kc]
    for k in range(kc):
        x, y = a_panel[k], rows_b[k]
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


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_tiles(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] in the axpy order on register tiles, for an inner dimension of at least
    TILE_MIN_K; the arguments are those of ``matmul_axpy`` (a or, with ``a_transposed``, aᵀ
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
      K block; the strips of ``matmul_axpy`` load and store their output rows at every 4 k. Alone,
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
def matmul_tiles_small_a(a, b, out, a_transposed, b_transposed, threads):
    """out[z] = a[z] @ b[z] on register tiles, for an a small enough to stay in L2 whole (at most
    SMALL_A_BYTES, ``choose_kernel``):
    the arguments are those of ``matmul_tiles``, but out's values on entry are not read (each tile
    sums all of k at once and writes its sums).

        for each (batch z, NR columns j), claimed by the threads in turn (tasks.claim_task):
            rows = a[z], MR rows at a time, k-major, all of k            (pack_rows; once per thread and z)
            panel = b[z, :, j:j+NR]                                       (pack_columns, just before use)
            for each MR rows i:
                out[z, i:i+MR, j:j+NR] = rows[i]ᵀ @ panel                (register_tile, all k)

    Optimisations:
    - each column tile of b is packed just before its tiles read it, into a buffer that stays in
      L1 or L2, and read by every row of out at once: ``matmul_tiles`` packs all of b first into one
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
    tiles then stream a from L3 for every column tile: left to ``matmul_tiles``, whose blocks were
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
