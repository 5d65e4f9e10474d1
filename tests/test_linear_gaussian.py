"""scratchgen.linear_gaussian: exact log p(x) and posterior, and the bounds checked against them.

On this model the ELBO and IWAE code (written for neural networks) run unchanged through
``model.decoder``, and everything they estimate is known exactly.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen as sg
from scratchgen.linear_gaussian import LinearGaussian
from scratchgen.objectives import elbo, iwae_bound
from strategies import bounded_floats

Z = 5.0


def mc(samples, axis=-1):
    """(mean, standard error) along ``axis``."""
    n = samples.shape[axis]
    return samples.mean(axis), samples.std(axis, ddof=1) / np.sqrt(n)


def model_and_data(seed=0, D=5, d=2, n=3, noise_std=0.7):
    model = LinearGaussian.random(D, d, noise_std=noise_std, seed=seed)
    x, _ = model.sample(n, np.random.default_rng(seed + 100))
    return model, x


def log_normal_full(x, mean, cov):
    diff = x - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (len(x) * np.log(2 * np.pi) + logdet + diff @ np.linalg.solve(cov, diff))


# ---------------------------------------------------------------------- exact quantities
def test_log_prob_matches_the_gaussian_density_and_one_dimensional_quadrature():
    model, x = model_and_data()
    C = model.W @ model.W.T + model.noise_var * np.eye(5)
    np.testing.assert_allclose(model.log_prob(x), [log_normal_full(row, model.b, C) for row in x], rtol=1e-12)
    # 1-D: p(x) = ∫ N(z; 0, 1) N(x; w z + b, σ²) dz by the trapezoid rule
    m1 = LinearGaussian([[1.3]], [0.4], noise_std=0.6)
    grid = np.linspace(-12, 12, 200001)
    for xv in (-2.0, 0.1, 3.5):
        integrand = np.exp(-0.5 * grid ** 2 - 0.5 * ((xv - 1.3 * grid - 0.4) / 0.6) ** 2) / (2 * np.pi * 0.6)
        assert abs(np.log(np.trapezoid(integrand, grid)) - m1.log_prob([[xv]])[0]) < 1e-10


def test_posterior_satisfies_bayes_rule_at_every_z():
    """log p(z) + log p(x|z) - log p(z|x) = log p(x), whatever z is (Bayes' rule, rearranged)."""
    model, x = model_and_data()
    m, S = model.posterior(x)
    rng = np.random.default_rng(1)
    for i, row in enumerate(x):
        for z in rng.standard_normal((4, 2)) * 2:
            log_joint = log_normal_full(z, np.zeros(2), np.eye(2)) + \
                log_normal_full(row, model.W @ z + model.b, model.noise_var * np.eye(5))
            assert abs(log_joint - log_normal_full(z, m[i], S) - model.log_prob(row[None])[0]) < 1e-10


def test_sample_matches_the_marginal_covariance():
    model = LinearGaussian.random(3, 2, noise_std=0.5, seed=2)
    sg.manual_seed(0)
    x, z = model.sample(40000)
    assert z.shape == (40000, 2)
    centred = x - model.b
    products = np.einsum("ni,nj->ijn", centred, centred).reshape(9, -1)   # x_i x_j per sample
    mean, se = mc(products)
    assert np.all(np.abs(mean - model.marginal_cov().ravel()) < Z * se)


def test_errors():
    with pytest.raises(ValueError, match="noise_std"):
        LinearGaussian(np.ones((2, 1)), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="features"):
        LinearGaussian(np.ones((2, 1)), np.zeros(2), 1.0).log_prob(np.zeros((1, 3)))


# ---------------------------------------------------------------------- the ELBO
@st.composite
def gaussian_qs(draw, d=2):
    """A Gaussian q = N(m, S) with a random mean and a random positive-definite covariance."""
    m = np.array(draw(st.lists(bounded_floats(-2, 2), min_size=d, max_size=d)))
    A = np.array(draw(st.lists(bounded_floats(-1, 1), min_size=d * d, max_size=d * d))).reshape(d, d)
    return m, A @ A.T + 0.05 * np.eye(d)


@given(gaussian_qs())
def test_elbo_never_exceeds_log_p_and_the_gap_is_kl_to_the_posterior(q):
    model, x = model_and_data()
    q_mean, q_cov = q
    bound = model.elbo(x, q_mean, q_cov)
    log_p = model.log_prob(x)
    assert np.all(bound <= log_p + 1e-12)
    # the gap is d_KL(q, p(z|x)) for two full Gaussians
    m, S = model.posterior(x)
    Sinv = np.linalg.inv(S)
    for i in range(len(x)):
        diff = m[i] - q_mean
        kl = 0.5 * (np.trace(Sinv @ q_cov) + diff @ Sinv @ diff - 2
                    + np.linalg.slogdet(S)[1] - np.linalg.slogdet(q_cov)[1])
        assert abs(log_p[i] - bound[i] - kl) < 1e-9


def test_elbo_equals_log_p_at_the_exact_posterior():
    model, x = model_and_data()
    m, S = model.posterior(x)
    np.testing.assert_allclose(model.elbo(x, m, S), model.log_prob(x), rtol=0, atol=1e-10)
    assert np.all(model.elbo(x, m, 1.5 * S) < model.log_prob(x) - 1e-3)


def diagonal_q(model, x, scale=4.0, shift=0.3):
    """A diagonal Gaussian q: the posterior mean shifted, the posterior variances inflated."""
    m, S = model.posterior(x)
    return m + shift, np.broadcast_to(np.diag(S) * scale, m.shape).copy()


def test_monte_carlo_elbo_agrees_with_the_closed_form():
    """objectives.elbo with a Gaussian likelihood, one sample per row, R rows per x."""
    model, x = model_and_data()
    q_mean, q_var = diagonal_q(model, x)
    R = 4000
    sg.manual_seed(0)
    res = elbo(np.repeat(x, R, 0), (np.repeat(q_mean, R, 0), np.log(np.repeat(q_var, R, 0))),
               model.decoder)
    mean, se = mc(res.elbo.data.reshape(3, R))
    exact = model.elbo(x, q_mean, np.stack([np.diag(v) for v in q_var]))
    assert np.all(np.abs(mean - exact) < Z * se)
    assert np.all(exact < model.log_prob(x))


def test_iwae_rises_towards_log_p_as_k_grows():
    """E[IWAE_1] = ELBO < E[IWAE_10] < E[IWAE_100] <= log p(x) (Burda et al. 2016, Thm. 1),
    each expectation estimated from R independent repeats, compared in standard errors."""
    model, x = model_and_data()
    q_mean, q_var = diagonal_q(model, x)
    R = 2000
    xr, mr, lvr = np.repeat(x, R, 0), np.repeat(q_mean, R, 0), np.log(np.repeat(q_var, R, 0))
    sg.manual_seed(1)
    means, ses = {}, {}
    for k in (1, 10, 100):
        est = iwae_bound(xr, (mr, lvr), model.decoder, k).reshape(3, R)
        means[k], ses[k] = mc(est)
    log_p = model.log_prob(x)
    exact_elbo = model.elbo(x, q_mean, np.stack([np.diag(v) for v in q_var]))
    assert np.all(np.abs(means[1] - exact_elbo) < Z * ses[1])
    for small, large in ((1, 10), (10, 100)):
        se_diff = np.sqrt(ses[small] ** 2 + ses[large] ** 2)
        assert np.all(means[large] - means[small] > Z * se_diff), (small, large, means, ses)
    assert np.all(means[100] < log_p + Z * ses[100])
    assert np.all(log_p - means[100] < 0.1 * (log_p - exact_elbo))  # most of the gap is closed
