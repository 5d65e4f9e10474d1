"""The element-wise kernels: sigmoid and softplus, batch norm, the ReLUs and the bias, each against its
NumPy reference (bit for bit where the reference is the same arithmetic).
"""
from unittest.mock import patch

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from scratchgen import Tensor
from scratchgen.kernels import threads as mm_threads

from kernel_checks import rng_array
from strategies import layouts as layouts_
from strategies import FLOAT_DTYPES, batch_norm_problems, with_layout


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
