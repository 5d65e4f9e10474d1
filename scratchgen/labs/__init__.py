"""Small, self-contained experiments that make a piece of theory visible (``python -m scratchgen.labs.<name>``).

* :mod:`.js_lab` — the Jensen–Shannon divergence, the discriminator's lower bound on it, and the
  saturating versus non-saturating generator loss, on 1-D densities known exactly.
* :mod:`.dirac_gan` — the Dirac-GAN: simultaneous gradient steps spiral out, alternating ones circle,
  an R1 penalty or instance noise converges; the Jacobian's eigenvalues at the equilibrium.
* :mod:`.f_divergences` — the f-divergence family (KL, reverse KL, JS): each one's variational lower
  bound, maximised by a discriminator, rising to its value by quadrature.
* :mod:`.wgan_lab` — disjoint supports in 1-D: the JS bound flat at log 2, the WGAN-GP critic's
  Wasserstein estimate falling with the distance.
* :mod:`.estimators` — score function (with and without a baseline), reparameterisation,
  straight-through and Gumbel-softmax gradients: bias and variance against an exact gradient.
* :mod:`.rate_distortion` — a β-VAE sweep as rate against distortion (collapse and blur marked), and
  the approximation and amortisation gaps on the linear-Gaussian model.
* :mod:`.attribute_cvae` — a CVAE told (class, thickness, slant), evaluated by measuring the
  attributes of its samples.
* :mod:`.mode_collapse` — samples of trained GAN runs on 2-D toy data side by side, with their
  mode coverage.
"""
import argparse


def lab_parser(module, doc, what="the PNG figures"):
    """The command line every lab shares: ``python -m scratchgen.labs.NAME --out DIR [options]``."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    ap.add_argument("--out", required=True, metavar="DIR", help=f"folder for {what}")
    return ap
