"""scratchgen.kernels: every fast kernel equals its NumPy definition, on both backends.

Matmul is checked against ``matmul_reference`` (the sum written out) and ``np.matmul``; conv2d's
three functions against their NumPy references, a 7-deep loop, and the adjoint identity
<conv(x), g> = <x, dx> = <w, dw>, which ties the gradients to the forward pass. Each Numba kernel
is also called directly, so the dispatch thresholds cannot hide one from the tests.
"""
import os
import re
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace
from unittest.mock import patch

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from scratchgen import Tensor
from scratchgen.kernels import conv, conv_numba, conv_tiles, layouts, matmul as mm, matmul_numba as mmn
from scratchgen.kernels import tasks, threads as mm_threads
from scratchgen.kernels.backend import BACKENDS, get_backend, set_backend, use_backend
from scratchgen.kernels.cpu import register_tile_shape
from scratchgen.kernels.stack import heap_tile, stack_tile
from scratchgen.kernels.tasks import claim_task, task_counter
from strategies import layouts as layouts_
from strategies import (FLOAT_DTYPES, batch_norm_problems, conv2d_cases, conv2d_grad_input_shapes,
                        matmul_operands, matmul_shape_pairs, matrix_triples, seeded_arrays, tile_edge_triples,
                        with_layout)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, expected, terms):
    """Equal up to rounding: ``terms`` products of O(1) numbers summed in another order.

    float32 rounding is ~6e-8 per operation, so 1e-5·terms is far below any wrong term (O(1)).
    """
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    tol = (1e-5 if actual.dtype == np.float32 else 1e-12) * max(terms, 1)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def rng_array(shape, dtype, seed, layout="contiguous"):
    return with_layout(np.random.default_rng(seed).standard_normal(shape).astype(dtype), layout)


# every dispatch test runs once per backend (a parameter, not a fixture: Hypothesis reuses a
# function-scoped fixture across examples)
on_both_backends = pytest.mark.parametrize("backend", BACKENDS)


# ---------------------------------------------------------------------- backend switch
def test_backend_switch_scopes_and_restores():
    start = get_backend()
    with use_backend("numpy"):
        assert get_backend() == "numpy"
        with use_backend("numba"):
            assert get_backend() == "numba"
        assert get_backend() == "numpy"
    assert get_backend() == start
    with pytest.raises(RuntimeError):
        with use_backend("numpy"):
            raise RuntimeError("boom")
    assert get_backend() == start
    previous = set_backend("numpy")
    try:
        assert previous == start and get_backend() == "numpy"
    finally:
        set_backend(previous)


def test_every_kernel_has_one_table_entry_per_backend_and_numpy_means_the_reference():
    from scratchgen.kernels import activations, adam, batch_norm
    tables = {"batch_norm_forward": (batch_norm.FORWARD, batch_norm.batch_norm_forward_reference),
              "batch_norm_backward": (batch_norm.BACKWARD, batch_norm.batch_norm_backward_reference),
              "leaky_relu_forward": (activations.FORWARD, activations.leaky_relu_forward_reference),
              "leaky_relu_backward": (activations.BACKWARD, activations.leaky_relu_backward_reference),
              "relu_forward": (activations.RELU_FORWARD, activations.relu_forward_reference),
              "relu_backward": (activations.RELU_BACKWARD, activations.relu_backward_reference),
              "softplus_forward": (activations.SOFTPLUS, activations.softplus_forward_reference),
              "matmul": (mm.IMPLEMENTATIONS, mm.matmul_reference),
              "conv2d_forward": (conv.FORWARD, conv.conv2d_forward_reference),
              "conv2d_grad_input": (conv.GRAD_INPUT, conv.conv2d_grad_input_reference),
              "conv2d_grad_weight": (conv.GRAD_WEIGHT, conv.conv2d_grad_weight_reference),
              "adam_update": (adam.IMPLEMENTATIONS, adam.adam_update_reference)}
    for name, (table, reference) in tables.items():
        assert set(table) == set(BACKENDS), name
        assert table["numpy"] is reference, name
        assert table["numba"] is not reference, name


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="'numba', 'numpy'"):
        set_backend("cuda")
    with pytest.raises(ValueError, match="cuda"):
        with use_backend("cuda"):
            pass


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_backend_default_comes_from_environment():
    code = "from scratchgen.kernels.backend import get_backend; print(get_backend())"
    assert run_python(code, SCRATCHGEN_BACKEND="numpy").stdout.strip() == "numpy"
    bad = run_python(code, SCRATCHGEN_BACKEND="fortran")
    assert bad.returncode != 0 and "SCRATCHGEN_BACKEND" in bad.stderr and "'numba'" in bad.stderr


# ---------------------------------------------------------------------- matmul
def test_reference_is_the_sum_over_k():
    a, b = rng_array((3, 4), np.float64, 0), rng_array((4, 5), np.float64, 1)
    expected = np.array([[sum(a[i, k] * b[k, j] for k in range(4)) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(mm.matmul_reference(a, b), expected, rtol=1e-14)


@on_both_backends
@given(operands=matmul_operands(matmul_shape_pairs(vectors=False)))
def test_matmul_matches_numpy(backend, operands):
    with use_backend(backend):
        a, b = operands
        out = mm.matmul(a, b)
        expected = np.matmul(a, b)
        assert_close(out, expected, a.shape[-1])
        assert_close(out, mm.matmul_reference(a.astype(expected.dtype), b.astype(expected.dtype)), a.shape[-1])


@on_both_backends
@given(operands=matmul_operands())
def test_tensor_matmul_promotes_vectors_as_numpy_does_on_both_backends(backend, operands):
    # the kernel refuses a vector; the autograd op is the one place that promotes it
    # (its gradients, 1-D included, are checked in test_autograd.py::test_matmul_values_and_gradients)
    with use_backend(backend):
        a, b = operands
        out = Tensor(a) @ Tensor(b)
        assert_close(np.asarray(out.data), np.matmul(a, b), a.shape[-1])


@pytest.mark.parametrize("kernel", ["dot", "axpy", "kmajor"])
@given(sizes=matrix_triples(), dtype=FLOAT_DTYPES, layout_pair=st.tuples(*[st.sampled_from(
    ["contiguous", "transposed", "strided"])] * 2), broadcast=st.sampled_from(["none", "a", "b"]),
    seed=st.integers(0, 2**16))
def test_each_numba_kernel_matches_reference(kernel, sizes, dtype, layout_pair, broadcast, seed):
    batch, n, k, m = sizes
    a = rng_array((1 if broadcast == "a" else batch, n, k), dtype, seed, layout_pair[0])
    b = rng_array((1 if broadcast == "b" else batch, k, m), dtype, seed + 1, layout_pair[1])
    out = mmn.matmul_3d(a, b, batch, kernel=kernel)
    assert_close(out, mm.matmul_reference(a, b), k)


@pytest.mark.parametrize("kernel", ["dot", "axpy", "kmajor"])
@pytest.mark.parametrize("n, k, m", [(70, 9, 261), (6, 130, 517), (5, 1030, 6), (3, 0, 4), (0, 3, 4)])
def test_numba_kernels_across_block_edges(kernel, n, k, m):
    # more rows than ROW_BLOCK, more columns than COL_BLOCK and AXPY_COL_BLOCK, an inner
    # dimension over two K blocks of either kernel, and empty products (k = 0 gives zeros)
    a, b = rng_array((1, n, k), np.float32, 3), rng_array((1, k, m), np.float32, 4)
    out = mmn.matmul_3d(a, b, 1, kernel=kernel)
    assert_close(out, np.matmul(a, b), k)


@pytest.mark.parametrize("n, k, m", [(70, 9, 261), (6, 130, 517), (5, 1030, 6), (1, 1, 1), (13, 600, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", ["axpy.matmul_axpy", "tiles.matmul_tiles", "tiles.matmul_tiles_small_a"])
def test_the_axpy_kernel_packs_b_from_its_transpose_to_the_same_bits(n, k, m, dtype, packed):
    # x @ Wᵀ hands the axpy kernels (strips and register tiles) W itself: each block of b is turned
    # around while it is packed, so the sums, and their order, are those of packing b from its rows (and,
    # for the strips with fewer than DOT_MAX_M rows, of reading b's rows in place, unpacked)
    module, name = packed.split(".")
    kernel = getattr(getattr(mmn, module), name)
    a, w = rng_array((2, n, k), dtype, 5, "swapped"), rng_array((1, m, k), dtype, 6)
    a_in, a_transposed = layouts.rows_or_transposed(a, dtype)
    assert a_transposed != layouts.is_rows(a)        # a's rows copied out of aᵀ, block by block
    from_rows, from_transpose = np.zeros((2, n, m), dtype), np.zeros((2, n, m), dtype)
    kernel(a_in, np.ascontiguousarray(np.swapaxes(w, 1, 2)), from_rows, True, False, 2)
    kernel(a_in, w, from_transpose, True, True, 2)
    np.testing.assert_array_equal(from_rows, from_transpose)
    assert_close(from_transpose, np.matmul(a, np.swapaxes(w, 1, 2)), k)


@pytest.mark.parametrize("k", [1, 5, mmn.AXPY_K_BLOCK + 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_strips_never_read_what_out_held(k, dtype):
    # matmul_3d hands the strips an np.empty output: the first K block must set every element
    # (the 4-row strips and the rows left over), later blocks add to it
    n, m = 4 * 3 + 2, mmn.AXPY_COL_BLOCK + 7
    a, b = rng_array((2, n, k), dtype, 21, "swapped"), rng_array((2, k, m), dtype, 22)
    out = np.full((2, n, m), np.nan, dtype)
    a_in, a_transposed = layouts.rows_or_transposed(a, dtype)
    assert a_transposed != layouts.is_rows(a)        # and the rows copied out of aᵀ start the sums too
    mmn.axpy.matmul_axpy(a_in, b, out, a_transposed, False, 2)
    assert_close(out, np.matmul(a, b), k)


@pytest.mark.parametrize("rows", [1, 2, 3, 6, 7, 18])
@pytest.mark.parametrize("k", [3, mmn.AXPY_K_BLOCK + 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_few_rows_strips_set_every_row_whatever_is_left_after_the_four_row_strips(rows, k, dtype):
    # 4-row strips, then the rows left one at a time: each row zeroed in the first K block and summed in all
    a, b = rng_array((rows, k), dtype, 25), rng_array((k, 37), dtype, 26)
    out = np.full((rows, 37), np.nan, dtype)
    mmn.narrow_output._few_rows(a, b, out)
    assert_close(out, a @ b, k)


@given(sizes=tile_edge_triples(mmn.TILE_ROWS, mmn.TILE_ROW_BYTES // 4), dtype=FLOAT_DTYPES,
       a_layout=layouts_, b_as_transpose=st.booleans(), small_a=st.booleans(),
       broadcast=st.sampled_from(["none", "a", "b"]), seed=st.integers(0, 2**16))
def test_register_tiles_match_the_reference_on_and_off_the_tile_edges(sizes, dtype, a_layout, b_as_transpose, small_a,
                                                                       broadcast, seed):
    # n and m on, before and after whole MR x NR tiles (float32's NR; float64's is half of it), any
    # layout of a, b packed from its rows or from bᵀ, a batch of 1 broadcast; the edges are zero-padded
    # in the panels. matmul_tiles adds to a zero out; matmul_tiles_small_a writes every element of it
    batch, n, k, m = sizes
    a = rng_array((1 if broadcast == "a" else batch, n, k), dtype, seed, a_layout)
    b = rng_array((1 if broadcast == "b" else batch, k, m), dtype, seed + 1)
    out = np.full((batch, n, m), np.nan, dtype) if small_a else np.zeros((batch, n, m), dtype)
    kernel = mmn.tiles.matmul_tiles_small_a if small_a else mmn.tiles.matmul_tiles
    a_in, a_transposed = layouts.rows_or_transposed(a, dtype)       # a's rows, or aᵀ's
    if b_as_transpose:
        b_t = np.ascontiguousarray(np.swapaxes(b, 1, 2))
        kernel(a_in, b_t, out, a_transposed, True, numba.get_num_threads())
    else:
        kernel(a_in, b, out, a_transposed, False, numba.get_num_threads())
    expected = mm.matmul_reference(np.broadcast_to(a, (batch, n, k)), np.broadcast_to(b, (batch, k, m)))
    assert_close(out, expected, k)


@given(sizes=tile_edge_triples(mmn.TILE_ROWS, mmn.TILE_ROW_BYTES // 4), narrow=st.booleans(), dtype=FLOAT_DTYPES,
       broadcast=st.sampled_from(["none", "a", "b"]), seed=st.integers(0, 2**16))
def test_the_kmajor_tiles_match_the_reference_on_and_off_the_tile_edges(sizes, narrow, dtype, broadcast, seed):
    # aᵀ and b read where they lie: n and m on, before and after whole tiles of the wide tile, or m up
    # to the narrow tile's width (and its rows, NARROW_ROWS); a short last row tile and the last
    # columns come from zero-padded copies
    batch, n, k, m = sizes
    if narrow:
        n = max(1, n * mmn.NARROW_ROWS // mmn.TILE_ROWS)
        m = 1 + m % (mmn.NARROW_ROW_BYTES // np.dtype(dtype).itemsize)
    a = rng_array((1 if broadcast == "a" else batch, n, k), dtype, seed, "transposed")
    b = rng_array((1 if broadcast == "b" else batch, k, m), dtype, seed + 1)
    out = np.full((batch, n, m), np.nan, dtype)             # written, never read
    mmn.kmajor.matmul_kmajor(np.ascontiguousarray(np.swapaxes(a, 1, 2)), b, out, numba.get_num_threads())
    assert_close(out, mm.matmul_reference(a, b), k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, k, m_more", [(100, 7, 1), (37, 5, 4), (784, 64, 4), (50, 1030, 3), (16, 3, 5)])
def test_the_last_few_columns_of_a_kmajor_product_run_on_the_narrow_tile_turned_around(n, k, m_more, dtype):
    # m = whole wide tiles + 1..NARROW_ROWS columns (the DCGAN's 100 = 3 x 32 + 4): those columns are the
    # rows of a narrow tile whose columns are rows of out (_kmajor_tail); n off the narrow tile's width, so
    # the last tile reads aᵀ's last rows from a zero-padded copy; a batch of 2 with b broadcast; out is NaN
    # until written; one thread and several give the same bits
    wide = mmn.TILE_ROW_BYTES // np.dtype(dtype).itemsize
    m = (64 if m_more == 4 else 32) * wide // 32 + m_more
    narrow = mmn.NARROW_ROW_BYTES // np.dtype(dtype).itemsize
    assert 0 < m - mmn.kmajor.kmajor_columns(m, wide, narrow) <= mmn.NARROW_ROWS      # the turned-around tile runs
    a, b = rng_array((2, n, k), dtype, 15, "transposed"), rng_array((1, k, m), dtype, 16)
    a_t = np.ascontiguousarray(np.swapaxes(a, 1, 2))
    alone, shared = np.full((2, n, m), np.nan, dtype), np.full((2, n, m), np.nan, dtype)
    with mm_threads.sized_for(0):
        mmn.kmajor.matmul_kmajor(a_t, b, alone, 1)
    mmn.kmajor.matmul_kmajor(a_t, b, shared, 3)
    np.testing.assert_array_equal(alone, shared)
    assert_close(alone, mm.matmul_reference(a, b), k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kmajor_tiles_add_up_several_k_blocks_on_any_number_of_threads(dtype):
    n, k, m = 2 * mmn.TILE_ROW_BLOCK + 5, mmn.K_BLOCK_BYTES // np.dtype(dtype).itemsize + 7, 45
    a, b = rng_array((2, n, k), dtype, 13, "transposed"), rng_array((1, k, m), dtype, 14)
    a_t = np.ascontiguousarray(np.swapaxes(a, 1, 2))
    alone, shared = np.empty((2, n, m), dtype), np.empty((2, n, m), dtype)
    with mm_threads.sized_for(0):
        mmn.kmajor.matmul_kmajor(a_t, b, alone, 1)
    mmn.kmajor.matmul_kmajor(a_t, b, shared, 3)                   # rows cut into blocks for 3 threads
    np.testing.assert_array_equal(alone, shared)
    assert_close(alone, np.matmul(a, b), k)


def test_a_transposed_view_times_rows_takes_the_kmajor_tiles_unless_the_output_is_small():
    t = lambda x: np.swapaxes(x, 1, 2)                                   # noqa: E731
    g, w = np.ones((64, 32, 196), np.float32), np.ones((1, 32, 16), np.float32)
    assert mmn.kmajor_pays(t(g), w, np.dtype(np.float32))              # a convolution's g[n]ᵀ @ w_mat
    gt, z = np.ones((1, 64, 6272), np.float32), np.ones((1, 64, 100), np.float32)
    assert mmn.kmajor_pays(t(gt), z, np.dtype(np.float32))             # a weight gradient gᵀ @ z
    assert not mmn.kmajor_pays(gt, z, np.dtype(np.float32))            # not a transposed view
    assert not mmn.kmajor_pays(g[:1, :, :20].copy().swapaxes(1, 2), w, np.dtype(np.float32))   # few rows
    assert not mmn.kmajor_pays(t(g), np.ones((1, 32, 20), np.float32), np.dtype(np.float32))   # 16 < m < 32
    x = np.ones((1, 64, 32), np.float32)
    assert not mmn.kmajor_pays(t(x), np.ones((1, 64, 6272), np.float32), np.dtype(np.float32))  # short k, long rows
    w_t = t(np.ones((1, 16, 64), np.float32))                           # a 1x1 layer's w_matᵀ (64 x 16), a view
    assert mmn.kmajor_pays(w_t, np.ones((1, 16, 49), np.float32), np.dtype(np.float32))          # one product
    assert not mmn.kmajor_pays(w_t, np.ones((128, 16, 49), np.float32), np.dtype(np.float32))    # broadcast over 128
    # columns on wide tiles of 32, the rest on one narrow tile of 16 if they fit it
    assert [mmn.kmajor.kmajor_columns(m, 32, 16) for m in (1, 16, 17, 32, 33, 48, 49, 64, 100, 400)] == \
        [0, 0, 17, 32, 32, 32, 49, 64, 96, 384]


@pytest.mark.skipif(sys.platform == "win32", reason="needs mprotect (POSIX)")
def test_the_kmajor_tiles_never_read_past_the_end_of_their_operands():
    # the tiles read MR numbers of aᵀ per k: a short last tile of rows must read a copy. With the operands'
    # last numbers at the end of a page followed by an unreadable one, a read past them crashes the
    # process (reading aᵀ in place for the short tile too: exit code -11, SIGSEGV)
    result = run_python("""
        import ctypes, mmap
        import numpy as np
        from scratchgen.kernels import matmul_numba as mmn
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        def at_page_end(shape):
            memory = mmap.mmap(-1, 2 * page)
            start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
            assert libc.mprotect(ctypes.c_void_p(start + page), page, 0) == 0      # PROT_NONE
            size = int(np.prod(shape))
            x = np.frombuffer(memory, np.float32, size, page - 4 * size).reshape(shape)
            x[...] = np.arange(size, dtype=np.float32).reshape(shape) % 7 - 3
            return x, memory
        (a_t, _m1), (b, _m2) = at_page_end((1, 5, 13)), at_page_end((1, 5, 20))   # 13 rows, 20 columns
        out = np.empty((1, 13, 20), np.float32)
        mmn.kmajor.matmul_kmajor(a_t, b, out, 1)
        assert np.allclose(out, np.swapaxes(a_t, 1, 2) @ b)
        b, _m3 = at_page_end((1, 5, mmn.TILE_ROW_BYTES // 4 + 3))          # wide tiles and a narrow one
        out = np.empty((1, 13, b.shape[2]), np.float32)
        mmn.kmajor.matmul_kmajor(a_t, b, out, 1)
        assert np.allclose(out, np.swapaxes(a_t, 1, 2) @ b)
        print("ok")
    """)
    assert result.returncode == 0 and "ok" in result.stdout, f"exit code {result.returncode}: {result.stderr[-2000:]}"


@pytest.mark.parametrize("tile, cols", [("_dot_tile_4x4", 4), ("_dot_tile_4x2", 2), ("_dot_column_4", 1)])
def test_each_dot_tile_adds_its_block_of_dot_products(tile, cols):
    # all three, whichever this CPU's dot_block uses (4x2 where 16 vector registers cannot hold 4x4)
    a, bt = rng_array((7, 37), np.float32, 15), rng_array((5, 37), np.float32, 16)
    c = rng_array((7, 5), np.float32, 17)
    expected = c.copy()
    expected[2:6, 1:1 + cols] += a[2:6, 3:30] @ bt[1:1 + cols, 3:30].T
    getattr(mmn.dot, tile)(a, bt, c, 2, 1, 3, 30)
    assert_close(c, expected, 27)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_register_tiles_add_up_several_k_blocks_and_column_blocks(dtype):
    # k over two K blocks of either dtype (K_BLOCK_BYTES: 1024 float32, 512 float64), m over two
    # column blocks, n over two row blocks, none of them a whole number of tiles
    n, k, m = 2 * mmn.TILE_ROW_BLOCK + 5, mmn.K_BLOCK_BYTES // 4 + 7, mmn.AXPY_COL_BLOCK + 9
    a, b = rng_array((1, n, k), dtype, 11, "transposed"), rng_array((1, k, m), dtype, 12)
    out = np.zeros((1, n, m), dtype)
    mmn.tiles.matmul_tiles(np.ascontiguousarray(np.swapaxes(a, 1, 2)), b, out, True, False, numba.get_num_threads())
    assert_close(out, np.matmul(a, b), k)
    assert mmn.TILE_MIN_K <= k       # and matmul_3d sends this product to the tiles as well
    assert_close(mmn.matmul_3d(a, b, 1, kernel="axpy"), np.matmul(a, b), k)


def test_a_stack_tile_has_the_shape_its_row_bytes_give_each_dtype():
    @numba.njit
    def filled(like):
        tile = stack_tile(3, 128, like)
        for r in range(tile.shape[0]):
            for s in range(tile.shape[1]):
                tile[r, s] = r * 100 + s
        return tile.sum(), tile.shape[0], tile.shape[1]

    for dtype, cols in ((np.float32, 32), (np.float64, 16)):
        total, rows, width = filled(np.zeros(1, dtype))
        assert (rows, width) == (3, cols)
        assert total == sum(r * 100 + s for r in range(3) for s in range(cols))
    assert heap_tile(3, 128, np.zeros(1, np.float64)).shape == (3, 16)      # the plain-Python twin


@numba.njit(parallel=True)
def _claim_all(tasks, threads, claimed, per_thread):
    """Every thread claims tasks from one counter until none are left, counting what it got."""
    counter = task_counter()
    for t in numba.prange(threads):
        task = claim_task(counter)
        while task < tasks:
            claimed[task] += 1
            per_thread[t] += 1
            task = claim_task(counter)
    return counter[0]


def test_every_task_is_claimed_exactly_once_however_the_threads_race():
    # the counter's fetch-and-add is atomic: as a plain load and store, two threads racing through 300,000
    # tasks took some of them twice and skipped others (measured: it fails with the intrinsic replaced)
    threads = numba.get_num_threads()
    for _ in range(3):
        claimed, per_thread = np.zeros(300_000, np.intp), np.zeros(threads, np.intp)
        handed_out = _claim_all(claimed.size, threads, claimed, per_thread)
        assert (claimed == 1).all(), f"{(claimed == 0).sum()} tasks skipped, {(claimed > 1).sum()} taken twice"
        assert per_thread.sum() == claimed.size
        assert handed_out == claimed.size + threads       # each thread's last claim found no task left
    counter = task_counter()                              # and the plain-Python twin, with the JIT off
    assert [tasks._claim_task_python(counter) for _ in range(3)] == [0, 1, 2] and counter[0] == 3


def test_the_register_tile_takes_as_many_rows_as_the_vector_registers_hold():
    # MR x NV sums and MR broadcast numbers of a, one register spare: MR (NV + 1) <= registers - 1
    assert register_tile_shape(16, 32) == (3, 128)      # AVX2: 3 x 32 float32
    assert register_tile_shape(32, 32) == (6, 128)      # AVX-512 with 256-bit vectors (Zen 4)
    assert register_tile_shape(32, 64) == (10, 128)     # AVX-512 with 512-bit vectors
    assert register_tile_shape(16, 32, 64) == (5, 64)   # the narrow tile, half as wide: AVX2 5 x 16 float32
    assert register_tile_shape(32, 32, 64) == (10, 64)  # Zen 4: 10 x 16
    for registers, vector in ((16, 32), (32, 32), (32, 64)):
        rows, row_bytes = register_tile_shape(registers, vector)
        per_row = row_bytes // vector
        assert rows * (per_row + 1) <= registers - 1 < (rows + 1) * (per_row + 1)
    assert (mmn.TILE_ROWS, mmn.TILE_ROW_BYTES) == register_tile_shape()


@pytest.mark.parametrize("kernel", ["dot", "axpy"])
@given(sizes=matrix_triples(max_n=70, max_k=40, max_m=70), dtype=FLOAT_DTYPES, seed=st.integers(0, 2**16))
def test_the_number_of_threads_never_changes_a_result(kernel, sizes, dtype, seed):
    # every output element is computed by one task in one order, however many threads share them
    batch, n, k, m = sizes
    a, b = rng_array((batch, n, k), dtype, seed), rng_array((batch, k, m), dtype, seed + 1)
    threads = numba.get_num_threads()
    with mm_threads.sized_for(0):                  # no work: the calling thread alone
        assert numba.get_num_threads() == 1
        alone = mmn.matmul_3d(a, b, batch, kernel=kernel)
    assert numba.get_num_threads() == threads
    shared = np.zeros_like(alone)                     # the kernel itself, on every thread
    if kernel == "dot":
        mmn.dot.matmul_dot(layouts.rows_of(a, dtype), layouts.rows_of(np.swapaxes(b, 1, 2), dtype), shared, 3)   # rows cut for 3 threads
    else:
        mmn.axpy.matmul_axpy(a, b, shared, False, False, 3)      # its rows cut into blocks for 3 threads
    np.testing.assert_array_equal(alone, shared)
    if kernel == "axpy":                              # the register tiles, on one thread and on all
        tiles_alone, tiles_shared = np.zeros_like(alone), np.zeros_like(alone)
        with mm_threads.sized_for(0):
            mmn.tiles.matmul_tiles(a, b, tiles_alone, False, False, 1)
        mmn.tiles.matmul_tiles(a, b, tiles_shared, False, False, 3)
        np.testing.assert_array_equal(tiles_alone, tiles_shared)
        with mm_threads.sized_for(0):                      # the tiles with a packed whole
            mmn.tiles.matmul_tiles_small_a(a, b, tiles_alone, False, False, 1)
        mmn.tiles.matmul_tiles_small_a(a, b, tiles_shared, False, False, 3)
        np.testing.assert_array_equal(tiles_alone, tiles_shared)
        a_t = np.ascontiguousarray(np.swapaxes(a, 1, 2))      # the k-major tiles too
        with mm_threads.sized_for(0):
            mmn.kmajor.matmul_kmajor(a_t, b, tiles_alone, 1)
        mmn.kmajor.matmul_kmajor(a_t, b, tiles_shared, 3)
        np.testing.assert_array_equal(tiles_alone, tiles_shared)


@pytest.mark.parametrize("n, k, m, a_layout, b_layout", [
    (128, 400, 20, "contiguous", "contiguous"),      # the VAE's g @ W into its 20 latent units: narrow kernel
    (16, 6272, 32, "transposed", "contiguous"),      # a weight gradient gᵀ @ x, 3.2 million multiply-adds
    (64, 5000, 16, "contiguous", "transposed"),      # x @ Wᵀ with 5.1 million: past NARROW_MOST_WORK
])
def test_the_kernel_a_product_runs_on_never_depends_on_the_threads(n, k, m, a_layout, b_layout):
    # the narrow kernels and the pooled ones add in different orders, so the choice between them must
    # follow from the shape alone: on one thread (sized_for(0)) and on all, the same bits. (Chosen by
    # whether threads would pay, as before NARROW_MOST_WORK, a 1-thread run took the narrow kernel for the
    # last two and a 2-thread run the pooled ones.)
    a, b = rng_array((1, n, k), np.float32, 7, a_layout), rng_array((1, k, m), np.float32, 8, b_layout)
    with mm_threads.sized_for(0):
        alone = mmn.matmul_3d(a, b, 1)
    np.testing.assert_array_equal(alone, mmn.matmul_3d(a, b, 1))
    assert_close(alone, np.matmul(a, b), k)


@pytest.mark.parametrize("units, most, threads", [(22, 5, 2), (22, 5, 1), (3, 5, 4), (1, 1, 2), (100, 7, 3), (8, 2, 4)])
def test_row_blocks_share_equal_work_among_the_threads(units, most, threads):
    # threads of equal speed claim equal numbers of blocks: with the blocks cut as balanced_blocks says,
    # any equal shares of them (here contiguous ones) differ by at most one unit per block
    blocks = mmn.balanced_blocks(units, most, threads)
    sizes = [(b + 1) * units // blocks - b * units // blocks for b in range(blocks)]
    assert sum(sizes) == units and max(sizes) <= max(most, 1) and min(sizes) >= 1
    if units >= threads:
        assert blocks % threads == 0
        shares = [sum(sizes[t * blocks // threads: (t + 1) * blocks // threads]) for t in range(threads)]
        assert max(shares) - min(shares) <= blocks // threads


@pytest.mark.parametrize("tasks, threads", [(28, 2), (27, 2), (12, 3), (5, 1), (8, 4), (1, 2)])
def test_claims_numbered_in_turn_cover_every_task_once_and_give_equal_threads_contiguous_shares(tasks, threads):
    blocks = [mmn.in_turn(t, tasks, threads) for t in range(tasks)]
    assert sorted(blocks) == list(range(tasks))                     # each block claimed exactly once
    if tasks % threads == 0:                                         # thread t claims t, t + T, ...: one run
        for t in range(threads):
            mine = blocks[t::threads]
            assert mine == list(range(mine[0], mine[0] + len(mine)))


@pytest.mark.parametrize("n, tiles, threads", [(128, 13, 2), (1024, 32, 2), (64, 196, 2), (70, 1, 3), (5, 2, 4), (300, 7, 3)])
def test_the_tiles_tasks_cover_the_output_once_and_equally_fast_threads_keep_to_their_own_column_blocks(n, tiles,
                                                                                                      threads):
    # matmul_tiles' tasks as tile_block cuts them: every (row, column tile) of out in exactly one task,
    # and when the column blocks are a multiple of the threads, threads that claim tasks in turn at the
    # same pace (thread t: tasks t, t + T, ...) each read only their own column tiles of b
    mr = mmn.TILE_ROWS
    col_blocks = mmn.balanced_blocks(tiles, max(1, mmn.AXPY_COL_BLOCK // 32), threads)
    split_columns = col_blocks % threads == 0
    row_blocks = mmn.balanced_blocks(-(-n // mr), max(1, mmn.TILE_ROW_BLOCK // mr), 1 if split_columns else threads)
    tasks = col_blocks * row_blocks
    covered = np.zeros((n, tiles), int)
    owner = np.full(tiles, -1)
    for task in range(tasks):
        z, i0, i1, t0, t1 = mmn.tile_block(task, n, tiles, mr, row_blocks, col_blocks)
        assert z == 0
        covered[i0:i1, t0:t1] += 1
        thread = task % threads                              # the thread that claims it, taking turns
        if split_columns:
            assert all(owner[t] in (-1, thread) for t in range(t0, t1))
            owner[t0:t1] = thread
    assert (covered == 1).all()
    assert split_columns == (tiles >= threads)


def test_only_work_that_pays_for_the_wake_ups_wakes_the_pool():
    cost = mm_threads.calibrate()
    assert 0 < cost["madd"] < 1e-8 and 0 < cost["wake"] < 1.0
    assert mm_threads.pool_threads() == numba.get_num_threads()
    break_even = mm_threads.WAKEUPS_SAVED * cost["wake"] / cost["madd"]
    all_threads = numba.get_num_threads()
    assert mm_threads.threads_for(1) == 1
    assert mm_threads.threads_for(100 * break_even) == all_threads
    with pytest.raises(RuntimeError):
        with mm_threads.sized_for(1):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == all_threads      # restored after an error


def test_a_calibration_that_met_a_busy_core_is_repeated_later_and_a_good_one_is_kept(monkeypatch):
    # every wake-up slower than SLOW_WAKE means another program held the core: measured again after
    # RECALIBRATE seconds, not believed for the rest of the process (it would keep threads off for good)
    long_ago = time.monotonic() - 2 * mm_threads.RECALIBRATE
    monkeypatch.setattr(mm_threads, "_calibration", {"wake": 8e-3, "madd": 1e-10, "at": long_ago})
    mm_threads.threads_for(10**8)
    assert mm_threads._calibration["at"] > long_ago           # measured again
    fresh = {"wake": 8e-3, "madd": 1e-10, "at": time.monotonic()}
    monkeypatch.setattr(mm_threads, "_calibration", dict(fresh))
    assert mm_threads.threads_for(10**8) == 1 and mm_threads._calibration == fresh   # not yet
    good = {"wake": 2e-6, "madd": 1e-10, "at": long_ago}
    monkeypatch.setattr(mm_threads, "_calibration", dict(good))
    assert mm_threads.threads_for(10**8) == numba.get_num_threads() and mm_threads._calibration == good


def test_copies_from_scattered_places_weigh_more_than_a_multiply_add_in_the_thread_rule(monkeypatch):
    # im2col's gather, col2im's scattered additions and a transpose cost several vectorised multiply-adds a
    # number; counted as one, the DCGAN's one-channel im2col looked too short to try a second thread
    assert mm_threads.SCATTERED_COPY_WORK > 1
    asked = []

    class Recorder(mm_threads.sized_for):
        def __init__(self, work, key=None):
            asked.append((key[0] if key else None, work))
            super().__init__(work, key)

    monkeypatch.setattr(conv_numba, "sized_for", Recorder)
    monkeypatch.setattr(layouts, "sized_for", Recorder)
    monkeypatch.setattr(layouts, "threads_for", lambda work: asked.append(("threads_for", work)) or 2)
    x = rng_array((3, 1, 8, 8), np.float32, 28)
    cols = conv_numba._patches(x, 3, 3, (1, 1), (1, 1), (8, 8), np.float32)
    conv_numba._col2im(np.ascontiguousarray(cols.transpose(0, 2, 1)), x.shape, 3, 3, (1, 1), (1, 1), (8, 8), np.float32)
    big = rng_array((2, 70, 65), np.float32, 29)
    layouts.transposed(big, np.float32)
    weights = {name: work for name, work in asked}
    assert weights["im2col"] == mm_threads.SCATTERED_COPY_WORK * cols.size
    assert weights["col2im"] == mm_threads.SCATTERED_COPY_WORK * cols.size
    assert weights["threads_for"] == weights["transpose"] == mm_threads.SCATTERED_COPY_WORK * big.size


def run_calls(choice, seconds_on, calls):
    """Let ``choice`` pick the threads of ``calls`` calls, each taking ``seconds_on[threads]``; the picks."""
    picks = []
    for _ in range(calls):
        t = choice.next()
        choice.record(t, seconds_on[t])
        picks.append(t)
    return picks


def test_a_timed_call_site_keeps_the_faster_choice_and_retries_the_other_less_and_less():
    choice, every = mm_threads.ThreadChoice(2), mm_threads.RETRY_EVERY
    # a core taken by another program: two threads slower than one
    picks = run_calls(choice, {1: 1.0, 2: 1.3}, 6 + every * (1 + 2 + 4 + 8))
    assert sorted(picks[:6]) == [1, 1, 1, 2, 2, 2]              # both warmed up first
    retries = [i for i, t in enumerate(picks[6:], 1) if t == 2]
    assert retries == [every, 3 * every, 7 * every, 15 * every]   # each losing retry doubles the wait
    assert choice.interval == 16 * every
    # the core is free again: the next retry wins, the ones after it come soon, two threads take over
    picks = run_calls(choice, {1: 1.0, 2: 0.6}, 16 * every + 3 * every)
    assert choice.best() == 2 and picks[-every:].count(2) >= every - 1
    assert mm_threads.RETRY_MAX >= choice.interval


def test_one_slow_first_call_does_not_decide_a_call_site():
    choice = mm_threads.ThreadChoice(2)
    t = choice.next()
    choice.record(t, 100.0 if t == 2 else 1.0)                 # e.g. compiling on the first call
    run_calls(choice, {1: 1.0, 2: 0.5}, 5)
    assert choice.best() == 2 and choice.next() == 2


def test_only_work_above_the_break_even_point_is_timed():
    mm_threads._choices.clear()
    with mm_threads.sized_for(1, key=("test", "small")) as used:
        assert used == 1
    assert ("test", "small") not in mm_threads._choices
    with mm_threads.sized_for(10**12, key=("test", "big")) as used:
        assert used == numba.get_num_threads() or numba.get_num_threads() == 1
    if numba.get_num_threads() > 1:
        assert len(mm_threads._choices[("test", "big")].times[used]) == 1


@given(n=st.integers(32, 70), k=st.integers(1, 40), m=st.integers(1, 31), batch=st.integers(1, 3),
       dtype=FLOAT_DTYPES, layout_pair=st.tuples(layouts_, layouts_), broadcast=st.sampled_from(["none", "b"]),
       seed=st.integers(0, 2**16))
def test_a_narrow_tall_product_computed_as_its_transpose_matches_reference(n, k, m, batch, dtype, layout_pair,
                                                                           broadcast, seed):
    # Cᵀ = Bᵀ Aᵀ: the path taken when the output is narrow and the dot kernel would copy
    a = rng_array((batch, n, k), dtype, seed, layout_pair[0])
    b = rng_array((1 if broadcast == "b" else batch, k, m), dtype, seed + 1, layout_pair[1])
    with patch.object(mmn.dispatch, "NARROW_MOST_WORK", 0):        # as if too large for the narrow kernel
        out = mmn.matmul_3d(a, b, batch)
    assert out.flags.c_contiguous
    assert_close(out, mm.matmul_reference(a, b), k)


@st.composite
def narrow_products(draw):
    """(batch, n, k, m) with n or m below DOT_MAX_M (the narrow kernel's territory), odd sizes and 1s."""
    batch, k = draw(st.integers(1, 3)), draw(st.integers(1, 40))
    few, many = draw(st.integers(1, mmn.DOT_MAX_M - 1)), draw(st.integers(1, 70))
    return (batch, few, k, many) if draw(st.booleans()) else (batch, many, k, few)


@given(sizes=narrow_products(), dtype=FLOAT_DTYPES, layout_pair=st.tuples(layouts_, layouts_),
       broadcast=st.sampled_from(["none", "a", "b"]), seed=st.integers(0, 2**16))
def test_narrow_products_match_the_reference(sizes, dtype, layout_pair, broadcast, seed):
    # the narrow kernel by every plan: few rows, few columns read flipped (aᵀ's rows) or as dot products
    batch, n, k, m = sizes
    a = rng_array((1 if broadcast == "a" else batch, n, k), dtype, seed, layout_pair[0])
    b = rng_array((1 if broadcast == "b" else batch, k, m), dtype, seed + 1, layout_pair[1])
    out = mmn.matmul_3d(a, b, batch, kernel="narrow")
    assert out.flags.c_contiguous
    assert_close(out, mm.matmul_reference(a, b), k)


@given(batch=st.integers(1, 4), n=st.integers(1, 21), k=st.integers(0, 40), m=st.integers(1, 19), dtype=FLOAT_DTYPES,
       layout_pair=st.tuples(layouts_, layouts_), seed=st.integers(0, 2**16))
def test_a_sum_of_products_over_a_batch_matches_the_reference_on_any_number_of_threads(batch, n, k, m, dtype,
                                                                                      layout_pair, seed):
    # Σ_z a[z] @ b[z]: a few-feature convolution's weight gradient; rows of out in blocks for the threads,
    # each block summed over z in order, so one thread and two give the same bits
    a = rng_array((batch, n, k), dtype, seed, layout_pair[0])
    b = rng_array((batch, k, m), dtype, seed + 1, layout_pair[1])
    out = mmn.summed_products(a, b)
    assert out.shape == (n, m) and out.dtype == dtype
    assert_close(out, mm.matmul_reference(a, b).sum(axis=0), batch * k)
    a_rows, bt_rows = layouts.rows_of(a, dtype), layouts.rows_of(np.swapaxes(b, 1, 2), dtype)
    sums = [np.zeros((n, m), dtype) for _ in range(2)]
    for threads, into in zip((1, 2), sums):
        mmn.dot.matmul_dot_summed(a_rows, bt_rows, into, threads)
    np.testing.assert_array_equal(sums[0], sums[1])
    np.testing.assert_array_equal(sums[0], out)


@given(r=st.integers(1, 40), k=st.integers(0, 40), w=st.integers(1, 110), dtype=FLOAT_DTYPES,
       seed=st.integers(0, 2**16))
def test_the_short_k_tiles_of_a_narrow_product_match_the_reference(r, k, w, dtype, seed):
    # every column count: whole tile rows of b read in place, and a last w mod NR columns that fit the
    # narrow tile or need a wide one, from a zero-padded panel; rows not a multiple of the tile's
    a, b = rng_array((r, k), dtype, seed), rng_array((k, w), dtype, seed + 1)
    pad = max(mmn.TILE_ROWS, mmn.NARROW_ROWS)
    a_k = np.concatenate([a.T.reshape(-1), np.full(pad, np.nan, dtype)])   # the padding is never summed into out
    out = np.full((r, w), np.nan, dtype)
    mmn.narrow_output._few_rows_tiles(a_k, b, out, np.full(k * (mmn.TILE_ROW_BYTES // out.itemsize), np.nan, dtype))
    assert_close(out, mm.matmul_reference(a, b), k)


def test_a_small_narrow_product_takes_the_narrow_kernel_reading_its_operands_as_they_lie():
    x, w, g = (np.ones(s, np.float32) for s in ((1, 128, 400), (1, 400, 20), (1, 128, 20)))
    t = lambda x: np.swapaxes(x, 1, 2)                                   # noqa: E731
    assert mmn.narrow_plan(t(x), g, np.float32) == "flip"         # xᵀ @ g: a weight gradient
    assert mmn.narrow_plan(t(g), x, np.float32) == "rows"         # gᵀ @ x: 20 rows
    assert mmn.narrow_plan(x, w, np.float32) == "dot"             # g @ W, both C-contiguous
    assert mmn.narrow_plan(t(g[:, :, :1]), np.ones((1, 128, 64), np.float32), np.float32) == "rows"   # 1 x 128 @ 128 x 64
    assert mmn.narrow_plan(x, t(x), np.float32) is None           # 128 x 128: not narrow
    assert mmn.narrow_plan(g[:, :, :8], t(w[:, :, :8]), np.float32) == "rows"  # 128 x 8 @ (8 x 400 strided): copied
    assert mmn.narrow_plan(g[:, :, :8], np.ones((1, 8, 400), np.float32), np.float32) == "rows"   # a short k: b in L1
    assert mmn.narrow_plan(t(g), t(w[:, :128]), np.float32) is None    # 20 rows, but b's rows strided
    calls = []
    with patch.object(mmn.dispatch, "NARROW_MOST_WORK", 2**62), \
            patch.object(mmn.dispatch, "matmul_narrow", lambda *args: calls.append(args)):
        mmn.matmul_3d(t(g), x, 1)
        mmn.matmul_3d(g[:, :, :18].copy(), t(np.ones((1, 400, 18), np.float32)), 1)   # z @ Wᵀ, a short k
    a_in, a_transposed, b_in, b_transposed = calls[0][:4]
    assert len(calls) == 2 and np.shares_memory(a_in, g) and a_transposed and b_in is x and not b_transposed
    assert calls[1][3] and calls[1][2].shape == (1, 400, 18)      # Wᵀ turned around in the kernel, not before


def test_the_transpose_is_taken_only_for_narrow_tall_products_the_dot_kernel_would_copy():
    x, w = np.ones((1, 128, 400), np.float32), np.ones((1, 20, 400), np.float32)
    g = np.ones((1, 128, 20), np.float32)
    assert not mmn.transpose_pays(x, np.swapaxes(w, 1, 2))       # x @ Wᵀ: dot reads both as they are
    assert mmn.transpose_pays(np.swapaxes(x, 1, 2), g)            # xᵀ @ g (a weight gradient)
    assert not mmn.transpose_pays(np.swapaxes(x, 1, 2)[:, :20], g[:, :, :5][:, :128])   # short: n < 32
    assert not mmn.transpose_pays(np.swapaxes(x, 1, 2), np.ones((1, 128, 64), np.float32))  # wide
    w_rows = np.ones((1, 400, 20), np.float32)
    assert not mmn.transpose_pays(x, w_rows)                      # x @ W, both C-contiguous: dot copies
                                                                  # the small W, the flip all of x


def test_large_operand_goes_through_the_numba_transpose():
    a, b = rng_array((20, 80), np.float64, 5), rng_array((80, 90), np.float64, 6)   # b: 7200 > 64²
    assert_close(mm.matmul(a, b), a @ b, 80)
    for shape in ((2, 70, 65), (1, 400, 18), (3, 17, 300), (1, 1, 5000)):   # blocks of 16 output rows and their edge
        x = rng_array(shape, np.float32, 7)
        assert np.array_equal(layouts.transposed(x, np.float32), np.swapaxes(x, 1, 2))
        out = np.full(shape[:1] + shape[:0:-1], np.nan, np.float32)
        layouts.transpose_rows(x, out, 0, out.shape[1])                     # the calling thread's loop
        assert np.array_equal(out, np.swapaxes(x, 1, 2))
        part = np.full_like(out, np.nan)
        c0, c1 = shape[2] // 3, 2 * shape[2] // 3 + 1                       # rows c0..c1 of the transpose only
        layouts.transpose_rows(x, part, c0, c1)
        assert np.array_equal(part[:, c0:c1], out[:, c0:c1])
        assert np.isnan(part[:, :c0]).all() and np.isnan(part[:, c1:]).all()


@on_both_backends
@pytest.mark.parametrize("dtypes, expected", [((np.float32, np.float32), np.float32),
                                              ((np.float32, np.float64), np.float64),
                                              ((np.float64, np.float32), np.float64)])
def test_matmul_result_dtype(backend, dtypes, expected):
    with use_backend(backend):
        a, b = rng_array((3, 4), dtypes[0], 0), rng_array((4, 2), dtypes[1], 1)
        out = mm.matmul(a, b)
        assert out.dtype == expected
        assert_close(out, a.astype(expected) @ b.astype(expected), 4)


@on_both_backends
def test_matmul_does_not_modify_inputs(backend):
    with use_backend(backend):
        a, b = rng_array((6, 70), np.float32, 0, "transposed"), rng_array((70, 5), np.float32, 1, "strided")
        a0, b0 = a.copy(), b.copy()
        mm.matmul(a, b)
        assert np.array_equal(a, a0) and np.array_equal(b, b0)


@on_both_backends
@pytest.mark.parametrize("a_shape, b_shape, message", [
    ((3, 4), (5, 2), "inner dimensions differ: (3, 4) @ (5, 2)"),
    ((2, 3, 4), (3, 4, 5), "batch dimensions do not broadcast: (2, 3, 4) @ (3, 4, 5)"),
    ((), (3, 4), "at least 2-D"),
    ((4,), (4, 3), "operands must be at least 2-D"),     # a vector is Tensor @'s to promote
    ((3, 4), (4,), "at least 2-D"),
    ((4,), (3,), "(4,) @ (3,)"),
])
def test_matmul_bad_shapes_name_both(backend, a_shape, b_shape, message):
    with use_backend(backend):
        with pytest.raises(ValueError, match=re.escape(message)):
            mm.matmul(np.ones(a_shape), np.ones(b_shape))


@on_both_backends
def test_matmul_refuses_integer_arrays(backend):
    with use_backend(backend):
        with pytest.raises(TypeError, match=r"int64.*astype"):
            mm.matmul(np.ones((2, 2), dtype=np.int64), np.ones((2, 2)))


# ---------------------------------------------------------------------- conv2d
def conv2d_loops(x, w, stride, padding):
    """out[n, o, y, x] = Σ_{c,i,j} x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j], element by element."""
    (sh, sw), (ph, pw) = stride, padding
    n_img, _, h, wd = x.shape
    o_ch, c_ch, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n_img, o_ch, ho, wo))
    for n in range(n_img):
        for o in range(o_ch):
            for y in range(ho):
                for xx in range(wo):
                    for c in range(c_ch):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = y * sh + i - ph, xx * sw + j - pw
                                if 0 <= r < h and 0 <= s < wd:
                                    out[n, o, y, xx] += x[n, c, r, s] * w[o, c, i, j]
    return out


@st.composite
def conv_problems(draw):
    """A conv2d case with x, w and an upstream gradient g, any layout and dtype."""
    case = draw(conv2d_cases(max_n=3, max_c=5, max_hw=9, max_k=4))
    dtype = draw(FLOAT_DTYPES)
    x = draw(seeded_arrays(case["x_shape"], dtype=dtype))
    w = draw(seeded_arrays(case["w_shape"], dtype=dtype))
    sh, sw = case["stride"]
    (ph, pw), (kh, kw) = case["padding"], case["w_shape"][2:]
    out_shape = (x.shape[0], w.shape[0], (x.shape[2] + 2 * ph - kh) // sh + 1,
                 (x.shape[3] + 2 * pw - kw) // sw + 1)
    g = draw(seeded_arrays(out_shape, dtype=dtype))
    return case, x, w, g


@on_both_backends
@given(problem=conv_problems())
def test_conv2d_forward_matches_definitions(backend, problem):
    with use_backend(backend):
        case, x, w, _ = problem
        out = conv.conv2d_forward(x, w, case["stride"], case["padding"])
        terms = w[0].size
        assert_close(out, conv.conv2d_forward_reference(x, w, case["stride"], case["padding"]), terms)
        assert_close(out, conv2d_loops(x, w, case["stride"], case["padding"]).astype(out.dtype), terms)


@on_both_backends
@given(problem=conv_problems())
def test_conv2d_gradients_match_reference_and_adjoint(backend, problem):
    with use_backend(backend):
        case, x, w, g = problem
        stride, padding = case["stride"], case["padding"]
        dx = conv.conv2d_grad_input(g, w, x.shape, stride, padding)
        dw = conv.conv2d_grad_weight(x, g, w.shape, stride, padding)
        assert_close(dx, conv.conv2d_grad_input_reference(g, w, x.shape, stride, padding), w.shape[0] * 16)
        assert_close(dw, conv.conv2d_grad_weight_reference(x, g, w.shape, stride, padding), g[:, 0].size)
        # <conv(x, w), g> = <x, dx> = <w, dw>: the gradients are the adjoints of the forward map
        y = conv.conv2d_forward(x, w, stride, padding).astype(np.float64)
        inner = np.sum(y * g)
        scale = (np.abs(y) * np.abs(g)).sum() + 1
        tol = (1e-5 if x.dtype == np.float32 else 1e-12) * scale
        assert abs(np.sum(x * dx) - inner) <= tol
        assert abs(np.sum(w * dw) - inner) <= tol


@on_both_backends
@given(problem=conv_problems(), data=st.data())
def test_conv2d_gradients_for_any_input_size_with_that_output(backend, problem, data):
    with use_backend(backend):
        # conv_transpose2d's output_padding: extra input rows/columns that no window reaches
        case, x, w, g = problem
        stride, padding = case["stride"], case["padding"]
        shape = data.draw(conv2d_grad_input_shapes(case))
        big_x = rng_array(shape, x.dtype, 11)
        dx = conv.conv2d_grad_input(g, w, shape, stride, padding)
        assert_close(dx, conv.conv2d_grad_input_reference(g, w, shape, stride, padding), w.shape[0] * 16)
        h, wd = x.shape[2:]
        assert not dx[:, :, h + padding[0]:].any() and not dx[:, :, :, wd + padding[1]:].any()
        dw = conv.conv2d_grad_weight(big_x, g, w.shape, stride, padding)
        assert_close(dw, conv.conv2d_grad_weight_reference(big_x, g, w.shape, stride, padding), g[:, 0].size)


@on_both_backends
def test_conv2d_mixed_dtypes_give_float64(backend):
    with use_backend(backend):
        x, w = rng_array((2, 3, 6, 6), np.float32, 0), rng_array((4, 3, 3, 3), np.float64, 1)
        out = conv.conv2d_forward(x, w, 1, 1)
        assert out.dtype == np.float64
        assert_close(out, conv.conv2d_forward_reference(x.astype(np.float64), w, (1, 1), (1, 1)), 27)
        dx, dw = conv.conv2d_backward(x, out, w, 1, 1)          # both gradients at once: as each alone
        assert dx.dtype == dw.dtype == np.float64
        assert_close(dx, conv.conv2d_grad_input_reference(out, w, x.shape, (1, 1), (1, 1)), 36)
        assert_close(dw, conv.conv2d_grad_weight_reference(x.astype(np.float64), out, w.shape, (1, 1), (1, 1)), 72)


@on_both_backends
def test_conv2d_layer_of_the_dcgan(backend):
    with use_backend(backend):
        # the benchmarked layer: every path (dot kernel, im2col layouts, col2im) at a realistic size
        x, w = rng_array((4, 32, 14, 14), np.float32, 0), rng_array((64, 32, 4, 4), np.float32, 1)
        y = conv.conv2d_forward(x, w, 2, 1)
        assert_close(y, conv.conv2d_forward_reference(x, w, 2, 1), 512)
        dx, dw = conv.conv2d_grad_input(y, w, x.shape, 2, 1), conv.conv2d_grad_weight(x, y, w.shape, 2, 1)
        assert_close(dx, conv.conv2d_grad_input_reference(y, w, x.shape, 2, 1), 1024)
        assert_close(dw, conv.conv2d_grad_weight_reference(x, y, w.shape, 2, 1), 196)
        both = conv.conv2d_backward(x, y, w, 2, 1)       # the Numba kernels: g turned around once for both
        np.testing.assert_array_equal(both[0], dx)
        np.testing.assert_array_equal(both[1], dw)


@given(case=conv2d_cases(max_n=3, max_c=4, max_hw=9, max_k=4), dtype=FLOAT_DTYPES)
def test_im2col_the_tiles_offset_tables_and_col2im_match_their_definitions(case, dtype):
    # the Numba copies directly (odd sizes, any stride and padding, both dtypes), whichever path
    # the dispatch would pick for this shape
    x = rng_array(case["x_shape"], dtype, 3, "transposed")
    (n, c, _, _), (kh, kw) = x.shape, case["w_shape"][2:]
    stride, padding, out_hw = conv._output_size("conv2d", x.shape, case["w_shape"], case["stride"],
                                                case["padding"])
    # P[n, (y, x), (i, j, c)] = x_pad[n, c, y·sh + i, x·sw + j], from the reference's windows
    xp = conv._pad(x, padding)
    windows = np.stack([conv._window(xp, i, j, stride, out_hw) for i in range(kh) for j in range(kw)], axis=1)
    rows = windows.reshape(n, kh * kw * c, -1).transpose(0, 2, 1)           # (N, L, Q)
    patches = conv_numba._patches(x, kh, kw, stride, padding, out_hw, dtype)                 # (N, Q, L), P[n]ᵀ
    assert patches.dtype == dtype and patches.flags.c_contiguous
    np.testing.assert_array_equal(patches, rows.transpose(0, 2, 1))
    # the register tiles' view of P: P[(n, l), q] = src[row_src[(n, l)] + k_src[q]] in the padded
    # channels-last images, no copy made (conv_tiles.forward_tables, read by gather_tile)
    xh = conv_numba._nhwc(x, padding, dtype)
    row_src, counts, k_src, _ = conv_tiles.forward_tables(x.shape, case["w_shape"], stride, padding, out_hw)
    assert row_src.dtype == k_src.dtype == np.uintp and counts.tolist() == [rows.shape[0] * rows.shape[1]]
    np.testing.assert_array_equal(xh.reshape(-1)[row_src[0][:, None] + k_src[None, :]], rows.reshape(-1, rows.shape[2]))
    # the weight gradient's tables: the roles swapped, P read from the padded channels-first images with
    # its features in w's order (c, i, j), and the scratch copy of x the tables point into
    features, positions, row_dst = conv_tiles.grad_weight_tables(x.shape, case["w_shape"], stride, padding, out_hw)
    xpad = conv_tiles.padded_nchw(x, padding, dtype)
    np.testing.assert_array_equal(xpad, xp)
    assert features.dtype == positions.dtype == np.uintp
    in_w_order = windows.reshape(n, kh * kw, c, -1).transpose(0, 3, 2, 1).reshape(n * rows.shape[1], -1)   # (c, i, j)
    np.testing.assert_array_equal(xpad.reshape(-1)[positions[:, None] + features[None, :]], in_w_order)
    np.testing.assert_array_equal(row_dst, np.arange(features.size) * case["w_shape"][0])
    # col2im is im2col's adjoint: <im2col(x), r> = <x, col2im(r)> for every x and r
    r = rng_array(rows.shape, dtype, 4)
    dx = conv_numba._col2im(r, x.shape, kh, kw, stride, padding, out_hw, dtype)
    assert dx.shape == x.shape and dx.dtype == dtype
    scale = (np.abs(rows) * np.abs(r)).sum() + 1
    assert abs(np.sum(x * dx) - np.sum(rows * r)) <= (1e-5 if dtype == np.float32 else 1e-12) * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_a_1x1_kernels_patches_are_its_input_at_the_pixels_the_stride_visits(dtype, stride):
    # im2col's shortcut for 1x1 kernels without padding: one pixel per patch, each image's (C, L) as it lies
    x = rng_array((3, 5, 7, 8), np.float32, 12, "transposed")
    out_hw = conv_numba._out_hw(x.shape, (4, 5, 1, 1), stride, (0, 0))
    patches = conv_numba._patches(x, 1, 1, stride, (0, 0), out_hw, dtype)
    assert patches.dtype == dtype and patches.flags.c_contiguous
    np.testing.assert_array_equal(patches, conv._window(x, 0, 0, stride, out_hw).reshape(3, 5, -1))
    contiguous = np.ascontiguousarray(x, dtype=dtype)
    assert np.shares_memory(conv_numba._patches(contiguous, 1, 1, (1, 1), (0, 0), x.shape[2:], dtype), contiguous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride, x_shape", [((1, 1), (3, 5, 7, 8)), ((2, 3), (3, 5, 7, 8)), ((2, 3), (1, 1, 8, 9))])
def test_a_1x1_kernels_input_gradient_is_one_product_per_image(dtype, stride, x_shape):
    # no patches overlap: dx[n] at the visited pixels is w_matᵀ @ g[n], zero at the others (a stride of 2 or
    # 3; 8 rows and 9 columns give the same output as 7 and 7, the last row and column unvisited)
    w = rng_array((4, x_shape[1], 1, 1), dtype, 13)
    out_hw = conv_numba._out_hw(x_shape, w.shape, stride, (0, 0))
    g = rng_array((x_shape[0], 4) + out_hw, dtype, 14, "transposed")
    dx = conv_numba.grad_input(g, w, x_shape, stride, (0, 0))
    assert dx.shape == x_shape and dx.dtype == dtype
    assert_close(dx, conv.conv2d_grad_input_reference(g, w, x_shape, stride, (0, 0)), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride, x_shape, channels", [((1, 1), (3, 5, 7, 8), 4), ((2, 3), (1, 1, 8, 9), 33),
                                                        ((1, 1), (2, 40, 1, 1), 7)])
def test_a_1x1_kernels_two_gradients_at_once_are_those_of_each_alone(dtype, stride, x_shape, channels):
    # both gradients of a 1x1 layer at once on the matmul kernels: the numbers of the two gradients
    # called apart, bit for bit, and the definitions'; g not contiguous
    w = rng_array((channels, x_shape[1], 1, 1), dtype, 15)
    x = rng_array(x_shape, dtype, 16, "transposed")
    g = rng_array((x_shape[0], channels) + conv_numba._out_hw(x_shape, w.shape, stride, (0, 0)), dtype, 17, "transposed")
    assert not conv_numba.tiles_pay("grad_weight", w.shape, dtype)
    dx, dw = conv_numba.backward(x, g, w, stride, (0, 0))
    np.testing.assert_array_equal(dx, conv_numba.grad_input(g, w, x_shape, stride, (0, 0)))
    np.testing.assert_array_equal(dw, conv_numba.grad_weight(x, g, w.shape, stride, (0, 0)))
    assert_close(dx, conv.conv2d_grad_input_reference(g, w, x_shape, stride, (0, 0)), channels)
    assert_close(dw, conv.conv2d_grad_weight_reference(x, g, w.shape, stride, (0, 0)), g[:, 0].size)


@given(n=st.integers(1, 3), hw=st.sampled_from([(1, 1), (2, 3), (7, 7)]), channels=st.sampled_from([
    (1, 1), (5, 7), (16, 8), (8, 16), (64, 16), (32, 64), (16, 64), (70, 33), (64, 40), (33, 70)]), dtype=FLOAT_DTYPES,
    layout=st.sampled_from(["contiguous", "transposed", "strided"]), tiles=st.sampled_from([None, True, False]),
    chunks=st.sampled_from([None, (7, 3)]))
def test_a_1x1_kernel_with_stride_1_on_tiles_that_read_x_and_g_in_place(n, hw, channels, dtype, layout, tiles, chunks):
    # a 1x1 kernel, stride 1, no padding: the tiles read x and g as NCHW arrays where they lie
    # (conv_numba.in_place); the rule (pointwise_tiles_pay) or ``tiles`` chooses per product between them and
    # the matmul kernels; narrow panels for 16 float32 columns; any layout of x and g; the numbers of the
    # two gradients at once are those of each alone, bit for bit, and kept_copy's copy is read where needed
    c, o = channels
    x = rng_array((n, c) + hw, dtype, 21, layout)
    w = rng_array((o, c, 1, 1), dtype, 22)
    g = rng_array((n, o) + hw, dtype, 23, layout)
    chunk, k_block = chunks or (conv_tiles.GRAD_WEIGHT_CHUNK, conv_tiles.GRAD_WEIGHT_K_BLOCK)
    with patch.object(conv_tiles, "GRAD_WEIGHT_CHUNK", chunk), patch.object(conv_tiles, "GRAD_WEIGHT_K_BLOCK", k_block):
        keep = conv.kept_copy(x, w.shape, 1, 0) if tiles is None else None
        out = conv_numba.forward(x, w, (1, 1), (0, 0), tiles=tiles, x_copy=keep)
        dx = conv_numba.grad_input(g, w, x.shape, (1, 1), (0, 0), tiles=tiles)
        dw = conv_numba.grad_weight(x, g, w.shape, (1, 1), (0, 0), tiles=tiles, x_copy=keep)
        both = conv_numba.backward(x, g, w, (1, 1), (0, 0), tiles=tiles, x_copy=keep)
    np.testing.assert_array_equal(both[0], dx)
    np.testing.assert_array_equal(both[1], dw)
    assert out.dtype == dx.dtype == dw.dtype == dtype
    assert_close(out, conv.conv2d_forward_reference(x, w, (1, 1), (0, 0)), c)
    assert_close(dx, conv.conv2d_grad_input_reference(g, w, x.shape, (1, 1), (0, 0)), o)
    assert_close(dw, conv.conv2d_grad_weight_reference(x, g, w.shape, (1, 1), (0, 0)), g[:, 0].size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_panels_hold_every_channel_of_every_position_and_zeros_past_the_last(dtype):
    # panels[jp, n·L + l, s] = g[n, jp·NR + s, l]; a g with exactly NR channels is one transpose per image
    for row_bytes in (conv_tiles.NARROW_ROW_BYTES, conv_tiles.TILE_ROW_BYTES):
        nr = row_bytes // np.dtype(dtype).itemsize
        for n, o, positions in ((3, nr, 7), (20, nr, 49), (2, nr - 3, 5), (4, 2 * nr + 1, 9), (1, 1, 70)):
            g = rng_array((n, o, positions), dtype, 26)
            panels = conv_tiles.channel_panels(g, dtype, row_bytes)
            expected = np.zeros((-(-o // nr) * nr, n, positions), dtype)
            expected[:o] = np.swapaxes(g, 0, 1)
            expected = expected.reshape(-1, nr, n * positions).transpose(0, 2, 1)
            assert panels.shape == expected.shape and np.array_equal(panels, expected)
            assert panels.__array_interface__["data"][0] % conv_tiles.LINE_BYTES == 0
    x = rng_array((layouts.TRANSPOSE_BATCH_TASKS, 6, 35), dtype, 27)     # a task per matrix
    out = np.full((x.shape[0], 35, 6), np.nan, dtype)
    layouts._transpose_last2(x, out)
    assert np.array_equal(out, np.swapaxes(x, 1, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_tiles_panels_start_on_a_cache_line(dtype):
    # conv_tiles.aligned_empty: the packed panels' rows are whole cache lines, however malloc places them
    for zero in (False, True):
        for shape in ((3, 5, 7), (1, 1), (2, 0, 4)):
            a = conv_tiles.aligned_empty(shape, dtype, zero)
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
            assert a.__array_interface__["data"][0] % conv_tiles.LINE_BYTES == 0 or a.size == 0
            assert not zero or not a.any()
    w = rng_array((40, 3, 3, 3), dtype, 24)
    g = rng_array((2, 40, 5, 5), dtype, 25)
    for panels in (conv_tiles.weight_panels(w, dtype), conv_tiles.phase_weights(w, (2, 2), 2, 2, dtype),
                   conv_tiles.channel_panels(g.reshape(2, 40, 25), dtype),
                   conv_tiles.turned_gradient(g, 1, 1, 7, 7, dtype)[1]):
        assert panels.__array_interface__["data"][0] % conv_tiles.LINE_BYTES == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_channels", [5, 16])
def test_a_1x1_weight_gradient_with_half_a_panel_of_channels_runs_on_the_narrow_tile(dtype, out_channels):
    # g's panels NR/2 wide (16 float32, 8 float64 at most): _gathered_k_chunks' narrow tile, chunks of 7
    # positions in passes of 3 and whole ones
    nr = mmn.TILE_ROW_BYTES // np.dtype(dtype).itemsize
    o = min(out_channels, nr // 2)
    x = rng_array((3, 2 * nr + 1, 4, 5), dtype, 26, "transposed")
    g = rng_array((3, o, 4, 5), dtype, 27)
    assert conv_numba._panel_bytes(o, dtype) == conv_tiles.NARROW_ROW_BYTES
    for chunk, k_block in ((7, 3), (conv_tiles.GRAD_WEIGHT_CHUNK, conv_tiles.GRAD_WEIGHT_K_BLOCK)):
        with patch.object(conv_tiles, "GRAD_WEIGHT_CHUNK", chunk), patch.object(conv_tiles, "GRAD_WEIGHT_K_BLOCK", k_block):
            dw = conv_numba.grad_weight(x, g, (o, x.shape[1], 1, 1), (1, 1), (0, 0), tiles=True)
        assert_close(dw, conv.conv2d_grad_weight_reference(x, g, (o, x.shape[1], 1, 1), (1, 1), (0, 0)), 60)


def test_the_1x1_layers_read_in_place_for_a_long_enough_k_and_half_a_panel_of_columns():
    nr = mmn.TILE_ROW_BYTES // 4
    assert conv_numba.in_place((16, 64, 1, 1), (1, 1), (0, 0))
    assert not conv_numba.in_place((16, 64, 1, 1), (2, 2), (0, 0))
    assert not conv_numba.in_place((16, 64, 1, 1), (1, 1), (1, 1))
    assert not conv_numba.in_place((16, 64, 3, 3), (1, 1), (0, 0))
    assert conv_numba.pointwise_tiles_pay("forward", (nr // 2, conv_numba.POINTWISE_MIN_K, 1, 1), np.float32)
    assert not conv_numba.pointwise_tiles_pay("forward", (64, conv_numba.POINTWISE_MIN_K // 2, 1, 1), np.float32)
    assert not conv_numba.pointwise_tiles_pay("forward", (nr // 2 - 1, 64, 1, 1), np.float32)
    assert conv_numba.pointwise_tiles_pay("grad_input", (64, nr // 2, 1, 1), np.float32)
    assert not conv_numba.pointwise_tiles_pay("grad_input", (16, 64, 1, 1), np.float32)
    assert conv_numba.pointwise_tiles_pay("grad_weight", (nr // 2, nr, 1, 1), np.float32)
    assert conv_numba.pointwise_tiles_pay("grad_weight", (nr, nr // 2, 1, 1), np.float32)      # x's panels turned
    assert not conv_numba.pointwise_tiles_pay("grad_weight", (64, nr // 2 - 1, 1, 1), np.float32)
    assert not conv_numba.pointwise_tiles_pay("grad_weight", (nr - 1, nr - 1, 1, 1), np.float32)
    assert conv_numba.pointwise_tiles_pay("grad_weight", (1, 1, 1, 1), np.float32, tiles=True)
    # both the forward pass and the weight gradient in place: no copy of x kept for the weight gradient
    x = np.ones((2, 64, 3, 3), np.float32)
    assert conv_numba.kept_copy(x, (16, 64, 1, 1), (1, 1), (0, 0)) is None
    assert conv_numba.kept_copy(x, (64, 64, 1, 1), (1, 1), (0, 0)) is None
    assert conv_numba.kept_copy(x[:, :32], (64, 32, 1, 1), (1, 1), (0, 0)) is None     # on the matmul kernels: x itself
    assert conv_numba.kept_copy(x[:, :32], (64, 32, 1, 1), (2, 2), (0, 0)).shape == (2, 32, 4)   # stride 2: a copy


@given(problem=conv_problems(), tiles=st.booleans(), chunks=st.sampled_from([None, (7, 3)]))
def test_conv2d_tiles_and_separate_paths_match_the_definitions(problem, tiles, chunks):
    # the dispatch runs a product on the register tiles only for full panels of channels and, in the
    # forward pass, many features (conv_numba.tiles_pay), which small cases never reach: force each
    # path; ``chunks`` cuts the weight gradient's positions into chunks of 7 and k blocks of 3
    case, x, w, g = problem
    stride, padding = case["stride"], case["padding"]
    x, w, g = (a.astype(np.result_type(x, w), copy=False) for a in (x, w, g))
    chunk, k_block = chunks or (conv_tiles.GRAD_WEIGHT_CHUNK, conv_tiles.GRAD_WEIGHT_K_BLOCK)
    with patch.object(conv_tiles, "GRAD_WEIGHT_CHUNK", chunk), patch.object(conv_tiles, "GRAD_WEIGHT_K_BLOCK", k_block):
        out = conv_numba.forward(x, w, stride, padding, tiles=tiles)
        dx = conv_numba.grad_input(g, w, x.shape, stride, padding, tiles=tiles)
        dw = conv_numba.grad_weight(x, g, w.shape, stride, padding, tiles=tiles)
        # both gradients at once, g turned around in one pass for the two (conv_tiles.turned_gradient):
        # the same numbers, bit for bit
        both = conv_numba.backward(x, g, w, stride, padding, tiles=tiles)
    np.testing.assert_array_equal(both[0], dx)
    np.testing.assert_array_equal(both[1], dw)
    assert_close(out, conv.conv2d_forward_reference(x, w, stride, padding), w[0].size)
    assert_close(dx, conv.conv2d_grad_input_reference(g, w, x.shape, stride, padding), w.shape[0] * 16)
    assert_close(dw, conv.conv2d_grad_weight_reference(x, g, w.shape, stride, padding), g[:, 0].size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride, kernel", [((1, 1), (3, 3)), ((2, 2), (4, 4)), ((3, 2), (2, 5))])
def test_conv2d_tiles_with_several_panels_of_channels_and_a_ragged_last_one(dtype, stride, kernel):
    # more channels than one panel of the tiles holds (NR: 32 float32, 16 float64), plus a few: the
    # forward pass and the weight gradient cut O into panels, the input gradient C; with a stride
    # that does not divide the kernel, some phases of the input gradient meet fewer kernel rows
    nr = mmn.TILE_ROW_BYTES // np.dtype(dtype).itemsize
    x = rng_array((5, nr + 3, 7, 6), dtype, 5, "transposed")       # 210 positions: several blocks of rows
    w = rng_array((nr + 5, nr + 3) + kernel, dtype, 6)
    out = conv_numba.forward(x, w, stride, (1, 1), tiles=True)
    g = rng_array(out.shape, dtype, 7)
    assert_close(out, conv.conv2d_forward_reference(x, w, stride, (1, 1)), w[0].size)
    assert_close(conv_numba.grad_input(g, w, x.shape, stride, (1, 1), tiles=True),
                 conv.conv2d_grad_input_reference(g, w, x.shape, stride, (1, 1)), w.shape[0] * 16)
    assert_close(conv_numba.grad_weight(x, g, w.shape, stride, (1, 1), tiles=True),
                 conv.conv2d_grad_weight_reference(x, g, w.shape, stride, (1, 1)), g[:, 0].size)
    # g turned around once for both gradients: its panels of channels end in a ragged one, zero-filled
    dx, dw = conv_numba.backward(x, g[:, :, ::-1], w, stride, (1, 1), tiles=True)       # g not contiguous
    assert_close(dx, conv.conv2d_grad_input_reference(g[:, :, ::-1], w, x.shape, stride, (1, 1)), w.shape[0] * 16)
    assert_close(dw, conv.conv2d_grad_weight_reference(x, g[:, :, ::-1], w.shape, stride, (1, 1)), g[:, 0].size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("less", [0, 3])
def test_conv2d_input_gradient_on_the_narrow_tile(dtype, less):
    # at most half a panel of input channels: the input gradient runs on the narrow tile (rows half as
    # wide, more of them), with a full and a ragged narrow panel, stride 1 and 2 (four phases)
    c = mmn.TILE_ROW_BYTES // np.dtype(dtype).itemsize // 2 - less
    assert conv_numba._panel_bytes(c, dtype) == conv_tiles.NARROW_ROW_BYTES
    for stride, kernel in (((1, 1), (3, 3)), ((2, 2), (4, 4))):
        x, w = rng_array((3, c, 7, 6), dtype, 8, "transposed"), rng_array((5, c) + kernel, dtype, 9)
        g = rng_array(conv_numba.forward(x, w, stride, (1, 1)).shape, dtype, 10)
        assert_close(conv_numba.grad_input(g, w, x.shape, stride, (1, 1), tiles=True),
                     conv.conv2d_grad_input_reference(g, w, x.shape, stride, (1, 1)), w.shape[0] * 16)


def test_the_weight_gradient_chunks_depend_on_the_shape_alone_and_bound_their_memory():
    for positions in (1, 5, 20, 1000, 3136, 6272, 25088):
        for partial_bytes in (4, 256 * 1024, 9 * 2**20, 40 * 2**20):
            chunks, chunk = conv_tiles.weight_gradient_chunks(positions, partial_bytes)
            assert (chunks - 1) * chunk < positions <= chunks * chunk          # every position, once
            assert chunk <= max(conv_tiles.GRAD_WEIGHT_CHUNK, -(-positions // conv_tiles.CHUNKS_MULTIPLE))
            assert chunks <= max(conv_tiles.CHUNKS_MULTIPLE, conv_tiles.CHUNKS_BYTES // partial_bytes)
    assert conv_tiles.weight_gradient_chunks(6272, 64 * 1024 * 4) == (8, 784)       # the VQ-VAE's 4x4 layer


def test_the_tiles_are_chosen_for_full_panels_of_channels_and_many_features():
    nr = mmn.TILE_ROW_BYTES // 4
    assert conv_numba.tiles_pay("forward", (64, 64, 3, 3), np.float32)
    assert not conv_numba.tiles_pay("forward", (64, 1, 4, 4), np.float32)           # 16 features
    assert not conv_numba.tiles_pay("forward", (nr // 2, 64, 3, 3), np.float32)     # half a panel
    assert conv_numba.tiles_pay("grad_input", (1, nr, 4, 4), np.float32)
    assert conv_numba.tiles_pay("grad_input", (64, nr // 2, 3, 3), np.float32)        # the narrow tile's panel
    assert not conv_numba.tiles_pay("grad_input", (64, nr // 2 - 1, 3, 3), np.float32)
    assert conv_numba._panel_bytes(nr // 2, np.float32) == conv_tiles.NARROW_ROW_BYTES == mmn.TILE_ROW_BYTES // 2
    assert conv_numba._panel_bytes(nr // 2 + 1, np.float32) == mmn.TILE_ROW_BYTES
    assert not conv_numba.tiles_pay("grad_input", (64, 1, 4, 4), np.float32)        # one channel wide
    assert conv_numba.tiles_pay("grad_weight", (64, 16, 3, 3), np.float32)
    assert not conv_numba.tiles_pay("grad_weight", (64, 32, 1, 1), np.float32)      # one panel's worth of rows
    assert not conv_numba.tiles_pay("grad_weight", (64, 1, 4, 4), np.float32)
    assert conv_numba.tiles_pay("grad_weight", (1, 1, 1, 1), np.float32, tiles=True)


X, W = np.ones((1, 3, 5, 5)), np.ones((2, 3, 3, 3))     # a valid pair: output (1, 2, 3, 3)


@on_both_backends
@pytest.mark.parametrize("call, message", [
    (lambda: conv.conv2d_forward(X[0], W), r"input must be 4-D.*\(3, 5, 5\)"),
    (lambda: conv.conv2d_forward(X, W[0]), r"weight must be 4-D.*\(3, 3, 3\)"),
    (lambda: conv.conv2d_forward(X, np.ones((2, 4, 3, 3))),
     r"\(1, 3, 5, 5\) has 3 channels but weight \(2, 4, 3, 3\) expects 4"),
    (lambda: conv.conv2d_forward(X, W, stride=0), "stride must be positive"),
    (lambda: conv.conv2d_forward(X, W, stride=(1, -1)), r"stride must be positive, got \(1, -1\)"),
    (lambda: conv.conv2d_forward(X, W, padding=-1), "padding must be >= 0"),
    (lambda: conv.conv2d_forward(X[:, :, :2], W),
     r"kernel \(3, 3\).*larger than the padded input \(2, 5\)"),
    (lambda: conv.conv2d_forward(X, W, stride=(1, 2, 3)), "stride must be an int or a pair"),
    (lambda: conv.conv2d_grad_input(np.ones((1, 2, 4, 4)), W, X.shape, 1, 0),
     r"grad_out has shape \(1, 2, 4, 4\) but input \(1, 3, 5, 5\) and weight \(2, 3, 3, 3\) give "
     r".*\(1, 2, 3, 3\)"),
    (lambda: conv.conv2d_grad_weight(X, np.ones((1, 2, 3, 3)), (2, 4, 3, 3), 1, 0),
     r"\(1, 3, 5, 5\) has 3 channels but weight \(2, 4, 3, 3\)"),
])
def test_conv2d_bad_arguments_name_the_shapes(backend, call, message):
    with use_backend(backend):
        with pytest.raises(ValueError, match=message):
            call()


# ---------------------------------------------------------------------- without the JIT
def test_kernels_run_as_plain_python_with_jit_disabled():
    # NUMBA_DISABLE_JIT=1 turns every @njit into the Python function it decorates (for debugging
    # and reading with a debugger); the kernels must still be valid Python on tiny inputs
    result = run_python("""
        import numpy as np
        from scratchgen.kernels import conv, layouts, matmul_numba as mmn
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 6, 7))
        for kernel in ("dot", "axpy", "narrow", "kmajor"):
            assert np.allclose(mmn.matmul_3d(a, b, 2, kernel=kernel), a @ b), kernel
        tiles = np.zeros((2, 5, 7))                              # the register tiles on a heap tile
        mmn.tiles.matmul_tiles(a, b, tiles, False, False, 1)
        assert np.allclose(tiles, a @ b)
        at = np.swapaxes(rng.standard_normal((2, 6, 5)), 1, 2)
        for x, y in ((a, b[:, :, :2].copy()), (at, b[:, :, :2]), (a[:, :2], b)):   # dot, flip, rows
            assert np.allclose(mmn.matmul_3d(x, y, 2, kernel="narrow"), x @ y)
        big = rng.standard_normal((70, 70))
        assert np.array_equal(layouts.transposed(big, np.float64)[0], big.T)
        x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
        y = conv.conv2d_forward(x, w, 2, 1)
        assert np.allclose(y, conv.conv2d_forward_reference(x, w, 2, 1))
        assert np.allclose(conv.conv2d_grad_input(y, w, x.shape, 2, 1),
                           conv.conv2d_grad_input_reference(y, w, x.shape, 2, 1))
        assert np.allclose(conv.conv2d_grad_weight(x, y, w.shape, 2, 1),
                           conv.conv2d_grad_weight_reference(x, y, w.shape, 2, 1))
        from scratchgen.kernels import conv_numba                # the conv tiles on heap tiles
        assert np.allclose(conv_numba.forward(x, w, (2, 2), (1, 1), tiles=True), y)
        assert np.allclose(conv_numba.grad_input(y, w, x.shape, (2, 2), (1, 1), tiles=True),
                           conv.conv2d_grad_input_reference(y, w, x.shape, 2, 1))
        assert np.allclose(conv_numba.grad_weight(x, y, w.shape, (2, 2), (1, 1), tiles=True),
                           conv.conv2d_grad_weight_reference(x, y, w.shape, 2, 1))
        wt = rng.standard_normal((2, 7, 6))                      # b as a transposed view: packed from bᵀ
        assert np.allclose(mmn.matmul_3d(a, np.swapaxes(wt, 1, 2), 2, kernel="axpy"), a @ np.swapaxes(wt, 1, 2))
        from scratchgen.kernels import activations as act, batch_norm as bn
        for shape in [(4, 3), (4, 3, 5)]:                        # features (row sums) and planes
            xb, g, c = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(3)
            fused, reference = bn.batch_norm_forward_numba(xb, c, c, 1e-5), bn.batch_norm_forward_reference(xb, c, c, 1e-5)
            assert all(np.allclose(u, v) for u, v in zip(fused, reference))
            mean, inv_std = reference[1], reference[3]
            assert all(np.allclose(u, v) for u, v in zip(bn.batch_norm_backward_numba(g, xb, mean, inv_std, c, True),
                                                         bn.batch_norm_backward_reference(g, xb, mean, inv_std, c, True)))
            assert np.array_equal(act.leaky_relu_backward_numba(g, xb, 0.1), act.leaky_relu_backward_reference(g, xb, 0.1))
            assert np.array_equal(act.relu_forward_numba(xb), act.relu_forward_reference(xb))
        import numba
        assert numba.config.DISABLE_JIT
        print("ok")
    """, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"



def test_adam_kernel_gives_numpys_bits_also_as_plain_python():
    # with the JIT off, the kernel's scalars are NumPy scalars of the arrays' dtype, so the same
    # roundings happen in the interpreter
    result = run_python("""
        import numpy as np
        import scratchgen.optim as optim
        from scratchgen.kernels.backend import use_backend
        from scratchgen.nn import Parameter
        import numba
        assert numba.config.DISABLE_JIT
        finals = []
        for backend in ("numba", "numpy"):
            rng = np.random.default_rng(0)
            p = Parameter(rng.standard_normal((3, 4)).astype(np.float32))
            opt = optim.Adam([p], lr=0.1, weight_decay=0.01)
            with use_backend(backend):
                for _ in range(5):
                    p.grad = rng.standard_normal((3, 4)).astype(np.float32)
                    opt.step()
            finals.append(p.data)
        assert finals[0].dtype == np.float32 and np.array_equal(*finals)
        print("ok")
    """, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------- elementwise: sigmoid
# Tensor.sigmoid is NumPy, not a Numba kernel: its cost is np.exp, which NumPy vectorises and Numba
# (without Intel's SVML) calls once per element. F.softplus takes e^-|x| from NumPy too, and its log1p
# and σ from one Numba pass (kernels/activations.py).

def extreme_logits(dtype):
    """Every regime: 0 and ±0, tiny, moderate, where exp(-|a|) is subnormal or 0, ±1e4, ±max, ±inf."""
    special = [0.0, 1e-30, 1, 10, 20, 36, 50, 87, 88, 89, 100, 103, 104, 700, 745, 746, 1e4,
               float(np.finfo(dtype).max), np.inf]
    rng = np.random.default_rng(0)
    scaled = rng.standard_normal(2000) * 10.0 ** np.repeat(np.arange(-3, 5), 250)
    return np.concatenate([special, np.negative(special), np.linspace(-120, 120, 4001),
                           scaled]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_equals_its_two_branch_definition_bit_for_bit(dtype):
    from scratchgen.autograd import Tensor
    a = extreme_logits(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        got = Tensor(a).sigmoid().data
        e = np.exp(-np.abs(a))
        expected = np.where(a >= 0, 1 / (1 + e), e / (1 + e))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(Tensor(np.array([np.nan], dtype)).sigmoid().data).all()
    ends = Tensor(np.array([-1e4, -100, 0, 100, 1e4], dtype)).sigmoid().data
    np.testing.assert_array_equal(ends[[0, 2, 3, 4]], [0, 0.5, 1, 1])
    tiny = np.finfo(dtype).smallest_subnormal  # σ(-100) = 3.7e-44 is subnormal in float32
    np.testing.assert_allclose(ends[1], np.exp(-100.0), rtol=1e-6, atol=2 * tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_are_accurate_to_a_few_ulps_everywhere(dtype):
    import scratchgen.functional as F
    from scratchgen.autograd import Tensor
    if dtype == np.float64 and np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("no extended-precision long double to compare float64 with")
    a = extreme_logits(dtype)
    x = Tensor(a, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        sig = x.sigmoid().data
        out = F.softplus(x)
        out.sum().backward()
    with np.errstate(over="ignore", invalid="ignore"):  # in the branches np.where drops
        exact = a.astype(np.longdouble)
        exact_sig = 1 / (1 + np.exp(-exact))
        exact_sp = np.where(exact > 0, exact + np.log1p(np.exp(-exact)), np.log1p(np.exp(exact)))
    finite = np.isfinite(exact_sp)  # softplus(+inf) = inf
    np.testing.assert_array_equal(out.data[~finite], np.inf)
    for name, got, want in [("sigmoid", sig, exact_sig), ("softplus", out.data, exact_sp)]:
        got, want = got[finite].astype(np.longdouble), want[finite]
        with np.errstate(over="ignore"):  # the spacing above the largest float is inf
            ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.longdouble)
        ulps = np.abs(got - want) / ulp
        assert ulps.max() <= 4, (name, ulps.max())
    assert sig.dtype == out.dtype == dtype
    np.testing.assert_array_equal(x.grad, sig)  # softplus' = sigmoid, computed by Tensor.sigmoid


def test_the_channels_last_scratch_image_is_rewritten_on_reuse_and_keeps_a_zero_border():
    # _nhwc reuses one buffer per shape and padding: its interior must be the new input, its border
    # still zero, also after an input of another size and padding with the same padded shape
    for seed, shape, padding in ((8, (2, 3, 4, 5), (1, 2)), (9, (2, 3, 4, 5), (1, 2)), (10, (2, 3, 6, 3), (0, 3)),
                                 (11, (2, 3, 4, 5), (1, 2))):
        x = rng_array(shape, np.float32, seed, "transposed")
        xh = conv_numba._nhwc(x, padding, np.float32)
        expected = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2)).transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(xh, expected)


def test_the_padded_copies_are_the_same_on_any_number_of_threads_from_any_dtype_and_layout():
    # _into_nhwc and _into_nchw share the images among the threads; each image is written by one task,
    # and an input of another dtype or layout is converted first (what NumPy's slice assignment did)
    for seed, shape, padding in ((13, (5, 3, 4, 7), (1, 2)), (14, (1, 1, 1, 1), (2, 0)), (15, (4, 9, 3, 1), (0, 1))):
        for layout, dtype in (("contiguous", np.float32), ("transposed", np.float32), ("contiguous", np.float64)):
            x = rng_array(shape, dtype, seed, layout)
            top, left = padding
            expected = np.pad(x, ((0, 0), (0, 0), (top,) * 2, (left,) * 2)).astype(np.float32)
            before = numba.get_num_threads()
            for threads in (1, numba.config.NUMBA_NUM_THREADS):
                numba.set_num_threads(threads)
                try:
                    xh = conv_tiles.padded_nhwc(x, top, left, shape[2] + 2 * top, shape[3] + 2 * left, np.float32,
                                                scratch=False)
                    xp = conv_tiles.padded_nchw(x, padding, np.float32)
                finally:
                    numba.set_num_threads(before)
                np.testing.assert_array_equal(xh, expected.transpose(0, 2, 3, 1))
                np.testing.assert_array_equal(xp, expected)


@pytest.mark.parametrize("tiles", [True, False])
def test_a_layer_keeps_its_inputs_copy_until_its_weight_gradient(tiles):
    # a GAN's discriminator sees real and fake images before either backward pass: the kernels'
    # scratch copies then hold the second input, so the weight gradient must read the layer's own x
    # (the tiles copy it when they run) or a copy the layer keeps (its images' patch matrices for the
    # separate passes)
    from scratchgen import functional as F
    x1, x2 = rng_array((2, 4, 5, 5), np.float32, 40), rng_array((2, 4, 5, 5), np.float32, 41)
    w, g1, g2 = rng_array((3, 4, 3, 3), np.float32, 42), rng_array((2, 3, 5, 5), np.float32, 43), \
        rng_array((2, 3, 5, 5), np.float32, 44)
    with patch.object(conv_numba, "tiles_pay", lambda *_, tiles=None, pay=tiles: pay), use_backend("numba"):
        kept = conv.kept_copy(x1, w.shape, 1, 1)
        assert kept is None if tiles else kept.shape == (2, 36, 25)      # (N, Q, L)
        weight = Tensor(w, requires_grad=True)
        y1, y2 = F.conv2d(Tensor(x1), weight, padding=1), F.conv2d(Tensor(x2), weight, padding=1)
        ((y1 * Tensor(g1)).sum() + (y2 * Tensor(g2)).sum()).backward()
    expected = (conv.conv2d_grad_weight_reference(x1, g1, w.shape, (1, 1), (1, 1))
                + conv.conv2d_grad_weight_reference(x2, g2, w.shape, (1, 1), (1, 1)))
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="kept_copy"), use_backend("numba"):
        conv.conv2d_forward(x1, w, 1, 1, x_copy=np.zeros((2, 5, 5, 4), np.float32))   # padding 0's copy
    with pytest.raises(ValueError, match="kept_copy"), use_backend("numba"):
        conv.conv2d_grad_weight(x1, g1, w.shape, 1, 1, x_copy=np.zeros((2, 36, 9), np.float32))   # stride 2's
    with use_backend("numpy"):
        assert conv.kept_copy(x1, w.shape, 1, 1) is None               # the reference reads x itself


def forced(threads):
    """A stand-in for a call site's ``ThreadChoice`` that always picks ``threads``."""
    return SimpleNamespace(next=lambda: threads, record=lambda *_: None)


@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
def test_the_number_of_threads_never_changes_a_tiled_convolution(stride):
    # tasks own disjoint rows of the output (forward, input gradient) or fixed chunks of positions
    # whose sums are added in order (weight gradient): the same sums in the same order on one
    # thread and on all of them
    x, w = rng_array((5, 7, 8, 6), np.float32, 10), rng_array((9, 7, 3, 3), np.float32, 11)
    g = rng_array(conv_numba.forward(x, w, stride, (1, 1)).shape, np.float32, 12)

    def all_three(threads):
        with patch.object(mm_threads, "threads_for", lambda work: threads), \
                patch.object(mm_threads, "choice_for", lambda key, _: forced(threads)), \
                patch.object(conv_tiles, "GRAD_WEIGHT_CHUNK", 8):
            return (conv_numba.forward(x, w, stride, (1, 1), tiles=True),
                    conv_numba.grad_input(g, w, x.shape, stride, (1, 1), tiles=True),
                    conv_numba.grad_weight(x, g, w.shape, stride, (1, 1), tiles=True))
    for alone, shared in zip(all_three(1), all_three(numba.get_num_threads())):
        np.testing.assert_array_equal(alone, shared)


# ---------------------------------------------------------------------- batch norm and leaky ReLU
# Fused single-pass kernels against their NumPy references: every layout of x and g (the kernels
# copy what is not contiguous), (N, C) features (the row-block path) and (N, C, ...) planes,
# 1-sized axes, both dtypes, training and eval. Their gradients are checked against central
# differences through F.batch_norm and F.leaky_relu in tests/test_functional.py.

def assert_batch_norm_kernels_agree(x, g, gamma, beta, training):
    from scratchgen.kernels import batch_norm as bn
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    stats = () if training else (np.linspace(-1, 1, x.shape[1]).astype(x.dtype),
                                 np.linspace(0.5, 2, x.shape[1]).astype(x.dtype))
    fused = bn.batch_norm_forward_numba(x, gamma, beta, 1e-3, *stats)
    reference = bn.batch_norm_forward_reference(x, gamma, beta, 1e-3, *stats)
    for got, want in zip(fused, reference):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)
    mean, inv_std = reference[1], reference[3]
    for got, want in zip(bn.batch_norm_backward_numba(g, x, mean, inv_std, gamma, training),
                         bn.batch_norm_backward_reference(g, x, mean, inv_std, gamma, training)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)


@given(problem=batch_norm_problems())
def test_batch_norm_kernels_match_the_reference(problem):
    assert_batch_norm_kernels_agree(*problem)


@pytest.mark.parametrize("shape", [(3, 1100), (2, 1), (1, 3, 1), (2, 1, 1, 1)])
def test_batch_norm_kernels_over_several_column_blocks_and_single_values(shape):
    from scratchgen.kernels import batch_norm as bn
    assert 1100 > 2 * bn.ROW_SUM_BLOCK                                    # (3, 1100): three blocks
    for dtype in (np.float32, np.float64):
        x, g = rng_array(shape, dtype, 20) + 5, rng_array(shape, dtype, 21)
        gamma, beta = rng_array(shape[1:2], dtype, 22), rng_array(shape[1:2], dtype, 23)
        assert_batch_norm_kernels_agree(x, g, gamma, beta, training=np.prod(shape) // shape[1] > 1)


def test_batch_norm_kernels_take_mixed_dtypes_as_numpy_does():
    from scratchgen.kernels import batch_norm as bn
    x, ones = rng_array((4, 3, 2), np.float32, 24), np.ones(3)          # float64 γ, β
    got, want = bn.batch_norm_forward_numba(x, ones, 0 * ones, 1e-5), bn.batch_norm_forward_reference(x, ones, 0 * ones, 1e-5)
    assert got[0].dtype == want[0].dtype == np.float64
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)


@pytest.mark.parametrize("shape", [(6, 7, 5, 3), (9, 1030)])
def test_the_number_of_threads_never_changes_a_batch_norm(shape):
    # one task per channel (or per block of columns) sums in one order on any number of threads
    from scratchgen.kernels import batch_norm as bn
    x, g = rng_array(shape, np.float32, 30), rng_array(shape, np.float32, 31)
    gamma, beta = rng_array(shape[1:2], np.float32, 32), rng_array(shape[1:2], np.float32, 33)

    def both(threads):
        with patch.object(bn, "sized_for", lambda work, key: mm_threads.sized_for(0 if threads == 1 else 10**12)):
            y, mean, var, inv_std = bn.batch_norm_forward_numba(x, gamma, beta, 1e-5)
            return (y, mean, var) + bn.batch_norm_backward_numba(g, x, mean, inv_std, gamma, True)
    for alone, shared in zip(both(1), both(numba.get_num_threads())):
        np.testing.assert_array_equal(alone, shared)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (128, 64, 49), (2, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_kernels_match_the_references(shape, dtype):
    rng = np.random.default_rng(9)
    y, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    g = rng.standard_normal((shape[0], 2 * shape[1], shape[2])).astype(dtype)[:, ::2]   # not contiguous
    from scratchgen.kernels import bias as bias_kernels
    fused, reference = y.copy(), y.copy()
    bias_kernels.add_bias_numba(fused, b)
    bias_kernels.add_bias_reference(reference, b)
    np.testing.assert_array_equal(fused, reference)              # one addition per element: same bits
    sums = bias_kernels.bias_gradient_numba(g)
    assert sums.dtype == dtype and sums.shape == (shape[1],)
    exact = g.astype(np.float64).sum(axis=(0, 2))
    np.testing.assert_allclose(sums, exact, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)
    # NumPy sums in float32 there: up to 6,272 numbers of size ~1 per channel, errors of ~1e-5
    np.testing.assert_allclose(bias_kernels.bias_gradient_reference(g), exact,
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=2e-4 if dtype == np.float32 else 1e-12)


@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), dtype=FLOAT_DTYPES,
       layout_pair=st.tuples(layouts_, layouts_), alpha=st.sampled_from([0.0, 0.01, 0.2, -0.5, 3.0]),
       seed=st.integers(0, 2**16))
def test_relu_and_leaky_relu_kernels_give_the_references_bits(shape, dtype, layout_pair, alpha, seed):
    from scratchgen.kernels import activations as act
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:3] = [0.0, -0.0, np.nan][:x.size]                   # the kink and a NaN
    g.reshape(-1)[-1] = np.inf                                          # inf · 0 is NaN
    x, g = with_layout(x, layout_pair[0]), with_layout(g, layout_pair[1])
    with np.errstate(invalid="ignore"):
        pairs = [(act.leaky_relu_forward_numba(x, alpha), act.leaky_relu_forward_reference(x, alpha)),
                 (act.leaky_relu_backward_numba(g, x, alpha), act.leaky_relu_backward_reference(g, x, alpha)),
                 (act.relu_forward_numba(x), act.relu_forward_reference(x)),
                 (act.relu_backward_numba(g, x), act.relu_backward_reference(g, x))]
    for got, want in pairs:
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_the_softplus_kernel_is_within_an_ulp_of_log1p_and_gives_sigmoids_bits():
    from scratchgen.kernels import activations as act
    x = extreme_logits(np.float32)
    x = np.concatenate([x, [np.nan]]).astype(np.float32)
    with np.errstate(over="ignore"):
        (out, sig), (want_out, want_sig) = act.softplus_forward_numba(x), act.softplus_forward_reference(x)
    assert out.dtype == sig.dtype == np.float32
    np.testing.assert_array_equal(sig, want_sig)            # NaN where x is NaN, in both
    finite = np.isfinite(want_out)
    np.testing.assert_array_equal(out[~finite], want_out[~finite])
    with np.errstate(over="ignore"):                        # the spacing above the largest float is inf
        ulps = np.abs(out[finite] - want_out[finite]) / np.spacing(np.abs(want_out[finite]))
    assert ulps.max() <= 1, ulps.max()
    assert out[x == -np.inf] == 0 and np.isnan(out[-1])
    x64 = x.astype(np.float64)                              # float64 takes the reference itself
    for got, want in zip(act.softplus_forward_numba(x64), act.softplus_forward_reference(x64)):
        np.testing.assert_array_equal(got, want)


@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), layout=layouts_, seed=st.integers(0, 2**16))
def test_the_softplus_kernel_takes_any_layout(shape, layout, seed):
    from scratchgen.kernels import activations as act
    x = with_layout((5 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32), layout)
    (out, sig), (want_out, want_sig) = act.softplus_forward_numba(x), act.softplus_forward_reference(x)
    assert out.shape == sig.shape == x.shape
    np.testing.assert_array_equal(sig, want_sig)
    np.testing.assert_allclose(out, want_out, rtol=2 ** -22, atol=0)


def test_leaky_relu_kernels_keep_numpys_dtype_rules_and_infinities():
    from scratchgen.kernels import activations as act
    x = np.array([-np.inf, -2.0, 0.0, 3.0, np.inf, np.nan], np.float32)
    g = np.linspace(-1, 1, 6)                                       # float64 upstream gradient
    np.testing.assert_array_equal(act.leaky_relu_forward_numba(x, 0.1), act.leaky_relu_forward_reference(x, 0.1))
    got, want = act.leaky_relu_backward_numba(g, x, 0.1), act.leaky_relu_backward_reference(g, x, 0.1)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    ints = np.arange(-3, 3)                                         # not a kernel dtype: the reference
    np.testing.assert_array_equal(act.leaky_relu_forward_numba(ints, 0.5), act.leaky_relu_forward_reference(ints, 0.5))
    assert act.relu_forward_numba(ints).dtype == ints.dtype
    np.testing.assert_array_equal(act.relu_forward_numba(x), [0, 0, 0, 3, np.inf, np.nan])


# ---------------------------------------------------------------------- freed memory
def test_a_step_that_frees_and_reallocates_its_arrays_takes_no_fresh_pages():
    # kernels/heap.py keeps freed memory in malloc's heap; without it (the opt-out, or another C
    # library) this loop took ~1,900 page faults per round on the project's machine
    code = """
        import resource, numpy as np
        import scratchgen.kernels as kernels
        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        def step():   # arrays of a few MB, written and freed, as a training step makes them
            arrays = [np.ones(n, np.float32) for n in (1_000_000, 800_000, 1_200_000, 500_000)]
            del arrays
        step(); step()
        before = faults()
        for _ in range(5):
            step()
        print(kernels.KEEPS_FREED_MEMORY, (faults() - before) // 5)
    """
    kept, faults = run_python(code).stdout.split()
    if kept != "True":
        pytest.skip("malloc's thresholds are only set with glibc on Linux")
    assert int(faults) < 100, faults          # 3,500 pages were written per round
    assert run_python(code, SCRATCHGEN_KEEP_FREED_MEMORY="0").stdout.split()[0] == "False"


# ---------------------------------------------------------------------- vector width
def test_the_vector_width_follows_what_the_cpu_reports():
    import scratchgen.kernels as kernels
    assert kernels.vector_width_setting("znver3", {"avx2": True, "avx512f": False}) is None
    assert kernels.vector_width_setting("znver4", {"avx2": True, "avx512f": True}) == "+prefer-256-bit"
    assert kernels.vector_width_setting("sapphirerapids", {"avx2": True, "avx512f": True}) == "-prefer-256-bit"
    from llvmlite import binding as llvm
    setting = kernels.vector_width_setting(llvm.get_host_cpu_name(), llvm.get_host_cpu_features())
    if setting and os.environ.get("NUMBA_CPU_FEATURES") is None:     # this process: the host's setting
        assert numba.config.CPU_FEATURES.endswith("," + setting)


def test_with_16_vector_registers_long_products_go_to_the_axpy_order():
    # the 4x4 dot tile needs 32 registers; on an AVX2 CPU it spills, and the axpy order serves: on the
    # register tiles with a packed whole when a fits in SMALL_A_BYTES ("small_a"), else strips or tiles
    assert mmn.choose_kernel(128, 784, 400, 1) == ("dot" if mmn.DOT_TILE_FITS else "small_a")
    with patch.object(mmn.dispatch, "DOT_TILE_FITS", False):
        assert mmn.choose_kernel(128, 784, 20, 1) == "dot"         # too narrow for axpy's rows
        x, w = rng_array((1, 9, 300), np.float32, 42), rng_array((1, 40, 300), np.float32, 43)
        assert_close(mmn.matmul_3d(x, np.swapaxes(w, 1, 2), 1), np.matmul(x, np.swapaxes(w, 1, 2)), 300)
        x, w = rng_array((1, 200, 300), np.float32, 40), rng_array((1, 70, 300), np.float32, 41)
        assert_close(mmn.matmul_3d(x, np.swapaxes(w, 1, 2), 1), np.matmul(x, np.swapaxes(w, 1, 2)), 300)
    with patch.object(mmn.dispatch, "DOT_TILE_FITS", True):
        assert mmn.choose_kernel(128, 784, 400, 1) == "dot"
    # an AVX2 CPU's tile (3 rows of 128 bytes), whatever this one's; no kernel may compile in here
    avx2_rows, _ = register_tile_shape(16, 32)
    with patch.object(mmn.dispatch, "DOT_TILE_FITS", False), patch.object(mmn.dispatch, "TILE_ROWS", avx2_rows):
        # few rows or columns: the tiles' packing would cost more than the 4x2 dot tile's loads
        assert mmn.choose_kernel(16, 6272, 64, 1) == mmn.choose_kernel(64, 6272, 32, 1) == "dot"
        assert mmn.choose_kernel(16, 6272, 64, 1, copies_for_dot=True) == "small_a"     # a: 401 KB
        assert mmn.choose_kernel(128, 784, 400, 1) == "small_a"
        assert mmn.choose_kernel(128, 784, 400, 1, itemsize=8) == mmn.choose_kernel(1024, 1024, 1024, 1) == "axpy"
        assert mmn.packing_dominates(64, 32, 8) and not mmn.packing_dominates(256, 256, 8)
