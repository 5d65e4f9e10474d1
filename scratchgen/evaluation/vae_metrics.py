"""Evaluating a VAE: the ELBO and its two terms, the IWAE log-likelihood, bits/dim, active units.

Works on the VAE and the conditional VAE (:class:`scratchgen.models.vae.VAE`,
:class:`scratchgen.models.cvae.CVAE`) through their network ``model.net`` (a
:class:`~scratchgen.models.vae.VAENet`): its ELBO ``net(x, y)``, ``posterior(x, y)`` -> a Normal,
``decode(z, y)`` -> the distribution q_θ(x|z) and ``prior(y)`` -> a Normal or None (N(0, I)).

* **ELBO** (:func:`elbo_statistics`): per image, with one reparameterised sample of z,
  ``recon`` = -log q_θ(x|z) summed over pixels and ``kl`` = KL(q_ψ(z|x) ‖ p(z)) in closed form.
  ``loss`` = recon + kl is the per-sample negative ELBO; with a Bernoulli decoder on grey pixels
  it is exactly the test loss printed by github.com/pytorch/examples' VAE (summed binary
  cross-entropy plus KL, divided by the number of test images).
* **IWAE NLL** (:func:`iwae_nll`): -IWAE_k(x) = -log (1/k) Σ_i w_i with k samples from the
  encoder, a lower bound on log q_θ(x) that tightens as k grows (Burda, Grosse & Salakhutdinov
  2016). Papers report it with k = 5000; the samples go through the decoder in chunks.
* **bits/dim** (:func:`bits_per_dim`): a negative log-likelihood in nats divided by D ln 2.
* **Active units** (:func:`active_units`): Burda et al. (2016, Sec. 5.2) call latent dimension u
  active when A_u = Var_x(E_{q(z|x)}[z_u]) > 10⁻²: a dimension whose posterior mean does not move
  with x carries no information (its KL is ~0 — posterior collapse). The per-dimension KL is
  returned beside it.

NOTE: on grey pixels a Bernoulli decoder is not a density of the data (the pixels are not 0/1),
so its "NLL" and bits/dim compare models with each other but not with likelihoods of binarized
MNIST; the binarized-MNIST numbers in the literature need binary pixels (``--binarize dynamic``).
"""
import math
from functools import partial

import numpy as np

from ..objectives import iwae_bound
from ..autograd import Tensor, no_grad

ACTIVE_THRESHOLD = 1e-2


def _batches(x, y, batch_size):
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], (None if y is None else y[i:i + batch_size])


def active_units(posterior_means, threshold=ACTIVE_THRESHOLD):
    """(number of active dimensions, A (d,)): A_u = Var_x(μ_u(x)) over the rows of ``posterior_means``
    (N, d), active when A_u > ``threshold`` (Burda et al. 2016: 10⁻²)."""
    mu = np.asarray(posterior_means, dtype=np.float64)
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"posterior_means must be (N, d) with N >= 2 examples, got shape {mu.shape}")
    activity = mu.var(axis=0)
    return int((activity > threshold).sum()), activity


def bits_per_dim(nll_nats, dims):
    """A negative log-likelihood in nats per example -> bits per data dimension: nll / (D ln 2)."""
    return float(nll_nats) / (int(dims) * math.log(2.0))


def elbo_statistics(model, batches):
    """One pass over ``batches`` of (x, y): ELBO terms with one sample of z per example.

    Returns a dict: ``loss``, ``recon``, ``kl``, ``elbo`` (per-example means, nats), ``elbo_each``
    (N,) float64, ``kl_per_dim`` (d,) mean KL of each latent dimension, ``active_units`` and
    ``activity`` (d,) (see :func:`active_units`), ``n``.
    """
    model.net.eval()
    elbos, recons, kls, kl_dims, mus = [], [], [], [], []
    with no_grad():
        for x, y in batches:
            r = model.net(Tensor(x), y)
            recons.append(-r.reconstruction.data.astype(np.float64))
            kls.append(r.kl.data.astype(np.float64))
            kl_dims.append(r.kl_per_dim.data.astype(np.float64))
            mus.append(r.posterior.loc.data.reshape(len(x), -1))
    if not recons:
        raise ValueError("elbo_statistics got no batches: the split is empty")
    recon, kl = np.concatenate(recons), np.concatenate(kls)
    mu = np.concatenate(mus)
    n_active, activity = active_units(mu) if len(mu) > 1 else (0, np.zeros(mu.shape[1]))
    return {"loss": float((recon + kl).mean()), "recon": float(recon.mean()), "kl": float(kl.mean()),
            "elbo": float(-(recon + kl).mean()), "elbo_each": -(recon + kl),
            "kl_per_dim": np.concatenate(kl_dims).mean(axis=0), "active_units": n_active,
            "activity": activity, "n": len(recon)}


def iwae_log_likelihood(model, x, y=None, k=5000, batch_size=None, max_rows=20000):
    """IWAE_k(x) per example, (N,) float64: the importance-sampled estimate of log q_θ(x) (log
    p(x|y) for a CVAE given y), a lower bound in expectation that rises towards it as k grows.

    Images go ``batch_size`` at a time, and their k samples through the decoder in chunks of at
    most ``max_rows`` decoder rows (so k = 5000 fits in memory); see
    :func:`scratchgen.objectives.iwae_bound`.
    """
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("iwae_log_likelihood got no examples")
    if batch_size is None:
        batch_size = max(1, min(len(x), max_rows // min(int(k), max_rows)))
    chunk = max(1, min(int(k), max_rows // batch_size))
    net = model.net
    net.eval()
    out = []
    with no_grad():
        for xb, yb in _batches(x, y, batch_size):
            xt = Tensor(xb)
            out.append(iwae_bound(xt, net.posterior(xt, yb), partial(net.decode, y=yb), int(k),
                                  prior=net.prior(yb), chunk_size=chunk))
    return np.concatenate(out)


def iwae_nll(model, x, y=None, k=5000, **kw):
    """-IWAE_k(x) per example: the test negative log-likelihood estimate papers report (k = 5000)."""
    return -iwae_log_likelihood(model, x, y, k, **kw)


def report(model, data, split="test", k=1000, examples=1000, batch_size=500):
    """Everything ``scratchgen eval`` prints for a VAE, as plain numbers (stable keys):

    ``<split>_loss`` (-ELBO per example, the pytorch/examples test loss), ``<split>_elbo``,
    ``<split>_recon``, ``<split>_kl``, ``<split>_bits_per_dim`` (of -ELBO), ``active_units``,
    ``kl_per_dim`` (list), ``nll_iwae`` (-IWAE_k averaged over the first ``examples`` images;
    0 = all), ``nll_iwae_k``, ``nll_iwae_examples``, ``nll_iwae_bits_per_dim`` and
    ``<split>_elbo_iwae_examples`` (the ELBO on those same images, for comparison).

    A dynamically binarized split is binarized once here, so every number sees the same pixels.
    """
    x, y = data[:]
    stats = elbo_statistics(model, _batches(x, y, batch_size))
    dims = int(np.prod(x.shape[1:]))
    out = {f"{split}_loss": stats["loss"], f"{split}_elbo": stats["elbo"], f"{split}_recon": stats["recon"],
           f"{split}_kl": stats["kl"], f"{split}_bits_per_dim": bits_per_dim(stats["loss"], dims),
           "active_units": stats["active_units"], "kl_per_dim": [float(v) for v in stats["kl_per_dim"]]}
    if k and k > 0:
        n = len(x) if examples is None or examples <= 0 else min(int(examples), len(x))
        nll = iwae_nll(model, x[:n], None if y is None else y[:n], k=int(k))
        out.update({"nll_iwae": float(nll.mean()), "nll_iwae_k": int(k), "nll_iwae_examples": n,
                    "nll_iwae_bits_per_dim": bits_per_dim(nll.mean(), dims),
                    f"{split}_elbo_iwae_examples": float(stats["elbo_each"][:n].mean())})
    return out
