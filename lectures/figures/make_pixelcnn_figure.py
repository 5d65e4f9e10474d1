"""Draw lectures/figures/pixelcnn-receptive-field.png (Chapter 8, §8.3): which positions of a 5x5 grid
influence the output at (4, 1) after six 3x3 layers, for one masked stack and for the gated PixelCNN's two
stacks. Run: python lectures/figures/make_pixelcnn_figure.py (a few seconds)."""
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from scratchgen.models import pixelcnn as pc
from scratchgen.random import manual_seed
from scratchgen.autograd import Tensor
from scratchgen.training.plots import save_figure

GRID, POSITION, LAYERS = (5, 5), 21, 6


def fields():
    codes = np.random.default_rng(0).integers(0, 5, (1, 25))
    manual_seed(0)
    convs = [pc.MaskedConv2d(1 if i == 0 else 4, 4, pc.single_stack_mask(3, "A" if i == 0 else "B"), 1,
                             dtype=np.float64) for i in range(LAYERS)]

    def single_stack(c):
        x = Tensor(c.reshape(len(c), 1, *GRID).astype(np.float64))
        for conv in convs:
            x = conv(x)
        return x.data.sum(1).reshape(len(c), 25, 1)
    manual_seed(0)
    gated = pc.GatedPixelCNN(GRID, 5, channels=6, layers=LAYERS, kernel_size=3, embed=3, dtype=np.float64)
    return (pc.receptive_field(single_stack, codes, 5, POSITION),
            pc.receptive_field(lambda c: gated.logits(c).data, codes, 5, POSITION))


def main(out=Path(__file__).resolve().parent / "pixelcnn-receptive-field.png"):
    one, two = fields()
    fig = Figure(figsize=(7, 3.4))
    axes = fig.subplots(1, 2)
    for ax, field, title in ((axes[0], one, "one masked stack (PixelCNN)"),
                             (axes[1], two, "vertical + horizontal stacks (gated PixelCNN)")):
        img = np.ones((25, 3))                                   # white: after the position (never seen)
        img[np.arange(25) < POSITION] = (1.0, 0.85, 0.3)          # orange: earlier but NOT seen (blind spot)
        img[field] = (0.35, 0.6, 0.9)                             # blue: seen
        img[POSITION] = (0.85, 0.15, 0.15)                        # red: the position
        ax.imshow(img.reshape(5, 5, 3), interpolation="nearest")
        ax.set_xticks(range(5)), ax.set_yticks(range(5))
        ax.set_xticks(np.arange(-0.5, 5), minor=True), ax.set_yticks(np.arange(-0.5, 5), minor=True)
        ax.grid(which="minor", color="k", linewidth=0.5)
        missed = int((~field[:POSITION]).sum())
        ax.set_title(f"{title}\n{int(field.sum())} of {POSITION} earlier positions seen, {missed} missed",
                     fontsize=8)
    fig.suptitle(f"Receptive field of position (4, 1) after {LAYERS} layers of 3x3 masked convolutions "
                 "(blue: seen, orange: blind spot)", fontsize=8)
    return save_figure(fig, out, tight_layout=True)


if __name__ == "__main__":
    print(main())
