"""Products with a narrow output or few rows, on the calling thread: no thread pool, no Python
bookkeeping per block.

``matmul_narrow`` runs the axpy strips (or, for a short k and enough rows, register tiles reading b
in place: ``_few_rows_tiles``; for few rows, ``_few_rows``), optionally writing the result turned
around; ``matmul_narrow_dot`` runs the dot tiles for a C-contiguous a with a narrow b. Which
products come here is ``dispatch.narrow_plan``'s choice.
"""
import numpy as np

from numba import njit

from ..layouts import transpose_rows
from ..stack import stack_tile
from .axpy import axpy_row, axpy_strip_4x4
from .dot import dot_block
from .packing import copy_transposed
from .sizes import (
    AXPY_K_BLOCK, COL_BLOCK, FASTMATH, NARROW_ROWS, NARROW_ROW_BYTES, NARROW_TILES_MIN_K,
    NARROW_TILES_MIN_ROWS, ROW_BLOCK, TILE_MIN_K, TILE_ROWS, TILE_ROW_BYTES)
from .tiles import strided_tile


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
    - ``matmul_narrow`` alone, same method, 11 rounds: 128x18 @ 18x400 29.5 -> 27.8 (30.0), 128x32 @
      32x400 52.8 -> 43.0 (44.7), 128x64 @ 64x400 109 -> 86 (79), 20x18 @ 18x400 7.0 -> 6.5 (7.5); lost
      with k = 8 (128x8 @ 8x400 15.3 -> 16.2) and, in whole calls, with k = 1 (64x1 @ 1x3136 44 -> 60);
      in a first survey also with few rows (4x18 @ 18x400 1.5 -> 2.0, 8x128 @ 128x400 13.8 -> 14.2)
      and with k = 128 (20x128 @ 128x400 36.9 -> 41.7). So ``matmul_narrow`` calls this only for at
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
def matmul_narrow(a, a_transposed, b, b_transposed, out, out_turned):
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
            copy_transposed(b_z, np.intp(0), np.intp(0), kk, w, b_rows)
        target = part[0] if out_turned else out[z]
        if tiles:
            _few_rows_tiles(a_k, b_rows if b_transposed else b_z, target, panel)
        else:
            _few_rows(a_z, b_rows if b_transposed else b_z, target)
        if out_turned:
            transpose_rows(part, out[z:z + 1], np.intp(0), w)


@njit(fastmath=FASTMATH, cache=True)
def matmul_narrow_dot(a, bt, out):
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
