"""The gradient checker itself: it must pass correct rules and catch wrong ones.

A checker that never fails proves nothing, so most tests here build an op with a deliberately
wrong backward rule (``Tensor.from_op``) and assert that gradcheck reports it precisely.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

import scratchgen as sg
from scratchgen import Tensor
from scratchgen.finite_differences import GradcheckError, gradcheck, numerical_gradient
from strategies import laid_out_arrays, shapes, with_layout

ROOT = Path(__file__).resolve().parent.parent


def leaf(array):
    return Tensor(array, requires_grad=True)


def cube_with_factor(factor, wrong_at=None):
    """x³ whose backward is ``factor`` times the true one (everywhere, or at one index only)."""
    def fn(x):
        a = x.data

        def backward(g):
            grad = 3 * a * a * g
            if wrong_at is None:
                return (factor * grad,)
            grad = grad.copy()
            grad[wrong_at] *= factor
            return (grad,)
        return Tensor.from_op(a ** 3, (x,), backward, "cube")
    return fn


def product_with_factor_on_second(factor):
    """x * y whose rule for y is off by ``factor`` (x's rule is right)."""
    def fn(x, y):
        a, b = x.data, y.data
        return Tensor.from_op(a * b, (x, y), lambda g: (g * b, factor * g * a), "mul")
    return fn


def parse(message):
    match = re.search(r"input (\d+) \(shape (.*?)\) at index (\(.*?\)): analytic (\S+) vs numerical (\S+);",
                      message)
    assert match, message
    k, shape, index, analytic, numerical = match.groups()
    return int(k), shape, ast.literal_eval(index), float(analytic), float(numerical)


def test_passes_a_correct_rule_and_returns_true():
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)))
    assert gradcheck(cube_with_factor(1.0), [x]) is True


def test_catches_a_factor_of_two_and_names_input_index_and_values():
    rng = np.random.default_rng(1)
    x, y = leaf(rng.standard_normal((3, 4))), leaf(rng.standard_normal((3, 4)))
    with pytest.raises(GradcheckError) as info:
        gradcheck(product_with_factor_on_second(2.0), [x, y])
    message = str(info.value)
    k, shape, index, analytic, numerical = parse(message)
    assert k == 1 and shape == "(3, 4)" and len(index) == 2
    assert all(type(i) is int for i in index)
    # the reported element is the worst one, with the upstream-weighted true gradient
    np.testing.assert_allclose(analytic, 2 * numerical, rtol=1e-6)
    np.testing.assert_allclose(numerical, y.grad[index] / 2, rtol=1e-6)
    assert index == np.unravel_index(np.argmax(np.abs(y.grad)), y.shape)
    assert "worst absolute error" in message and "worst relative error" in message
    assert "12 of 12 elements" in message


@pytest.mark.parametrize("factor", [2.0, 0.5, -1.0, 1.01, 0.0])
def test_catches_wrong_rules_of_any_size(factor):
    x = leaf(np.random.default_rng(2).standard_normal(5) + 2.0)
    with pytest.raises(GradcheckError):
        gradcheck(cube_with_factor(factor), [x])


def test_names_the_single_wrong_element():
    x = leaf(np.random.default_rng(3).standard_normal((3, 4)) + 2.0)
    with pytest.raises(GradcheckError) as info:
        gradcheck(cube_with_factor(2.0, wrong_at=(1, 2)), [x])
    k, shape, index, analytic, numerical = parse(str(info.value))
    assert (k, index) == (0, (1, 2))
    assert "1 of 12 elements" in str(info.value)


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_non_contiguous_inputs_are_checked_element_by_element(layout):
    x = leaf(with_layout(np.random.default_rng(4).standard_normal((3, 4)) + 2.0, layout))
    assert not x.data.flags.c_contiguous
    before = x.data.copy()
    assert gradcheck(cube_with_factor(1.0), [x])
    np.testing.assert_array_equal(x.data, before)  # every perturbation was undone
    with pytest.raises(GradcheckError) as info:
        gradcheck(cube_with_factor(3.0, wrong_at=(2, 1)), [x])
    assert parse(str(info.value))[2] == (2, 1)  # logical index, whatever the memory layout


@given(laid_out_arrays(shapes()))
def test_numerical_gradient_matches_the_known_derivative(x):
    u = np.random.default_rng(5).standard_normal(x.shape)
    numerical = numerical_gradient(lambda t: t * t * t, [Tensor(x)], 0, u)
    np.testing.assert_allclose(numerical, 3 * x * x * u, rtol=1e-6, atol=1e-8)


def test_uses_a_random_upstream_gradient_for_non_scalar_outputs():
    # a rule that reverses the upstream gradient is right for an all-ones upstream only
    def flip(x):
        return Tensor.from_op(x.data.copy(), (x,), lambda g: (g[::-1],), "flip")
    x = leaf(np.arange(4.0))
    flip(x).backward(np.ones(4))
    np.testing.assert_array_equal(x.grad, np.ones(4))
    with pytest.raises(GradcheckError):
        gradcheck(flip, [x])


def test_nan_gradients_fail():
    def nan_rule(x):
        return Tensor.from_op(x.data * 2, (x,), lambda g: (g * np.nan,), "nan")
    with pytest.raises(GradcheckError, match="nan"):
        gradcheck(nan_rule, [leaf(np.ones(3))])


def test_missing_gradient_counts_as_zero_and_fails():
    def cut(x):  # forgets to connect the output to x
        return Tensor.from_op(x.data * 2, (x,), lambda g: (None,), "cut")
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: cut(x).sum(), [leaf(np.ones(3))])
    k, shape, index, analytic, numerical = parse(str(info.value))
    assert analytic == 0 and numerical == pytest.approx(2, rel=1e-6)


def test_checks_only_inputs_that_require_grad():
    x, y = leaf(np.random.default_rng(6).standard_normal(3)), Tensor(np.ones(3))
    assert gradcheck(product_with_factor_on_second(2.0), [x, y])  # y's wrong rule is never used
    with pytest.raises(ValueError, match="no input has requires_grad"):
        gradcheck(lambda a: a * 2, [Tensor(np.ones(3))])


def test_rejects_float32_inputs():
    with pytest.raises(TypeError, match="input 1 has dtype float32"):
        gradcheck(lambda a, b: a * b, [leaf(np.ones(2)), leaf(np.ones(2, dtype=np.float32))])


def test_is_exported_at_the_top_level():
    assert sg.gradcheck is gradcheck


def test_demo_runs_and_every_row_is_ok():
    result = subprocess.run([sys.executable, "-m", "scratchgen.finite_differences"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "function" in lines[0] and "result" in lines[0]
    rows = lines[1:]
    assert len(rows) >= 8
    for row in rows:
        assert row.split()[-1] == "ok", result.stdout
