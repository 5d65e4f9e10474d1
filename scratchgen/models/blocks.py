"""Building blocks shared by the model families.

    mlp([d0, d1, ..., dn], activation)    Linear(d0, d1), act, Linear(d1, d2), act, ..., Linear(dn-1, dn)

The VAE, the CVAE, the autoencoder and the GAN build their fully connected networks with
:func:`mlp` (or :func:`mlp_layers`, the same layers as a list, to splice into a longer
``nn.Sequential`` without changing its parameter names).
"""
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
