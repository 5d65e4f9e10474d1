"""Copying blocks of an operand into contiguous buffers ("packing"), so that a kernel's inner loop
reads memory one number after the other.

``copy_block`` and ``copy_transposed`` move a block between an array and a buffer (the axpy strips'
and the narrow kernels' blocks of B); ``pack_rows`` and ``pack_columns`` lay out panels of A and of
B in the order ``tiles.register_tile`` reads them.
"""
import numpy as np

from numba import njit

from .sizes import FASTMATH


@njit(fastmath=FASTMATH, cache=True)
def copy_block(src, r0, c0, rows, cols, dst, s0, d0):
    """dst[d0 + r, s0 + j] = src[r0 + r, c0 + j] for r < rows, j < cols: a block between an
    array and a packed buffer (either direction), row by row from sliced rows."""
    for r in range(rows):
        s, d = src[r0 + r, c0:c0 + cols], dst[d0 + r, s0:s0 + cols]
        for j in range(cols):
            d[j] = s[j]


@njit(fastmath=FASTMATH, cache=True)
def copy_transposed(src, r0, c0, rows, cols, dst):
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

    From bᵀ the copy runs along bᵀ's rows (unit stride), eight at a time (``copy_transposed``)."""
    kk, nr = panel.shape
    w = min(nr, (b.shape[0] if b_transposed else b.shape[1]) - j)
    if b_transposed:
        copy_transposed(b, np.intp(0), j, kk, w, panel)
    else:
        for k in range(kk):
            src, row = b[k, j:j + w], panel[k]
            for s in range(w):
                row[s] = src[s]
    for k in range(kk):
        row = panel[k]
        for s in range(w, nr):
            row[s] = 0.0
