"""scratchgen.objectives: the ELBO (β, free bits, several samples), IWAE in chunks, GAN losses.

Each objective is compared with the same quantity written out directly in NumPy; gradients with
central differences; the GAN value on empirical samples with the exact discrete identity.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen as sg
import scratchgen.functional as F
from scratchgen import Tensor
from scratchgen.distributions import Bernoulli, Normal
from scratchgen.divergences import js, optimal_discriminator
from scratchgen.finite_differences import gradcheck
from scratchgen.objectives import (discriminator_loss, discriminator_value, elbo,
                                   generator_gradient_curves, generator_loss_nonsaturating,
                                   generator_loss_saturating, iwae_bound, js_lower_bound,
                                   log_importance_weights)
from strategies import logit_arrays

N, D, d = 4, 6, 3


def leaf(a):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def setup(seed=0):
    """Binary data x, an encoder output (μ, log σ²) and a linear Bernoulli decoder z -> q(x|z)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((N, D)) < 0.5).astype(np.float64)
    mu, log_var = leaf(rng.standard_normal((N, d))), leaf(0.3 * rng.standard_normal((N, d)))
    W, b = leaf(rng.standard_normal((D, d))), leaf(rng.standard_normal(D))
    return x, mu, log_var, W, b, (lambda z: Bernoulli(logits=F.linear(z, W, b)))


def direct_terms(x, mu, log_var, W, b, eps):
    """Reconstruction and KL per example in NumPy, eps of shape (S, N, d)."""
    z = mu + np.exp(0.5 * log_var) * eps
    logits = z @ W.T + b
    log_lik = (x * logits - np.logaddexp(0, logits)).sum(-1)      # Bernoulli log-likelihood, (S, N)
    kl_dim = 0.5 * (mu ** 2 + np.exp(log_var) - 1 - log_var)
    return log_lik.mean(0), kl_dim


# ---------------------------------------------------------------------- ELBO
@pytest.mark.parametrize("n_samples", [1, 5])
def test_elbo_terms_match_direct_computation(n_samples):
    x, mu, log_var, W, b, decoder = setup()
    eps = np.random.default_rng(1).standard_normal((n_samples, N, d))
    res = elbo(x, (mu, log_var), decoder, n_samples=n_samples, eps=eps)
    recon, kl_dim = direct_terms(x, mu.data, log_var.data, W.data, b.data, eps)
    assert res.reconstruction.shape == res.kl.shape == res.elbo.shape == (N,)
    np.testing.assert_allclose(res.reconstruction.data, recon, rtol=1e-12)
    np.testing.assert_allclose(res.kl_per_dim.data, kl_dim, rtol=1e-12)
    np.testing.assert_allclose(res.kl.data, kl_dim.sum(1), rtol=1e-12)
    np.testing.assert_allclose(res.elbo.data, recon - kl_dim.sum(1), rtol=1e-12)
    np.testing.assert_allclose(res.elbo_mean.item(), (recon - kl_dim.sum(1)).mean(), rtol=1e-12)
    np.testing.assert_allclose(res.loss.item(), -res.elbo_mean.item(), rtol=1e-12)


def test_elbo_gradients_match_finite_differences():
    x, mu, log_var, W, b, decoder = setup()
    eps = np.random.default_rng(2).standard_normal((2, N, d))
    assert gradcheck(lambda m, s, w, c: elbo(x, Normal(m, log_var=s), lambda z: Bernoulli(logits=F.linear(z, w, c)),
                                             n_samples=2, eps=eps, kl_weight=0.7).loss,
                     [mu, log_var, W, b])


def test_kl_weight_scales_only_the_kl_in_the_loss():
    x, mu, log_var, W, b, decoder = setup()
    eps = np.random.default_rng(3).standard_normal((1, N, d))
    for beta in (0.0, 0.25, 4.0):
        res = elbo(x, (mu, log_var), decoder, kl_weight=beta, eps=eps)
        expected = -(res.reconstruction.data.mean() - beta * res.kl.data.mean())
        np.testing.assert_allclose(res.loss.item(), expected, rtol=1e-12)
        np.testing.assert_allclose(res.elbo.data, res.reconstruction.data - res.kl.data, rtol=1e-12)


def test_free_bits_floor_each_dimensions_batch_mean_kl():
    """KL_term = Σ_j max(λ, mean_n KL_nj); dimensions under λ get no KL gradient."""
    x, mu, log_var, W, b, decoder = setup()
    mu.data[:, 0] *= 0.01          # dimension 0: KL ≈ small (below λ)
    log_var.data[:, 0] *= 0.01
    mu.data[:, 1] += 3.0           # dimension 1: KL well above λ
    eps = np.random.default_rng(4).standard_normal((1, N, d))
    lam = 0.5
    res = elbo(x, (mu, log_var), decoder, free_bits=lam, eps=eps)
    kl_bar = res.kl_per_dim.data.mean(0)
    assert kl_bar[0] < lam < kl_bar[1]
    np.testing.assert_allclose(res.kl_term.item(), np.maximum(kl_bar, lam).sum(), rtol=1e-12)
    np.testing.assert_allclose(res.loss.item(), -(res.reconstruction.data.mean() - res.kl_term.item()), rtol=1e-12)
    np.testing.assert_allclose(res.kl.data, res.kl_per_dim.data.sum(1), rtol=1e-12)  # true KL untouched

    res.loss.backward()
    g_free = mu.grad.copy()
    mu.grad = None
    elbo(x, (mu, log_var), decoder, kl_weight=0.0, eps=eps).loss.backward()
    g_recon = mu.grad.copy()
    mu.grad = None
    elbo(x, (mu, log_var), decoder, eps=eps).loss.backward()
    g_full = mu.grad.copy()
    below = kl_bar < lam
    np.testing.assert_allclose(g_free[:, below], g_recon[:, below], rtol=1e-12)   # KL gradient cut
    np.testing.assert_allclose(g_free[:, ~below], g_full[:, ~below], rtol=1e-12)  # unchanged above λ
    assert not np.allclose(g_full[:, below], g_recon[:, below])


def test_conditional_prior_uses_the_general_normal_kl():
    x, mu, log_var, W, b, decoder = setup()
    rng = np.random.default_rng(5)
    pm, plv = rng.standard_normal((N, d)), rng.standard_normal((N, d))
    res = elbo(x, (mu, log_var), decoder, prior=Normal(pm, log_var=plv), eps=np.zeros((1, N, d)))
    m, s = mu.data, log_var.data
    expected = 0.5 * (plv - s + (np.exp(s) + (m - pm) ** 2) / np.exp(plv) - 1)
    np.testing.assert_allclose(res.kl_per_dim.data, expected, rtol=1e-12)


def test_gaussian_decoder_distribution():
    x, mu, log_var, W, b, _ = setup()
    eps = np.random.default_rng(6).standard_normal((1, N, d))
    z = mu.data + np.exp(0.5 * log_var.data) * eps[0]
    mean = z @ W.data.T + b.data
    expected = (-0.5 * (np.log(2 * np.pi) - 0.5 + (x - mean) ** 2 / np.exp(-0.5))).sum(1)
    res2 = elbo(x, (mu, log_var), lambda z: Normal(F.linear(z, W, b), log_var=np.full((1, D), -0.5)), eps=eps)
    np.testing.assert_allclose(res2.reconstruction.data, expected, rtol=1e-12)


def test_elbo_reports_mistakes_clearly():
    x, mu, log_var, W, b, decoder = setup()
    with pytest.raises(ValueError, match="n_samples"):
        elbo(x, (mu, log_var), decoder, n_samples=0)
    with pytest.raises(ValueError, match="N = 3"):
        elbo(x[:3], (mu, log_var), decoder)
    with pytest.raises(TypeError, match=r"Bernoulli\(logits=net\(z\)\)"):
        elbo(x, (mu, log_var), lambda z: F.linear(z, W, b))      # logits, not a distribution
    with pytest.raises(ValueError, match="decoder output has shape"):
        elbo(x, (mu, log_var), lambda z: Bernoulli(logits=F.linear(z, W[:5], b[:5])))
    with pytest.raises(TypeError, match="Normal or a \\(mu, log_var\\) pair"):
        elbo(x, mu, decoder)


# ---------------------------------------------------------------------- IWAE
def test_iwae_chunking_does_not_change_the_estimate():
    x, mu, log_var, W, b, decoder = setup()
    k = 23
    eps = np.random.default_rng(7).standard_normal((k, N, d))
    full = iwae_bound(x, (mu, log_var), decoder, k, chunk_size=k, eps=eps)
    for chunk in (1, 7, 100):
        np.testing.assert_allclose(iwae_bound(x, (mu, log_var), decoder, k, chunk_size=chunk, eps=eps),
                                   full, rtol=1e-12)
    # equals log (1/k) Σ w_i written out directly
    log_w = log_importance_weights(x, (mu, log_var), decoder, k, eps=eps).data
    np.testing.assert_allclose(full, np.log(np.exp(log_w).mean(0)), rtol=1e-12)
    assert full.dtype == np.float64 and full.shape == (N,)


def test_iwae_with_one_sample_equals_the_elbo_estimator_on_that_sample():
    """IWAE_1 = log q_θ(x|z) + log p(z) - log q(z|x) at the single sample z (the ELBO's
    estimator with a Monte Carlo KL); its expectation is the ELBO."""
    x, mu, log_var, W, b, decoder = setup()
    eps = np.random.default_rng(8).standard_normal((1, N, d))
    recon, _ = direct_terms(x, mu.data, log_var.data, W.data, b.data, eps)
    z = mu.data + np.exp(0.5 * log_var.data) * eps[0]
    log_pz = (-0.5 * (np.log(2 * np.pi) + z ** 2)).sum(1)
    log_qz = (-0.5 * (np.log(2 * np.pi) + log_var.data + eps[0] ** 2)).sum(1)
    np.testing.assert_allclose(iwae_bound(x, (mu, log_var), decoder, 1, eps=eps), recon + log_pz - log_qz,
                               rtol=1e-12)


def test_iwae_5000_runs_in_chunks_of_bounded_size():
    x, mu, log_var, W, b, decoder = setup()
    rows = []

    def spying_decoder(z):
        rows.append(z.shape[0])
        return decoder(z)
    sg.manual_seed(0)
    out = iwae_bound(x, (mu, log_var), spying_decoder, 5000, chunk_size=250)
    assert max(rows) == 250 * N and sum(rows) == 5000 * N
    assert np.all(np.isfinite(out))
    sg.manual_seed(0)
    elbo_mc = np.mean([elbo(x, (mu, log_var), decoder).elbo.data for _ in range(50)], axis=0)
    assert np.all(out > elbo_mc)  # IWAE_5000 sits far above the ELBO here
    with pytest.raises(ValueError, match="k must be"):
        iwae_bound(x, (mu, log_var), decoder, 0)


# ---------------------------------------------------------------------- GAN
def softplus(a):
    return np.logaddexp(0, a)


@given(logit_arrays((5,), bound=30), logit_arrays((3,), bound=30))
def test_gan_objectives_match_their_definitions(real, fake):
    d_real, d_fake = 1 / (1 + np.exp(-real)), 1 / (1 + np.exp(-fake))
    v = discriminator_value(real, fake).item()
    # log σ(l) = -softplus(-l) and log(1 - σ(l)) = -softplus(l), the stable forms of log D, log(1-D)
    assert abs(v - (-softplus(-real).mean() - softplus(fake).mean())) < 1e-12
    if np.all(np.abs(real) <= 10) and np.all(np.abs(fake) <= 10):  # where the naive form is accurate
        assert abs(v - (np.log(d_real).mean() + np.log(1 - d_fake).mean())) < 1e-9 * (1 + abs(v))
    assert v <= 0
    assert abs(discriminator_loss(real, fake).item() + v) < 1e-15
    assert abs(js_lower_bound(real, fake).item() - (math.log(2) + v / 2)) < 1e-12
    assert abs(generator_loss_saturating(fake).item() + softplus(fake).mean()) < 1e-12
    assert abs(generator_loss_nonsaturating(fake).item() - softplus(-fake).mean()) < 1e-12


def test_gan_value_of_an_ignorant_discriminator_and_shapes():
    zeros = np.zeros(4)
    assert abs(discriminator_value(zeros, zeros).item() + 2 * math.log(2)) < 1e-15
    assert abs(js_lower_bound(zeros, zeros).item()) < 1e-15
    assert discriminator_value(np.zeros((4, 1)), np.zeros((3, 1))).shape == ()  # (N, 1) heads accepted
    with pytest.raises(ValueError, match="one logit per sample"):
        discriminator_value(np.zeros((4, 2)), zeros)
    real, fake = leaf(np.linspace(-2, 2, 4)), leaf(np.linspace(-1, 3, 3))
    assert gradcheck(discriminator_value, [real, fake])
    assert gradcheck(generator_loss_saturating, [fake])
    assert gradcheck(generator_loss_nonsaturating, [fake])


@given(st.integers(1, 6).flatmap(lambda n: logit_arrays((n,), bound=8.0)))
def test_discriminator_loss_is_twice_the_pooled_binary_cross_entropy(logits):
    """V is a sum of two per-class means, so on a balanced batch -V is twice the mean binary
    cross-entropy of the 2N pooled answers (real = 1, fake = 0) — the factor behind
    js_lower_bound = log 2 - loss / 2."""
    real, fake = logits, logits[::-1] - 0.5
    labels = np.concatenate([np.ones_like(real), np.zeros_like(fake)])
    both = np.concatenate([real, fake])
    # -[y log σ(l) + (1 - y) log(1 - σ(l))] = softplus(-l) for y = 1, softplus(l) for y = 0
    pooled = np.mean(labels * softplus(-both) + (1 - labels) * softplus(both))
    loss = discriminator_loss(real, fake).item()
    assert abs(loss - 2 * pooled) < 1e-12 * max(1.0, loss)
    assert abs(js_lower_bound(real, fake).item() - (math.log(2) - loss / 2)) < 1e-12 * max(1.0, loss)


@st.composite
def count_pairs(draw):
    """Integer counts of each outcome for the real and the fake sample (zeros allowed)."""
    k = draw(st.integers(2, 5))
    counts = [np.array(draw(st.lists(st.integers(0, 6), min_size=k, max_size=k))) for _ in range(2)]
    for c in counts:
        if c.sum() == 0:
            c[draw(st.integers(0, k - 1))] = 1
    return counts


@given(count_pairs())
def test_value_at_the_optimal_discriminator_is_2js_minus_2log2_on_empirical_samples(counts):
    """Real samples with outcome x repeated count_p[x] times (so p = count_p / n_p), fakes likewise;
    D outputs t*(x) = p/(p + q) as logits. Sample means are then exact expectations, so the GAN
    value equals 2 d_JS(p, q) - 2 log 2 and the JS lower bound is tight."""
    count_p, count_q = counts
    p, q = count_p / count_p.sum(), count_q / count_q.sum()
    t = optimal_discriminator(p, q)
    with np.errstate(divide="ignore"):
        logit = np.log(t) - np.log1p(-t)      # ±inf where t* is 0 or 1 (disjoint outcomes)
    real, fake = np.repeat(logit, count_p), np.repeat(logit, count_q)
    v = discriminator_value(real, fake).item()
    assert abs(v - (2 * js(p, q) - 2 * math.log(2))) < 1e-10
    assert abs(js_lower_bound(real, fake).item() - js(p, q)) < 1e-10


def test_saturating_generator_gradient_vanishes_when_d_rejects_fakes():
    """d/dl log(1 - σ(l)) = -σ(l) = -D(G(z)) -> 0 as D(G(z)) -> 0, while
    d/dl (-log σ(l)) = -(1 - D(G(z))) -> -1: the non-saturating loss still pushes."""
    logits = leaf(np.array([-12.0, -8.0, -4.0, 0.0, 4.0]))
    generator_loss_saturating(logits).backward()
    g_sat = logits.grad * logits.numel()
    logits.grad = None
    generator_loss_nonsaturating(logits).backward()
    g_non = logits.grad * logits.numel()
    d_fake = 1 / (1 + np.exp(-logits.data))
    np.testing.assert_allclose(g_sat, -d_fake, rtol=1e-12)
    np.testing.assert_allclose(g_non, -(1 - d_fake), rtol=1e-12)
    assert abs(g_sat[0]) < 1e-5 and abs(g_non[0] + 1) < 1e-5          # D(G(z)) ≈ 6e-6
    assert np.all(np.diff(np.abs(g_sat)) > 0)                          # vanishes as D -> 0
    curves = generator_gradient_curves(d_fake)
    np.testing.assert_allclose(curves["saturating"], g_sat, rtol=1e-12)
    np.testing.assert_allclose(curves["nonsaturating"], g_non, rtol=1e-10)
    with pytest.raises(ValueError):
        generator_gradient_curves([0.0, 0.5])
