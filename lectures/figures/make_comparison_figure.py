"""Draw lectures/figures/mnist-families-samples.png (Chapter 9, §9.9): 64 samples of each family side by
side, drawn by `scratchgen sample RUN --n 64 --seed 0 --out NAME.npy` from each run of the comparison table.

Run: python lectures/figures/make_comparison_figure.py "VAE=vae.npy" "CVAE=cvae.npy" "DCGAN=dcgan.npy" \\
         "VQ-VAE=vqvae.npy" "VQ-VAE-2=vqvae2.npy" [--scale TITLE=pm1 ...] --out mnist-families-samples.png

A sample file of a model trained on [-1, 1] (the DCGAN) is mapped to [0, 1] with ``--pm1 TITLE``.
"""
import argparse

import numpy as np

from scratchgen.training.plots import figure, image_grid, save_figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("panels", nargs="+", metavar="TITLE=FILE.npy")
    parser.add_argument("--pm1", action="append", default=[], metavar="TITLE",
                        help="the samples of this panel are in [-1, 1]")
    parser.add_argument("--out", default="mnist-families-samples.png")
    args = parser.parse_args(argv)
    panels = [p.split("=", 1) for p in args.panels]
    fig = figure(figsize=(2.6 * len(panels), 3.0))
    for i, (title, path) in enumerate(panels):
        images = np.load(path, allow_pickle=False)[:64]
        if title in args.pm1:
            images = (images + 1) / 2
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(image_grid(np.clip(images, 0, 1), nrow=8, fill=0.0), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_axis_off()
    save_figure(fig, args.out, tight_layout=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
