"""scratchgen.distributions: Normal, Bernoulli, Categorical and the closed-form KLs.

Monte Carlo checks use a seeded generator and a z-score: |estimate - exact| < 5 standard errors,
with the standard error computed from the same sample.
"""
import numpy as np
import pytest
from hypothesis import given, settings

import scratchgen as sg
from scratchgen import Tensor
from scratchgen.distributions import Bernoulli, Categorical, Normal, kl_divergence
from scratchgen.finite_differences import gradcheck
from strategies import bounded_floats, log_variances, logit_arrays, normal_params

Z = 5.0  # tolerance in standard errors


def z_score(samples, exact, axis=0):
    """(sample mean - exact) / standard error of the mean, along ``axis``."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    se = np.maximum(samples.std(axis=axis, ddof=1) / np.sqrt(n), 1e-12)  # NOTE: p = q has no spread
    return (samples.mean(axis=axis) - exact) / se


def variance_z_score(samples, claimed_var):
    """z-score of the sample variance against the claimed variance (per column).

    The sample variance is the mean of (z - z̄)²; its standard error is the standard deviation of
    (z - z̄)² over √n (estimated from the sample, so no Gaussian assumption is needed).
    """
    centred_sq = (samples - samples.mean(axis=0)) ** 2
    return z_score(centred_sq * len(samples) / (len(samples) - 1), claimed_var)


def leaf(a):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------------- Normal: construction
def test_normal_needs_exactly_one_of_log_var_and_std():
    with pytest.raises(ValueError, match="exactly one"):
        Normal(np.zeros(2))
    with pytest.raises(ValueError, match="both"):
        Normal(np.zeros(2), log_var=np.zeros(2), std=np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        Normal(np.zeros(2), std=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="broadcast"):
        Normal(np.zeros(2), log_var=np.zeros(3))


@given(normal_params((4,)))
def test_normal_std_and_log_var_parametrisations_agree(params):
    loc, log_var = params
    a = Normal(loc, log_var=log_var)
    b = Normal(loc, std=np.exp(0.5 * log_var))
    np.testing.assert_allclose(a.std.data, np.exp(0.5 * log_var), rtol=1e-14)
    np.testing.assert_allclose(b.log_var.data, log_var, atol=1e-13)
    np.testing.assert_allclose(a.variance.data, np.exp(log_var), rtol=1e-14)
    x = loc + 0.7
    expected = -0.5 * (np.log(2 * np.pi) + log_var + 0.49 / np.exp(log_var))
    np.testing.assert_allclose(a.log_prob(x).data, expected, rtol=1e-12)
    np.testing.assert_allclose(b.log_prob(x).data, expected, rtol=1e-12)
    np.testing.assert_allclose(a.entropy().data, 0.5 * (np.log(2 * np.pi * np.e) + log_var), rtol=1e-12)


def test_event_dims_sums_trailing_axes():
    rng = np.random.default_rng(0)
    loc, lv, x = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4)), rng.standard_normal((3, 2, 4))
    d = Normal(loc, log_var=lv)
    elementwise = d.log_prob(x).data
    assert elementwise.shape == (3, 2, 4)
    np.testing.assert_allclose(d.log_prob(x, event_dims=1).data, elementwise.sum(-1), rtol=1e-13)
    np.testing.assert_allclose(d.log_prob(x, event_dims=2).data, elementwise.sum((-1, -2)), rtol=1e-13)
    assert d.entropy(event_dims=1).shape == (3, 2)
    with pytest.raises(ValueError, match="event_dims"):
        d.log_prob(x, event_dims=4)


def test_normal_log_prob_and_entropy_gradients():
    rng = np.random.default_rng(1)
    loc, lv, x = leaf(rng.standard_normal(3)), leaf(rng.standard_normal(3)), leaf(rng.standard_normal(3))
    assert gradcheck(lambda m, s, v: Normal(m, log_var=s).log_prob(v), [loc, lv, x])
    std = leaf(np.exp(rng.standard_normal(3)))
    assert gradcheck(lambda m, s, v: Normal(m, std=s).log_prob(v), [loc, std, x])
    assert gradcheck(lambda s: Normal(np.zeros(3), log_var=s).entropy(), [lv])


def test_normal_density_integrates_to_one_and_entropy_matches_quadrature():
    loc, log_var = 0.3, np.log(0.8)
    grid = np.linspace(-12, 12, 200001)
    d = Normal(np.array(loc), log_var=np.array(log_var))
    log_p = d.log_prob(grid).data
    assert abs(np.trapezoid(np.exp(log_p), grid) - 1) < 1e-9
    assert abs(np.trapezoid(-np.exp(log_p) * log_p, grid) - d.entropy().item()) < 1e-9


# ---------------------------------------------------------------------- Normal: sampling
@settings(max_examples=15)
@given(normal_params((3,)))
def test_rsample_has_the_claimed_mean_and_variance(params):
    loc, log_var = params
    sg.manual_seed(0)
    z = Normal(loc, log_var=log_var).rsample((20000,)).data
    assert z.shape == (20000, 3)
    assert np.all(np.abs(z_score(z, loc)) < Z)
    assert np.all(np.abs(variance_z_score(z, np.exp(log_var))) < Z)


@pytest.mark.parametrize("log_var", [1.0, -1.5])
def test_variance_check_catches_exp_log_var_used_as_std(log_var):
    """The slip std = exp(log σ²) (instead of exp(½ log σ²)) samples with variance σ⁴ ≠ σ²."""
    loc = np.array([0.5])
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((20000, 1))
    buggy = loc + np.exp(log_var) * eps
    correct = Normal(loc, log_var=np.array([log_var])).rsample((20000,), eps=eps).data
    assert np.abs(variance_z_score(buggy, np.exp(log_var))) > 10 * Z
    assert np.abs(variance_z_score(correct, np.exp(log_var))) < Z


@settings(max_examples=15)
@given(bounded_floats(-1.5, 1.5), log_variances(), bounded_floats(-2, 2), bounded_floats(0.2, 2))
def test_reparameterised_gradient_is_unbiased_for_a_quadratic(mu, log_var, c, a):
    """f(z) = a z² + c z has E[f] = a(μ² + σ²) + c μ, so dE/dμ = 2aμ + c and dE/dlog σ² = a σ².

    The autograd gradient of (1/n) Σ f(z_i), z_i = μ + σ ε_i, must match within 5 standard
    errors, the standard error coming from the per-sample gradients (2a z_i + c)·(1, ½ σ ε_i).
    """
    n = 4000
    sg.manual_seed(1)
    m, s = leaf(mu), leaf(log_var)
    z = Normal(m, log_var=s).rsample((n,))
    f = (z * z * a + z * c).mean()
    f.backward()
    sigma = np.exp(0.5 * log_var)
    eps = (z.data - mu) / sigma
    per_mu = 2 * a * z.data + c
    per_lv = per_mu * 0.5 * sigma * eps
    np.testing.assert_allclose(m.grad, per_mu.mean(), rtol=1e-10)
    np.testing.assert_allclose(s.grad, per_lv.mean(), rtol=1e-10, atol=1e-12)
    assert abs(z_score(per_mu, 2 * a * mu + c)) < Z
    assert abs(z_score(per_lv, a * sigma ** 2)) < Z


def test_sample_has_no_gradient_and_is_seeded():
    d = Normal(leaf([0.0, 1.0]), log_var=leaf([0.0, 0.0]))
    sg.manual_seed(3)
    a = d.sample((4,))
    sg.manual_seed(3)
    b = d.rsample((4,))
    assert not a.requires_grad and b.requires_grad
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ValueError, match="eps has shape"):
        d.rsample((4,), eps=np.zeros((3, 2)))


# ---------------------------------------------------------------------- Bernoulli
@given(logit_arrays((5,)))
def test_bernoulli_log_prob_entropy_moments_match_direct_formulas(logits):
    d = Bernoulli(logits=logits)
    p = 1 / (1 + np.exp(-logits))
    for x in (np.zeros(5), np.ones(5)):
        np.testing.assert_allclose(d.log_prob(x).data, np.log(np.where(x == 1, p, 1 - p)), rtol=1e-10)
    np.testing.assert_allclose(d.entropy().data, -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-10)
    np.testing.assert_allclose(d.mean.data, p, rtol=1e-12)
    np.testing.assert_allclose(d.variance.data, p * (1 - p), rtol=1e-10)


def test_bernoulli_log_prob_is_stable_for_large_logits_and_differentiable():
    d = Bernoulli(logits=np.array([60.0, -60.0]))
    np.testing.assert_allclose(d.log_prob(np.array([0.0, 1.0])).data, [-60.0, -60.0], rtol=1e-12)
    logits = leaf(np.random.default_rng(0).standard_normal(4))
    x = Tensor(np.array([0.0, 1.0, 0.3, 1.0]))
    assert gradcheck(lambda l: Bernoulli(logits=l).log_prob(x), [logits])
    assert gradcheck(lambda l: Bernoulli(logits=l).entropy(), [logits])


def test_bernoulli_samples_have_the_claimed_mean_and_variance():
    logits = np.array([-2.0, 0.0, 1.5])
    sg.manual_seed(0)
    x = Bernoulli(logits=logits).sample((20000,)).data
    assert set(np.unique(x)) <= {0.0, 1.0}
    p = 1 / (1 + np.exp(-logits))
    assert np.all(np.abs(z_score(x, p)) < Z)
    assert np.all(np.abs(variance_z_score(x, p * (1 - p))) < Z)
    with pytest.raises(NotImplementedError):
        Bernoulli(logits=logits).rsample()
    with pytest.raises(ValueError, match="non-finite"):
        Bernoulli(logits=np.array([np.nan]))


# ---------------------------------------------------------------------- Categorical
@given(logit_arrays((2, 4)))
def test_categorical_log_prob_and_entropy_match_direct_formulas(logits):
    d = Categorical(logits=logits)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    idx = np.array([[0, 3], [2, 1], [3, 3]])  # (sample 3, batch 2)
    expected = np.log(p[np.arange(2), idx])
    np.testing.assert_allclose(d.log_prob(idx).data, expected, rtol=1e-10)
    np.testing.assert_allclose(d.entropy().data, -(p * np.log(p)).sum(-1), rtol=1e-10)
    np.testing.assert_allclose(np.exp(d.log_probs.data).sum(-1), 1.0, rtol=1e-12)


def test_categorical_samples_follow_the_probabilities():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]))
    sg.manual_seed(0)
    d = Categorical(logits=logits)
    draws = d.sample((20000,)).data
    assert draws.shape == (20000, 2) and draws.dtype == np.int64
    one_hot = (draws[..., None] == np.arange(4)).astype(np.float64)
    p = np.exp(logits)
    assert np.all(np.abs(z_score(one_hot, p)) < Z)  # E[one-hot] = p = d.mean
    np.testing.assert_allclose(d.mean.data, p, rtol=1e-12)
    assert np.all(np.abs(variance_z_score(one_hot.reshape(20000, -1), d.variance.data.ravel())) < Z)


def test_categorical_validates_indices_and_is_differentiable():
    d = Categorical(logits=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="integer"):
        d.log_prob(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        d.log_prob(np.array([0, 3]))
    logits = leaf(np.random.default_rng(0).standard_normal((2, 3)))
    assert gradcheck(lambda l: Categorical(logits=l).log_prob(np.array([2, 0])), [logits])
    assert gradcheck(lambda l: Categorical(logits=l).entropy(), [logits])


# ---------------------------------------------------------------------- KL divergence
@given(normal_params((3,)), normal_params((3,)))
def test_normal_kl_is_nonnegative_and_zero_on_itself(pp, qq):
    p, q = Normal(pp[0], log_var=pp[1]), Normal(qq[0], log_var=qq[1])
    assert np.all(kl_divergence(p, q).data >= -1e-15)
    np.testing.assert_allclose(kl_divergence(p, p).data, 0.0, atol=1e-15)


@given(logit_arrays((4,), bound=8.0), logit_arrays((4,), bound=8.0))
def test_bernoulli_kl_matches_direct_summation(a, b):
    pa, pb = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    direct = pa * np.log(pa / pb) + (1 - pa) * np.log((1 - pa) / (1 - pb))
    kl = kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b)).data
    np.testing.assert_allclose(kl, direct, rtol=1e-8, atol=1e-12)
    assert np.all(kl >= -1e-15)
    np.testing.assert_allclose(kl_divergence(Bernoulli(logits=a), Bernoulli(logits=a)).data, 0.0, atol=1e-15)


@given(logit_arrays((2, 5)), logit_arrays((2, 5)))
def test_categorical_kl_matches_direct_summation(a, b):
    pa = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
    direct = (pa * np.log(pa / pb)).sum(-1)
    kl = kl_divergence(Categorical(logits=a), Categorical(logits=b)).data
    np.testing.assert_allclose(kl, direct, rtol=1e-9, atol=1e-12)
    assert np.all(kl >= -1e-15)
    np.testing.assert_allclose(kl_divergence(Categorical(logits=a), Categorical(logits=a)).data, 0.0, atol=1e-15)


def test_kl_from_logits_is_stable_where_probabilities_round_to_one():
    # p = σ(40) rounds to 1 in float64 and q = σ(-40) ≈ e^-40: KL = log(1/q) + O(e^-40) = 40.
    kl = kl_divergence(Bernoulli(logits=np.array([40.0])), Bernoulli(logits=np.array([-40.0]))).item()
    assert abs(kl - 40.0) < 1e-10
    kl = kl_divergence(Categorical(logits=np.array([0.0, -300.0])),
                       Categorical(logits=np.array([-300.0, 0.0]))).item()
    assert abs(kl - 300.0) < 1e-9


@settings(max_examples=10)
@given(normal_params((2,)), normal_params((2,)))
def test_normal_kl_matches_monte_carlo(pp, qq):
    p, q = Normal(pp[0], log_var=pp[1]), Normal(qq[0], log_var=qq[1])
    sg.manual_seed(2)
    z = p.sample((20000,))
    log_ratio = (p.log_prob(z) - q.log_prob(z)).data            # (n, 2): per-dimension estimates
    assert np.all(np.abs(z_score(log_ratio, kl_divergence(p, q).data)) < Z)


@settings(max_examples=10)
@given(normal_params((1,)), normal_params((1,)))
def test_normal_kl_matches_quadrature_in_one_dimension(pp, qq):
    p, q = Normal(pp[0], log_var=pp[1]), Normal(qq[0], log_var=qq[1])
    grid = np.linspace(-25, 25, 400001)
    log_p, log_q = p.log_prob(grid[:, None]).data[:, 0], q.log_prob(grid[:, None]).data[:, 0]
    quad = np.trapezoid(np.exp(log_p) * (log_p - log_q), grid)
    assert abs(quad - kl_divergence(p, q).item()) < 1e-8


def test_kl_gradients_and_standard_normal_special_case():
    rng = np.random.default_rng(4)
    m1, s1, m2, s2 = (leaf(rng.standard_normal(3)) for _ in range(4))
    assert gradcheck(lambda a, b, c, d: kl_divergence(Normal(a, log_var=b), Normal(c, log_var=d)),
                     [m1, s1, m2, s2])
    std_normal = Normal(np.zeros(3), log_var=np.zeros(3))
    kl = kl_divergence(Normal(m1.data, log_var=s1.data), std_normal).data
    np.testing.assert_allclose(kl, 0.5 * (m1.data ** 2 + np.exp(s1.data) - 1 - s1.data), rtol=1e-12)
    a, b = leaf(rng.standard_normal((2, 3))), leaf(rng.standard_normal((2, 3)))
    assert gradcheck(lambda x, y: kl_divergence(Bernoulli(logits=x), Bernoulli(logits=y)), [a, b])
    assert gradcheck(lambda x, y: kl_divergence(Categorical(logits=x), Categorical(logits=y)), [a, b])
    assert kl_divergence(Normal(m1, log_var=s1), std_normal, event_dims=1).shape == ()


def test_unsupported_pair_names_the_supported_ones():
    with pytest.raises(ValueError, match="Normal–Normal.*Bernoulli–Bernoulli.*Categorical–Categorical"):
        kl_divergence(Normal(np.zeros(2), log_var=np.zeros(2)), Bernoulli(logits=np.zeros(2)))


@pytest.mark.parametrize("k", [2, 5, 32, 512])
def test_kl_of_a_one_hot_posterior_from_a_uniform_prior_is_log_k(k):
    """VQ-VAE's posterior puts all its mass on one code: KL(one-hot, uniform over K) = log K,
    whichever code it is — a constant, so the ELBO's KL term does not train anything."""
    from scratchgen.divergences import kl
    for code in (0, k - 1):
        one_hot = np.eye(k)[code]
        assert abs(kl(one_hot, np.full(k, 1.0 / k)) - np.log(k)) < 1e-12
        logits = np.where(np.arange(k) == code, 0.0, -1e3)    # one-hot up to e^-1000
        value = kl_divergence(Categorical(logits=logits), Categorical(logits=np.zeros(k))).item()
        assert abs(value - np.log(k)) < 1e-12
