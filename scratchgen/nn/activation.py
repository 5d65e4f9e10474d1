"""Activation functions as modules, so they can sit in a ``Sequential``."""
from .. import functional as F
from .module import Module


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope · x otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, x):
        return F.sigmoid(x)
