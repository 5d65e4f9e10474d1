"""Operands in the dtype and memory layout a kernel reads: the bookkeeping around the arithmetic.

A Numba kernel is compiled for one dtype and reads its operands in one order. These helpers
bring arrays into that form, copying only when they must:

* ``result_dtype``  float32 if every operand is float32, float64 if any is (anything else: an error);
* ``contiguous``    C-contiguous and writable (one copy if needed);
* ``rows_of``       rows of a (B, r, c) array, contiguous; a transposed view is copied by
                    ``transposed`` (``transpose_rows``), faster than NumPy's transpose-copy;
* ``rows_or_transposed`` rows of x or of xᵀ as they lie, and which of the two (a flag for the kernel);
* ``is_rows``       already C-contiguous and writable;
* ``one_float_dtype`` float32 or float64 throughout (the element-wise kernels' condition).
"""
import numpy as np
from numba import njit, prange

from .threads import SCATTERED_COPY_WORK, sized_for, threads_for

TRANSPOSE_MIN = 64 * 64        # elements; below this NumPy's transpose-copy is as fast
TRANSPOSE_BATCH_TASKS = 16     # matrices in a batch from which each is one task (``_transpose_last2``)


def result_dtype(*arrays, op="matmul"):
    """float32 if every operand is float32, float64 if any is float64; anything else is an error."""
    for x in arrays:
        if x.dtype.char not in "fd":        # float32, float64 (the character codes: 2x faster to test)
            raise TypeError(f"{op}: expected float32 or float64 arrays, got dtypes "
                            f"{', '.join(str(y.dtype) for y in arrays)} (shapes "
                            f"{', '.join(str(y.shape) for y in arrays)}); convert with "
                            f".astype(np.float32)")
    return np.result_type(*arrays)


def one_float_dtype(*arrays):
    """True if every array is float32, or every one float64: what the element-wise Numba kernels take
    (mixed dtypes go to their NumPy references, which follow NumPy's promotion rules)."""
    return arrays[0].dtype in (np.float32, np.float64) and all(a.dtype == arrays[0].dtype for a in arrays)


def is_rows(x):
    """True if ``x`` is C-contiguous and writable: its rows can be handed to a kernel as they are."""
    return x.flags.c_contiguous and x.flags.writeable


def contiguous(x, dtype):
    """``x`` as a C-contiguous, writable array of ``dtype`` (copied only if needed).

    NOTE: a read-only array (e.g. from ``np.broadcast_to``) has a different Numba type and would
    compile every kernel once more, so it is copied.
    """
    x = np.ascontiguousarray(x, dtype=dtype)
    return x if x.flags.writeable else x.copy()


@njit(cache=True)
def transpose_rows(x, out, c0, c1):
    """out[z, c] = x[z, :, c] for c0 <= c < c1 and every z: rows c0..c1 of the transpose of x
    (B, r, c) -> out (B, c, r), on the calling thread (a narrow product turned back after its flip
    calls it for all rows; ``_transpose_last2`` shares the rows out among threads).

        for z: for r in range(0, rows, 4):                 four rows of x at a time
            for c in range(c0, c1):
                out[z, c, r:r+4] = x[z, r, c], x[z, r+1, c], x[z, r+2, c], x[z, r+3, c]
        (the last rows mod 4 one at a time)

    Four rows of x are read side by side, each from start to end, and each output row takes four
    neighbouring numbers at a time (16 bytes of float32) instead of one.
    Measured (one thread, wall time, medians, AMD EPYC Zen 3, µs; reading one output row at a time
    down a column of x, as before / four rows of x at a time): (1, 20, 400) 4.5 / 3.1, (1, 784, 400)
    243 / 112, (1, 400, 784) 153 / 108, (1, 1024, 1024) 5086 / 2254, (64, 16, 196) 79 / 68,
    (128, 64, 49) 144 / 139. (Earlier, on a Zen 4: the 32x32 tiles
    that the column-wise loop replaced, indexing x[z, r, c] and out[z, c, r] element by element, were
    2-3x slower than it: (1, 400, 18) 7.8 / 2.3 µs, (1, 784, 400) 295 / 193; NumPy's transposing copy
    in between, 3.1 and 201.)"""
    rows = x.shape[1]
    r4 = rows // 4 * 4
    for z in range(out.shape[0]):
        xz, oz = x[z], out[z]
        for r in range(0, r4, 4):
            x0, x1, x2, x3 = xz[r], xz[r + 1], xz[r + 2], xz[r + 3]
            for c in range(c0, c1):
                row = oz[c]
                row[r], row[r + 1], row[r + 2], row[r + 3] = x0[c], x1[c], x2[c], x3[c]
        for r in range(r4, rows):
            xr = xz[r]
            for c in range(c0, c1):
                oz[c, r] = xr[c]


@njit(parallel=True, cache=True)
def _transpose_last2(x, out):
    """out[z] = x[z].T for (B, r, c) -> (B, c, r): ``transpose_rows`` in parallel, a whole matrix per
    task when there are at least TRANSPOSE_BATCH_TASKS of them, else blocks of 16 output rows (one cache
    line of each row of x, float32); tasks write disjoint rows of ``out``.

    NOTE: for a batch of small matrices, blocks of 16 rows made 4 tasks of an image: (128, 32, 49) took
    49.6 µs on two threads, a task per image 38.6 (one thread: 79.1; AMD EPYC Zen 3, medians of 300)."""
    cols = x.shape[2]
    block = cols if x.shape[0] >= TRANSPOSE_BATCH_TASKS else 16
    blocks = (cols + block - 1) // block
    for task in prange(x.shape[0] * blocks):
        z, c0 = task // blocks, task % blocks * block
        transpose_rows(x[z:z + 1], out[z:z + 1], c0, min(c0 + block, cols))


def transposed(x, dtype, out=None):
    """A C-contiguous copy of ``x`` with its last two axes swapped, as a 3-D (B, c, r) array: by
    NumPy below TRANSPOSE_MIN elements, on the calling thread (``transpose_rows``) when threads would
    not pay, else in parallel blocks; into ``out`` (C-contiguous, (B, c, r), ``dtype``) if given.
    NOTE: the calling thread's loop skips the pool's bookkeeping (~2 µs): (1, 400, 18) 6.6 -> 3.8 µs
    (one thread, CPU time; NumPy's copy 2.7 there, 201 against 193 µs at (1, 784, 400))."""
    x3 = x.reshape((-1,) + x.shape[-2:])
    if x3.size < TRANSPOSE_MIN:
        if out is None:
            return contiguous(x3.swapaxes(-1, -2), dtype)
        out[...] = x3.swapaxes(-1, -2)
        return out
    x3 = contiguous(x3, dtype)
    out = np.empty((x3.shape[0], x3.shape[2], x3.shape[1]), dtype=dtype) if out is None else out
    if threads_for(SCATTERED_COPY_WORK * x3.size) == 1:
        transpose_rows(x3, out, 0, out.shape[1])
        return out
    with sized_for(SCATTERED_COPY_WORK * x3.size, ("transpose", x3.shape)):
        _transpose_last2(x3, out)
    return out


def rows_of(x, dtype):
    """(B, r, c) ``x`` ready for a kernel: C-contiguous, writable, ``dtype``. A transposed view
    (as autograd's ``aᵀ @ g`` passes) is copied by ``transposed``, faster than NumPy's."""
    if x.dtype == dtype and is_rows(x):
        return x
    xt = x.swapaxes(-1, -2)
    if xt.flags.c_contiguous:
        return transposed(xt, dtype)
    return contiguous(x, dtype)


def rows_or_transposed(x, dtype):
    """(B, r, c) ``x`` for a kernel that reads it either way round: ``(x, False)`` if its rows are
    C-contiguous, ``(xᵀ, True)`` if it is a transposed view (xᵀ, (B, c, r), is then C-contiguous), else
    a C-contiguous copy and False.

    NOTE: Numba compiles a kernel once for every layout of its arguments ('C', 'F' for a transposed
    2-D view, 'A' for a transposed batch); for the packed products each took 3-4 s. With a flag the
    kernel sees one layout, and the transposed view is still read where it lies."""
    if x.dtype == dtype and is_rows(x):
        return x, False
    xt = x.swapaxes(-1, -2)
    if x.dtype == dtype and is_rows(xt):
        return xt, True
    return contiguous(x, dtype), False
