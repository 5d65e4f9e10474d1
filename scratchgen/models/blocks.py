"""Building blocks shared by the model families.

    mlp([d0, d1, ..., dn], activation)    Linear(d0, d1), act, Linear(d1, d2), act, ..., Linear(dn-1, dn)

The VAE, the CVAE, the autoencoder and the GAN build their fully connected networks with
:func:`mlp` (or :func:`mlp_layers`, the same layers as a list, to splice into a longer
``nn.Sequential`` without changing its parameter names).

    ResidualBlock(C, hidden)     x -> x + Conv1x1(ReLU(Conv3x3(ReLU(x))))   (channels C -> hidden -> C)
    ResidualStack(C, hidden, n)  n residual blocks, then ReLU

Residual blocks as in van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete Representation
Learning", Sec. 4.1 (used again by Razavi et al. 2019, VQ-VAE-2), for the VQ-VAE's encoders and
decoders. The skip connection lets each block learn a correction to its input; the 1x1 convolution
maps the hidden channels back to C, so the sum is well defined.
"""
import numpy as np

from .. import nn

LEAKY_SLOPE = 0.2  # of LeakyReLU, as in DCGAN (Radford et al. 2016)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE)}


def mlp_layers(sizes, activation="relu", final_activation=False):
    """``[Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[-2], sizes[-1])]`` (and a last ``act`` if
    ``final_activation``); ``activation`` is a name in :data:`ACTIVATIONS`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return layers


def mlp(sizes, activation="relu", final_activation=False):
    """:func:`mlp_layers` as one ``nn.Sequential``."""
    return nn.Sequential(*mlp_layers(sizes, activation, final_activation))


class ResidualBlock(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x)))): shape (N, C, H, W) kept."""

    def __init__(self, channels, hidden, dtype=np.float32):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, hidden, 3, padding=1, dtype=dtype)
        self.conv1 = nn.Conv2d(hidden, channels, 1, dtype=dtype)

    def forward(self, x):
        return x + self.conv1(self.conv3(x.relu()).relu())


class ResidualStack(nn.Module):
    """``blocks`` residual blocks, then ReLU (the last block's sum is not yet rectified)."""

    def __init__(self, channels, hidden, blocks, dtype=np.float32):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(channels, hidden, dtype) for _ in range(blocks)])

    def forward(self, x):
        return self.blocks(x).relu()
