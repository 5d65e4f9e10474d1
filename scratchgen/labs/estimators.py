"""Gradient estimators, side by side on two small latent models whose exact gradient is known.

Every latent-variable model needs ∇_η E_{z~q_η}[f(z)], the gradient of an expectation under a
distribution that depends on the parameter. Sampling z and differentiating f(z) is not enough:
the *sampling* depends on η. The ways out, each measured here (bias, variance, and the mean
squared error of the average of M samples, as M grows):

* **score function** (REINFORCE; Williams 1992): ∇_η E[f] = E[f(z) ∇_η log q_η(z)]. Unbiased, for any
  f and any q, but f(z) multiplies the score, so its variance grows with |f|.
* **score function with a baseline**: E[(f(z) − b) ∇ log q(z)] is unchanged for any b that does not
  depend on z (E[∇ log q] = 0). Here b is the *leave-one-out* mean of the other M − 1 samples' f
  (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free!"): unbiased for M ≥ 2.
* **reparameterisation** (Kingma & Welling 2014): z = μ + σε, ε ~ N(0, 1), so
  ∇_μ E[f] = E[f'(μ + σε)]. Unbiased and usually far less noisy — it uses f's derivative. Needs
  a continuous z (Chapter 4, §4.6).
* **straight-through** (Bengio et al. 2013; the VQ-VAE's): the forward pass uses the one-hot draw z,
  the backward pass pretends z was the vector of probabilities π = softmax(η):
  z_st = π + sg[z − π] (:func:`scratchgen.models.vector_quantizer.straight_through`). Biased.
* **Gumbel-softmax** (Jang et al. 2017; Maddison et al. 2017, "Concrete"): replace the one-hot
  argmax_k(η_k + g_k), g ~ Gumbel, by y = softmax((η + g)/τ), and differentiate f(y). Unbiased for
  the *relaxed* objective E f(y), biased for E f(z); the bias shrinks as τ → 0 while the variance
  grows.

The two models, with exact gradients:

* Gaussian: z ~ N(μ, σ²), f(z) = (z − c)²; E f = (μ − c)² + σ², so ∂/∂μ = 2(μ − c).
* Categorical: z ~ Cat(softmax(η)) as a one-hot vector in R^K, f(y) = |y − t|² (defined on the whole
  simplex, so the relaxations can evaluate it); E f = Σ_k π_k f(e_k), so
  ∂E f/∂η_j = π_j (f(e_j) − E f).

Per-sample gradients come from our autograd: the parameter is replicated into one row per sample,
so the gradient of the summed surrogate holds each sample's gradient in its own row.

Run ``python -m scratchgen.labs.estimators --out DIR`` (the lecture's figure: ``--out lectures/figures``).
"""
import math
import sys
import zlib
from pathlib import Path

import numpy as np

from .. import functional as F
from ..distributions import Categorical, Normal
from ..models.vector_quantizer import straight_through
from ..autograd import Tensor
from . import lab_parser

TEMPERATURES = (0.1, 0.3, 1.0, 3.0)


class GaussianModel:
    """z ~ N(μ, σ²), f(z) = (z − c)²; the parameter is μ."""

    def __init__(self, mu=0.5, sigma=1.0, c=2.0):
        self.mu, self.sigma, self.c = float(mu), float(sigma), float(c)

    def exact_gradient(self):
        return np.array([2 * (self.mu - self.c)])

    def _leaf(self, n):
        return Tensor(np.full(n, self.mu), requires_grad=True)

    def f(self, z):
        return (z - self.c) ** 2

    def score_function(self, eps, baseline=False):
        """Rows of f(z) ∇_μ log N(z; μ, σ²) (minus a leave-one-out baseline over the last axis of ``eps``)."""
        mu = self._leaf(eps.size)
        z = self.mu + self.sigma * eps.reshape(-1)                          # a sample: no gradient path
        weight = _with_baseline(self.f(z), eps.shape, baseline)
        (Normal(mu, std=self.sigma).log_prob(Tensor(z)) * Tensor(weight)).sum().backward()
        return mu.grad.reshape(eps.shape + (1,))

    def reparameterised(self, eps):
        """Rows of ∇_μ f(μ + σε)."""
        mu = self._leaf(eps.size)
        self.f(Normal(mu, std=self.sigma).rsample(eps=Tensor(eps.reshape(-1)))).sum().backward()
        return mu.grad.reshape(eps.shape + (1,))

    def estimators(self):
        """name -> (function of the noise (groups, M) giving one gradient row per sample, unbiased?)."""
        return {"score function": (lambda e: self.score_function(e), True),
                "score function + baseline": (lambda e: self.score_function(e, baseline=True), True),
                "reparameterisation": (self.reparameterised, True)}

    def noise(self, shape, rng):
        return rng.standard_normal(shape)


class CategoricalModel:
    """z ~ Cat(softmax(η)) one-hot in R^K, f(y) = |y − t|²; the parameter is η."""

    def __init__(self, logits=(0.5, 0.0, -0.5), target=(0.3, 0.6, 0.1)):
        self.eta, self.t = np.asarray(logits, np.float64), np.asarray(target, np.float64)
        self.k = len(self.eta)

    @property
    def probs(self):
        e = np.exp(self.eta - self.eta.max())
        return e / e.sum()

    def f_values(self):
        """f(e_k) for each one-hot e_k."""
        return ((np.eye(self.k) - self.t) ** 2).sum(axis=1)

    def exact_gradient(self):
        pi, fk = self.probs, self.f_values()
        return pi * (fk - pi @ fk)

    def _leaf(self, n):
        return Tensor(np.broadcast_to(self.eta, (n, self.k)).copy(), requires_grad=True)

    def f(self, y):
        return ((y - Tensor(self.t)) ** 2).sum(axis=-1)

    def _draw(self, gumbel):
        """The one-hot draws argmax_k(η_k + g_k) (the Gumbel-max trick) for noise (n, K)."""
        return np.eye(self.k)[np.argmax(self.eta + gumbel, axis=-1)]

    def score_function(self, g, baseline=False):
        """Rows of f(z) ∇_η log π_z (minus a leave-one-out baseline over the groups of g's second-last axis)."""
        groups, g = g.shape[:-1], g.reshape(-1, self.k)
        eta, z = self._leaf(len(g)), self._draw(g)
        weight = _with_baseline(self.f(Tensor(z)).data, groups, baseline)
        (Categorical(eta).log_prob(z.argmax(axis=1)) * Tensor(weight)).sum().backward()
        return eta.grad

    def straight_through(self, g):
        """Rows of ∇_η f(z_st) with z_st = π + sg[z − π]: the one-hot's value, the gradient of π."""
        g = g.reshape(-1, self.k)
        eta, z = self._leaf(len(g)), self._draw(g)
        self.f(straight_through(F.softmax(eta, dim=-1), Tensor(z))).sum().backward()
        return eta.grad

    def gumbel_softmax(self, g, tau):
        """Rows of ∇_η f(softmax((η + g)/τ)): the relaxed sample's gradient."""
        g = g.reshape(-1, self.k)
        eta = self._leaf(len(g))
        self.f(F.softmax((eta + Tensor(g)) * (1.0 / tau), dim=-1)).sum().backward()
        return eta.grad

    def estimators(self, temperatures=TEMPERATURES):
        out = {"score function": (lambda g: self.score_function(g), True),
               "score function + baseline": (lambda g: self.score_function(g, baseline=True), True),
               "straight-through": (self.straight_through, False)}
        for tau in temperatures:
            out[f"Gumbel-softmax, tau = {tau:g}"] = ((lambda g, tau=tau: self.gumbel_softmax(g, tau)), False)
        return out

    def noise(self, shape, rng):
        u = np.maximum(rng.random(shape + (self.k,)), np.finfo(np.float64).tiny)
        return -np.log(-np.log(u))


def _with_baseline(fz, shape, baseline):
    """f(z) minus, if asked, the mean f of the *other* samples in the same group (last axis of ``shape``)."""
    if not baseline:
        return fz
    m = shape[-1]
    if m < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 samples per estimate (M >= 2)")
    groups = fz.reshape(-1, m)
    loo = (groups.sum(axis=1, keepdims=True) - groups) / (m - 1)
    return (groups - loo).reshape(-1)


def per_sample(model, name, n_groups, m, rng):
    """Gradient estimates, shape (n_groups, m, d): n_groups estimates, each from a group of m samples."""
    fn, _ = model.estimators()[name]
    return np.asarray(fn(model.noise((n_groups, m), rng))).reshape(n_groups, m, -1)


def summary(model, name, n=100_000, group=8, seed=0):
    """Bias and variance of one estimator from n samples (in groups of ``group`` for the baseline).

    Returns a dict: ``mean`` (d,), ``se`` (d,) its standard error, ``exact`` (d,), ``bias`` = mean − exact,
    ``variance`` = the trace of the covariance of one group-average, times the group size (the
    variance *per sample*), and ``unbiased`` (what theory says).
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    est = per_sample(model, name, n // group, group, rng).mean(axis=1)     # one estimate per group
    mean = est.mean(axis=0)
    se = est.std(axis=0, ddof=1) / math.sqrt(len(est))
    exact = model.exact_gradient()
    return {"mean": mean, "se": se, "exact": exact, "bias": mean - exact,
            "variance": float(est.var(axis=0, ddof=1).sum() * group), "unbiased": model.estimators()[name][1]}


def error_versus_samples(model, name, ms=(2, 4, 8, 16, 32, 64, 128), replicates=400, seed=0):
    """For each M: the variance (trace) and mean squared error of the M-sample estimate over replicates."""
    rng = np.random.default_rng([seed, 7, zlib.crc32(name.encode())])
    exact = model.exact_gradient()
    var, mse = [], []
    for m in ms:
        est = per_sample(model, name, replicates, m, rng).mean(axis=1)
        var.append(float(est.var(axis=0, ddof=1).sum()))
        mse.append(float(((est - exact) ** 2).sum(axis=1).mean()))
    return {"m": np.array(ms), "variance": np.array(var), "mse": np.array(mse)}


def table(n=100_000, seed=0):
    """(model name, estimator name, summary) for every estimator of both models."""
    rows = []
    for label, model in (("Gaussian", GaussianModel()), ("categorical", CategoricalModel())):
        for name in model.estimators():
            rows.append((label, name, summary(model, name, n=n, seed=seed)))
    return rows


def _vec(v, digits=4):
    return "(" + ", ".join(f"{x:+.{digits}f}" for x in np.atleast_1d(v)) + ")"


def plot(path, replicates=400, seed=0):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(10.0, 4.2))
    for i, (label, model) in enumerate((("Gaussian", GaussianModel()), ("categorical", CategoricalModel()))):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (name, (_, unbiased)) in enumerate(model.estimators().items()):
            curve = error_versus_samples(model, name, replicates=replicates, seed=seed)
            ax.loglog(curve["m"], curve["mse"], "-" if unbiased else "--", color=f"C{j}", marker="o", ms=3,
                      label=name + ("" if unbiased else " (biased)"))
        ax.set_xlabel("samples M per estimate")
        ax.set_ylabel("mean squared error = variance + bias²")
        exact = _vec(model.exact_gradient(), 3)
        ax.set_title(f"{label} latent: exact gradient {exact}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Unbiased estimators fall as 1/M; biased ones level off at their squared bias", fontsize=10)
    return save_figure(fig, path, tight_layout=True)


def main(argv=None):
    ap = lab_parser("scratchgen.labs.estimators", __doc__, "the PNG figure")
    ap.add_argument("--n", type=int, default=100_000, help="samples per estimator for the table (default 100000)")
    ap.add_argument("--replicates", type=int, default=400, help="estimates per M for the figure (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n < 4 or args.replicates < 2:
        ap.error("--n must be >= 4 and --replicates >= 2")
    print(f"{'model':<12} {'estimator':<28} {'mean ± 1 s.e.':<44} {'exact':<28} {'variance/sample':>15}")
    for label, name, s in table(args.n, args.seed):
        mean = ", ".join(f"{m:+.4f}±{e:.4f}" for m, e in zip(s["mean"], s["se"]))
        flag = "" if s["unbiased"] else f"  biased: |bias| = {np.linalg.norm(s['bias']):.4f}"
        print(f"{label:<12} {name:<28} {mean:<44} {_vec(s['exact']):<28} {s['variance']:>15.4f}{flag}")
    print(f"wrote {plot(Path(args.out) / 'gradient-estimators.png', args.replicates, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
