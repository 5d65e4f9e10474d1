"""scratchgen.kernels.conv, conv_numba and conv_tiles: every convolution kernel equals its definition.

conv2d's three functions are checked against their NumPy references, a 7-deep loop, and the adjoint
identity <conv(x), g> = <x, dx> = <w, dw>, which ties the gradients to the forward pass; both paths
(register tiles and separate passes) on every shape, and the copies they read.
"""
from types import SimpleNamespace
from unittest.mock import patch

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from scratchgen import Tensor
from scratchgen.kernels import conv, conv_numba, conv_tiles, layouts, matmul_numba as mmn
from scratchgen.kernels import threads as mm_threads
from scratchgen.kernels.backend import use_backend

from kernel_checks import assert_close, conv2d_loops, on_both_backends, rng_array
from strategies import FLOAT_DTYPES, conv2d_cases, conv2d_grad_input_shapes, seeded_arrays


# ---------------------------------------------------------------------- conv2d
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
        assert_close(out, conv2d_loops(x, w, None, case["stride"], case["padding"]).astype(out.dtype), terms)


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


def test_a_size_given_as_int_tuple_list_or_numpy_int_becomes_the_same_pair_of_python_ints():
    for value, expected in ((2, (2, 2)), ((1, 3), (1, 3)), ([1, 3], (1, 3)), (np.int64(2), (2, 2)),
                            ((np.int32(1), 3), (1, 3))):
        got = conv.pair(value, "conv2d stride")
        assert got == expected and all(type(v) is int for v in got)
    for bad in ((1, 2.0), (1,), (1, 2, 3), 1.5, "2"):
        with pytest.raises(ValueError, match="conv2d stride must be an int or a pair of ints"):
            conv.pair(bad, "conv2d stride")


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
