"""Draw lectures/figures/vqvae2-level-swap.png (Chapter 9, §9.9): which level of a VQ-VAE-2 decides the digit?

Ten pairs of MNIST test images A and B; for each run, the images decoded from A's top codes and B's bottom
codes (``VQVAE2.swapped_levels``, the picture behind ``scratchgen eval``'s ``swap_class_of_top``).

Run: python lectures/figures/make_level_swap_figure.py "TITLE=RUN_FOLDER" ... [--data-dir DIR] \\
         --out vqvae2-level-swap.png
"""
import argparse

import numpy as np

from scratchgen.data import load
from scratchgen.training.config import load_run
from scratchgen.training.plots import figure, image_grid, save_figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="TITLE=RUN_FOLDER")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--out", default="vqvae2-level-swap.png")
    args = parser.parse_args(argv)
    n = args.pairs
    x = load("mnist", "test", data_dir=args.data_dir, scale="01")[:2 * n][0]
    rows = [("A (gives the top codes)", x[:n]), ("B (gives the bottom codes)", x[n:])]
    for title, folder in (r.split("=", 1) for r in args.runs):
        experiment = load_run(folder)[2]
        rows.append((f"{title}: top of A + bottom of B", experiment.swapped_levels(x)))
    fig = figure(figsize=(0.7 * n, 0.95 * len(rows)))
    for i, (title, images) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        ax.imshow(image_grid(np.clip(images, 0, 1), nrow=n, fill=0.0), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    save_figure(fig, args.out, tight_layout=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
