"""The autograd engine (scratchgen.autograd) and its op catalogue (scratchgen.ops): every op's gradient, and the engine's rules.

Gradients are proven with float64 central differences (scratchgen.finite_differences, random upstream
gradient); forward values against NumPy written out directly; the rules in autograd.py's
docstring (order, reuse, accumulation, broadcasting, dtypes, no_grad) each by a test below.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen as sg
from scratchgen import Tensor, no_grad
from scratchgen.finite_differences import gradcheck
from scratchgen.autograd import is_grad_enabled, owned, unbroadcast
from strategies import (away_from, away_from_zero, bounded_floats, broadcastable_pairs,
                        distinct_arrays, laid_out_arrays, positive_floats, shapes, with_layout)


def leaf(array):
    return Tensor(np.asarray(array, dtype=np.float64) if not isinstance(array, np.ndarray) else array,
                  requires_grad=True)


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------- arithmetic
@given(broadcastable_pairs(), st.data())
def test_add_sub_mul_gradients_reduce_over_broadcast_axes(pair, data):
    a = leaf(data.draw(laid_out_arrays(pair[0])))
    b = leaf(data.draw(laid_out_arrays(pair[1])))
    for fn in (lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: x * y + x):
        assert gradcheck(fn, [a, b])
        assert a.grad.shape == a.shape and b.grad.shape == b.shape


@given(broadcastable_pairs(), st.data())
def test_division_gradient(pair, data):
    a = leaf(data.draw(laid_out_arrays(pair[0])))
    b = leaf(data.draw(laid_out_arrays(pair[1], elements=away_from_zero(0.3))))
    assert gradcheck(lambda x, y: x / y, [a, b])


@given(laid_out_arrays(shapes(), elements=away_from_zero(0.3)), bounded_floats(-2, 2))
def test_python_scalars_and_reflected_operators(x, c):
    a = leaf(x)
    assert gradcheck(lambda t: c + t * 2.0 - 3.0 / t + t / 2.0 - (1.0 - t) * c, [a])
    assert gradcheck(lambda t: -t, [a])


def test_constant_ndarray_operand_on_either_side():
    a, k = leaf(random(3, 4)), random(4, seed=1)
    assert gradcheck(lambda t: k * t + t * k - k / (t * t + 1) + (k - t), [a])
    np.testing.assert_allclose((k * a).data, k * a.data)
    assert isinstance(k * a, Tensor) and isinstance(k - a, Tensor)


@given(laid_out_arrays(shapes(), elements=positive_floats()), bounded_floats(-2, 3))
def test_power_with_scalar_exponent(x, p):
    assert gradcheck(lambda t: t ** p, [leaf(x)])


@given(laid_out_arrays(shapes(), elements=away_from_zero(0.3)), st.sampled_from([1, 2, 3, -1, -2]))
def test_integer_power_of_negative_base(x, p):
    a = leaf(x)
    np.testing.assert_allclose((a ** p).data, x.astype(np.float64) ** p)
    assert gradcheck(lambda t: t ** p, [a])


@given(broadcastable_pairs(), st.data())
def test_power_with_tensor_exponent(pair, data):
    base = leaf(data.draw(laid_out_arrays(pair[0], elements=positive_floats())))
    exponent = leaf(data.draw(laid_out_arrays(pair[1])))
    assert gradcheck(lambda a, p: a ** p, [base, exponent])
    assert gradcheck(lambda p: 2.0 ** p, [exponent])  # __rpow__: d/dp 2^p = 2^p log 2


# ---------------------------------------------------------------------- matmul
MATMUL_SHAPES = [
    ((3, 4), (4, 2)),            # 2-D
    ((1, 1), (1, 1)),
    ((2, 3, 4), (2, 4, 5)),      # batched
    ((2, 3, 4), (4, 5)),         # batch broadcast on the left
    ((3, 4), (2, 4, 5)),         # ... and on the right
    ((2, 1, 3, 4), (3, 4, 2)),   # 1-sized batch axis stretched
    ((4,), (4,)),                # 1-D cases follow NumPy: dot product
    ((4,), (4, 3)),              # row vector
    ((3, 4), (4,)),              # column vector
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES)
def test_matmul_values_and_gradients(shape_a, shape_b):
    a, b = leaf(random(*shape_a, seed=1)), leaf(random(*shape_b, seed=2))
    out = a @ b
    np.testing.assert_allclose(out.data, np.matmul(a.data, b.data), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, y: x @ y, [a, b])


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), broadcastable_pairs(0, 2, 3), st.data())
def test_matmul_gradients_on_random_and_non_contiguous_operands(m, k, n, batch, data):
    a = leaf(data.draw(laid_out_arrays(batch[0] + (m, k))))
    b = leaf(data.draw(laid_out_arrays(batch[1] + (k, n))))
    np.testing.assert_allclose((a @ b).data, np.matmul(a.data, b.data), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, y: x @ y, [a, b])


def test_matmul_with_constant_array_on_the_left():
    a, m = leaf(random(4, 2)), random(3, 4, seed=1)
    assert gradcheck(lambda t: m @ t, [a])


@pytest.mark.parametrize("shape_a, shape_b", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3, 4), (3, 5, 2)),
                                              ((2, 3), (2,))])
def test_matmul_shape_mismatch_names_both_shapes(shape_a, shape_b):
    a, b = Tensor(np.ones(shape_a)), Tensor(np.ones(shape_b))
    with pytest.raises(ValueError) as info:
        a @ b
    message = str(info.value)
    assert str(shape_a) in message and str(shape_b) in message


def test_matmul_of_a_zero_dim_tensor_raises():
    with pytest.raises(ValueError, match=r"\(\)"):
        Tensor(np.array(2.0)) @ Tensor(np.ones(3))


# ---------------------------------------------------------------------- indexing
INDEXES = [
    (1,), (-1,), (slice(1, 3),), (slice(None, None, -2),), (slice(None), slice(1, 4, 2)),
    (Ellipsis, 0), (1, Ellipsis, slice(0, 2)), (None, 1),
    (np.array([0, 2, 0, 3, 0]),),                          # repeats: scatter-add
    (np.array([[0, 1], [1, 1]]),),
    (slice(None), [0, 0, 4]),
    (np.array([0, 1, 0]), np.array([2, 2, 2])),            # the same element three times
    (np.array([True, False, True, True]),),                # boolean row mask
    (np.array([[True, False, True, False, True]] * 4),),   # elementwise boolean mask
    (Tensor(np.array([3, 3, 1])),),                        # an integer Tensor as the index
]


@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_indexing_values_and_scatter_add_gradient(index):
    a = leaf(with_layout(random(4, 5), "transposed"))
    plain = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    np.testing.assert_array_equal(a[index].data, a.data[plain])
    assert gradcheck(lambda t: t[index], [a])


def test_repeated_integer_index_accumulates_gradient():
    a = leaf(np.arange(4.0))
    a[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(a.grad, [3.0, 0.0, 1.0, 0.0])


@given(laid_out_arrays(shapes(min_dims=1)), st.data())
def test_indexing_with_random_integer_arrays_and_masks(x, data):
    a = leaf(x)
    idx = np.array(data.draw(st.lists(st.integers(0, x.shape[0] - 1), min_size=1, max_size=6)))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size))).reshape(x.shape)
    assert gradcheck(lambda t: t[idx], [a])
    assert gradcheck(lambda t: t[mask], [a])
    np.testing.assert_array_equal(a[mask].data, x[mask])


# ---------------------------------------------------------------------- reductions
AXES = [None, 0, -1, (0, 2), (2, 0), (-1, -3), (0, 1, 2)]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("method", ["sum", "mean"])
def test_sum_and_mean(method, axis, keepdims):
    x = with_layout(random(2, 3, 4), "strided")
    a = leaf(x)
    out = getattr(a, method)(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, getattr(np, method)(x, axis=axis, keepdims=keepdims),
                               rtol=1e-12, atol=1e-15)
    assert gradcheck(lambda t: getattr(t, method)(axis=axis, keepdims=keepdims), [a])


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("method", ["max", "min"])
def test_max_and_min_away_from_ties(method, axis, keepdims):
    x = with_layout(np.random.default_rng(3).permutation(24).reshape(2, 3, 4) * 0.5, "transposed")
    a = leaf(x)
    out = getattr(a, method)(axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(out.data, getattr(np, method)(x, axis=axis, keepdims=keepdims))
    assert gradcheck(lambda t: getattr(t, method)(axis=axis, keepdims=keepdims), [a])


@given(distinct_arrays(shapes(min_dims=1)), st.data())
def test_max_gradient_on_random_arrays(x, data):
    axis = data.draw(st.none() | st.integers(-x.ndim, x.ndim - 1))
    keepdims = data.draw(st.booleans())
    assert gradcheck(lambda t: t.max(axis=axis, keepdims=keepdims), [leaf(x)])
    assert gradcheck(lambda t: t.min(dim=axis, keepdims=keepdims), [leaf(x)])


def test_max_ties_share_the_gradient_equally():
    a = leaf(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    a.max().backward()
    np.testing.assert_array_equal(a.grad, [[0, 0.5, 0.5], [0, 0, 0]])
    b = leaf(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    b.max(axis=1).sum().backward()
    np.testing.assert_allclose(b.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


@given(laid_out_arrays(shapes(min_dims=1)), st.data())
def test_reductions_with_dim_keyword_match_numpy(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    a = leaf(x)
    np.testing.assert_allclose(a.sum(dim=axis).data, x.sum(axis=axis))
    np.testing.assert_allclose(a.mean(dim=axis, keepdims=True).data, x.mean(axis=axis, keepdims=True))
    assert gradcheck(lambda t: t.mean(dim=axis), [a])


# ---------------------------------------------------------------------- shape ops
SHAPE_OPS = {
    "reshape": lambda t: t.reshape(4, 6),
    "reshape tuple -1": lambda t: t.reshape((3, -1)),
    "view": lambda t: t.view(2, 12),
    "transpose default": lambda t: t.transpose(),
    "transpose 0 2": lambda t: t.transpose(0, 2),
    "transpose -1 0": lambda t: t.transpose(-1, 0),
    "permute": lambda t: t.permute(2, 0, 1),
    "permute tuple": lambda t: t.permute((1, 2, 0)),
    "permute negative": lambda t: t.permute(0, -1, 1),
    "T": lambda t: t.T,
    "flatten": lambda t: t.flatten(),
    "flatten 1": lambda t: t.flatten(1),
    "flatten 0 1": lambda t: t.flatten(0, 1),
    "flatten -2": lambda t: t.flatten(-2),
    "unsqueeze 0": lambda t: t.unsqueeze(0),
    "unsqueeze -1": lambda t: t.unsqueeze(-1),
    "unsqueeze then squeeze": lambda t: t.unsqueeze(1).squeeze(1),
    "expand": lambda t: t[:, :1].expand(2, 3, 4),
    "expand -1 and new axis": lambda t: t[:1].expand(5, 2, -1, 4),
}
NUMPY_SHAPE_OPS = {
    "reshape": lambda x: x.reshape(4, 6), "reshape tuple -1": lambda x: x.reshape(3, -1),
    "view": lambda x: x.reshape(2, 12), "transpose default": lambda x: x.swapaxes(-2, -1),
    "transpose 0 2": lambda x: x.swapaxes(0, 2), "transpose -1 0": lambda x: x.swapaxes(-1, 0),
    "permute": lambda x: x.transpose(2, 0, 1), "permute tuple": lambda x: x.transpose(1, 2, 0),
    "permute negative": lambda x: x.transpose(0, 2, 1), "T": lambda x: x.transpose(2, 1, 0),
    "flatten": lambda x: x.reshape(-1), "flatten 1": lambda x: x.reshape(2, -1),
    "flatten 0 1": lambda x: x.reshape(6, 4), "flatten -2": lambda x: x.reshape(2, 12),
    "unsqueeze 0": lambda x: x[None], "unsqueeze -1": lambda x: x[..., None],
    "unsqueeze then squeeze": lambda x: x,
    "expand": lambda x: np.broadcast_to(x[:, :1], (2, 3, 4)),
    "expand -1 and new axis": lambda x: np.broadcast_to(x[:1], (5, 2, 3, 4)),
}


@pytest.mark.parametrize("name", SHAPE_OPS)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_shape_ops_values_and_gradients(name, layout):
    x = with_layout(random(2, 3, 4), layout)
    a = leaf(x)
    np.testing.assert_array_equal(SHAPE_OPS[name](a).data, NUMPY_SHAPE_OPS[name](x))
    assert gradcheck(SHAPE_OPS[name], [a])


def test_squeeze_all_and_one_axis():
    a = leaf(random(1, 3, 1, 2))
    assert a.squeeze().shape == (3, 2) and a.squeeze(0).shape == (3, 1, 2) and a.squeeze(-2).shape == (1, 3, 2)
    assert gradcheck(lambda t: t.squeeze() * t.squeeze(2).sum(0), [a])
    assert a.squeeze(1).shape == (1, 3, 1, 2)  # as in PyTorch, an axis longer than 1 stays
    assert a.squeeze((0, 1, 2)).shape == (3, 2)


def test_matrix_transpose_T():
    a = leaf(random(3, 5))
    np.testing.assert_array_equal(a.T.data, a.data.T)
    assert gradcheck(lambda t: t.T @ t, [a])


# ---------------------------------------------------------------------- elementwise functions
UNARY = {  # name: (op, numpy definition, elements that keep away from kinks and domain edges)
    "exp": (lambda t: t.exp(), np.exp, bounded_floats(-3, 3)),
    "log": (lambda t: t.log(), np.log, positive_floats()),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, positive_floats()),
    "abs": (lambda t: t.abs(), np.abs, away_from_zero()),
    "tanh": (lambda t: t.tanh(), np.tanh, bounded_floats(-3, 3)),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), bounded_floats(-5, 5)),
    "relu": (lambda t: t.relu(), lambda x: np.maximum(x, 0), away_from_zero()),
    "clamp": (lambda t: t.clamp(-0.5, 1.0), lambda x: np.clip(x, -0.5, 1.0), away_from([-0.5, 1.0])),
    "clamp min": (lambda t: t.clamp(min=0.25), lambda x: np.maximum(x, 0.25), away_from([0.25])),
    "clip max": (lambda t: t.clip(max=-0.25), lambda x: np.minimum(x, -0.25), away_from([-0.25])),
}


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_values_and_gradients(name, data):
    op, definition, elements = UNARY[name]
    x = data.draw(laid_out_arrays(shapes(), elements=elements))
    a = leaf(x)
    np.testing.assert_allclose(op(a).data, definition(x), rtol=1e-12, atol=1e-15)
    assert gradcheck(op, [a])


def test_kinks_use_pytorch_subgradients():
    a = leaf(np.array([-1.0, 0.0, 1.0]))
    a.relu().sum().backward()
    np.testing.assert_array_equal(a.grad, [0, 0, 1])  # relu'(0) = 0
    a.grad = None
    a.abs().sum().backward()
    np.testing.assert_array_equal(a.grad, [-1, 0, 1])  # sign(0) = 0
    a.grad = None
    a.clamp(-1.0, 0.0).sum().backward()
    np.testing.assert_array_equal(a.grad, [1, 1, 0])  # the bounds are inside: min <= x <= max


def test_sigmoid_does_not_overflow():
    a = leaf(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]))
    with np.errstate(over="raise"):
        out = a.sigmoid()
        out.sum().backward()
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(a.grad))
    np.testing.assert_allclose(out.data, [0, 1.9287498479639178e-22, 0.5, 1, 1], rtol=1e-12)
    np.testing.assert_allclose(a.grad, [0, 1.9287498479639178e-22, 0.25, 0, 0], rtol=1e-12)


def test_composite_expression():
    a, b = leaf(random(3, 4)), leaf(np.abs(random(4, seed=1)) + 0.5)
    assert gradcheck(lambda x, y: ((x * y).tanh() + (x / y).sigmoid() * y.log()).sum(axis=0) ** 2, [a, b])


# ---------------------------------------------------------------------- engine rules
def test_a_leaf_keeps_a_gradient_nothing_else_holds_and_copies_any_other():
    x = np.ones(3)
    assert owned(x) is x                                    # only the caller's name holds it
    alias = x
    assert owned(x) is not x and alias is x                 # a second name: copied
    view = np.ones((1, 3, 2)).reshape(3, 2)
    assert owned(view) is view                              # the only view of an array nothing else holds
    whole = np.ones(4)
    part = whole[1:]
    assert owned(part) is not part and owned(part).base is None         # a view of an array a name holds: copied
    t = np.ones((3, 2)).T
    assert owned(t) is not t and owned(t).flags.c_contiguous            # not C-contiguous: copied
    held = [np.ones(3)]
    assert owned(held[0]) is not held[0]                    # a container holds it: copied


def test_a_leaf_gradient_never_shares_memory_with_another_array():
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    ((a + b) * 2.0).sum().backward()                        # add hands one array to both leaves
    assert not np.shares_memory(a.grad, b.grad)
    np.testing.assert_array_equal(a.grad, [2, 2, 2])
    np.testing.assert_array_equal(b.grad, [2, 2, 2])
    upstream = np.arange(6.0)
    c = Tensor(np.ones(6), requires_grad=True)
    (c + 0.0).backward(upstream)                            # the caller's own array
    assert not np.shares_memory(c.grad, upstream)
    d = Tensor(np.ones((2, 3)), requires_grad=True)
    d.reshape(6).backward(upstream)                         # a view of it
    assert not np.shares_memory(d.grad, upstream)
    c.grad += 1                                             # and .grad is the leaf's to change
    np.testing.assert_array_equal(upstream, np.arange(6.0))


def test_gradients_accumulate_across_backward_calls_on_graphs_sharing_leaves():
    a, b = leaf(random(3)), leaf(random(3, seed=1))
    (a * b).sum().backward()
    (a + b * b).sum().backward()
    np.testing.assert_allclose(a.grad, b.data + 1)
    np.testing.assert_allclose(b.grad, a.data + 2 * b.data)
    a.zero_grad()
    assert a.grad is None


def test_a_node_used_twice_receives_the_sum_of_its_gradients():
    a = leaf(random(4))
    b = a + a
    c = b * b
    c.sum().backward()
    np.testing.assert_allclose(a.grad, 8 * a.data)  # c = 4 a^2


def test_diamond_graph_with_paths_of_different_lengths():
    a = leaf(random(3))
    y = a.exp()
    z = (y * a + y.tanh()).exp() * y
    z.sum().backward()
    e = np.exp(a.data)
    inner = e * a.data + np.tanh(e)
    expected = np.exp(inner) * (e * a.data + e + (1 - np.tanh(e) ** 2) * e) * e + np.exp(inner) * e
    np.testing.assert_allclose(a.grad, expected, rtol=1e-12)


def test_chain_of_ten_thousand_ops_does_not_hit_the_recursion_limit():
    x = leaf(np.array(0.5))
    y = x
    for _ in range(5_000):  # 10,000 ops: a multiply and an add each time
        y = (y * 1.0001) + 0.0
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 5_000, rtol=1e-10)


def test_only_leaves_keep_gradients():
    a = leaf(random(3))
    b = a * 2
    b.sum().backward()
    assert a.is_leaf and not b.is_leaf
    assert b.grad is None
    np.testing.assert_array_equal(a.grad, 2 * np.ones(3))


def test_backward_from_a_leaf():
    a = leaf(np.array(2.0))
    a.backward()
    assert a.grad == 1.0


def test_no_grad_builds_no_graph_and_restores_state_after_an_exception():
    a = leaf(random(3))
    with no_grad():
        assert not is_grad_enabled()
        b = (a * 2).exp().sum()
    assert is_grad_enabled()
    assert not b.requires_grad and b._parents == () and b.is_leaf
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()
    with no_grad():
        with no_grad():
            pass
        assert not is_grad_enabled()  # the inner block restores the outer state, not True
    assert (a * 2).requires_grad


def test_detach_shares_data_and_cuts_the_graph():
    a = leaf(random(3))
    d = a.detach()
    assert d.data is a.data and not d.requires_grad
    (d * a).sum().backward()
    np.testing.assert_array_equal(a.grad, a.data)  # d counts as a constant


def test_broadcasting_reduces_gradients_to_input_shapes():
    a, b, c = leaf(random(3, 1)), leaf(random(4, seed=1)), leaf(np.array(2.0))
    g = random(2, 3, 4, seed=2)
    (a * b + c).expand(2, 3, 4).backward(g)
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad, (g * b.data).sum(axis=(0, 2))[:, None])
    np.testing.assert_allclose(b.grad, (g * a.data).sum(axis=(0, 1)))
    np.testing.assert_allclose(c.grad, g.sum())


@given(broadcastable_pairs())
def test_unbroadcast_is_the_adjoint_of_broadcasting(pair):
    shape = pair[0]
    full = np.broadcast_shapes(*pair)
    g = np.random.default_rng(0).standard_normal(full)
    x = np.random.default_rng(1).standard_normal(shape)
    reduced = unbroadcast(g, shape)
    assert reduced.shape == shape
    # <g, broadcast(x)> = <unbroadcast(g), x>
    np.testing.assert_allclose(np.sum(g * np.broadcast_to(x, full)), np.sum(reduced * x), atol=1e-10)


def test_backward_needs_an_explicit_gradient_for_non_scalar_outputs():
    a = leaf(random(2, 3))
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (a * 2).backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (a * 2).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()


def test_comparisons_return_plain_boolean_arrays():
    a, b = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True), Tensor(np.array([3.0, 2.0, 1.0]))
    for result, expected in [(a < b, [1, 0, 0]), (a <= 2, [1, 1, 0]), (a > b, [0, 0, 1]),
                             (a >= 2.0, [0, 1, 1]), (a == b, [0, 1, 0]), (a != b, [1, 0, 1])]:
        assert type(result) is np.ndarray and result.dtype == bool
        np.testing.assert_array_equal(result, np.array(expected, dtype=bool))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(TypeError):
        sg.tensor([1, 2], requires_grad=True)


# ---------------------------------------------------------------------- dtypes
def test_constructor_dtypes():
    assert Tensor([1.0, 2.0]).dtype == np.float32 and Tensor(1.5).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64 and Tensor(np.ones(2, np.float32)).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.int64
    assert sg.tensor([1.0, 2.0]).dtype == np.float32 and sg.tensor(3.0).dtype == np.float32
    assert sg.tensor(np.ones(2)).dtype == np.float64 and sg.tensor(Tensor(np.ones(2))).dtype == np.float64
    assert Tensor(np.float64(1.0)).dtype == np.float64
    assert sg.zeros(2, 3).dtype == np.float32 and sg.ones((2,), dtype=np.float64).dtype == np.float64
    assert sg.randn(2, dtype=np.float64).dtype == np.float64 and sg.rand(3).dtype == np.float32


def test_tensor_copies_its_data():
    x = np.ones(3)
    t = sg.tensor(x)
    x[0] = 5.0
    assert t.data[0] == 1.0


FLOAT32_OPS = {
    "add scalar": lambda t: t + 1.5, "radd": lambda t: 1.5 + t, "rsub": lambda t: 1.0 - t,
    "mul scalar": lambda t: t * 2.5, "rmul": lambda t: 2.5 * t, "div scalar": lambda t: t / 3.0,
    "rdiv": lambda t: 2.0 / (t + 10.0), "pow": lambda t: t ** 2.0, "int pow": lambda t: t ** 3,
    "rpow": lambda t: 2.0 ** t, "neg": lambda t: -t, "exp": lambda t: t.exp(),
    "log": lambda t: (t * t + 1.0).log(), "sqrt": lambda t: (t * t + 1.0).sqrt(), "abs": lambda t: t.abs(),
    "tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(), "relu": lambda t: t.relu(),
    "clamp": lambda t: t.clamp(-0.5, 0.5), "sum": lambda t: t.sum(), "mean": lambda t: t.mean(axis=0),
    "max": lambda t: t.max(axis=1), "min": lambda t: t.min(), "index": lambda t: t[np.array([0, 0])],
    "reshape": lambda t: t.reshape(-1), "T": lambda t: t.T, "matmul": lambda t: t @ t.T,
    "expand": lambda t: t.unsqueeze(0).expand(2, 2, 3),
}


@pytest.mark.parametrize("name", FLOAT32_OPS)
def test_float32_stays_float32_including_gradients(name):
    a = Tensor(random(2, 3).astype(np.float32), requires_grad=True)
    out = FLOAT32_OPS[name](a)
    assert out.dtype == np.float32
    out.sum().backward()
    assert a.grad.dtype == np.float32


def test_float32_with_float64_promotes_and_gradients_keep_each_dtype():
    a = Tensor(random(3).astype(np.float32), requires_grad=True)
    b = Tensor(random(3, seed=1), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert (a + np.ones(3)).dtype == np.float64  # a float64 array is a float64 tensor
    assert (a + np.ones(3, dtype=np.int64)).dtype == np.float32


def test_float64_scalars_stay_float64():
    # NumPy returns 0-d results as NumPy scalars; they must not be narrowed to float32
    a = leaf(random(3))
    s = a.sum()
    assert s.dtype == np.float64 and a.mean().dtype == np.float64
    assert (s * s).dtype == np.float64 and (s / 3.0).exp().dtype == np.float64
    assert (s * s).item() == s.item() ** 2
    assert gradcheck(lambda t: (t.sum() * t.mean()).exp() + t.max(), [a])


def test_casts_are_differentiable_and_return_the_source_dtype():
    a = Tensor(random(3).astype(np.float32), requires_grad=True)
    d = a.double()
    assert d.dtype == np.float64 and d.float().dtype == np.float32 and a.to(np.float32) is a
    (d * d).sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_allclose(a.grad, 2 * a.data, rtol=1e-6)
