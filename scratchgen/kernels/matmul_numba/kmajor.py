"""``matmul_kmajor``: register tiles on operands read where they lie, for an A given transposed.

A weight gradient's gᵀ, or a convolution's g[n]ᵀ, is a transposed view whose memory holds, for each
k, the rows of A side by side: the tiles read it in place (``tiles.strided_tile``); B is packed
into panels of NR columns once per call. Narrow outputs run on the narrow tile.
"""
import numba
import numpy as np

from numba import njit, prange

from ..tasks import claim_task, task_counter
from .blocks import balanced_blocks, in_turn, tile_block
from .packing import pack_columns
from .sizes import (
    FASTMATH, K_BLOCK_BYTES, NARROW_ROWS, NARROW_ROW_BYTES, TILE_ROWS, TILE_ROW_BLOCK, TILE_ROW_BYTES)
from .tiles import strided_tile


@njit(fastmath=FASTMATH, cache=True)
def _kmajor_tiles(mr, row_bytes, af, panels, of, z, za, zb, i0, i1, n, kk, m, j_base, k_block, edge):
    """The tiles of out[z, i0:i1, j_base:] (``matmul_kmajor``): MR numbers of aᵀ[za] read in place per
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
    """How many of m columns ``matmul_kmajor`` computes on wide tiles (``wide`` numbers a row), the
    rest on narrow ones (``narrow``): none if all fit one narrow tile, all but the last few if those
    fit one (m mod wide <= narrow), else all: the narrow tile then wastes fewer of its sums on
    zero-padded columns than a wide one would, and the wide tile does the rest."""
    if m <= narrow:
        return 0
    rest = m % wide
    return m - rest if 0 < rest <= narrow and m > wide else m


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_kmajor(a_t, b, out, threads):
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
      numbers a tile broadcasts side by side. ``matmul_tiles`` copies a into panels first, and a
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
