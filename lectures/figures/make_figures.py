"""Draw the figures of the lectures (chapters 3 and 4) into this folder.

    python lectures/figures/make_figures.py

Optional: the lectures read fine without the pictures, and the tests only check that a referenced
figure exists. Every number is computed with scratchgen's own functions, seeded.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import scratchgen as sg  # noqa: E402
from scratchgen import Tensor  # noqa: E402
from scratchgen.distributions import Normal  # noqa: E402
from scratchgen.linear_gaussian import LinearGaussian  # noqa: E402
from scratchgen.objectives.iwae import iwae_bound  # noqa: E402

HERE = Path(__file__).resolve().parent


def _finish(fig, ax, name, xlabel, ylabel, title):
    """Label the axes, add the legend and write ``name`` beside this script."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=120)
    plt.close(fig)


def pointwise_value():
    """Chapter 3, step 4: h(s) = a log s + b log(1 - s) peaks at s = a / (a + b)."""
    s = np.linspace(0.005, 0.995, 400)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for a, b in [(0.3, 0.1), (0.2, 0.2), (0.05, 0.25)]:
        h = a * np.log(s) + b * np.log1p(-s)
        best = a / (a + b)
        line, = ax.plot(s, h, label=f"p(x) = {a}, q(x) = {b}")
        ax.plot([best], [a * np.log(best) + b * np.log1p(-best)], "o", color=line.get_color())
        ax.axvline(best, color=line.get_color(), lw=0.6, ls=":")
    ax.set_ylim(-1.2, 0.0)
    _finish(fig, ax, "js-pointwise-maximum.png", "t(x)", "p(x) log t(x) + q(x) log(1 - t(x))",
            "each term of V(t) is maximised at t*(x) = p(x) / (p(x) + q(x))")


def iwae_versus_k():
    """Chapter 4, IWAE: the bound rises with k towards log q(x), starting from the ELBO."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    model = LinearGaussian(Q * np.array([2.0, 0.7]), rng.standard_normal(6), noise_std=0.5)
    x, _ = model.sample(1, rng=rng)
    m, S = model.posterior(x)
    reps = 100
    batch = np.repeat(x, reps, axis=0)
    poor = Normal(Tensor(np.repeat(m + 0.8, reps, axis=0)),
                  log_var=Tensor(np.repeat(np.log(np.diag(S))[None] - 1.0, reps, axis=0)))
    sg.manual_seed(0)
    ks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    means, ses = [], []
    for k in ks:
        est = iwae_bound(batch, poor, model.decoder, k=k, chunk_size=100)
        means.append(est.mean())
        ses.append(est.std(ddof=1) / np.sqrt(reps))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.errorbar(ks, means, yerr=2 * np.array(ses), fmt="o-", ms=4, capsize=2, label="IWAE_k (± 2 SE)")
    ax.axhline(model.log_prob(x)[0], color="k", ls="--", lw=1, label="exact log q(x)")
    ax.axhline(model.elbo(x, m + 0.8, np.diag(np.exp(np.log(np.diag(S)) - 1.0)))[0], color="gray",
               ls=":", lw=1, label="ELBO (closed form)")
    ax.set_xscale("log")
    _finish(fig, ax, "iwae-versus-k.png", "number of importance samples k", "nats",
            "linear-Gaussian model, a deliberately poor encoder")


if __name__ == "__main__":
    pointwise_value()
    iwae_versus_k()
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.png"))))
