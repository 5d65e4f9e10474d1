"""scratchgen.bayes: Bayes' rule p(y|x) = p(x, y) / Σ_y' p(x, y') in log space."""
import math

import numpy as np
import pytest
from hypothesis import given

from scratchgen import Tensor
from scratchgen.bayes import logsumexp, posterior_from_joint
from scratchgen.finite_differences import gradcheck
from strategies import bounded_floats, log_joints


def brute_force_posterior(log_joint):
    """Enumerate: p(y|x) = p(x, y) / Σ_y' p(x, y'), one x at a time, with Python floats."""
    out = np.zeros_like(log_joint)
    for i, row in enumerate(log_joint):
        joint = [math.exp(v) for v in row]  # values >= -30 - ... stay representable
        total = sum(joint)
        out[i] = [j / total for j in joint]
    return out


@given(log_joints())
def test_posterior_sums_to_one_and_equals_enumeration(table):
    log_post = posterior_from_joint(table, dim=1)
    assert log_post.shape == table.shape
    post = np.exp(log_post)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(post, brute_force_posterior(table), rtol=1e-10, atol=1e-300)
    assert np.all(post[np.isneginf(table)] == 0)  # p(x, y) = 0 gives p(y|x) = 0


@given(log_joints(allow_impossible=False))
def test_other_axis_and_tensor_input(table):
    np.testing.assert_allclose(posterior_from_joint(table.T, dim=0), posterior_from_joint(table, dim=1).T,
                               rtol=1e-12)
    t = Tensor(table.copy(), requires_grad=True)
    np.testing.assert_allclose(posterior_from_joint(t, dim=-1).data, posterior_from_joint(table, 1), rtol=1e-12)
    assert gradcheck(lambda a: posterior_from_joint(a, dim=1), [t])


@given(log_joints(allow_impossible=False), bounded_floats(-5000, 5000))
def test_posterior_is_unchanged_by_a_constant_and_never_overflows(table, shift):
    """Scaling p(x, ·) by e^shift (here up to e^5000, far past float range) changes nothing."""
    np.testing.assert_allclose(posterior_from_joint(table + shift, 1), posterior_from_joint(table, 1),
                               rtol=1e-9, atol=1e-9)


def test_generative_to_discriminative_two_gaussian_classes():
    """Two classes with x|y ~ N(μ_y, 1) and priors π_y: Bayes' rule gives the logistic posterior
    p(y=1|x) = σ((μ1 - μ0) x - (μ1² - μ0²)/2 + log(π1/π0))."""
    mu, prior = np.array([-1.0, 2.0]), np.array([0.3, 0.7])
    x = np.linspace(-4, 4, 9)[:, None]
    log_joint = -0.5 * (x - mu) ** 2 - 0.5 * math.log(2 * math.pi) + np.log(prior)
    p1 = np.exp(posterior_from_joint(log_joint, 1))[:, 1]
    a = (mu[1] - mu[0]) * x[:, 0] - (mu[1] ** 2 - mu[0] ** 2) / 2 + math.log(prior[1] / prior[0])
    np.testing.assert_allclose(p1, 1 / (1 + np.exp(-a)), rtol=1e-12)


def test_errors_and_logsumexp_edge_cases():
    with pytest.raises(ValueError, match="p\\(x\\) = 0"):
        posterior_from_joint(np.array([[0.0, -1.0], [-np.inf, -np.inf]]), 1)
    with pytest.raises(ValueError, match="nan"):
        posterior_from_joint(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="out of range"):
        posterior_from_joint(np.zeros((2, 3)), 2)
    assert logsumexp(np.array([-np.inf, -np.inf]), axis=0) == -np.inf
    assert logsumexp(np.array([1000.0, 1000.0]), axis=0) == pytest.approx(1000 + math.log(2), abs=1e-12)
