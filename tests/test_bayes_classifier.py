"""Classifying by Bayes' rule, p(y|x) ∝ p(x|y) p(y), on a toy whose class-conditional densities are
known exactly: three 2-D linear-Gaussian latent-variable models (one per class) with unequal class
frequencies. With the exact log p(x|y) the rule is the Bayes-optimal classifier; with log p(x|y)
estimated by importance sampling (as for a CVAE) it must reach the same accuracy within sampling
error."""
import math

import numpy as np
import pytest

from scratchgen.evaluation import bayes_classifier as bc
from scratchgen.evaluation.vae_metrics import iwae_log_likelihood
from scratchgen.linear_gaussian import LinearGaussian
from scratchgen.random import manual_seed
from scratchgen.autograd import Tensor
from scratchgen.distributions import Normal

PRIOR = np.array([0.5, 0.3, 0.2])


@pytest.fixture(scope="module")
def classes():
    """p(x|y) = ∫ N(x; W_y z + b_y, σ² I) N(z; 0, 1) dz, overlapping enough that the Bayes error is
    far from 0 (so a wrong prior or a wrong density would show)."""
    W = [np.array([[1.0], [0.3]]), np.array([[0.2], [1.0]]), np.array([[0.7], [-0.7]])]
    b = [np.array([0.0, 0.0]), np.array([1.2, 0.4]), np.array([0.3, 1.3])]
    return [LinearGaussian(w, c, noise_std=0.5) for w, c in zip(W, b)]


def draw(classes, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.choice(len(classes), size=n, p=PRIOR)
    x = np.empty((n, 2))
    for c, model in enumerate(classes):
        x[y == c] = model.sample(int((y == c).sum()), rng=rng)[0]
    return x, y


def exact_log_likelihoods(classes, x):
    return bc.class_log_likelihoods(lambda xb, yb: classes[yb[0]].log_prob(xb), x, len(classes))


class ToyNet:
    """The toy with a CVAE network's interface, so log p(x|y) goes through the same IWAE code a
    CVAE uses. The proposal q(z|x, y) is the exact posterior with its variance multiplied by
    ``inflation`` (3 by default: a valid but imperfect encoder, as a trained one is)."""

    def __init__(self, classes, inflation):
        self.classes, self.inflation = classes, inflation

    def eval(self):
        return self

    def posterior(self, x, y):
        x = x.data.astype(np.float64)
        mu, log_var = np.empty((len(x), 1)), np.empty((len(x), 1))
        for c in np.unique(y):
            m, S = self.classes[c].posterior(x[y == c])
            mu[y == c], log_var[y == c] = m, np.log(self.inflation * S[0, 0])
        return Normal(Tensor(mu), log_var=Tensor(log_var))

    def prior(self, y):
        return None

    def decode(self, z, y):
        rows = np.tile(y, len(z) // len(y))   # S samples of N images come as S·N rows
        W = np.stack([m.W for m in self.classes])[rows]           # (R, 2, 1)
        b = np.stack([m.b for m in self.classes])[rows]
        mean = np.einsum("rdk,rk->rd", W, z.data) + b
        return Normal(Tensor(mean), log_var=Tensor(np.full(mean.shape, 2 * math.log(0.5))))


class ImportanceSampled:
    """A model whose network is the toy (what the IWAE code of vae_metrics reads)."""

    def __init__(self, classes, inflation=3.0):
        self.net = ToyNet(classes, inflation)


def test_exact_densities_reach_the_bayes_optimal_accuracy(classes):
    x, y = draw(classes, 3000, seed=1)
    pred = bc.predict(exact_log_likelihoods(classes, x), np.log(PRIOR))
    accuracy = (pred == y).mean()
    # The Bayes accuracy is E_x[max_y p(y|x)]; estimate it on an independent sample.
    x_big, _ = draw(classes, 40000, seed=2)
    best = np.exp(bc.log_posterior(exact_log_likelihoods(classes, x_big), np.log(PRIOR))).max(axis=1)
    bayes = best.mean()
    se = math.sqrt(bayes * (1 - bayes) / len(y) + best.var() / len(best))
    assert abs(accuracy - bayes) < 4 * se, (accuracy, bayes, se)
    assert 0.6 < bayes < 0.95  # overlapping classes: the test would catch a wrong prior or density


def test_ignoring_the_class_prior_costs_accuracy(classes):
    """p(y) is part of the rule: with unequal class frequencies a uniform prior is measurably worse."""
    x, y = draw(classes, 40000, seed=3)
    ll = exact_log_likelihoods(classes, x)
    with_prior = (bc.predict(ll, np.log(PRIOR)) == y).mean()
    uniform = (bc.predict(ll) == y).mean()
    se = math.sqrt(2 * with_prior * (1 - with_prior) / len(y))
    assert with_prior - uniform > 4 * se, (with_prior, uniform)


def test_importance_sampled_densities_reach_the_bayes_optimal_accuracy(classes):
    """The CVAE route: log p(x|y) ≈ IWAE_k with the encoder as proposal, for each class."""
    x, y = draw(classes, 1500, seed=4)
    toy = ImportanceSampled(classes)
    manual_seed(0)
    estimated = bc.class_log_likelihoods(lambda xb, yb: iwae_log_likelihood(toy, xb, yb, k=200), x, 3)
    exact = exact_log_likelihoods(classes, x)
    error = estimated - exact
    assert np.abs(error).mean() < 0.1 and error.mean() < 0.01   # a lower bound in expectation, and close
    pred_est = bc.predict(estimated, np.log(PRIOR))
    pred_exact = bc.predict(exact, np.log(PRIOR))
    assert (pred_est == pred_exact).mean() > 0.97          # only points near a boundary may flip
    x_big, _ = draw(classes, 40000, seed=5)
    best = np.exp(bc.log_posterior(exact_log_likelihoods(classes, x_big), np.log(PRIOR))).max(axis=1)
    bayes, acc = best.mean(), (pred_est == y).mean()
    se = math.sqrt(bayes * (1 - bayes) / len(y) + best.var() / len(best))
    assert abs(acc - bayes) < 4 * se, (acc, bayes, se)


def test_with_the_exact_posterior_as_proposal_importance_sampling_is_exact(classes):
    """Every weight p(x|z) p(z) / p(z|x) equals p(x): zero variance, so even k = 2 is exact."""
    x, _ = draw(classes, 200, seed=6)
    manual_seed(0)
    toy = ImportanceSampled(classes, inflation=1.0)
    estimated = bc.class_log_likelihoods(lambda xb, yb: iwae_log_likelihood(toy, xb, yb, k=2), x, 3)
    np.testing.assert_allclose(estimated, exact_log_likelihoods(classes, x), rtol=0, atol=1e-9)


def test_log_posterior_is_normalised_and_matches_bayes_rule():
    rng = np.random.default_rng(0)
    ll = rng.normal(size=(7, 4)) * 3
    lp = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    post = bc.log_posterior(ll, lp)
    np.testing.assert_allclose(np.exp(post).sum(axis=1), 1.0, rtol=1e-12)
    joint = np.exp(ll) * np.exp(lp)
    np.testing.assert_allclose(np.exp(post), joint / joint.sum(axis=1, keepdims=True), rtol=1e-10)
    np.testing.assert_array_equal(bc.predict(ll, lp), (ll + lp).argmax(axis=1))


def test_confusion_matrix():
    c = bc.confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(c, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert c.sum() == 6 and np.trace(c) == 4


def test_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        bc.log_posterior(np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        bc.log_posterior(np.zeros((2, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="0..2"):
        bc.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match=r"one value per example, shape \(4,\)"):
        bc.class_log_likelihoods(lambda x, y: np.zeros(3), np.zeros((4, 2)), 2)
