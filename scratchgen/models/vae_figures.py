"""Pictures of a trained VAE or CVAE, written into the run folder's ``figures/``.

=========================  ==================================================================
file                       what it shows
=========================  ==================================================================
reconstructions.png        validation images (odd rows) and E[x|z = μ(x)] (even rows)
samples.png                decoder means for z ~ p(z) (CVAE: labels 0..9 in turn)
interpolations.png         each row decodes z on the segment from μ(x_a) to μ(x_b)
latent_kl.png              per-dimension KL over training, and the number of active units
latent_manifold.png        (2-D latent) decoder means over a grid of z at Gaussian quantiles
latent_scatter.png         (2-D latent) posterior means of validation images, coloured by label
class_grid.png             (CVAE) one row of samples per class
confusion.png              (CVAE) the Bayes-rule classifier's confusion matrix on validation images
=========================  ==================================================================

:func:`save_run_comparison` draws the reconstruction and KL curves of several runs on shared
axes (the lecture's warm-up and free-bits figure).
"""
from statistics import NormalDist

import numpy as np

from ..evaluation import bayes_classifier
from ..training import plots
from ..training.metrics import column, number, read_metrics


def _range(model):
    return (-1.0, 1.0) if model.config.get("scale") == "pm1" else (0.0, 1.0)


def interpolation_grid(model, x_a, x_b, steps=10, y=None):
    """Decoder means along z(t) = (1 - t) μ(x_a) + t μ(x_b), t evenly spaced in [0, 1]:
    (pairs·steps, C, H, W), one row of ``steps`` images per pair. A CVAE encodes and decodes
    every point with the labels ``y`` (one per pair)."""
    za, zb = model.encode_mean(x_a, y), model.encode_mean(x_b, y)
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    z = ((1 - t) * za[:, None] + t * zb[:, None]).reshape(-1, za.shape[1])
    return model.decode_mean(z, None if y is None else np.repeat(np.asarray(y), steps))


def manifold_grid(model, n=15, y=None):
    """(n·n, C, H, W) decoder means over z on an n x n grid of standard-normal quantiles (Kingma &
    Welling 2014, Fig. 4): row i, column j decodes z = (Φ⁻¹(u_j), Φ⁻¹(u_i)), u evenly spaced in (0, 1)."""
    q = np.array([NormalDist().inv_cdf(u) for u in np.linspace(0.5 / n, 1 - 0.5 / n, n)])
    z = np.stack(np.meshgrid(q, q[::-1]), axis=-1).reshape(-1, 2)
    return model.decode_mean(z, None if y is None else np.full(len(z), y))


def _label(ax, xlabel=None, ylabel=None, title=None):
    """The small-print style of these figures: 8-pt axis labels, 7-pt ticks, a 9-pt title."""
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def save_latent_scatter(z, labels, path, title=None):
    fig = plots.figure(figsize=(4.6, 4))
    ax = fig.add_subplot()
    sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10))
    _label(ax, "$\\mu_1(x)$", "$\\mu_2(x)$", title)
    return plots.save_figure(fig, path)


def save_latent_kl(metrics_path, path, latent, title=None):
    """Heat map of val_kl_<j> per epoch (dimensions sorted by their final KL) and the active units."""
    rows, kls = [], []
    for r in read_metrics(metrics_path):  # rows with an empty or garbled cell are left out
        values = [number(r.get(f"val_kl_{j}")) for j in range(latent)] + [number(r.get("val_active_units"))]
        if r.get("kind") == "epoch" and None not in values:
            rows.append(r)
            kls.append(values[:-1])
    if not rows:
        return None
    kl = np.array(kls)
    order = np.argsort(-kl[-1])
    fig = plots.figure(figsize=(7.5, 3))
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.17, top=0.84, wspace=0.35)
    ax = fig.add_subplot(1, 2, 1)
    im = ax.imshow(kl[:, order].T, aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(0.5, len(rows) + 0.5, latent - 0.5, -0.5))
    fig.colorbar(im, ax=ax).set_label("KL (nats)", fontsize=8)
    _label(ax, "epoch", "latent dimension (by final KL)", "per-dimension KL (validation)")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(range(1, len(rows) + 1), [float(r["val_active_units"]) for r in rows], marker="o", ms=3)
    ax.set_ylim(0, latent + 0.5)
    _label(ax, "epoch", title="active units (Var μ > 0.01)")
    if title:
        fig.suptitle(title, fontsize=9)
    return plots.save_figure(fig, path)


def save_confusion(confusion, path, title=None):
    c = np.asarray(confusion)
    fig = plots.figure(figsize=(4.4, 4))
    ax = fig.add_subplot()
    ax.imshow(c, cmap="Blues")
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            if c[i, j]:
                ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if c[i, j] > c.max() / 2 else "black")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    _label(ax, "predicted class", "true class", title)
    return plots.save_figure(fig, path)


def save_run_comparison(runs, path, terms=("recon", "kl"), title=None, kind="step", ylims=None):
    """``runs``: [(label, metrics.csv path)]; one panel per term, one line per run (training means).
    ``ylims``: optional {term: (low, high)} to zoom past the first steps' large values."""
    fig = plots.figure(figsize=(3.4 * len(terms), 3))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    for i, term in enumerate(terms):
        ax = fig.add_subplot(1, len(terms), i + 1)
        for c, (label, metrics) in enumerate(runs):
            x, y = column(read_metrics(metrics), f"train_{term}", kind)
            ax.plot(x, y, c=f"C{c}", lw=1.2, label=label)
        if ylims and term in ylims:
            ax.set_ylim(*ylims[term])
        _label(ax, "step", title=f"train {term}")
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return plots.save_figure(fig, path)


def _common(model, run, data, name):
    fig_dir, vr = run.figures, _range(model)
    x, y = data[:64]
    y_arg = y if model.conditional else None
    paths = [plots.save_reconstructions(x[:32], model.reconstruct(x[:32], None if y_arg is None else y_arg[:32]),
                                        fig_dir / "reconstructions.png", value_range=vr,
                                        title=f"{name}: originals (odd rows) and reconstructions (even rows)")]
    latent_kl = save_latent_kl(run.metrics_path, fig_dir / "latent_kl.png", model.opts["latent"],
                               title=f"{name}: which latent dimensions are used")
    if latent_kl:
        paths.append(latent_kl)
    if model.opts["latent"] == 2:
        xs, ys = data[:2000]
        paths.append(plots.save_image_grid(manifold_grid(model, y=0 if model.conditional else None),
                                           fig_dir / "latent_manifold.png", value_range=vr, nrow=15,
                                           title=f"{name}: decoder means over a grid of z"
                                                 + (" (label 0)" if model.conditional else "")))
        if ys is not None:
            paths.append(save_latent_scatter(model.encode_mean(xs, ys if model.conditional else None), ys,
                                             fig_dir / "latent_scatter.png",
                                             title=f"{name}: posterior means of validation images"))
    return paths


def vae_figures(model, run, data):
    vr = _range(model)
    paths = _common(model, run, data, "VAE")
    paths.append(plots.save_image_grid(model.sample(64), run.figures / "samples.png", value_range=vr,
                                       title="VAE: decoder means for z ~ N(0, I)"))
    x, _ = data[:16]
    paths.append(plots.save_image_grid(interpolation_grid(model, x[:8], x[8:16]), run.figures / "interpolations.png",
                                       nrow=10, value_range=vr, title="VAE: decoding the segment μ(x_a) → μ(x_b)"))
    return paths


def cvae_figures(model, run, data, confusion_examples=300, confusion_k=10):
    vr = _range(model)
    k = model.info.num_classes
    paths = _common(model, run, data, "CVAE")
    paths.append(plots.save_image_grid(model.sample_given(10 * k, np.repeat(np.arange(k), 10)),
                                       run.figures / "class_grid.png", nrow=10, value_range=vr,
                                       title="CVAE: samples of z ~ p(z|y), one row per class y"))
    x, y = data[:confusion_examples]
    result = bayes_classifier.evaluate_cvae(model, x, y, k=confusion_k)
    paths.append(save_confusion(result["confusion"], run.figures / "confusion.png",
                                title=f"Bayes-rule classifier, {len(x)} validation images, k={confusion_k}\n"
                                      f"accuracy {result['accuracy']:.3f}"))
    return paths
