"""VAE evaluation: the IWAE estimate against the ELBO on the same batch, chunking, bits/dim,
active units, and the keys `scratchgen eval` reports."""
import math

import numpy as np
import pytest

from scratchgen.data import DATASETS, ArrayDataset, DataLoader, load
from scratchgen.distributions import Normal
from scratchgen.evaluation import vae_metrics
from scratchgen.models.vae import VAE, VAENet
from scratchgen.objectives import elbo
from scratchgen.random import manual_seed
from scratchgen.autograd import Tensor, no_grad
from scratchgen.training.config import resolve_config


@pytest.fixture(scope="module")
def model():
    """A small VAE trained for 3 epochs on digits8 (an untrained one has a nearly exact posterior)."""
    config = resolve_config(VAE, {"latent": 3, "hidden": [32], "batch_size": 32})
    manual_seed(0)
    m = VAE(config, DATASETS["digits8"])
    loader = DataLoader(load("digits8", "train"), batch_size=32, shuffle=True, seed=0)
    for epoch in range(3):
        for batch in loader.iter_epoch(epoch):
            m.train_step(batch)
    return m


class WiderPosterior(VAENet):
    """The trained network with its encoder's variances multiplied by e³: still a valid proposal, but
    a poor one, so the ELBO's gap to log q(x) is large enough to see (the trained encoder on these
    tiny images is almost exact)."""

    def posterior(self, x, y=None):
        q = super().posterior(x, y)
        return Normal(q.loc, log_var=q.log_var + 3.0)


class WiderEncoder:
    """The model as vae_metrics reads it (its ``net``), with the wider posterior."""

    def __init__(self, model):
        self.net = WiderPosterior(model.net.encoder, model.net.decoder)


@pytest.fixture(scope="module")
def batch():
    return load("digits8", "val")[:40][0]


def test_iwae_1_equals_the_elbo_estimator_on_the_same_sample(model, batch):
    """IWAE_1 = log q(x|z) + log p(z) - log q(z|x) at the one sample z: the ELBO's single-sample
    estimator (with the KL estimated from that sample instead of in closed form)."""
    x = Tensor(batch)
    eps = np.random.default_rng(1).standard_normal((1, 40, 3))
    with no_grad():
        q = model.net.posterior(x)
        mu, log_var = q.loc, q.log_var
        r = elbo(x, q, model.net.decode, eps=eps)
        z = q.rsample((1,), eps=eps)[0]
        estimator = (r.reconstruction + Normal(np.float32(0), std=np.float32(1)).log_prob(z, event_dims=1)
                     - q.log_prob(z, event_dims=1)).data
    from scratchgen.objectives import iwae_bound
    iwae1 = iwae_bound(x, (mu, log_var), model.net.decode, k=1, eps=eps)
    np.testing.assert_allclose(iwae1, estimator, rtol=1e-5, atol=1e-4)


def test_elbo_never_exceeds_iwae_on_the_same_batch_in_expectation(model, batch):
    """Averaged over repeated draws, ELBO (closed-form KL, one sample) < IWAE_10 < IWAE_100 on the
    same images, each gap larger than 4 standard errors."""
    model = WiderEncoder(model)
    manual_seed(2)
    reps = 100
    elbos = np.array([vae_metrics.elbo_statistics(model, [(batch, None)])["elbo_each"] for _ in range(reps)])
    iw10 = np.array([vae_metrics.iwae_log_likelihood(model, batch, k=10) for _ in range(reps)])
    iw100 = vae_metrics.iwae_log_likelihood(model, np.repeat(batch, 4, axis=0), k=100).reshape(4, 40)
    per_image = [elbos.mean(0), iw10.mean(0), iw100.mean(0)]
    for lo, hi, a, b in ((elbos, iw10, 0, 1), (iw10, iw100, 1, 2)):
        diff = per_image[b] - per_image[a]
        se = math.sqrt(hi.var(0, ddof=1).mean() / len(hi) + lo.var(0, ddof=1).mean() / len(lo)) / math.sqrt(40)
        assert diff.mean() > 4 * se, (diff.mean(), se)


def test_chunking_the_samples_does_not_change_the_estimate(model, batch):
    manual_seed(5)
    a = vae_metrics.iwae_log_likelihood(model, batch, k=30, batch_size=40, max_rows=40 * 30)
    manual_seed(5)
    b = vae_metrics.iwae_log_likelihood(model, batch, k=30, batch_size=40, max_rows=40 * 7)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.all(vae_metrics.iwae_nll(model, batch, k=5) > 0)


def test_bits_per_dim():
    assert vae_metrics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert vae_metrics.bits_per_dim(86.76, 784) == pytest.approx(86.76 / (784 * math.log(2)))


def test_active_units_counts_dimensions_whose_mean_moves():
    rng = np.random.default_rng(0)
    stds = np.array([1.0, 0.5, 0.2, 0.05, 0.001])          # variances 1, .25, .04, .0025, 1e-6
    n_active, activity = vae_metrics.active_units(rng.standard_normal((20000, 5)) * stds + 3.0)
    assert n_active == 3
    np.testing.assert_allclose(activity, stds ** 2, rtol=0.05)
    with pytest.raises(ValueError, match="N >= 2"):
        vae_metrics.active_units(np.zeros((1, 5)))


def test_per_dimension_kl_sums_to_the_kl(model, batch):
    stats = vae_metrics.elbo_statistics(model, [(batch[:20], None), (batch[20:], None)])
    assert stats["n"] == 40
    assert stats["kl_per_dim"].sum() == pytest.approx(stats["kl"], rel=1e-5)
    assert stats["loss"] == pytest.approx(stats["recon"] + stats["kl"], rel=1e-9)
    assert 0 <= stats["active_units"] <= 3


def test_report_has_the_stable_keys(model):
    data = ArrayDataset(load("digits8", "test").data[:60])
    manual_seed(0)
    out = vae_metrics.report(WiderEncoder(model), data, "test", k=200, examples=25)
    for key in ("test_loss", "test_elbo", "test_recon", "test_kl", "test_bits_per_dim", "active_units",
                "kl_per_dim", "nll_iwae", "nll_iwae_k", "nll_iwae_examples", "test_elbo_iwae_examples"):
        assert key in out, key
    assert (out["nll_iwae_k"], out["nll_iwae_examples"]) == (200, 25)
    assert out["test_elbo"] == -out["test_loss"]
    # the IWAE NLL sits below -ELBO on the same images (a tighter bound)
    assert out["nll_iwae"] < -out["test_elbo_iwae_examples"]
    assert out["test_bits_per_dim"] == pytest.approx(out["test_loss"] / (64 * math.log(2)))


def test_report_binarizes_a_dynamic_split_once(model):
    """Every number of one report sees the same binary pixels: with k = 1 and one image per batch
    the IWAE NLL and -ELBO are estimates for the same x (not for two binarizations of it)."""
    grey = load("digits8", "test")
    dyn = ArrayDataset(grey.data[:30], binarize="dynamic")
    manual_seed(3)
    a = vae_metrics.report(model, dyn, "test", k=2, examples=0)
    manual_seed(3)
    x, _ = dyn[:]
    b = vae_metrics.report(model, ArrayDataset(x), "test", k=2, examples=0)
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert a["test_loss"] == pytest.approx(b["test_loss"]) and a["nll_iwae"] == pytest.approx(b["nll_iwae"])
