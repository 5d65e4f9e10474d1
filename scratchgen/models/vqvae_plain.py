"""The plain-convolution VQ-VAE networks of scratchgen before issue 10 (``--arch plain``).

Stride-2 3x3 convolutions down to the code grid and transposed ones back up, with no residual
blocks. They are kept, unchanged, so that run folders written with them still load and give the
numbers they gave (``tests/test_old_checkpoints.py``): a config.json without an ``arch`` option
rebuilds these networks. New runs use the paper's design in :mod:`scratchgen.models.vqvae`.
"""
from .. import functional as F
from .. import nn
from .vq_levels import OneLevelNet, TwoLevelNet
from .vector_quantizer import VectorQuantizer


def grid_sizes(size, steps):
    """Image size (H, W) and the sizes after each stride-2 convolution: H -> ceil(H / 2)."""
    sizes = [tuple(size)]
    for _ in range(steps):
        sizes.append(tuple((s + 1) // 2 for s in sizes[-1]))
    return sizes


def down(a, b):
    """Conv2d(kernel 3, stride 2, padding 1): halves the size (rounding up)."""
    return nn.Conv2d(a, b, 3, stride=2, padding=1)


def up(a, b, small, big):
    """ConvTranspose2d(kernel 3, stride 2, padding 1) from size ``small`` back to ``big``.

    Its output is 2·small - 1 + output_padding; output_padding 1 restores an even size.
    """
    return nn.ConvTranspose2d(a, b, 3, stride=2, padding=1,
                              output_padding=tuple(B - (2 * s - 1) for s, B in zip(small, big)))


def stem(in_channels, channels, steps):
    """[down, ReLU] x steps, then a 3x3 convolution and ReLU: x -> features (channels, H/2^steps, ...)."""
    layers = []
    for i in range(steps):
        layers += [down(in_channels if i == 0 else channels, channels), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())


def decoder(in_channels, channels, out_channels, sizes):
    """3x3 convolution and ReLU, then [up, ReLU] back through ``sizes`` (image first), the last
    transposed convolution without activation."""
    layers = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
    steps = list(zip(sizes[:0:-1], sizes[-2::-1]))  # (small, big) pairs, from the code grid up
    for i, (small, big) in enumerate(steps):
        last = i == len(steps) - 1
        layers.append(up(channels, out_channels if last else channels, small, big))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PlainVQVAENet(OneLevelNet):
    """One level: x -> encoder -> z_e -> quantizer -> z_q -> decoder -> x̂ (``levels`` = 1)."""

    def __init__(self, shape, o):
        super().__init__()
        c, C, D, steps = shape[0], o["channels"], o["code_dim"], o["downsample"]
        sizes = grid_sizes(shape[1:], steps)
        self.grids = [sizes[-1]]
        self.encoder = nn.Sequential(stem(c, C, steps), nn.Conv2d(C, D, 1))
        self.quantizer = VectorQuantizer.from_options(o)
        self.decoder = decoder(D, C, c, sizes)


class PlainVQVAE2Net(TwoLevelNet):
    """Two levels, top first: the top grid has half the bottom grid's resolution (``levels`` = 2)."""

    def __init__(self, shape, o):
        super().__init__()
        c, C, D, steps = shape[0], o["channels"], o["code_dim"], o["downsample"]
        sizes = grid_sizes(shape[1:], steps + 1)
        bottom, top = sizes[-2], sizes[-1]
        self.grids = [top, bottom]
        self.encoder_bottom = stem(c, C, steps)                                       # x -> h
        self.encoder_top = nn.Sequential(down(C, C), nn.ReLU(), nn.Conv2d(C, D, 1))    # h -> z_e top
        self.quantizer_top, self.quantizer_bottom = VectorQuantizer.from_options(o), VectorQuantizer.from_options(o)
        self.top_to_bottom = up(D, C, top, bottom)      # the top code, decoded for the bottom encoder
        self.encoder_bottom_out = nn.Conv2d(2 * C, D, 1)   # [h, decoded top] -> z_e bottom
        self.upsample_top = up(D, D, top, bottom)       # the top code at the bottom resolution, for x̂
        self.decoder = decoder(2 * D, C, c, sizes[:-1])

    def quantize(self, x):
        h = self.encoder_bottom(x)
        top = self.quantizer_top(self.encoder_top(h))
        z_e_bottom = self.encoder_bottom_out(F.cat([h, self.top_to_bottom(top.z_q).relu()], dim=1))
        return [top, self.quantizer_bottom(z_e_bottom)]
