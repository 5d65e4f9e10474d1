"""Mode collapse, side by side: samples of several trained GAN runs on a 2-D toy dataset.

    python -m scratchgen.labs.mode_collapse RUN_DIR [RUN_DIR ...] --out FIGURE.png [--n 2500]

Each panel shows ``--n`` fresh samples of one run (drawn from its latest checkpoint with
``--seed``) over the data, titled with the standard metric of
:func:`scratchgen.evaluation.mode_coverage` — modes covered and the fraction of high-quality samples.
The lecture's figure ``lectures/figures/gan-ring8-collapse-vs-pacgan.png`` is made this way from a
plain GAN run and a ``--preset ring8`` run.
"""
import argparse
import sys

import numpy as np

from ..data.datasets import TOY
from ..evaluation import mode_coverage
from ..random import manual_seed


def panel_data(run_dir, n=2500, seed=0):
    """``(samples, mixture, coverage, config)`` of one toy-data run."""
    from ..training.config import load_run
    _, config, experiment, _ = load_run(run_dir)
    if config["data"] not in TOY:
        raise ValueError(f"{run_dir} was trained on {config['data']!r}; this figure needs 2-D toy data {sorted(TOY)}")
    manual_seed(seed)
    samples = experiment.sample(n)
    mixture = TOY[config["data"]]()
    return samples, mixture, mode_coverage(samples, mixture), config


def _label(config):
    o = config["options"]
    parts = [o.get("gan_loss", "")]
    if o.get("pack", 1) > 1:
        parts.append(f"pack {o['pack']}")
    if o.get("lr_decay", "none") != "none":
        parts.append(f"lr decay {o['lr_decay']}")
    return ", ".join(parts) + f", seed {config['seed']}"


def figure(run_dirs, out, n=2500, seed=0):
    from matplotlib.figure import Figure
    from ..training.plots import save_figure
    fig = Figure(figsize=(4 * len(run_dirs), 4.3))
    for i, run_dir in enumerate(run_dirs):
        samples, mixture, cov, config = panel_data(run_dir, n, seed)
        ax = fig.add_subplot(1, len(run_dirs), i + 1)
        data = mixture.sample(n, rng=np.random.default_rng(seed))
        ax.scatter(*data.T, s=2, c="0.75", label="data")
        ax.scatter(*samples.T, s=2, c="C0", label="samples")
        ax.set_aspect("equal")
        ax.set_title(f"{_label(config)}\n{cov['modes_covered']}/{cov['n_modes']} modes, "
                     f"{100 * cov['high_quality_fraction']:.1f}% high quality", fontsize=9)
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
    return save_figure(fig, out, tight_layout=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m scratchgen.labs.mode_collapse", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", required=True, metavar="FILE")
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"wrote {figure(args.run_dirs, args.out, args.n, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
