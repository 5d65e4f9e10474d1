"""GAN objectives from discriminator logits (Goodfellow et al. 2014, "Generative Adversarial Nets").

Lecture notation: the discriminator t_φ(x) = D(x) = σ(l(x)) ∈ (0, 1) with logit l, the
generator g_θ(ω) = G(z). The game is

    min_θ max_φ  V(θ, φ) = E_{x~p_data}[log t_φ(x)] + E_{ω~p_ω}[log(1 - t_φ(g_θ(ω)))].

Everything is computed from logits, never from D itself (which rounds to 0 or 1):

    log D = log σ(l) = -softplus(-l),      log(1 - D) = log σ(-l) = -softplus(l).

Because d_JS(p, q) = log 2 + ½ max_t V(t) (:mod:`scratchgen.divergences`), any discriminator
gives the lower bound log 2 + ½ V ≤ d_JS(p_data, q_θ): :func:`js_lower_bound`.

Generator losses (functions of the fake logits l_f only):

* saturating (the original minimax form):  E[log(1 - D(G(z)))];  d/dl_f = -σ(l_f)/N = -D/N.
  When D rejects fakes confidently (D(G(z)) -> 0, early in training) the gradient vanishes.
* non-saturating (Goodfellow et al. 2014, Sec. 3): -E[log D(G(z))];  d/dl_f = -(1 - D)/N,
  close to -1/N exactly when the saturating gradient is close to 0. Same fixed point.
"""
import numpy as np

from .. import functional as F
from ..autograd import Tensor

LOG2 = float(np.log(2.0))


def _logits(l, name):
    if not isinstance(l, Tensor):
        l = Tensor(np.asarray(l, dtype=np.float64))
    if l.ndim == 2 and l.shape[1] == 1:
        l = l.reshape(-1)  # a discriminator's (N, 1) output
    if l.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1): one logit per sample, got {l.shape}")
    return l


def log_d(logits):
    """log D(x) = log σ(l) = -softplus(-l), elementwise."""
    return -F.softplus(-logits)


def log_one_minus_d(logits):
    """log(1 - D(x)) = log σ(-l) = -softplus(l), elementwise."""
    return -F.softplus(logits)


def discriminator_value(real_logits, fake_logits):
    """V = mean log D(x_real) + mean log(1 - D(G(z))): what the discriminator maximises.

    At most 0, and equal to -2 log 2 when D outputs ½ everywhere.
    """
    real, fake = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return log_d(real).mean() + log_one_minus_d(fake).mean()


def discriminator_loss(real_logits, fake_logits):
    """-V, the loss a discriminator step minimises: the mean binary cross-entropy of the real
    batch (label 1) plus that of the fake batch (label 0). V is a sum of two means, so on a
    balanced batch this is *twice* the cross-entropy of the pooled 2N examples — the factor behind
    js_lower_bound = log 2 - loss / 2."""
    return -discriminator_value(real_logits, fake_logits)


def generator_loss_saturating(fake_logits):
    """E[log(1 - D(G(z)))], the generator's side of the minimax game (minimised by G)."""
    return log_one_minus_d(_logits(fake_logits, "fake_logits")).mean()


def generator_loss_nonsaturating(fake_logits):
    """-E[log D(G(z))], the non-saturating generator loss (minimised by G)."""
    return -log_d(_logits(fake_logits, "fake_logits")).mean()


def js_lower_bound(real_logits, fake_logits):
    """log 2 + ½ V: a lower bound on d_JS(p_data, q_θ), tight at the optimal discriminator."""
    return discriminator_value(real_logits, fake_logits) * 0.5 + LOG2


def generator_gradient_curves(d_fake):
    """Per-sample gradient of each generator loss with respect to the fake logit, as a function
    of D(G(z)) ∈ (0, 1) — the curves behind the "saturating loss" figure.

    Returns a dict of float64 arrays: ``d`` (the input), ``saturating`` = d/dl log(1 - σ(l)) = -D
    and ``nonsaturating`` = d/dl (-log σ(l)) = -(1 - D), with l = logit(D).
    """
    d = np.asarray(d_fake, dtype=np.float64)
    if np.any((d <= 0) | (d >= 1)):
        raise ValueError("D(G(z)) values must lie strictly between 0 and 1")
    return {"d": d, "saturating": -d, "nonsaturating": -(1.0 - d)}
