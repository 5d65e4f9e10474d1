"""Disjoint supports in 1-D: the JS bound is flat at log 2, the Wasserstein estimate keeps falling.

Chapter 5 (§5.6) says that when the data and the generator's samples do not overlap, the JS divergence
sits at its ceiling log 2 and gives the generator no direction. This lab shows it, and shows what the
WGAN-GP critic (:mod:`scratchgen.objectives.wgan`) measures instead. The data p = N(0, s²) and the
generator q_θ = N(θ, s²) with a small s: for |θ| ≫ s the supports are, numerically, disjoint. For each
θ on a path towards the data:

* the exact d_JS(p, q_θ) by quadrature, and the bound of a discriminator trained to convergence
  (:func:`scratchgen.labs.js_lab.train_discriminator`): both ≈ log 2 until θ is within a few s;
* the exact W₁(p, q_θ) = |θ| (two equal-width Gaussians, one shifted), and the estimate
  E_p[f] − E_q[f] of a critic trained with the gradient penalty: it falls in proportion to |θ|.

The penalty keeps the critic only *softly* 1-Lipschitz, so its estimate overshoots W₁: between the two
bumps a critic of slope k gains kθ and pays λ(k − 1)² on the interpolates, best at k = 1 + θ/(2λ), so
the estimate is about θ + θ²/(2λ) (:func:`penalised_optimum`) — 4.8 instead of 4 at θ = 4, λ = 10.

A generator following the JS bound feels no slope until it already overlaps the data; one following
the critic feels the same slope everywhere.

Run ``python -m scratchgen.labs.wgan_lab --out DIR`` (the lecture's figure: ``--out lectures/figures``).
"""
import math
import sys
from pathlib import Path

import numpy as np

from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..data.toy import GaussianMixture1D
from ..objectives import wgan
from ..random import manual_seed
from . import js_lab, lab_parser

THETAS = (4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.25, 0.0)
WIDTH = 0.1


def critic(hidden=64):
    """A 1-64-64-1 LeakyReLU(0.2) MLP in float64: the WGAN-GP critic for points on the line."""
    f64 = dict(dtype=np.float64)
    return nn.Sequential(nn.Linear(1, hidden, **f64), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden, **f64),
                         nn.LeakyReLU(0.2), nn.Linear(hidden, 1, **f64))


def train_critic(p, q, steps=500, batch=256, lr=1e-3, penalty=10.0, seed=0, n_eval=20000):
    """Minimise E_q f − E_p f + λ E(‖∇f(x̂)‖ − 1)² over the critic, q fixed (Gulrajani et al.'s Adam
    β = (0.5, 0.9)). Returns ``(critic, estimate, se)``: E_p f − E_q f on held-out samples."""
    manual_seed(seed)
    rng = np.random.default_rng([seed, 6])
    f = critic()
    opt = optim.Adam(f.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(steps):
        real, fake = p.sample(batch, rng=rng)[:, None], q.sample(batch, rng=rng)[:, None]
        _, grad = wgan.mlp_input_gradient(f, wgan.interpolates(real, fake, rng))
        loss = wgan.critic_loss(f(Tensor(real)), f(Tensor(fake))) + wgan.gradient_penalty(grad, penalty)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with no_grad():
        a = f(Tensor(p.sample(n_eval, rng=rng)[:, None])).data.reshape(-1)
        b = f(Tensor(q.sample(n_eval, rng=rng)[:, None])).data.reshape(-1)
    return f, float(a.mean() - b.mean()), math.sqrt(a.var(ddof=1) / n_eval + b.var(ddof=1) / n_eval)


def penalised_optimum(theta, penalty=10.0):
    """max_k kθ − λ(k − 1)² over linear critics f(x) = −kx: k = 1 + θ/(2λ), estimate kθ = θ + θ²/(2λ)."""
    theta = np.abs(np.asarray(theta, np.float64))
    return theta + theta ** 2 / (2 * penalty)


def sweep(thetas=THETAS, width=WIDTH, d_steps=400, critic_steps=500, seed=0):
    """For each θ: exact JS and W₁, the trained discriminator's JS bound, the critic's W₁ estimate."""
    p = GaussianMixture1D([0.0], [width])
    rows = []
    for theta in thetas:
        q = GaussianMixture1D([theta], [width])
        _, hist = js_lab.train_discriminator(p, q, steps=d_steps, batch=256, lr=1e-2, seed=seed, eval_every=d_steps)
        _, w_est, w_se = train_critic(p, q, steps=critic_steps, seed=seed)
        rows.append({"theta": float(theta), "js": hist["js"], "js_bound": hist["bound_exact"][-1],
                     "w1": abs(float(theta)), "w1_estimate": w_est, "w1_se": w_se})
    return rows


def plot(rows, path):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(10.0, 3.8))
    th = np.array([r["theta"] for r in rows])
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.plot(th, [r["js"] for r in rows], "k-", label="exact $d_{JS}(p, q_\\theta)$ (quadrature)")
    left.plot(th, [r["js_bound"] for r in rows], "o--", color="C1", label="trained discriminator's bound")
    left.axhline(js_lab.LOG2, color="0.6", lw=0.8)
    left.set_ylabel("nats")
    left.set_title("JS: flat at log 2 until the supports overlap", fontsize=9)
    right.plot(th, [r["w1"] for r in rows], "k-", label="exact $W_1(p, q_\\theta) = |\\theta|$")
    est, se = np.array([r["w1_estimate"] for r in rows]), np.array([r["w1_se"] for r in rows])
    fine = np.linspace(th.min(), th.max(), 200)
    right.plot(fine, penalised_optimum(fine), color="0.5", ls=":", label="best linear critic under the penalty, θ + θ²/(2λ)")
    right.errorbar(th, est, yerr=2 * se, fmt="o--", color="C0", label="WGAN-GP critic: $E_p f - E_q f$")
    right.set_title("Wasserstein: falls all the way in", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel(f"generator's distance θ from the data (both N(·, {WIDTH}²))")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    return save_figure(fig, path, tight_layout=True)


def main(argv=None):
    ap = lab_parser("scratchgen.labs.wgan_lab", __doc__, "the PNG figure")
    ap.add_argument("--critic-steps", type=int, default=500)
    ap.add_argument("--d-steps", type=int, default=400)
    ap.add_argument("--thetas", default=",".join(f"{t:g}" for t in THETAS), help="generator positions, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        thetas = [float(t) for t in args.thetas.split(",")]
    except ValueError:
        ap.error(f"--thetas must be comma-separated numbers, got {args.thetas!r}")
    rows = sweep(thetas, d_steps=args.d_steps, critic_steps=args.critic_steps, seed=args.seed)
    print(f"{'theta':>6} {'JS exact':>9} {'JS bound':>9} {'W1 exact':>9} {'W1 critic':>16}")
    for r in rows:
        print(f"{r['theta']:>6g} {r['js']:>9.4f} {r['js_bound']:>9.4f} {r['w1']:>9.4f} "
              f"{r['w1_estimate']:>9.4f} ± {r['w1_se']:.4f}")
    print(f"wrote {plot(rows, Path(args.out) / 'wgan-disjoint-supports.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
