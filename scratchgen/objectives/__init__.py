"""Training and evaluation objectives: the VAE's ELBO, the IWAE bound, the GAN game.

* :mod:`.evidence_lower_bound` — ``elbo(x, posterior, decoder, ...)`` with β and free bits.
* :mod:`.iwae` — ``iwae_bound(x, posterior, decoder, k, chunk_size=...)`` (Burda et al. 2016).
* :mod:`.gan` — the minimax value, both generator losses and the JS lower bound, from logits.
* :mod:`.wgan` — the WGAN-GP critic and generator losses, and the gradient penalty with an MLP
  critic's input gradient written out so that first-order autograd can differentiate it.
* :mod:`.hand_gradients` — the same maths differentiated by hand in NumPy, for checking.
"""
from .evidence_lower_bound import ELBOResult, elbo
from .iwae import iwae_bound, log_importance_weights
from .gan import (discriminator_loss, discriminator_value, generator_gradient_curves,
                  generator_loss_nonsaturating, generator_loss_saturating, js_lower_bound,
                  log_d, log_one_minus_d)
from . import hand_gradients

__all__ = ["ELBOResult", "elbo", "iwae_bound", "log_importance_weights", "discriminator_loss",
           "discriminator_value", "generator_gradient_curves", "generator_loss_nonsaturating",
           "generator_loss_saturating", "js_lower_bound", "log_d", "log_one_minus_d",
           "hand_gradients"]
