"""scratchgen.divergences: KL and JS on probability vectors, and the JS variational identity."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen.functional as F
from scratchgen import Tensor
from scratchgen.divergences import (cross_entropy, entropy, js, js_variational, kl, optimal_discriminator,
                                    reverse_kl_minus_2js, value)
from strategies import probability_vector_pairs, probability_vectors

LOG2 = math.log(2)


def kl_by_loop(p, q):
    """The definition, one outcome at a time, with 0 log 0 = 0 and p log(p/0) = inf."""
    total = 0.0
    for pi, qi in zip(p, q):
        if pi == 0:
            continue
        if qi == 0:
            return math.inf
        total += pi * math.log(pi / qi)
    return total


# ---------------------------------------------------------------------- KL
@given(probability_vector_pairs())
def test_kl_matches_the_definition_and_is_nonnegative(pq):
    p, q = pq
    expected = kl_by_loop(p, q)
    got = kl(p, q)
    if math.isinf(expected):
        assert got == np.inf
    else:
        assert abs(got - expected) < 1e-12
    assert got >= -1e-15
    assert abs(kl(p, p)) < 1e-15


@given(probability_vector_pairs())
def test_kl_is_cross_entropy_minus_entropy_so_fitting_q_is_maximum_likelihood(pq):
    """d_KL(p, q) = -E_p[log q] - H(p): only the first term depends on the model q."""
    p, q = pq
    support = p > 0
    by_loop = math.inf if np.any(q[support] == 0) else -sum(p[support] * np.log(q[support]))
    assert cross_entropy(p, q) == by_loop or abs(cross_entropy(p, q) - by_loop) < 1e-12
    assert abs(entropy(p) + sum(p[support] * np.log(p[support]))) < 1e-12
    assert kl(p, q) == math.inf if by_loop == math.inf else abs(kl(p, q) - (by_loop - entropy(p))) < 1e-12


def test_kl_zero_conventions():
    assert kl([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(math.log(2), abs=1e-15)  # 0 log 0 = 0
    assert kl([0.5, 0.5], [1.0, 0.0]) == np.inf                                            # q = 0 < p
    assert np.isfinite(kl([1.0, 0.0], [0.5, 0.5]))


def test_kl_and_js_broadcast_over_batches():
    p = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    q = np.array([0.5, 0.5])
    np.testing.assert_allclose(kl(p, q), [kl_by_loop(row, q) for row in p], rtol=1e-13)
    assert js(p, q).shape == (3,)
    np.testing.assert_allclose(js(p, q), [js(row, q) for row in p], rtol=1e-13)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="negative"):
        kl([1.2, -0.2], [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        js([0.3, 0.3], [0.5, 0.5])
    with pytest.raises(ValueError, match="same outcomes"):
        kl([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        js_variational([0.5, 0.5], [0.5, 0.5], [0.5, 1.5])
    with pytest.raises(ValueError, match="broadcast"):
        value([0.5, 0.5], [0.5, 0.5], [0.5, 0.5, 0.5])


# ---------------------------------------------------------------------- JS
@given(probability_vector_pairs())
def test_js_is_symmetric_bounded_and_matches_its_definition(pq):
    p, q = pq
    d = js(p, q)
    assert abs(d - js(q, p)) < 1e-14
    assert -1e-15 <= d <= LOG2 + 1e-15
    m = (p + q) / 2
    assert abs(d - (0.5 * kl_by_loop(p, m) + 0.5 * kl_by_loop(q, m))) < 1e-12
    assert abs(js(p, p)) < 1e-15


@given(st.integers(2, 6), st.data())
def test_js_is_log2_on_disjoint_supports(k, data):
    split = data.draw(st.integers(1, k - 1))
    p = np.r_[data.draw(probability_vectors(split, split, allow_zeros=False)), np.zeros(k - split)]
    q = np.r_[np.zeros(split), data.draw(probability_vectors(k - split, k - split, allow_zeros=False))]
    assert abs(js(p, q) - LOG2) < 1e-14
    assert kl(p, q) == np.inf


# ---------------------------------------------------------------------- the variational identity
@given(probability_vector_pairs())
def test_js_variational_at_the_optimal_discriminator_equals_js(pq):
    p, q = pq
    t_star = optimal_discriminator(p, q)
    assert np.all((t_star >= 0) & (t_star <= 1))
    assert abs(js_variational(p, q, t_star) - js(p, q)) < 1e-10
    # the GAN value at t* is 2 JS - 2 log 2
    assert abs(value(p, q, t_star) - (2 * js(p, q) - 2 * LOG2)) < 1e-10


@given(probability_vector_pairs(), st.data())
def test_js_variational_is_a_lower_bound_for_any_discriminator(pq, data):
    p, q = pq
    t = np.array(data.draw(st.lists(st.floats(0.01, 0.99), min_size=len(p), max_size=len(p))))
    t_star = optimal_discriminator(p, q)
    bound = js_variational(p, q, t)
    assert bound <= js(p, q) + 1e-12
    # strictly smaller when t differs from t* somewhere that carries probability
    if np.any((p + q > 0) & (np.abs(t - t_star) > 1e-3)):
        assert bound < js(p, q)


def test_js_variational_on_a_worked_example():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    t_star = optimal_discriminator(p, q)
    np.testing.assert_allclose(t_star, [1.0, 0.5, 0.0])
    # by hand: log 2 + ½ (½ log 1 + ½ log ½ + ½ log ½ + ½ log 1) = ½ log 2
    assert abs(js_variational(p, q, t_star) - 0.5 * LOG2) < 1e-15
    assert abs(js(p, q) - 0.5 * LOG2) < 1e-15
    # the constant discriminator t = ½ gives log 2 + ½ (-log 2) - ... = 0: no information
    assert abs(js_variational(p, q, np.full(3, 0.5))) < 1e-15
    assert optimal_discriminator([1.0, 0.0], [1.0, 0.0])[1] == 0.5  # p = q = 0 there: any t works


@given(st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_the_nonsaturating_gradient_at_the_optimal_discriminator_is_that_of_reverse_kl_minus_2js(k, seed):
    """Arjovsky & Bottou (2017): with t* = p/(p + q_θ) held fixed, the gradient in θ of the
    non-saturating loss -E_{q_θ}[log t*] equals the gradient of d_KL(q_θ, p) - 2 d_JS(p, q_θ).
    Here q_θ = softmax(θ) over k outcomes; autograd on one side, central differences on the other."""
    rng = np.random.default_rng(seed)
    p, theta0 = rng.dirichlet(np.ones(k)) * 0.98 + 0.02 / k, rng.standard_normal(k)
    q0 = _softmax(theta0)
    log_t_star = np.log(optimal_discriminator(p, q0))              # the discriminator, frozen at θ0
    theta = Tensor(theta0.copy(), requires_grad=True)
    (-(F.softmax(theta, dim=0) * Tensor(log_t_star)).sum()).backward()

    def objective(th):
        return reverse_kl_minus_2js(p, _softmax(th))

    h, numeric = 1e-6, np.empty(k)
    for i in range(k):
        e = np.zeros(k); e[i] = h
        numeric[i] = (objective(theta0 + e) - objective(theta0 - e)) / (2 * h)
    np.testing.assert_allclose(theta.grad, numeric, rtol=1e-6, atol=1e-8)
    # and it is not the gradient of the JS itself (the minimax generator's direction)
    js_grad = np.array([(js(p, _softmax(theta0 + h * np.eye(k)[i])) - js(p, _softmax(theta0 - h * np.eye(k)[i])))
                        / (2 * h) for i in range(k)])
    assert not np.allclose(theta.grad, 2 * js_grad, rtol=1e-3, atol=1e-6)


def _softmax(th):
    q = np.exp(th - th.max())
    return q / q.sum()


def test_js_stays_finite_when_a_density_underflows_to_subnormal_numbers():
    """A far Gaussian tail gives probabilities like 1e-320; halving them to form m = (p + q)/2 rounds
    to 0 and would make p log(p/m) infinite. The JS of two such vectors is still at most log 2."""
    p = np.array([0.5, 0.5 - 1e-300, 1e-300, 5e-324, 0.0])
    q = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    assert js(p, q) == pytest.approx(LOG2, abs=1e-12)
    assert np.isfinite(js(q, p)) and js(p, p) == pytest.approx(0.0, abs=1e-15)
