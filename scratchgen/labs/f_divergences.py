"""The f-divergence family: JS is one member, and every member has a discriminator's lower bound.

Nowozin, Cseke & Tomioka (2016), "f-GAN". For a convex f with f(1) = 0,

    D_f(p ‖ q) = ∫ q(x) f(p(x)/q(x)) dx                         (p: the data, q: the model).

Its convex conjugate f*(t) = sup_u {ut − f(u)} gives f(u) = sup_t {tu − f*(t)}, and putting one t per
x (a function T(x)) under the integral gives the variational lower bound

    D_f(p ‖ q) ≥ E_p[T(x)] − E_q[f*(T(x))]     for every T,  with equality at T*(x) = f'(p(x)/q(x)).

A network outputs an unconstrained v(x); an output activation T = g(v) keeps T inside the domain of f*.
The three members here (the JS one is scaled so that D_f is chapter 3's d_JS):

===========  ==============================  =====================  ================  ===================
name         f(u)                            f*(t)                  g(v)              T* = f'(p/q)
===========  ==============================  =====================  ================  ===================
KL           u log u                         exp(t − 1)             v                 1 + log(p/q)
reverse KL   −log u                          −1 − log(−t)           −exp(−v)          −q/p
JS           ½[u log u − (1+u) log((1+u)/2)]  −½ log(2 − exp(2t))   ½ log(2σ(v))      ½ log(2p/(p+q))
===========  ==============================  =====================  ================  ===================

KL is d_KL(p, q), reverse KL is d_KL(q, p). For JS, with D = σ(v), the bound is
log 2 + ½(E_p log D + E_q log(1 − D)) — exactly the bound of chapter 5 and :mod:`.js_lab`.

The lab trains the discriminator of :mod:`.js_lab` (an MLP plus a quadratic term, so that it can
represent log p/q in the Gaussian tails) to maximise each bound on samples of the same p and q, and
tracks the bound of the current v by quadrature, which rises to D_f(p ‖ q) computed by quadrature.

Run ``python -m scratchgen.labs.f_divergences --out DIR`` (the lecture's figure: ``--out lectures/figures``).
"""
import math
import sys
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import optim
from ..random import manual_seed
from ..autograd import Tensor, no_grad
from . import js_lab, lab_parser

LOG2 = math.log(2.0)


class FDivergence:
    """One member of the family: f on arrays, and T = g(v) and f*(T) on Tensors (for training)."""

    def __init__(self, name, f, activation, conjugate, optimal_t):
        self.name, self.f, self.activation, self.conjugate, self.optimal_t = name, f, activation, conjugate, optimal_t

    def exact(self, p, q, x=None):
        """D_f(p ‖ q) = ∫ q f(p/q) dx by quadrature on the grid x."""
        x = js_lab.grid() if x is None else x
        px, qx = p.pdf(x), q.pdf(x)
        keep = qx > 0
        return float((qx[keep] * self.f(px[keep] / qx[keep])).sum() * (x[1] - x[0]))

    def bound_terms(self, v_p, v_q):
        """(E_p[T], E_q[f*(T)]) as Tensors from the network outputs v on samples of p and of q."""
        return self.activation(v_p).mean(), self.conjugate(self.activation(v_q)).mean()

    def bound(self, v_p, v_q):
        """E_p[g(v)] − E_q[f*(g(v))]: a lower bound on D_f(p ‖ q) (a Tensor, maximised in training)."""
        a, b = self.bound_terms(v_p, v_q)
        return a - b

    def bound_by_quadrature(self, v, p, q, x):
        """The bound of the function v (an array on the grid x), expectations taken exactly."""
        with no_grad():
            t = self.activation(Tensor(v)).data
            ft = self.conjugate(Tensor(t)).data
        dx = x[1] - x[0]
        return float((p.pdf(x) * t).sum() * dx - (q.pdf(x) * ft).sum() * dx)


def _xlogx(u):
    return np.where(u > 0, u * np.log(np.where(u > 0, u, 1.0)), 0.0)


DIVERGENCES = {
    "KL": FDivergence(
        "KL", f=_xlogx, activation=lambda v: v, conjugate=lambda t: (t - 1.0).exp(),
        optimal_t=lambda p, q: 1.0 + np.log(p / q)),
    "reverse KL": FDivergence(
        "reverse KL", f=lambda u: -np.log(u), activation=lambda v: -(-v).exp(),
        conjugate=lambda t: -1.0 - (-t).log(), optimal_t=lambda p, q: -q / p),
    "JS": FDivergence(
        "JS", f=lambda u: 0.5 * (_xlogx(u) - (1 + u) * np.log((1 + u) / 2)),
        activation=lambda v: (LOG2 - F.softplus(-v)) * 0.5,                   # ½ log(2σ(v)) < ½ log 2
        conjugate=lambda t: (2.0 - (t * 2.0).exp()).log() * -0.5,
        optimal_t=lambda p, q: 0.5 * np.log(2 * p / (p + q))),
}


def train(name, p=None, q=None, steps=1500, batch=512, lr=3e-3, seed=0, eval_every=50, n_eval=20000, x=None):
    """Maximise the bound of ``DIVERGENCES[name]`` over the lab's discriminator, q fixed.

    Returns ``(discriminator, history)`` with ``step``, ``bound`` (quadrature, for the current v),
    ``bound_samples`` and ``se`` (on ``n_eval`` held-out samples of each) and the constant ``exact``.
    """
    div = DIVERGENCES[name]
    p = js_lab.default_data() if p is None else p
    q = js_lab.default_model() if q is None else q
    x = js_lab.grid(-12.0, 12.0, 4801) if x is None else x
    manual_seed(seed)
    rng = np.random.default_rng([seed, 3])
    d = js_lab.Discriminator()
    opt = optim.Adam(d.parameters(), lr=lr)
    xp_eval, xq_eval = p.sample(n_eval, rng=rng), q.sample(n_eval, rng=rng)
    hist = {"step": [], "bound": [], "bound_samples": [], "se": [], "exact": div.exact(p, q, x)}
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            with no_grad():
                a = div.activation(d(xp_eval)).data
                b = div.conjugate(div.activation(d(xq_eval))).data
                v_grid = d(x).data
            hist["step"].append(step)
            hist["bound"].append(div.bound_by_quadrature(v_grid, p, q, x))
            hist["bound_samples"].append(float(a.mean() - b.mean()))
            hist["se"].append(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        if step == steps:
            break
        opt.lr = lr * min(1.0, 2.0 * (1.0 - step / steps))          # anneal over the second half, as js_lab
        loss = -div.bound(d(p.sample(batch, rng=rng)), d(q.sample(batch, rng=rng)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d, hist


def plot(histories, path):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(10.5, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        ax = fig.add_subplot(1, len(histories), i + 1)
        ax.axhline(h["exact"], color="k", lw=1.5, label=f"exact (quadrature) {h['exact']:.4f}")
        ax.plot(h["step"], h["bound"], color="C1", label="bound of the current T (quadrature)")
        b, se = np.array(h["bound_samples"]), np.array(h["se"])
        ax.plot(h["step"], b, color="C0", lw=0.8, label="bound on held-out samples")
        ax.fill_between(h["step"], b - 2 * se, b + 2 * se, color="C0", alpha=0.25)
        lo = min(0.0, float(np.min(h["bound"][1:])) if len(h["bound"]) > 1 else 0.0)
        ax.set_ylim(lo - 0.05 * abs(h["exact"]), 1.25 * h["exact"])
        ax.set_title(f"{name}: $E_p[T] - E_q[f^*(T)]$", fontsize=9)
        ax.set_xlabel("discriminator steps")
        if i == 0:
            ax.set_ylabel("nats")
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path, tight_layout=True)


def main(argv=None):
    ap = lab_parser("scratchgen.labs.f_divergences", __doc__, "the PNG figure")
    ap.add_argument("--steps", type=int, default=1500, help="discriminator steps per divergence (default 1500)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    histories = {}
    for name in DIVERGENCES:
        _, h = train(name, steps=args.steps, seed=args.seed)
        histories[name] = h
        print(f"{name:<11} exact {h['exact']:.5f}; bound of the trained T: {h['bound'][-1]:.5f} (quadrature), "
              f"{h['bound_samples'][-1]:.5f} ± {h['se'][-1]:.5f} (held-out samples); untrained {h['bound'][0]:.4f}")
    print(f"wrote {plot(histories, Path(args.out) / 'f-divergence-bounds.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
