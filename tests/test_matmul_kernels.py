"""scratchgen.kernels.matmul and matmul_numba: every matmul kernel equals its definition, on both backends.

Matmul is checked against ``matmul_reference`` (the sum written out) and ``np.matmul``. Each Numba
kernel is also called directly, so the dispatch thresholds cannot hide one from the tests; and the
choice of kernel is checked on its own (``choose_kernel``, ``narrow_plan``, ``kmajor_pays``).
"""
import re
import sys
from unittest.mock import patch

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from scratchgen import Tensor
from scratchgen.kernels import layouts, matmul as mm, matmul_numba as mmn
from scratchgen.kernels import tasks, threads as mm_threads
from scratchgen.kernels.backend import use_backend
from scratchgen.kernels.cpu import register_tile_shape

from kernel_checks import assert_close, on_both_backends, rng_array, run_python
from strategies import layouts as layouts_
from strategies import FLOAT_DTYPES, matmul_operands, matmul_shape_pairs, matrix_triples, tile_edge_triples


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
