"""The 1-D Jensen–Shannon lab: a discriminator's bound rising to the exact JS divergence.

Two densities on the real line that we know exactly:

* the data p: a two-component Gaussian mixture (:class:`~scratchgen.data.toy.GaussianMixture1D`);
* the model q: one Gaussian N(μ, s²) — fixed, or with learnable μ and log s (a 1-D "generator"
  g_θ(ω) = μ + s·ω with ω ~ N(0, 1), whose pushforward q_θ we can still write down).

Because both densities are known, everything the GAN chapter claims can be checked on a grid:

1. **the exact JS** d_JS(p, q) by quadrature — :func:`exact_js`, which hands the discretised
   densities to :func:`scratchgen.divergences.js`;
2. **the discriminator's bound** log 2 + ½(E_p log D + E_q log(1 − D)) ≤ d_JS — estimated on fresh
   samples (:func:`bound_estimate`, with its standard error) and by quadrature for the current D
   (:func:`bound_by_quadrature`, via :func:`scratchgen.divergences.js_variational`);
3. **the optimal discriminator** p/(p + q), against the trained one;
4. **saturating vs non-saturating** generator losses: the gradient each sends back through the
   fake logit, as a function of D(G(z)), and a 1-D GAN trained with each from a bad start.

Run ``python -m scratchgen.labs.js_lab --out DIR`` to write the four figures (the lecture's are
made with ``--out lectures/figures``). Everything is float64 and seeded.
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .. import divergences, nn, optim
from .. import functional as F
from ..data.toy import GaussianMixture1D
from ..objectives import gan as objectives
from ..random import manual_seed
from ..autograd import Tensor, no_grad

LOG2 = math.log(2.0)


def default_data():
    """p: ½ N(−2, 0.6²) + ½ N(1.5, 0.8²)."""
    return GaussianMixture1D([-2.0, 1.5], [0.6, 0.8])


def default_model():
    """q: N(0.5, 1.5²), overlapping both bumps of p."""
    return GaussianMixture1D([0.5], [1.5])


def grid(lo=-20.0, hi=20.0, n=16001):
    return np.linspace(lo, hi, n)


def _discretise(density, x):
    w = density.pdf(x)
    return w / w.sum()  # NOTE: the Δx factor cancels in every ratio p/(p + q), so normalising is enough


def exact_js(p, q, x=None):
    """d_JS(p, q) by quadrature on the grid ``x`` (Riemann sum through :func:`divergences.js`)."""
    x = grid() if x is None else x
    return float(divergences.js(_discretise(p, x), _discretise(q, x)))


def optimal_discriminator(p, q, x):
    """t*(x) = p(x) / (p(x) + q(x)) at the points ``x`` (the maximiser of the bound, pointwise)."""
    px, qx = p.pdf(x), q.pdf(x)
    return px / (px + qx)


# ---------------------------------------------------------------------------- the discriminator
class Discriminator(nn.Module):
    """x (N,) -> logit l(x) (N,); D(x) = σ(l(x)). A small tanh MLP plus a quadratic term, in float64.

    NOTE: the optimal logit is log p(x) − log q(x), and with Gaussian tails that grows like x².
    A tanh network flattens out beyond the data and would leave a gap in the tails, so the logit
    is ``mlp(x) + a·x + b·x²``: the quadratic part alone is exactly optimal for two Gaussians
    (it is logistic regression on (x, x²)); the MLP adds the bumps of the mixture.
    """

    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden, dtype=np.float64), nn.Tanh(),
                                 nn.Linear(hidden, hidden, dtype=np.float64), nn.Tanh(),
                                 nn.Linear(hidden, 1, dtype=np.float64))
        self.quadratic = nn.Linear(2, 1, bias=False, dtype=np.float64)

    def forward(self, x):
        x = (x if isinstance(x, Tensor) else Tensor(np.asarray(x, np.float64))).reshape(-1, 1)
        return (self.net(x) + self.quadratic(F.cat([x, x * x], dim=1))).reshape(-1)

    def prob(self, x):
        with no_grad():
            return self(x).sigmoid().data


def bound_estimate(d, xp, xq):
    """(bound, standard error): log 2 + ½(mean log D(xp) + mean log(1 − D(xq))) on samples.

    The two means are independent, so se = ½ √(Var log D / n_p + Var log(1 − D) / n_q).
    """
    with no_grad():
        a = objectives.log_d(d(xp)).data
        b = objectives.log_one_minus_d(d(xq)).data
    bound = LOG2 + 0.5 * (a.mean() + b.mean())
    se = 0.5 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(bound), se


def bound_by_quadrature(d, p, q, x):
    """The same bound with the expectations taken exactly on the grid (no sampling error)."""
    return float(divergences.js_variational(_discretise(p, x), _discretise(q, x), d.prob(x)))


def train_discriminator(p, q, steps=1500, batch=256, lr=3e-3, hidden=32, seed=0, eval_every=50,
                        n_eval=20000, x=None):
    """Train D to separate samples of p (label 1) from samples of q (label 0), q fixed.

    Returns ``(d, history)``; history is a dict of lists over evaluation points: ``step``,
    ``bound`` (on ``n_eval`` held-out samples from each), ``se``, ``bound_exact`` (quadrature) and
    the constant ``js``.
    """
    x = grid() if x is None else x
    manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    d = Discriminator(hidden)
    opt = optim.Adam(d.parameters(), lr=lr)
    xp_eval, xq_eval = p.sample(n_eval, rng=rng), q.sample(n_eval, rng=rng)
    hist = {"step": [], "bound": [], "se": [], "bound_exact": [], "js": exact_js(p, q, x)}
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            b, se = bound_estimate(d, xp_eval, xq_eval)
            for k, v in (("step", step), ("bound", b), ("se", se), ("bound_exact", bound_by_quadrature(d, p, q, x))):
                hist[k].append(v)
        if step == steps:
            break
        opt.lr = lr * min(1.0, 2.0 * (1.0 - step / steps))  # anneal over the second half: less jitter at the end
        loss = objectives.discriminator_loss(d(p.sample(batch, rng=rng)), d(q.sample(batch, rng=rng)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d, hist


# ---------------------------------------------------------------------------- generator gradients
def measured_generator_gradients(d_values):
    """Per-sample ∂loss/∂l_f of both generator losses, measured by autograd at logits logit(D).

    Returns a dict like :func:`scratchgen.objectives.gan.generator_gradient_curves`, computed by
    backpropagation instead of by formula (the figure overlays the two; the tests compare them).
    """
    d_values = np.asarray(d_values, dtype=np.float64)
    out = {"d": d_values}
    for name, loss_fn in (("saturating", objectives.generator_loss_saturating),
                          ("nonsaturating", objectives.generator_loss_nonsaturating)):
        logits = Tensor(np.log(d_values) - np.log1p(-d_values), requires_grad=True)
        loss_fn(logits).backward()
        out[name] = logits.grad * len(d_values)  # the loss is a mean: undo the 1/N
    return out


class GaussianGenerator(nn.Module):
    """g_θ(ω) = μ + exp(log s)·ω, ω ~ N(0, 1): its pushforward q_θ is N(μ, s²), known exactly."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu = nn.Parameter(np.array([mu], dtype=np.float64))
        self.log_s = nn.Parameter(np.array([math.log(s)], dtype=np.float64))

    def forward(self, omega):
        return self.mu + self.log_s.exp() * Tensor(omega)

    def density(self):
        return GaussianMixture1D([float(self.mu.data[0])], [float(np.exp(self.log_s.data[0]))])


def _discriminator_step(d, opt_d, p, g, batch, rng):
    """Ascend V in φ on fresh real and fake batches; the fakes are constants here (G held fixed)."""
    with no_grad():
        fake = g(rng.standard_normal(batch))
    loss_d = objectives.discriminator_loss(d(p.sample(batch, rng=rng)), d(fake))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()


def train_gan_1d(p, loss="non-saturating", steps=600, d_steps=1, batch=256, lr_d=3e-3, lr_g=0.1,
                 g_optimizer="sgd", start=(7.0, 0.5), d_warmup=100, seed=0, eval_every=10, x=None):
    """The full game in 1-D: D and the Gaussian generator alternate, and the exact JS is tracked.

    ``start`` = (μ, s) of the initial generator, far from the data; ``d_warmup`` discriminator
    steps come first, so D rejects the fakes confidently, as it soon does in a real GAN. From
    there the saturating loss stalls and the non-saturating one recovers. Returns a history: ``step``, ``js`` (exact, quadrature),
    ``bound`` (the D's bound by quadrature), ``d_fake`` (mean D(G(z))), ``mu``, ``s`` and
    ``grad_norm`` (|∂ generator loss / ∂(μ, log s)| of the step).

    NOTE: the generator uses plain SGD by default (``g_optimizer="adam"`` for Adam). Adam divides
    each gradient by a running estimate of its own size, which rescues a tiny gradient as long as
    it points the right way, and so hides much of the saturation this lab is about.
    """
    if loss not in ("minimax", "non-saturating"):
        raise ValueError(f"loss must be 'minimax' or 'non-saturating', got {loss!r}")
    g_loss = objectives.generator_loss_saturating if loss == "minimax" else objectives.generator_loss_nonsaturating
    x = grid() if x is None else x
    manual_seed(seed)
    rng = np.random.default_rng([seed, 2])
    d, g = Discriminator(), GaussianGenerator(*start)
    opt_d = optim.Adam(d.parameters(), lr=lr_d, betas=(0.5, 0.999))
    opt_g = (optim.Adam(g.parameters(), lr=lr_g, betas=(0.5, 0.999)) if g_optimizer == "adam"
             else optim.SGD(g.parameters(), lr=lr_g))
    hist = {k: [] for k in ("step", "js", "bound", "d_fake", "mu", "s", "grad_norm")}
    grad_norm = 0.0
    for _ in range(d_warmup):
        _discriminator_step(d, opt_d, p, g, batch, rng)
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            q = g.density()
            with no_grad():
                fake = g(rng.standard_normal(2000))
            hist["step"].append(step)
            hist["js"].append(exact_js(p, q, x))
            hist["bound"].append(bound_by_quadrature(d, p, q, x))
            hist["d_fake"].append(float(d.prob(fake).mean()))
            hist["mu"].append(float(g.mu.data[0]))
            hist["s"].append(float(np.exp(g.log_s.data[0])))
            hist["grad_norm"].append(grad_norm)
        if step == steps:
            break
        for _ in range(d_steps):
            _discriminator_step(d, opt_d, p, g, batch, rng)
        # generator: descend its loss through the (fixed) discriminator; D's gradients are discarded
        loss_g = g_loss(d(g(rng.standard_normal(batch))))
        opt_g.zero_grad()
        loss_g.backward()
        grad_norm = float(np.sqrt(sum((prm.grad ** 2).sum() for prm in g.parameters())))
        opt_g.step()
        opt_d.zero_grad()
    return hist


# ---------------------------------------------------------------------------- figures
def _figure(width=6.4, height=4.0):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height))


def _save(fig, path):
    from ..training.plots import save_figure
    return save_figure(fig, path, tight_layout=True)


def plot_bound(hist, path):
    fig = _figure()
    ax = fig.add_subplot()
    step, b, se = np.array(hist["step"]), np.array(hist["bound"]), np.array(hist["se"])
    ax.axhline(hist["js"], color="k", lw=1.5, label=f"exact $d_{{JS}}(p, q)$ = {hist['js']:.4f} (quadrature)")
    ax.plot(step, hist["bound_exact"], color="C1", label="bound of the current D (quadrature)")
    ax.plot(step, b, color="C0", lw=1, label="bound on 20,000 held-out samples each")
    ax.fill_between(step, b - 2 * se, b + 2 * se, color="C0", alpha=0.25, label="± 2 standard errors")
    ax.set_xlabel("discriminator steps")
    ax.set_ylabel("nats")
    ax.set_title(r"$\log 2 + \frac{1}{2}(E_p \log D + E_q \log(1-D))$ rises to $d_{JS}$")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_discriminator(d, p, q, path, x=None):
    x = np.linspace(-6, 6, 601) if x is None else x
    fig = _figure(6.4, 5.0)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2, sharex=None)
    top.plot(x, p.pdf(x), label="data p")
    top.plot(x, q.pdf(x), label="model q")
    top.set_ylabel("density")
    top.legend(fontsize=8)
    t_star = optimal_discriminator(p, q, x)
    bottom.plot(x, t_star, color="k", lw=2, label="optimal $t^*(x) = p/(p+q)$")
    bottom.plot(x, d.prob(x), color="C3", ls="--", label="trained D(x)")
    bottom.set_xlabel("x")
    bottom.set_ylabel("D(x)")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(fontsize=8)
    return _save(fig, path)


def plot_generator_gradients(path):
    fig = _figure()
    ax = fig.add_subplot()
    curves = objectives.generator_gradient_curves(np.linspace(1e-3, 1 - 1e-3, 500))
    measured = measured_generator_gradients(np.linspace(0.02, 0.98, 17))
    ax.plot(curves["d"], np.abs(curves["saturating"]), color="C0",
            label=r"minimax (saturating): $\log(1 - D(G(z)))$, $|\partial/\partial l| = D$")
    ax.plot(curves["d"], np.abs(curves["nonsaturating"]), color="C1",
            label=r"non-saturating: $-\log D(G(z))$, $|\partial/\partial l| = 1 - D$")
    ax.plot(measured["d"], np.abs(measured["saturating"]), "o", color="C0", ms=4, label="measured by autograd")
    ax.plot(measured["d"], np.abs(measured["nonsaturating"]), "o", color="C1", ms=4)
    ax.axvspan(0, 0.1, color="0.9")
    ax.text(0.01, 0.5, "early training:\nD rejects fakes", fontsize=8)
    ax.set_xlabel("D(G(z)): the discriminator's belief that a fake is real")
    ax.set_ylabel("|gradient through the fake logit| per sample")
    ax.legend(fontsize=7, loc="upper center")
    return _save(fig, path)


def plot_gan_1d(histories, path):
    fig = _figure(6.4, 5.0)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    for (name, h), c in zip(histories.items(), ("C0", "C1")):
        top.plot(h["step"], h["js"], color=c, label=f"{name}: exact $d_{{JS}}(p, q_\\theta)$")
        top.plot(h["step"], h["bound"], color=c, ls=":", label=f"{name}: D's bound")
        bottom.plot(h["step"], h["d_fake"], color=c, label=f"{name}")
    top.set_ylabel("nats")
    top.axhline(LOG2, color="0.6", lw=0.8)
    top.legend(fontsize=7)
    bottom.set_ylabel("mean D(G(z))")
    bottom.set_xlabel("generator steps")
    bottom.legend(fontsize=8)
    return _save(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m scratchgen.labs.js_lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG figures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500, help="discriminator steps (default 1500)")
    ap.add_argument("--gan-steps", type=int, default=600, help="generator steps of the 1-D GANs (default 600)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    p, q = default_data(), default_model()
    d, hist = train_discriminator(p, q, steps=args.steps, seed=args.seed)
    b, se, exact = hist["bound"][-1], hist["se"][-1], hist["js"]
    print(f"exact JS (quadrature) {exact:.5f}; trained D's bound: {b:.5f} ± {se:.5f} on held-out samples, "
          f"{hist['bound_exact'][-1]:.5f} by quadrature")
    paths = [plot_bound(hist, out / "js-bound.png"), plot_discriminator(d, p, q, out / "js-discriminator.png"),
             plot_generator_gradients(out / "gan-generator-gradients.png")]
    runs = {loss: train_gan_1d(p, loss=loss, steps=args.gan_steps, seed=args.seed)
            for loss in ("minimax", "non-saturating")}
    for loss, h in runs.items():
        print(f"1-D GAN, {loss} loss: JS {h['js'][0]:.4f} -> {h['js'][-1]:.4f}; mean D(G(z)) at the end "
              f"{h['d_fake'][-1]:.3f}; q = N({h['mu'][-1]:.2f}, {h['s'][-1]:.2f}^2)")
    paths.append(plot_gan_1d(runs, out / "gan-1d-saturation.png"))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
