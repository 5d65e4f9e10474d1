"""scratchgen.functional (F): gradients by gradcheck, values against direct definitions.

Each PyTorch definition is written out again here, independently and as plainly as possible
(conv2d as a 7-deep loop, conv_transpose2d as its scatter form), and F must agree with it.
An optional test compares with PyTorch itself when it is importable (it is not a dependency).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen.functional as F
from scratchgen import Tensor, is_grad_enabled
from scratchgen.finite_differences import gradcheck
from scratchgen.kernels.backend import use_backend
from kernel_checks import conv2d_loops
from strategies import (away_from_zero, bounded_floats, conv2d_cases, conv_transpose2d_cases,
                        laid_out_arrays, seeded_arrays, shapes)


def leaf(array):
    return Tensor(array, requires_grad=True)


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


REDUCTIONS = ["mean", "sum", "none"]


def reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](loss)


# ---------------------------------------------------------------------- direct definitions
# (conv2d's seven loops, ``conv2d_loops``, are shared with the kernel tests: tests/kernel_checks.py)
def conv_transpose2d_scatter(x, w, b, stride, padding, output_padding):
    n_, c_, h, w_ = x.shape
    _, o_, kh, kw = w.shape
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    ho, wo = (h - 1) * sh - 2 * ph + kh + oh, (w_ - 1) * sw - 2 * pw + kw + ow
    out = np.zeros((n_, o_, ho, wo))
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w_):
                    for o in range(o_):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < ho and 0 <= s < wo:
                                    out[n, o, r, s] += x[n, c, i, j] * w[c, o, u, v]
    return out if b is None else out + b[None, :, None, None]


# ---------------------------------------------------------------------- activations
ACTIVATIONS = {  # name: (F function, definition, elements away from kinks)
    "relu": (F.relu, lambda x: np.maximum(x, 0), away_from_zero()),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), away_from_zero()),
    "leaky_relu 0.2": (lambda t: F.leaky_relu(t, negative_slope=0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                       away_from_zero()),
    "sigmoid": (F.sigmoid, sigmoid, bounded_floats(-5, 5)),
    "tanh": (F.tanh, np.tanh, bounded_floats(-3, 3)),
    "softplus": (F.softplus, lambda x: np.log(1 + np.exp(x)), bounded_floats(-5, 5)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@given(data=st.data())
def test_activation_values_and_gradients(name, data):
    fn, definition, elements = ACTIVATIONS[name]
    x = data.draw(laid_out_arrays(shapes(), elements=elements))
    a = leaf(x)
    np.testing.assert_allclose(fn(a).data, definition(x), rtol=1e-12, atol=1e-15)
    assert gradcheck(fn, [a])


def test_leaky_relu_slope_at_and_around_zero():
    a = leaf(np.array([-2.0, 0.0, 3.0]))
    F.leaky_relu(a, 0.1).sum().backward()
    np.testing.assert_allclose(a.grad, [0.1, 0.1, 1.0])  # PyTorch: slope for x <= 0


def test_softplus_is_stable_for_large_magnitudes():
    a = leaf(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    with np.errstate(over="raise"):
        out = F.softplus(a)
        out.sum().backward()
    np.testing.assert_allclose(out.data, [0, np.exp(-40.0), np.log(2), 40, 1000], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(a.grad, [0, sigmoid(-40.0), 0.5, 1, 1], rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------- softmax family
DIMS = [0, 1, -1, (0, 1)]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
@given(x=seeded_arrays((2, 3, 4), scale=2.0))
def test_logsumexp(dim, keepdim, x):
    a = leaf(x)
    expected = np.log(np.sum(np.exp(x), axis=dim, keepdims=keepdim))
    np.testing.assert_allclose(F.logsumexp(a, dim, keepdim=keepdim).data, expected, rtol=1e-12)
    assert gradcheck(lambda t: F.logsumexp(t, dim, keepdim=keepdim), [a])


@pytest.mark.parametrize("dim", [0, 1, -1])
@given(x=seeded_arrays((2, 3, 4), scale=2.0))
def test_softmax_and_log_softmax(dim, x):
    a = leaf(x)
    e = np.exp(x)
    expected = e / e.sum(axis=dim, keepdims=True)
    np.testing.assert_allclose(F.softmax(a, dim).data, expected, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(a, dim).data, np.log(expected), rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda t: F.softmax(t, dim), [a])
    assert gradcheck(lambda t: F.log_softmax(t, dim), [a])


def test_softmax_family_is_stable_for_large_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0]])
    a = leaf(x)
    with np.errstate(over="raise"):
        lse, ls, sm = F.logsumexp(a, 1), F.log_softmax(a, 1), F.softmax(a, 1)
        (lse.sum() + ls[0, 1] + sm[0, 0]).backward()
    np.testing.assert_allclose(lse.data, [1000, -1000 + np.log(3)], rtol=1e-12)
    np.testing.assert_allclose(ls.data, [[0, -1000, -2000], [-np.log(3)] * 3], rtol=1e-12)
    np.testing.assert_allclose(sm.data, [[1, 0, 0], [1 / 3] * 3], rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(a.grad))


# ---------------------------------------------------------------------- losses
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(x=seeded_arrays((3, 4), scale=2.0), t=laid_out_arrays((3, 4), elements=bounded_floats(0, 1)))
def test_binary_cross_entropy_with_logits(reduction, x, t):
    logits, target = leaf(x), leaf(t)
    expected = -(t * np.log(sigmoid(x)) + (1 - t) * np.log(1 - sigmoid(x)))
    out = F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)
    np.testing.assert_allclose(out.data, reduce(expected, reduction), rtol=1e-10)
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
                     [logits, target])


def test_binary_cross_entropy_with_logits_is_stable_at_plus_minus_1000():
    x = np.array([1000.0, 1000.0, -1000.0, -1000.0, 1000.0, -1000.0])
    t = np.array([1.0, 0.0, 1.0, 0.0, 0.3, 0.3])
    logits = leaf(x)
    with np.errstate(over="raise"):
        out = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        out.sum().backward()
    np.testing.assert_allclose(out.data, [0, 1000, 1000, 0, 700, 300], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(logits.grad, [0, 1, -1, 0, 0.7, -0.3], rtol=1e-12, atol=1e-300)
    assert gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, t), [leaf(x.copy())])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(x=seeded_arrays((4, 5), scale=2.0), target=st.lists(st.integers(0, 4), min_size=4, max_size=4))
def test_cross_entropy(reduction, x, target):
    logits, target = leaf(x), np.array(target)
    # -log softmax(x)[t] = log Σ_c e^{x_c} - x_t
    expected = np.log(np.exp(x).sum(axis=1)) - x[np.arange(4), target]
    out = F.cross_entropy(logits, target, reduction=reduction)
    np.testing.assert_allclose(out.data, reduce(expected, reduction), rtol=1e-10)
    assert gradcheck(lambda a: F.cross_entropy(a, target, reduction=reduction), [logits])
    assert gradcheck(lambda a: F.cross_entropy(a, Tensor(target), reduction=reduction), [logits])


def test_cross_entropy_is_stable_for_large_logits():
    logits = leaf(np.array([[1000.0, -1000.0], [0.0, 1000.0]]))
    with np.errstate(over="raise"):
        out = F.cross_entropy(logits, np.array([1, 1]), reduction="none")
        out.sum().backward()
    np.testing.assert_allclose(out.data, [2000, 0], atol=1e-12)
    np.testing.assert_allclose(logits.grad, [[1, -1], [0, 0]], atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(pair=st.tuples(seeded_arrays((2, 3)), seeded_arrays((2, 3))))
def test_mse_loss(reduction, pair):
    a, b = leaf(pair[0]), leaf(pair[1])
    np.testing.assert_allclose(F.mse_loss(a, b, reduction=reduction).data,
                               reduce((pair[0] - pair[1]) ** 2, reduction), rtol=1e-12)
    assert gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [a, b])
    assert gradcheck(lambda x: F.mse_loss(x, pair[1], reduction=reduction), [a])  # ndarray target


# ---------------------------------------------------------------------- layers
@pytest.mark.parametrize("x_shape", [(3,), (2, 3), (2, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
@given(data=st.data())
def test_linear(x_shape, bias, data):
    x = data.draw(seeded_arrays(x_shape))
    w = data.draw(seeded_arrays((4, 3)))
    b = data.draw(seeded_arrays((4,))) if bias else None
    inputs = [leaf(x), leaf(w)] + ([leaf(b)] if bias else [])
    expected = x @ w.T + (b if bias else 0)
    np.testing.assert_allclose(F.linear(*inputs).data, expected, rtol=1e-12, atol=1e-14)
    assert gradcheck(F.linear, inputs)


@given(w=seeded_arrays((5, 3)), idx=st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_embedding_picks_rows_and_scatter_adds_gradients(w, idx):
    indices = np.array(idx).reshape(2, 3)  # repeats are likely: 6 draws from 5 rows
    weight = leaf(w)
    out = F.embedding(indices, weight)
    np.testing.assert_array_equal(out.data, w[indices])
    assert gradcheck(lambda t: F.embedding(indices, t), [weight])
    g = random(2, 3, 3, seed=1)
    weight.grad = None
    F.embedding(Tensor(indices), weight).backward(g)
    expected = np.zeros_like(w)
    for (i, j), row in np.ndenumerate(indices):
        expected[row] += g[i, j]
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-12)


@pytest.mark.parametrize("dim", [0, 1, -1])
@given(data=st.data())
def test_cat_and_stack(dim, data):
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = []
    for k, size in enumerate(sizes):
        shape = [2, 3, 2]
        shape[dim] = size
        parts.append(data.draw(seeded_arrays(tuple(shape))))
    tensors = [leaf(p) for p in parts]
    np.testing.assert_array_equal(F.cat(tensors, dim).data, np.concatenate(parts, axis=dim))
    assert gradcheck(lambda *ts: F.cat(ts, dim), tensors)
    same = [leaf(data.draw(seeded_arrays((2, 3)))) for _ in sizes]
    np.testing.assert_array_equal(F.stack(same, dim).data, np.stack([t.data for t in same], axis=dim))
    assert gradcheck(lambda *ts: F.stack(ts, dim=dim), same)


@given(data=st.data())
def test_pad_adds_zero_borders_or_cuts_and_passes_gradcheck(data):
    """F.pad(x, (left, right, top, bottom)): zero borders where positive, a cut where negative."""
    x = data.draw(seeded_arrays((2, 3, 4)))
    pad = tuple(data.draw(st.lists(st.integers(-1, 2), min_size=2, max_size=4).filter(lambda p: len(p) % 2 == 0)))
    expected = x
    for i in range(len(pad) // 2):          # np.pad for the positive widths, slicing for the negative
        dim, (lo, hi) = x.ndim - 1 - i, pad[2 * i: 2 * i + 2]
        widths = [(0, 0)] * x.ndim
        widths[dim] = (max(lo, 0), max(hi, 0))
        expected = np.pad(expected, widths)
        cut = [slice(None)] * x.ndim
        cut[dim] = slice(max(-lo, 0), expected.shape[dim] - max(-hi, 0))
        expected = expected[tuple(cut)]
    np.testing.assert_array_equal(F.pad(leaf(x), pad).data, expected)
    assert gradcheck(lambda t: F.pad(t, pad), [leaf(x)])


def test_pad_refuses_odd_lengths_and_cutting_everything():
    with pytest.raises(ValueError, match="pairs"):
        F.pad(Tensor(np.ones((2, 3))), (1, 1, 1))
    with pytest.raises(ValueError, match="leave nothing"):
        F.pad(Tensor(np.ones((2, 3))), (-2, -1))


def test_cat_and_stack_with_a_constant_among_the_inputs():
    a, c = leaf(random(2, 3)), Tensor(random(1, 3, seed=1))
    assert gradcheck(lambda t: F.cat([c, t, t], 0), [a])
    assert gradcheck(lambda t: F.stack([t, Tensor(np.ones((2, 3))), t], 1), [a])


# ---------------------------------------------------------------------- convolutions
def check_conv(op, definition, x, w, b, **kwargs):
    """op's values on both kernel backends equal the direct definition, and op passes gradcheck.

    NOTE: gradcheck calls op hundreds of times under no_grad for its finite differences; those
    passes run on the NumPy reference kernels (a tiny problem costs Numba more in thread start-up
    than in arithmetic). The analytic gradient still comes from the default backend's backward
    kernels, and both backends' forward passes are checked against the definition first, so the
    comparison is sound.
    """
    expected = definition(x, w, b, **kwargs)
    inputs = [leaf(x), leaf(w)] + ([leaf(b)] if b is not None else [])
    for name in ("numba", "numpy"):
        with use_backend(name):
            np.testing.assert_allclose(op(*inputs, **kwargs).data, expected, rtol=1e-10, atol=1e-12)

    def fn(*t):
        if is_grad_enabled():
            return op(*t, **kwargs)
        with use_backend("numpy"):
            return op(*t, **kwargs)
    assert gradcheck(fn, inputs)


@given(case=conv2d_cases(), bias=st.booleans(), data=st.data())
def test_conv2d_matches_the_loop_definition_and_passes_gradcheck(case, bias, data):
    x = data.draw(seeded_arrays(case["x_shape"]))
    w = data.draw(seeded_arrays(case["w_shape"]))
    b = data.draw(seeded_arrays(case["w_shape"][:1])) if bias else None
    check_conv(F.conv2d, conv2d_loops, x, w, b, stride=case["stride"], padding=case["padding"])


@given(case=conv_transpose2d_cases(), bias=st.booleans(), data=st.data())
def test_conv_transpose2d_matches_the_scatter_definition_and_passes_gradcheck(case, bias, data):
    x = data.draw(seeded_arrays(case["x_shape"]))
    w = data.draw(seeded_arrays(case["w_shape"]))
    b = data.draw(seeded_arrays(case["w_shape"][1:2])) if bias else None
    check_conv(F.conv_transpose2d, conv_transpose2d_scatter, x, w, b, stride=case["stride"],
               padding=case["padding"], output_padding=case["output_padding"])


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_conv_bias_added_in_place_gives_the_separate_additions_values_and_gradients(op, dtype, backend):
    # the bias goes into the kernel's output and its gradient into the op's own backward rule; the
    # result must be the general y + b.reshape(1, -1, 1, 1), values and all three gradients
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 5, 3, 3) if op == "conv_transpose2d" else (5, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    results = []
    with use_backend(backend):
        for fused in (True, False):
            xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
            y = getattr(F, op)(xt, wt, bt if fused else None, stride=2, padding=1)
            if not fused:
                y = y + bt.reshape(1, -1, 1, 1)
            g = rng.standard_normal(y.shape).astype(dtype) if fused else g
            y.backward(g)
            results.append((y.data, xt.grad, wt.grad, bt.grad))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for fused, general in zip(*results):
        assert fused.dtype == general.dtype == dtype
        np.testing.assert_allclose(fused, general, **tol)


def test_a_conv_bias_of_another_dtype_keeps_numpys_promotion():
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32)
    b = Tensor(np.ones(3), requires_grad=True)                  # float64
    y = F.conv2d(Tensor(x), Tensor(w), b, padding=1)
    assert y.dtype == np.float64 and y.data[0, 0, 1, 1] == 19.0
    y.sum().backward()
    assert b.grad.dtype == np.float64 and np.array_equal(b.grad, [16.0, 16.0, 16.0])


# Corner cases named outright, so they are covered whatever the random cases above happen to be.
CONV2D_CORNERS = [  # x shape, weight shape, stride, padding
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0)),
    ((2, 3, 5, 5), (2, 3, 3, 3), (1, 1), (1, 1)),  # "same" convolution
    ((1, 2, 6, 6), (3, 2, 3, 3), (2, 2), (1, 1)),  # down-sampling
    ((1, 2, 5, 4), (2, 2, 2, 3), (3, 1), (0, 2)),  # asymmetric everything
    ((1, 1, 6, 6), (1, 1, 1, 1), (3, 3), (0, 0)),  # stride larger than the kernel skips inputs
    ((1, 2, 1, 2), (2, 2, 3, 3), (1, 1), (1, 1)),  # kernel exactly as tall as the padded input
    ((2, 1, 4, 4), (1, 1, 4, 4), (1, 1), (0, 0)),  # 1x1 output
    ((1, 2, 4, 4), (2, 2, 3, 3), (1, 1), (2, 2)),  # padding k - 1 ("full" convolution)
]
CONV_TRANSPOSE2D_CORNERS = [  # x shape, weight shape, stride, padding, output_padding
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0), (0, 0)),
    ((1, 2, 3, 3), (2, 3, 4, 4), (2, 2), (1, 1), (0, 0)),  # the DCGAN up-sampling layer
    ((1, 2, 3, 3), (2, 2, 3, 3), (2, 2), (1, 1), (1, 1)),  # k3 s2 p1 with output_padding 1
    ((1, 1, 2, 3), (1, 2, 1, 1), (3, 2), (0, 0), (2, 1)),  # 1x1 kernel, stride 3: gaps in the output
    ((2, 2, 2, 2), (2, 1, 3, 2), (1, 3), (1, 0), (0, 2)),  # padding crops half the output rows
    ((1, 1, 3, 3), (1, 1, 3, 3), (1, 1), (1, 1), (0, 0)),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV2D_CORNERS)
def test_conv2d_corner_cases(x_shape, w_shape, stride, padding):
    x, w, b = random(*x_shape), random(*w_shape, seed=1), random(w_shape[0], seed=2)
    check_conv(F.conv2d, conv2d_loops, x, w, b, stride=stride, padding=padding)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding", CONV_TRANSPOSE2D_CORNERS)
def test_conv_transpose2d_corner_cases(x_shape, w_shape, stride, padding, output_padding):
    x, w, b = random(*x_shape), random(*w_shape, seed=1), random(w_shape[1], seed=2)
    check_conv(F.conv_transpose2d, conv_transpose2d_scatter, x, w, b, stride=stride, padding=padding,
               output_padding=output_padding)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    # <conv2d(x, w), y> = <x, conv_transpose2d(y, w)> for the same weight, stride and padding
    x, w, y = random(2, 3, 8, 7), random(4, 3, 3, 2, seed=1), random(2, 4, 4, 3, seed=2)
    kwargs = dict(stride=(2, 3), padding=(1, 1))
    lhs = np.sum(F.conv2d(Tensor(x), Tensor(w), **kwargs).data * y)
    rhs = np.sum(x * F.conv_transpose2d(Tensor(y), Tensor(w), output_padding=(1, 1), **kwargs).data)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_integer_and_pair_arguments_agree():
    x, w = Tensor(random(1, 2, 5, 5)), Tensor(random(3, 2, 3, 3, seed=1))
    np.testing.assert_array_equal(F.conv2d(x, w, stride=2, padding=1).data,
                                  F.conv2d(x, w, stride=(2, 2), padding=[1, 1]).data)
    wt = Tensor(random(2, 3, 3, 3, seed=1))
    np.testing.assert_array_equal(F.conv_transpose2d(x, wt, stride=2, padding=1, output_padding=1).data,
                                  F.conv_transpose2d(x, wt, stride=(2, 2), padding=(1, 1),
                                                     output_padding=(1, 1)).data)


def test_conv_backward_accepts_broadcast_upstream_gradients():
    # .sum() hands conv a read-only, zero-strided gradient; the kernels must cope
    x, w = leaf(random(2, 2, 5, 5)), leaf(random(3, 2, 3, 3, seed=1))
    F.conv2d(x, w, stride=2, padding=1).sum().backward()
    F.conv_transpose2d(F.conv2d(x, w), w).mean().backward()
    assert np.all(np.isfinite(x.grad)) and np.all(np.isfinite(w.grad))
    for op in (lambda: F.conv2d(x, w, padding=1), lambda: F.conv_transpose2d(x, w.permute(1, 0, 2, 3))):
        x.grad = w.grad = None
        op().sum().backward()
        broadcast = x.grad, w.grad
        x.grad = w.grad = None
        out = op()
        out.backward(np.ones(out.shape))  # the same gradient, as an ordinary contiguous array
        np.testing.assert_allclose(broadcast[0], x.grad, rtol=1e-12)
        np.testing.assert_allclose(broadcast[1], w.grad, rtol=1e-12)


# ---------------------------------------------------------------------- batch norm
def batch_norm_definition(x, weight, bias, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight.reshape(shape) + bias.reshape(shape)


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 3, 2, 2), (3, 2, 4)])
@given(data=st.data())
def test_batch_norm_training(x_shape, data):
    x = data.draw(seeded_arrays(x_shape, scale=2.0))
    weight, bias = data.draw(seeded_arrays((x_shape[1],))), data.draw(seeded_arrays((x_shape[1],)))
    rng = np.random.default_rng(0)
    running_mean, running_var = rng.standard_normal(x_shape[1]), rng.random(x_shape[1]) + 0.5
    old_mean, old_var = running_mean.copy(), running_var.copy()
    out = F.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias),
                       training=True, momentum=0.2, eps=1e-3)
    np.testing.assert_allclose(out.data, batch_norm_definition(x, weight, bias, 1e-3), rtol=1e-10, atol=1e-12)
    # running statistics move towards the batch mean and the *unbiased* batch variance
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(running_mean, 0.8 * old_mean + 0.2 * x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.8 * old_var + 0.2 * x.var(axis=axes, ddof=1), rtol=1e-12)
    assert gradcheck(lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True, eps=1e-3),
                     [leaf(x), leaf(weight), leaf(bias)])
    assert gradcheck(lambda a: F.batch_norm(a, None, None, training=True), [leaf(x)])


@pytest.mark.parametrize("affine", ["weight", "bias"])
def test_batch_norm_training_with_only_a_scale_or_only_a_shift(affine):
    # the fused training op returns one gradient per parent, whichever of weight and bias exist
    rng = np.random.default_rng(1)
    x, p = rng.standard_normal((3, 2, 2, 3)) * 2, rng.standard_normal(2)
    if affine == "weight":
        fn, expected = (lambda a, g: F.batch_norm(a, None, None, g, None, training=True)), (p, np.zeros(2))
    else:
        fn, expected = (lambda a, b: F.batch_norm(a, None, None, None, b, training=True)), (np.ones(2), p)
    np.testing.assert_allclose(fn(Tensor(x), Tensor(p)).data, batch_norm_definition(x, *expected, 1e-5),
                               rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, [leaf(x), leaf(p)])
    out = fn(Tensor(x.astype(np.float32)), Tensor(p.astype(np.float32)))
    assert out.dtype == np.float32


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 3, 2, 2)])
@given(data=st.data())
def test_batch_norm_eval_uses_running_statistics(x_shape, data):
    x = data.draw(seeded_arrays(x_shape))
    weight, bias = data.draw(seeded_arrays((3,))), data.draw(seeded_arrays((3,)))
    running_mean = np.array([0.5, -1.0, 0.0])
    running_var = np.array([2.0, 0.5, 1.0])
    shape = (1, 3) + (1,) * (len(x_shape) - 2)
    expected = ((x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + 1e-5)
                * weight.reshape(shape) + bias.reshape(shape))
    out = F.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias), training=False)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_array_equal(running_mean, [0.5, -1.0, 0.0])  # eval leaves them alone
    assert gradcheck(lambda a, g, b: F.batch_norm(a, running_mean, running_var, g, b),
                     [leaf(x), leaf(weight), leaf(bias)])


def test_batch_norm_training_needs_two_values_per_channel():
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        F.batch_norm(Tensor(np.ones((1, 3))), None, None, training=True)


# ---------------------------------------------------------------------- dtypes
FLOAT32_CASES = {
    "relu": lambda x: F.relu(x), "leaky_relu": lambda x: F.leaky_relu(x), "softplus": lambda x: F.softplus(x),
    "logsumexp": lambda x: F.logsumexp(x, 1), "log_softmax": lambda x: F.log_softmax(x, 1),
    "softmax": lambda x: F.softmax(x, -1),
    "bce": lambda x: F.binary_cross_entropy_with_logits(x, np.ones((2, 3))),
    "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 2])),
    "mse": lambda x: F.mse_loss(x, np.zeros((2, 3))),
    "linear": lambda x: F.linear(x, Tensor(np.ones((4, 3), np.float32)), Tensor(np.ones(4, np.float32))),
    "embedding": lambda x: F.embedding(np.array([1, 1, 0]), x),
    "cat": lambda x: F.cat([x, x], 1), "stack": lambda x: F.stack([x, x], 0), "pad": lambda x: F.pad(x, (1, -1)),
    "batch_norm": lambda x: F.batch_norm(x, np.zeros(3), np.ones(3), training=True),
    "conv2d": lambda x: F.conv2d(x.reshape(1, 2, 3, 1), Tensor(np.ones((2, 2, 2, 1), np.float32)), padding=1),
    "conv_transpose2d": lambda x: F.conv_transpose2d(x.reshape(1, 2, 3, 1),
                                                     Tensor(np.ones((2, 2, 2, 1), np.float32)), stride=2),
}


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_in_float32_out(name):
    x = Tensor(random(2, 3).astype(np.float32), requires_grad=True)
    out = FLOAT32_CASES[name](x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


# ---------------------------------------------------------------------- errors a student can act on
def raises_naming(call, *fragments):
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert str(fragment) in str(info.value), (fragment, str(info.value))


def T(*shape):
    return Tensor(np.ones(shape))


def test_conv2d_bad_input():
    raises_naming(lambda: F.conv2d(T(3, 5, 5), T(2, 3, 3, 3)), (3, 5, 5))
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(3, 3, 3)), (3, 3, 3))
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 4, 3, 3)), (1, 3, 5, 5), (2, 4, 3, 3))
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), stride=0), "stride")
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), stride=(1, 0)), "stride")
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), padding=-1), "padding")
    raises_naming(lambda: F.conv2d(T(1, 3, 2, 5), T(2, 3, 4, 3)), (1, 3, 2, 5), (2, 3, 4, 3))
    raises_naming(lambda: F.conv2d(T(1, 3, 2, 2), T(2, 3, 5, 5), padding=1), (1, 3, 2, 2), (2, 3, 5, 5))
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), stride=1.5), "stride")
    raises_naming(lambda: F.conv2d(T(1, 3, 5, 5), T(2, 3, 3, 3), padding=(1, 1, 1)), "padding")


def test_conv_transpose2d_bad_input():
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 3, 3), T(2, 3, 3, 3), stride=2, output_padding=2),
                  "output_padding", "(2, 2)")
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 3, 3), T(2, 3, 3, 3), output_padding=1), "output_padding")
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 3, 3), T(2, 3, 3, 3), stride=2, output_padding=-1),
                  "output_padding")
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 3, 3), T(4, 3, 3, 3)), (1, 2, 3, 3), (4, 3, 3, 3))
    raises_naming(lambda: F.conv_transpose2d(T(2, 3, 3), T(2, 3, 3, 3)), (2, 3, 3))
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 3, 3), T(2, 3, 3, 3), stride=0), "stride")
    raises_naming(lambda: F.conv_transpose2d(T(1, 2, 1, 1), T(2, 3, 1, 1), padding=1), (1, 2, 1, 1))


def test_loss_and_layer_bad_input():
    logits = T(3, 4)
    raises_naming(lambda: F.cross_entropy(logits, np.array([0, 4, 1])), "[0, 4)", "max 4")
    raises_naming(lambda: F.cross_entropy(logits, np.array([0, -1, 1])), "min -1")
    raises_naming(lambda: F.cross_entropy(logits, np.array([0.0, 1.0, 1.0])), "float64")
    raises_naming(lambda: F.cross_entropy(logits, np.array([0, 1])), (3, 4), (2,))
    raises_naming(lambda: F.cross_entropy(T(4), np.array(1)), (4,))
    raises_naming(lambda: F.linear(T(2, 3), T(4, 5)), (2, 3), (4, 5))
    raises_naming(lambda: F.binary_cross_entropy_with_logits(T(2, 3), np.ones((3, 2))), (2, 3), (3, 2))
    raises_naming(lambda: F.mse_loss(T(2, 3), T(3,)), (2, 3), (3,))
    raises_naming(lambda: F.mse_loss(T(2), T(2), reduction="avg"), "avg")
    raises_naming(lambda: F.embedding(np.array([0, 5]), T(5, 2)), "[0, 5)")
    raises_naming(lambda: F.embedding(np.array([0.0]), T(5, 2)), "float64")
    raises_naming(lambda: F.stack([T(2, 3), T(3, 2)]), (2, 3), (3, 2))
    raises_naming(lambda: F.cat([T(2, 3), T(2, 4)], 0), (2, 3), (2, 4))


# ---------------------------------------------------------------------- optional: PyTorch itself
def test_agrees_with_pytorch_when_available(capsys):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(7)

    def r(*shape):
        return rng.standard_normal(shape)

    x4, w4, b3 = r(2, 3, 6, 5), r(3, 3, 3, 2), r(3)
    idx = np.array([0, 3, 3, 1])
    cases = {  # name: (ours, torch's, inputs; integer arrays are passed as they are)
        "relu": (F.relu, tF.relu, [r(3, 4)]),
        "leaky_relu": (lambda a: F.leaky_relu(a, 0.2), lambda a: tF.leaky_relu(a, 0.2), [r(3, 4)]),
        "sigmoid": (F.sigmoid, torch.sigmoid, [r(3, 4)]),
        "tanh": (F.tanh, torch.tanh, [r(3, 4)]),
        "softplus": (F.softplus, tF.softplus, [5 * r(3, 4)]),
        "logsumexp": (lambda a: F.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1), [r(3, 4)]),
        "log_softmax": (lambda a: F.log_softmax(a, 0), lambda a: tF.log_softmax(a, 0), [r(3, 4)]),
        "softmax": (lambda a: F.softmax(a, -1), lambda a: tF.softmax(a, -1), [r(3, 4)]),
        **{f"bce {red}": ((lambda red: lambda a, t: F.binary_cross_entropy_with_logits(a, t, red))(red),
                          (lambda red: lambda a, t: tF.binary_cross_entropy_with_logits(a, t, reduction=red))(red),
                          [r(3, 4) * 3, rng.random((3, 4))]) for red in REDUCTIONS},
        **{f"cross_entropy {red}": ((lambda red: lambda a: F.cross_entropy(a, idx, red))(red),
                                    (lambda red: lambda a: tF.cross_entropy(a, torch.from_numpy(idx),
                                                                            reduction=red))(red),
                                    [r(4, 5)]) for red in REDUCTIONS},
        "mse": (F.mse_loss, tF.mse_loss, [r(3, 4), r(3, 4)]),
        "linear": (F.linear, tF.linear, [r(5, 3), r(4, 3), r(4)]),
        "embedding": (lambda w: F.embedding(idx.reshape(2, 2), w),
                      lambda w: tF.embedding(torch.from_numpy(idx.reshape(2, 2)), w), [r(5, 3)]),
        "cat": (lambda a, b: F.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1), [r(2, 3), r(2, 2)]),
        "stack": (lambda a, b: F.stack([a, b], -1), lambda a, b: torch.stack([a, b], -1), [r(2, 3), r(2, 3)]),
        "pad": (lambda a: F.pad(a, (2, -1, -1, 1)), lambda a: tF.pad(a, (2, -1, -1, 1)), [r(2, 3, 4)]),
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)),
                   lambda x, w, b: tF.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)), [x4, w4, b3]),
        "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(3, 2), padding=(1, 0),
                                                                output_padding=(2, 1)),
                             lambda x, w, b: tF.conv_transpose2d(x, w, b, stride=(3, 2), padding=(1, 0),
                                                                 output_padding=(2, 1)), [x4, w4, b3]),
        "batch_norm train": (lambda x, g, b: F.batch_norm(x, np.zeros(3), np.ones(3), g, b, training=True),
                             lambda x, g, b: tF.batch_norm(x, torch.zeros(3, dtype=torch.float64),
                                                           torch.ones(3, dtype=torch.float64), g, b,
                                                           training=True), [x4, r(3), r(3)]),
        "batch_norm eval": (lambda x, g, b: F.batch_norm(x, np.arange(3.0), np.arange(1.0, 4.0), g, b),
                            lambda x, g, b: tF.batch_norm(x, torch.arange(3.0, dtype=torch.float64),
                                                          torch.arange(1.0, 4.0, dtype=torch.float64), g, b),
                            [x4, r(3), r(3)]),
    }
    worst = {}
    for name, (ours, theirs, arrays) in cases.items():
        mine = [leaf(a.copy()) for a in arrays]
        ref = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, expected = ours(*mine), theirs(*ref)
        u = rng.standard_normal(out.shape)
        out.backward(u)
        expected.backward(torch.from_numpy(u))
        diffs = [np.abs(out.data - expected.detach().numpy()).max()]
        diffs += [np.abs(m.grad - t.grad.numpy()).max() for m, t in zip(mine, ref)]
        worst[name] = max(diffs)
    with capsys.disabled():
        print("\nmax |scratchgen - torch| (values and gradients, float64):")
        for name, d in worst.items():
            print(f"  {name:24s} {d:.2e}")
    assert max(worst.values()) < 1e-10, worst

    # running statistics, too (PyTorch updates them in place with the unbiased variance)
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    F.batch_norm(Tensor(x4), rm, rv, training=True, momentum=0.3)
    tF.batch_norm(torch.from_numpy(x4), trm, trv, training=True, momentum=0.3)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)


@pytest.mark.parametrize("n_in, n_out", [(300, 40), (40, 300), (20, 10)])
def test_linear_gradients_at_kernel_sizes(n_in, n_out):
    # large enough for the dot and axpy matmul kernels (the tiny gradcheck shapes use the small one)
    rng = np.random.default_rng(n_in)
    x, w, b, g = (rng.standard_normal(s) for s in [(64, n_in), (n_out, n_in), (n_out,), (64, n_out)])
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    y = F.linear(xt, wt, bt)
    y.backward(g)
    np.testing.assert_allclose(y.data, x @ w.T + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xt.grad, g @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wt.grad, g.T @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bt.grad, g.sum(axis=0), rtol=1e-12, atol=1e-12)
    x_const = Tensor(x)                      # no gradient is computed for an input that needs none
    F.linear(x_const, wt).sum().backward()
    assert x_const.grad is None
