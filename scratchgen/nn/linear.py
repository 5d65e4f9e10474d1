"""``Linear`` (an affine map y = x Wᵀ + b) and ``Identity``."""
import math

import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter, float_dtype


def check_size(value, name, layer):
    """``value`` as an int, or a ValueError naming the layer's argument (shared by every layer's size)."""
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{layer}: {name} must be a non-negative int, got {value!r}")
    return int(value)


def init_bias_(bias, fan_in):
    """PyTorch's default bias: U(-1/√fan_in, 1/√fan_in), the same bound as the weight's."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return init.uniform_(bias, -bound, bound)


class Linear(Module):
    """y = x Wᵀ + b with W of shape (out_features, in_features), for x of shape (..., in_features).

    Default initialisation as PyTorch: W and b ~ U(-1/√in_features, 1/√in_features).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = check_size(in_features, "in_features", "Linear")
        self.out_features = check_size(out_features, "out_features", "Linear")
        dtype = float_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        self.bias = Parameter(np.empty(self.out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            init_bias_(self.bias, self.in_features)

    def forward(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features} -> {self.out_features}) got input of shape "
                             f"{tuple(x.shape)}: its last dimension must be {self.in_features}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for an optional layer)."""

    def forward(self, x):
        return x
