"""The 1-D JS lab: exact JS by quadrature, a trained discriminator's bound, saturating gradients."""
import math

import numpy as np
import pytest

from scratchgen.data.toy import GaussianMixture1D
from scratchgen.labs import js_lab
from scratchgen.objectives.gan import generator_gradient_curves

P, Q = js_lab.default_data(), js_lab.default_model()


def test_quadrature_js_agrees_with_monte_carlo_and_its_limits():
    exact = js_lab.exact_js(P, Q)
    assert abs(exact - js_lab.exact_js(P, Q, js_lab.grid(n=32001))) < 1e-9     # the grid is fine enough
    rng = np.random.default_rng(0)
    n = 200_000
    xp, xq = P.sample(n, rng=rng), Q.sample(n, rng=rng)
    a = np.log(2 * P.pdf(xp) / (P.pdf(xp) + Q.pdf(xp)))       # ½ KL(p, m) integrand under p
    b = np.log(2 * Q.pdf(xq) / (P.pdf(xq) + Q.pdf(xq)))       # ½ KL(q, m) integrand under q
    mc, se = 0.5 * (a.mean() + b.mean()), 0.5 * math.sqrt(a.var() / n + b.var() / n)
    assert abs(mc - exact) < 4 * se
    assert js_lab.exact_js(P, P) == pytest.approx(0.0, abs=1e-12)
    far = GaussianMixture1D([15.0], [0.5])
    assert js_lab.exact_js(GaussianMixture1D([-15.0], [0.5]), far) == pytest.approx(math.log(2), abs=1e-9)


def test_optimal_discriminator_on_the_grid_is_p_over_p_plus_q():
    x = np.linspace(-5, 5, 101)
    assert np.allclose(js_lab.optimal_discriminator(P, Q, x), P.pdf(x) / (P.pdf(x) + Q.pdf(x)), atol=1e-12)


def test_trained_discriminator_bound_reaches_the_exact_js_within_sampling_error():
    """The sample estimate of log 2 + ½(E_p log D + E_q log(1 − D)) on 20,000 held-out points each is
    within 3 standard errors of the exact JS; by quadrature the bound of this D never exceeds the
    JS, and falls short of it by less than one standard error (D is close to optimal)."""
    _, hist = js_lab.train_discriminator(P, Q, steps=600, batch=512, lr=1e-2, eval_every=600, seed=0)
    js, bound, se, exact_bound = hist["js"], hist["bound"][-1], hist["se"][-1], hist["bound_exact"]
    assert 0.05 < js < 0.3
    assert abs(bound - js) <= 3 * se
    assert bound <= js + 3 * se
    assert exact_bound[-1] <= js + 1e-12
    assert js - exact_bound[-1] < se
    assert exact_bound[0] < exact_bound[-1] - 0.05          # it rose from the untrained D's bound


def test_generator_gradients_measured_by_autograd_match_the_formulas():
    d = np.linspace(0.01, 0.99, 23)
    measured, formula = js_lab.measured_generator_gradients(d), generator_gradient_curves(d)
    for name in ("saturating", "nonsaturating"):
        assert np.allclose(measured[name], formula[name], rtol=0, atol=1e-12)
    assert np.allclose(measured["saturating"], -d) and np.allclose(measured["nonsaturating"], d - 1)


def test_saturating_generator_stalls_where_the_non_saturating_one_learns():
    """From a generator far from the data (D already rejecting its samples), 150 generator steps:
    the minimax loss's gradient has all but vanished and the JS stays at log 2; the non-saturating
    loss pulls q_θ onto the data."""
    runs = {loss: js_lab.train_gan_1d(P, loss=loss, steps=150, eval_every=150, seed=0)
            for loss in ("minimax", "non-saturating")}
    sat, ns = runs["minimax"], runs["non-saturating"]
    assert sat["d_fake"][0] < 0.05                         # D rejects the fakes before the game starts
    assert sat["js"][-1] > math.log(2) - 1e-3
    assert ns["js"][-1] < 0.5 * math.log(2)
    assert sat["grad_norm"][-1] < 0.05 * max(ns["grad_norm"])
    assert abs(sat["mu"][-1] - 7.0) < 0.5 and abs(ns["mu"][-1]) < 3.0


def test_lab_command_writes_its_figures(tmp_path, capsys):
    assert js_lab.main(["--out", str(tmp_path), "--steps", "30", "--gan-steps", "20"]) == 0
    names = {"js-bound.png", "js-discriminator.png", "gan-generator-gradients.png", "gan-1d-saturation.png"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    assert "exact JS (quadrature)" in capsys.readouterr().out


def test_expectations_under_the_pushforward_are_averages_over_noise():
    """E_{x~q_θ}[f(x)] = E_{ω~p_ω}[f(g_θ(ω))] (lecture 5, §5.1), for the generator whose pushforward
    is known, q_θ = N(μ, s²): with f(x) = exp(x/2) both sides equal exp(μ/2 + s²/8), and the gradient
    in μ of the noise average, by autograd, is half of that. Tolerances: 4 standard errors."""
    mu, s, n = 1.0, 0.5, 200_000
    g = js_lab.GaussianGenerator(mu=mu, s=s)
    omega = np.random.default_rng(0).standard_normal(n)
    exact = math.exp(mu / 2 + s * s / 8)
    xs = np.linspace(mu - 12 * s, mu + 12 * s, 40001)
    by_density = np.sum(np.exp(xs / 2) * g.density().pdf(xs)) * (xs[1] - xs[0])
    assert abs(by_density - exact) < 1e-9                          # the density side, by quadrature
    samples = g(omega)
    average = (samples * 0.5).exp().mean()                         # the noise side
    se = float(np.exp(samples.data / 2).std()) / math.sqrt(n)
    assert abs(average.item() - exact) < 4 * se
    average.backward()                                             # and its gradient, through g_θ
    assert abs(g.mu.grad[0] - exact / 2) < 4 * se / 2
