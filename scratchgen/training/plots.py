"""Figures for a run folder: image grids, reconstructions, 2-D point clouds, loss curves.

Everything draws on matplotlib's headless Agg canvas (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``, so it works without a display and never changes the backend of a notebook
that imports it. Each PNG is written atomically (:func:`scratchgen.files.atomic_write`), so a figure
that is being refreshed during training is never seen half written.

NOTE: matplotlib is imported by :func:`figure` and :func:`save_figure`, not at the top: importing it
costs ~0.4 s, and `scratchgen --help` (which imports the model families) should not pay for it.
"""
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .metrics import column, read_metrics


def figure(**kw):
    """A new matplotlib ``Figure`` (not attached to pyplot); keywords as for ``Figure``."""
    from matplotlib.figure import Figure
    return Figure(**kw)


def save_figure(fig, path, tight_layout=False):
    """Write ``fig`` as a PNG at ``path`` (parent folders created), atomically; returns the path."""
    path = Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    if tight_layout:
        fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return path


def image_grid(images, nrow=None, pad=1, fill=1.0):
    """Tile images (N, H, W), (N, 1, H, W) or (N, 3, H, W) into one array, ``nrow`` per row."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    if images.ndim not in (3, 4):
        raise ValueError(f"image_grid expects (N, H, W), (N, 1, H, W) or (N, 3, H, W), got {images.shape}")
    n, h, w = images.shape[:3]
    ncol = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / ncol))
    grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad) + images.shape[3:], fill)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return grid


def save_image_grid(images, path, title=None, nrow=None, value_range=(0.0, 1.0)):
    """A grid of images as a PNG (white is ``value_range[1]``'s ink shown dark: gray_r colormap)."""
    lo, hi = value_range
    grid = image_grid(np.clip((np.asarray(images, np.float64) - lo) / (hi - lo), 0, 1), nrow=nrow, fill=0.0)
    size = max(2.5, min(8.0, grid.shape[1] / 12))
    fig = figure(figsize=(size, size * grid.shape[0] / grid.shape[1] + (0.4 if title else 0)))
    ax = fig.add_axes((0, 0, 1, 0.92 if title else 1))
    ax.imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_reconstructions(originals, reconstructions, path, title=None, value_range=(0.0, 1.0), per_row=8):
    """Rows alternate: ``per_row`` originals, then their reconstructions underneath."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ")
    n = (len(originals) // per_row) * per_row or len(originals)
    pairs = []
    for start in range(0, n, per_row):
        pairs += [originals[start:start + per_row], reconstructions[start:start + per_row]]
    return save_image_grid(np.concatenate(pairs), path, title=title,
                           nrow=min(per_row, n), value_range=value_range)


def save_points(points, path, title=None, reference=None):
    """A 2-D scatter of samples (and, lightly behind them, reference data)."""
    fig = figure(figsize=(4, 4))
    ax = fig.add_subplot()
    if reference is not None:
        ax.scatter(*np.asarray(reference)[:, :2].T, s=3, c="0.75", label="data")
    ax.scatter(*np.asarray(points)[:, :2].T, s=3, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_loss_curves(metrics_path, path, terms, title=None):
    """One panel per loss term against the step: step-interval means, epoch means, validation."""
    rows = read_metrics(metrics_path)
    fig = figure(figsize=(3.2 * len(terms), 3))
    # NOTE: fixed margins; tight_layout would cost more than drawing the figure itself
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    for i, term in enumerate(terms):
        ax = fig.add_subplot(1, len(terms), i + 1)
        for name, kind, style in ((f"train_{term}", "step", dict(c="C0", alpha=0.35, lw=1)),
                                  (f"train_{term}", "epoch", dict(c="C0", marker="o", ms=3, label="train")),
                                  (f"val_{term}", "epoch", dict(c="C1", marker="o", ms=3, label="validation"))):
            x, y = column(rows, name, kind)
            if x:
                ax.plot(x, y, **style)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
