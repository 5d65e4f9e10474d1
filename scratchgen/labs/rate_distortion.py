"""The ELBO as rate and distortion, and the two parts of its gap.

**Rate and distortion** (Alemi et al. 2018, "Fixing a Broken ELBO"). Per image, −ELBO splits into

    distortion D = −E_q[log p(x|z)]     (what the code fails to say about x)
    rate       R = d_KL(q(z|x), p(z))    (how many nats the code spends on x)

so −ELBO = D + R, and the lines of constant −ELBO in the (R, D) plane have slope −1. A β-VAE
minimises D + βR (Higgins et al. 2017): β < 1 buys a lower distortion with more rate, β > 1 the
reverse, and every β lands on a different point of the same trade-off. :func:`beta_sweep` trains one
VAE per β (``scratchgen train vae --beta B``, the same experiment, driven from here) and measures
(R, D), the active units and samples. Two things to see: where the rate falls so low that latent
dimensions stop carrying information (*posterior collapse*: the active units drop), and where the
distortion grows and the decoder's means turn into blurred averages.

**Approximation and amortisation gaps** (Cremer, Li & Duvenaud 2018, "Inference Suboptimality in
Variational Autoencoders"). For one x,

    log p(x) − ELBO(q_enc) =  [log p(x) − ELBO(q*)]  +  [ELBO(q*) − ELBO(q_enc)]
                              approximation gap          amortisation gap

where q* is the best member of the variational family *for this x* and q_enc the one the shared
encoder outputs. On the linear-Gaussian model (:mod:`scratchgen.linear_gaussian`) both are exact:
the posterior is N(m, S), S⁻¹ = Λ = I + WᵀW/σ², and the best diagonal Gaussian under d_KL(q, p(z|x))
has mean m and variances 1/Λ_jj, so the approximation gap is ½(Σ_j log Λ_jj − log det Λ) for every
x. :func:`optimise_per_point` finds q* by gradient ascent for each x separately (checking the
formula); :func:`train_encoder` fits an amortised encoder on training points and
:func:`amortisation_study` measures both gaps on held-out points.

Run ``python -m scratchgen.labs.rate_distortion --out DIR`` (the lecture's figures:
``--out lectures/figures``; the β sweep trains seven digits8 VAEs, a few minutes on one core).
"""
import math
import sys
from pathlib import Path

import numpy as np

from .. import nn, optim
from ..linear_gaussian import LinearGaussian
from ..random import manual_seed
from ..autograd import Tensor, no_grad
from . import lab_parser

BETAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------- rate and distortion
def sharpness(images):
    """Mean |2x − 1| over pixels: 1 for black-and-white images, 0 for a uniform grey. Blur lowers it."""
    return float(np.abs(2 * np.asarray(images, np.float64) - 1).mean())


def train_beta(beta, data="digits8", epochs=15, latent=8, hidden=(128,), seed=0, n_samples=64, data_dir=None,
               **settings):
    """Train one β-VAE (``scratchgen train vae --beta B``; ``settings`` such as batch_size, lr) and
    measure it on the validation split.

    Returns a dict: ``beta``, ``rate`` (mean KL, nats), ``distortion`` (mean −E_q log p(x|z)),
    ``neg_elbo``, ``active_units``, ``kl_per_dim``, ``samples`` (n_samples decoder means of z ~ p(z))
    and their ``sharpness``.
    """
    from ..data import DATASETS, DataLoader, load
    from ..models.vae import VAE
    from ..training.config import resolve_config
    config = resolve_config(VAE, dict(data=data, beta=float(beta), epochs=epochs, latent=latent,
                                      hidden=list(hidden), seed=seed, data_dir=data_dir, **settings))
    manual_seed(seed)
    experiment = VAE(config, DATASETS[data])
    kw = dict(data_dir=data_dir, scale=config["scale"], binarize=config["binarize"], seed=seed)
    train, val = load(data, "train", **kw), load(data, "val", **kw)
    loader = DataLoader(train, batch_size=config["batch_size"], shuffle=True, seed=seed)
    for epoch in range(epochs):
        experiment.start_epoch(epoch)
        for batch in loader:
            experiment.train_step(batch)
    stats = experiment.evaluate(val)
    manual_seed(seed + 1)
    samples = experiment.sample(n_samples)
    return {"beta": float(beta), "rate": stats["kl"], "distortion": stats["recon"], "neg_elbo": stats["loss"],
            "active_units": int(stats["active_units"]), "kl_per_dim": [stats[f"kl_{j}"] for j in range(latent)],
            "samples": samples, "sharpness": sharpness(samples), "data_sharpness": sharpness(val.data),
            "mean_image_sharpness": sharpness(val.data.mean(axis=0))}


def beta_sweep(betas=BETAS, **kw):
    """:func:`train_beta` for each β, in order."""
    return [train_beta(b, **kw) for b in betas]


def collapse_beta(points):
    """The smallest β at which fewer latent dimensions are active than at the smallest β (or None)."""
    first = points[0]["active_units"]
    return next((p["beta"] for p in points if p["active_units"] < first), None)


def blur_beta(points):
    """The smallest β whose samples' sharpness has fallen more than halfway from the smallest β's
    towards that of the data's mean image (the decoder's output once z carries nothing); or None."""
    top, floor = points[0]["sharpness"], points[0]["mean_image_sharpness"]
    return next((p["beta"] for p in points if p["sharpness"] < (top + floor) / 2), None)


def plot_rate_distortion(points, path):
    from matplotlib.figure import Figure

    from ..training.plots import image_grid, save_figure
    fig = Figure(figsize=(11.0, 4.6))
    ax = fig.add_subplot(1, 2, 1)
    R, D = np.array([p["rate"] for p in points]), np.array([p["distortion"] for p in points])
    lo, hi = 0.0, max(R.max(), D.max()) * 1.05 + (D.max() - D.min())
    for level in np.unique(np.round(R + D, 1)):
        ax.plot([lo, level], [level, lo], color="0.85", lw=0.8, zorder=0)
    ax.plot(R, D, "-o", color="C0", zorder=2)
    collapse, blur = collapse_beta(points), blur_beta(points)
    for i, p in enumerate(points):
        ax.annotate(f"β={p['beta']:g}\n{p['active_units']} active", (p["rate"], p["distortion"]), fontsize=7,
                    xytext=(6, 4 if i % 2 == 0 else -20), textcoords="offset points")
        if collapse is not None and p["beta"] >= collapse:
            ax.plot(p["rate"], p["distortion"], "o", mfc="none", mec="C3", ms=11)
        if blur is not None and p["beta"] >= blur:
            ax.plot(p["rate"], p["distortion"], "s", mfc="none", mec="C1", ms=15)
    ax.set_xlim(0, R.max() * 1.15 + 0.5)
    ax.set_ylim(D.min() - 0.15 * (D.max() - D.min()) - 0.5, D.max() + 0.1 * (D.max() - D.min()) + 0.5)
    ax.set_xlabel("rate R = KL(q(z|x), p(z))  [nats]")
    ax.set_ylabel("distortion D = −E_q log p(x|z)  [nats]")
    ax.set_title("β-VAE, validation set; grey lines: −ELBO = D + R constant (slope −1)\n"
                 "red circles: fewer active units than at the smallest β (collapse)\n"
                 "orange squares: blurred samples (blur_beta)", fontsize=8)
    right = fig.add_subplot(1, 2, 2)
    rows = [image_grid(np.clip(p["samples"][:8], 0, 1), nrow=8) for p in points]
    right.imshow(np.concatenate(rows, axis=0), cmap="gray", vmin=0, vmax=1)
    h = rows[0].shape[0]
    right.set_yticks([h * (i + 0.5) for i in range(len(points))], [f"β={p['beta']:g}\nsharpness {p['sharpness']:.2f}" for p in points], fontsize=7)
    right.set_xticks([])
    right.set_title("decoder means of z ~ p(z), one row per β\nsharpness = mean |2x − 1| over pixels", fontsize=8)
    return save_figure(fig, path, tight_layout=True)


# ---------------------------------------------------------------------------- the two gaps
def default_model():
    """A 4-d linear-Gaussian model with a 2-d latent whose posterior is correlated (ρ ≈ −0.59)."""
    return LinearGaussian.random(4, 2, noise_std=0.5, seed=0)


def diagonal_elbo(lg, x, mean, log_var):
    """The closed-form ELBO of q = N(mean, diag(exp(log_var))) per row of x, as a Tensor (N,).

    E_q log p(x|z) = −D/2 log(2πσ²) − (‖x − W m − b‖² + Σ_j v_j ‖W_:j‖²) / (2σ²),
    d_KL(q, N(0, I)) = ½ Σ_j (v_j + m_j² − 1 − log v_j)  — :meth:`LinearGaussian.elbo` for a diagonal q.
    """
    s2 = lg.noise_var
    x = Tensor(np.asarray(x, np.float64))
    resid = x - mean @ Tensor(lg.W.T) - Tensor(lg.b)
    v = log_var.exp()
    col_norms = Tensor((lg.W ** 2).sum(axis=0))
    recon = -0.5 * lg.data_dim * math.log(2 * math.pi * s2) - ((resid * resid).sum(axis=1) + (v * col_norms).sum(axis=1)) * (0.5 / s2)
    kl = (v + mean * mean - 1.0 - log_var).sum(axis=1) * 0.5
    return recon - kl


def best_diagonal(lg, x):
    """q* in closed form: (mean (N, d), variances (d,)) = (posterior mean, 1/diag(Λ))."""
    m, S = lg.posterior(x)
    return m, 1.0 / np.diag(np.linalg.inv(S))


def approximation_gap(lg):
    """log p(x) − ELBO(q*) = d_KL(q*, p(z|x)) = ½(Σ_j log Λ_jj − log det Λ): the same for every x."""
    precision = np.eye(lg.latent_dim) + lg.W.T @ lg.W / lg.noise_var
    return 0.5 * (np.log(np.diag(precision)).sum() - np.linalg.slogdet(precision)[1])


def optimise_per_point(lg, x, steps=500, lr=0.05):
    """q* for each row of x separately, by Adam on the ELBO: (mean, log_var, elbo per row)."""
    n = len(x)
    mean = Tensor(np.zeros((n, lg.latent_dim)), requires_grad=True)
    log_var = Tensor(np.zeros((n, lg.latent_dim)), requires_grad=True)
    opt = optim.Adam([mean, log_var], lr=lr)
    for _ in range(steps):
        loss = -diagonal_elbo(lg, x, mean, log_var).sum()      # the rows are independent problems
        opt.zero_grad()
        loss.backward()
        opt.step()
    with no_grad():
        return mean.data, log_var.data, diagonal_elbo(lg, x, mean, log_var).data


class Encoder(nn.Module):
    """x -> (mean, log_var) of a diagonal q(z|x): linear (``hidden=0``) or a one-hidden-layer tanh MLP."""

    def __init__(self, data_dim, latent_dim, hidden=0):
        super().__init__()
        f64 = dict(dtype=np.float64)
        self.body = (nn.Linear(data_dim, 2 * latent_dim, **f64) if hidden == 0 else
                     nn.Sequential(nn.Linear(data_dim, hidden, **f64), nn.Tanh(), nn.Linear(hidden, 2 * latent_dim, **f64)))
        self.latent_dim = latent_dim

    def forward(self, x):
        out = self.body(Tensor(np.asarray(x, np.float64)))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]


def train_encoder(lg, x_train, x_test, hidden=0, steps=2000, batch=128, lr=3e-2, seed=0, eval_every=100):
    """Fit an amortised encoder to the ELBO with the decoder fixed at the true model.

    Returns ``(encoder, history)``: ``step`` and ``amortisation_gap`` (mean over x_test of
    ELBO(q*) − ELBO(q_enc)).
    """
    manual_seed(seed)
    rng = np.random.default_rng([seed, 5])
    enc = Encoder(lg.data_dim, lg.latent_dim, hidden)
    opt = optim.Adam(enc.parameters(), lr=lr)
    m_star, v_star = best_diagonal(lg, x_test)
    best = lg.elbo(x_test, m_star, np.diag(v_star))
    hist = {"step": [], "amortisation_gap": []}
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            with no_grad():
                elbo_enc = diagonal_elbo(lg, x_test, *enc(x_test)).data
            hist["step"].append(step)
            hist["amortisation_gap"].append(float((best - elbo_enc).mean()))
        if step == steps:
            break
        opt.lr = lr * min(1.0, 2.0 * (1.0 - step / steps))
        xb = x_train[rng.integers(0, len(x_train), batch)]
        loss = -diagonal_elbo(lg, xb, *enc(xb)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc, hist


def amortisation_study(lg=None, n_train=2000, n_test=500, encoders=(("linear", 0), ("tanh MLP, 1 hidden unit", 1)),
                       steps=2000, seed=0):
    """Both gaps on held-out points, for each encoder; also the per-point optimum as a check.

    Returns a dict: ``log_p`` (mean over the test points), ``approximation_gap`` (closed form),
    ``approximation_gap_optimised`` (log p − ELBO of per-point Adam), and per encoder name its
    history and final ``amortisation_gap``.
    """
    lg = default_model() if lg is None else lg
    rng = np.random.default_rng([seed, 4])
    x_train, _ = lg.sample(n_train, rng=rng)
    x_test, _ = lg.sample(n_test, rng=rng)
    log_p = lg.log_prob(x_test)
    _, _, elbo_opt = optimise_per_point(lg, x_test)
    out = {"log_p": float(log_p.mean()), "approximation_gap": approximation_gap(lg),
           "approximation_gap_optimised": float((log_p - elbo_opt).mean()), "encoders": {}}
    for name, hidden in encoders:
        _, hist = train_encoder(lg, x_train, x_test, hidden=hidden, steps=steps, seed=seed)
        out["encoders"][name] = {"history": hist, "amortisation_gap": hist["amortisation_gap"][-1]}
    return out


def plot_gaps(study, path):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(10.0, 4.0))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = list(study["encoders"])
    approx = study["approximation_gap"]
    amort = [study["encoders"][n]["amortisation_gap"] for n in names]
    left.bar(names, [approx] * len(names), color="C0", label="approximation gap (diagonal q)")
    left.bar(names, amort, bottom=[approx] * len(names), color="C1", label="amortisation gap (shared encoder)")
    for i, a in enumerate(amort):
        left.text(i, approx + a, f"{approx + a:.3f}", ha="center", va="bottom", fontsize=8)
    left.set_ylabel("log p(x) − ELBO, nats (mean over held-out x)")
    left.legend(fontsize=8)
    left.set_title("the gap, split (linear-Gaussian model, exact log p(x))", fontsize=9)
    for i, n in enumerate(names):
        h = study["encoders"][n]["history"]
        right.semilogy(h["step"], np.maximum(h["amortisation_gap"], 1e-6), color=f"C{i + 2}", label=n)
    right.axhline(approx, color="C0", ls="--", lw=1, label="approximation gap")
    right.set_xlabel("encoder training steps")
    right.set_ylabel("amortisation gap, nats")
    right.legend(fontsize=8)
    return save_figure(fig, path, tight_layout=True)


def main(argv=None):
    ap = lab_parser("scratchgen.labs.rate_distortion", __doc__)
    ap.add_argument("--data", default="digits8", help="dataset of the β sweep (default digits8; mnist needs the files)")
    ap.add_argument("--data-dir", default=None, help="folder with the dataset files (for --data mnist)")
    ap.add_argument("--epochs", type=int, default=15, help="epochs per β (default 15)")
    ap.add_argument("--betas", default=",".join(f"{b:g}" for b in BETAS), help="comma-separated β values")
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--hidden", default="128", help="hidden layer sizes, comma-separated (default 128)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder-steps", type=int, default=2000, help="training steps of each amortised encoder")
    ap.add_argument("--skip-sweep", action="store_true", help="only the linear-Gaussian gaps (seconds)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    study = amortisation_study(steps=args.encoder_steps, seed=args.seed)
    print(f"linear-Gaussian model: mean log p(x) = {study['log_p']:.4f} on held-out points")
    print(f"approximation gap: {study['approximation_gap']:.4f} (closed form), "
          f"{study['approximation_gap_optimised']:.4f} (q optimised per point)")
    for name, e in study["encoders"].items():
        print(f"amortisation gap, {name} encoder: {e['amortisation_gap']:.4f} "
              f"(after {e['history']['step'][-1]} steps; {e['history']['amortisation_gap'][0]:.3f} at the start)")
    paths = [plot_gaps(study, out / "amortisation-gap.png")]
    if not args.skip_sweep:
        try:
            betas = [float(b) for b in args.betas.split(",")]
            hidden = [int(h) for h in args.hidden.split(",")]
        except ValueError:
            ap.error(f"--betas and --hidden must be comma-separated numbers, got {args.betas!r} and {args.hidden!r}")
        points = beta_sweep(betas, data=args.data, epochs=args.epochs, latent=args.latent, hidden=hidden,
                            seed=args.seed, data_dir=args.data_dir, batch_size=args.batch_size, lr=args.lr)
        print(f"{'beta':>6} {'rate R':>9} {'distortion D':>13} {'-ELBO':>9} {'active units':>13} {'sharpness':>10}")
        for p in points:
            print(f"{p['beta']:>6g} {p['rate']:>9.3f} {p['distortion']:>13.3f} {p['neg_elbo']:>9.3f} "
                  f"{p['active_units']:>13d} {p['sharpness']:>10.3f}")
        print(f"collapse (fewer active units than at beta = {points[0]['beta']:g}) from beta = {collapse_beta(points)}; "
              f"blur (sharpness below {(points[0]['sharpness'] + points[0]['mean_image_sharpness']) / 2:.3f}, halfway "
              f"to the mean image's {points[0]['mean_image_sharpness']:.3f}) from beta = {blur_beta(points)}; "
              f"the data's own sharpness: {points[0]['data_sharpness']:.3f}")
        paths.append(plot_rate_distortion(points, out / f"rate-distortion-{args.data}.png"))
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
