"""Weight initialisation, ``import scratchgen.nn.init as init``: PyTorch's names and rules.

Each function fills a tensor in place (its ``.data`` keeps its dtype and identity) with draws
from scratchgen's seeded generator, and returns the tensor.

The scaled schemes keep the variance of activations roughly constant from layer to layer:

* Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural
  networks": ``xavier_*`` with Var(w) = gain² · 2 / (fan_in + fan_out).
* He et al. (2015), "Delving deep into rectifiers": ``kaiming_*`` with Var(w) = gain² / fan.

NOTE: PyTorch's default for Linear and Conv layers is ``kaiming_uniform_(w, a=sqrt(5))``. With
a = √5 the leaky-ReLU gain is √(2 / (1 + 5)) = √(1/3), and the uniform bound
√3 · gain / √fan_in collapses to exactly 1 / √fan_in.
"""
import math

import numpy as np

from ..random import get_rng


def _fill(tensor, values):
    tensor.data[...] = values
    return tensor


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps activations' variance unchanged through ``nonlinearity``."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv2d", "conv_transpose2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
                     f"linear, sigmoid, tanh, relu, leaky_relu")


def fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight: dim 1 and dim 0, each times the kernel size (dims 2:).

    NOTE: for ConvTranspose2d's weight (C_in, C_out, kH, kW) this makes fan_in = C_out·kH·kW,
    which is what PyTorch uses, although C_in·kH·kW inputs feed each output.
    """
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got "
                         f"shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    if b < a:
        raise ValueError(f"uniform_: lower bound a={a} exceeds upper bound b={b}")
    return _fill(tensor, get_rng().uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std²)."""
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    return _fill(tensor, get_rng().normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, value)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-bound, bound) with bound = √3 · gain / √fan, so that Var(w) = gain² / fan."""
    if tensor.data.size == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, gain² / fan)."""
    if tensor.data.size == 0:
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


def xavier_uniform_(tensor, gain=1.0):
    """U(-bound, bound) with bound = gain · √(6 / (fan_in + fan_out))."""
    if tensor.data.size == 0:
        return tensor
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, gain² · 2 / (fan_in + fan_out))."""
    if tensor.data.size == 0:
        return tensor
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
