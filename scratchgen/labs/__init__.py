"""Small, self-contained experiments that make a piece of theory visible (``python -m scratchgen.labs.<name>``).

* :mod:`.js_lab` — the Jensen–Shannon divergence, the discriminator's lower bound on it, and the
  saturating versus non-saturating generator loss, on 1-D densities known exactly.
* :mod:`.dirac_gan` — the Dirac-GAN: simultaneous gradient steps spiral out, alternating ones circle,
  an R1 penalty or instance noise converges; the Jacobian's eigenvalues at the equilibrium.
* :mod:`.mode_collapse` — samples of trained GAN runs on 2-D toy data side by side, with their
  mode coverage.
"""
