"""The evidence lower bound (ELBO) of a VAE, with β (KL weight) and free bits.

Lecture notation: latent ω (``z`` in code), prior p_ω, decoder (likelihood) q_θ(x|ω), encoder
(approximate posterior) q_ψ(ω|x). Importance sampling with q_ψ and Jensen's inequality
(log E[Y] ≥ E[log Y], log being concave) give, for every x,

    log q_θ(x) = log E_{ω~q_ψ(·|x)}[ q_θ(x|ω) p_ω(ω) / q_ψ(ω|x) ]
               ≥ E_{ω~q_ψ(·|x)}[ log( q_θ(x|ω) p_ω(ω) / q_ψ(ω|x) ) ]            (Jensen)
               = E_{ω~q_ψ(·|x)}[ log q_θ(x|ω) ]  -  d_KL(q_ψ(·|x), p_ω)
                 \\_________ reconstruction _______/   \\____ regulariser ____/

(The source note's middle line keeps an extra "log E" around the expectation — a slip; the
bound has the expectation of the log, as above.) Kingma & Welling 2014, "Auto-Encoding
Variational Bayes", eq. (3) and (10).

How each term is computed here:

* reconstruction: a Monte Carlo average over S reparameterised samples ω_s = μ + σ ε_s,
  (1/S) Σ_s log q_θ(x|ω_s), summed over the data dimensions. Its gradient flows through ω_s
  into the encoder (the reparameterisation trick).
* KL: closed form for diagonal Gaussians (:func:`scratchgen.distributions.kl_divergence`),
  per latent dimension, then summed.

The training loss is  loss = -(mean_n reconstruction_n - β · KL_term), where

* β = ``kl_weight`` (Higgins et al. 2017, β-VAE; a β rising from 0 to 1 is the KL warm-up of
  Bowman et al. 2016 and Sønderby et al. 2016);
* KL_term, with free bits λ = ``free_bits`` (Kingma et al. 2016, "Improved Variational
  Inference with Inverse Autoregressive Flow", Sec. C.8), is

      KL_term = Σ_j max(λ, (1/N) Σ_n KL_{n,j}),

  i.e. the floor applies to each latent dimension j's KL **averaged over the minibatch**, as in
  the paper: a dimension whose average KL is below λ nats costs a constant λ and gets no
  gradient pushing it further towards the prior. With λ = 0 it is just the batch-mean KL.

The per-example ``elbo`` in the result is always the true bound (β = 1, no free bits); only
``loss`` and ``kl_term`` use β and λ.
"""
from dataclasses import dataclass

import numpy as np

from ..distributions import Bernoulli, Categorical, Normal, kl_divergence
from ..autograd import Tensor


@dataclass
class ELBOResult:
    """Terms of the ELBO. Per-example Tensors have shape (N,); the ``*_mean`` are scalar Tensors."""

    reconstruction: Tensor  # (N,)  MC estimate of E_q[log q_θ(x|ω)]
    kl: Tensor              # (N,)  d_KL(q_ψ(·|x), p_ω), closed form
    elbo: Tensor            # (N,)  reconstruction - kl
    kl_per_dim: Tensor      # (N, d)  KL of each latent dimension (latent axes flattened)
    kl_term: Tensor         # scalar: the KL as it enters the loss (free bits applied)
    loss: Tensor            # scalar: -(reconstruction_mean - kl_weight * kl_term)
    kl_weight: float
    free_bits: float
    posterior: Normal = None  # q_ψ(ω|x) the terms were computed with

    @property
    def reconstruction_mean(self):
        return self.reconstruction.mean()

    @property
    def kl_mean(self):
        return self.kl.mean()

    @property
    def elbo_mean(self):
        return self.elbo.mean()


def as_normal(posterior):
    """Accept a :class:`Normal` or a ``(mu, log_var)`` pair (what an encoder's two heads output)."""
    if isinstance(posterior, Normal):
        return posterior
    if isinstance(posterior, (tuple, list)) and len(posterior) == 2:
        return Normal(posterior[0], log_var=posterior[1])
    raise TypeError(f"the encoder output must be a Normal or a (mu, log_var) pair, got "
                    f"{type(posterior).__name__}")


def number_of_examples(x, q):
    """N, the number of examples in ``x``, checked against the posterior's batch shape (N, ...)."""
    n = x.shape[0]
    if q.batch_shape[:1] != (n,):
        raise ValueError(f"the posterior's batch shape {q.batch_shape} must start with the number "
                         f"of examples N = {n} (x has shape {x.shape})")
    return n


def log_likelihood_samples(x, z, decoder):
    """log q_θ(x|ω_s) for samples z of shape (S, N, *latent): returns (S, N), data dims summed.

    The S samples are stacked into one decoder batch of S·N rows (sample by sample: row r belongs
    to example r mod N); ``decoder(z)`` returns the distribution q_θ(x|ω) of those rows.
    """
    s, n = z.shape[0], z.shape[1]
    dist = decoder(z.reshape((s * n,) + z.shape[2:]))
    if not isinstance(dist, (Normal, Bernoulli, Categorical)):
        raise TypeError(f"the decoder must return the distribution q(x|z) — e.g. Bernoulli(logits=net(z)) "
                        f"or Normal(net(z), log_var=...) — not a {type(dist).__name__}")
    xd = x.data if isinstance(x, Tensor) else np.asarray(x)
    target = np.broadcast_to(xd[None], (s,) + xd.shape).reshape((s * n,) + xd.shape[1:])
    if dist.batch_shape != target.shape:
        raise ValueError(f"the decoder output has shape {dist.batch_shape} but x (repeated for "
                         f"{s} samples) has shape {target.shape}")
    log_px = dist.log_prob(target, event_dims=len(target.shape) - 1)
    return log_px.reshape(s, n)


def elbo(x, posterior, decoder, prior=None, n_samples=1, kl_weight=1.0, free_bits=0.0, eps=None):
    """ELBO(x) = E_{q_ψ(ω|x)}[log q_θ(x|ω)] - d_KL(q_ψ(·|x), p_ω), per example, and the loss.

    Arguments:
        x: data, shape (N, *data_shape) (Tensor or array; treated as a constant).
        posterior: q_ψ(ω|x), a :class:`Normal` with batch shape (N, *latent_shape) or the
            encoder's ``(mu, log_var)`` pair.
        decoder: callable ω -> the distribution q_θ(x|ω) (``Bernoulli(logits=...)`` or
            ``Normal(mean, log_var=...)``), called once on all S·N samples stacked.
        prior: p_ω, a :class:`Normal` broadcastable to the posterior (a CVAE's conditional
            prior p_ω(ω|y)); None means N(0, I).
        n_samples: S >= 1 reparameterised samples per example for the reconstruction term.
        kl_weight: β multiplying the KL in the loss.
        free_bits: λ >= 0 nats per latent dimension (see the module docstring for the formula).
        eps: optional fixed noise of shape (S, N, *latent_shape) (for tests and hand gradients).

    Returns an :class:`ELBOResult`.
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if kl_weight < 0 or free_bits < 0:
        raise ValueError(f"kl_weight and free_bits must be >= 0, got {kl_weight} and {free_bits}")
    q = as_normal(posterior)                                          # q_ψ(ω|x), from the encoder
    n = number_of_examples(x, q)
    p = prior if prior is not None else Normal(np.zeros((), q.loc.dtype), log_var=np.zeros((), q.loc.dtype))

    z = q.rsample((int(n_samples),), eps=eps)                       # ω = μ + σ ε: (S, N, *latent)
    reconstruction = log_likelihood_samples(x, z, decoder).mean(axis=0)   # log q_θ(x|ω), S-average

    kl_per_dim = kl_divergence(q, p).expand(q.batch_shape).reshape(n, -1)  # (N, d)
    kl = kl_per_dim.sum(axis=1)
    kl_term = kl_per_dim.mean(axis=0)                                 # (d,) batch-mean KL per dimension
    if free_bits > 0:
        kl_term = kl_term.clamp(min=free_bits)                        # max(λ, KL_j), no gradient below λ
    kl_term = kl_term.sum()
    loss = -(reconstruction.mean() - kl_term * float(kl_weight))
    return ELBOResult(reconstruction=reconstruction, kl=kl, elbo=reconstruction - kl,
                      kl_per_dim=kl_per_dim, kl_term=kl_term, loss=loss,
                      kl_weight=float(kl_weight), free_bits=float(free_bits), posterior=q)
