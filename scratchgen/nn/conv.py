"""``Conv2d`` and ``ConvTranspose2d``: layers around ``F.conv2d`` and ``F.conv_transpose2d``.

Shapes (NCHW, as PyTorch), for kernel k, stride s, padding p and output padding op:

* Conv2d:          H_out = ⌊(H + 2p - k) / s⌋ + 1,       weight (C_out, C_in, kH, kW)
* ConvTranspose2d: H_out = (H - 1) s - 2p + k + op,      weight (C_in, C_out, kH, kW)

A transposed convolution maps a conv2d's output shape back to its input shape (it is conv2d's
input gradient), which is why generators use it to upsample (Dumoulin & Visin, 2016, "A guide
to convolution arithmetic for deep learning").
"""
import math

import numpy as np

from .. import functional as F
from ..kernels.conv import pair
from . import init
from .linear import check_size, init_bias_
from .module import Module, Parameter, float_dtype


class _ConvNd(Module):
    def __init__(self, name, in_channels, out_channels, kernel_size, stride, padding, bias, dtype,
                 transposed):
        super().__init__()
        self.in_channels = check_size(in_channels, "in_channels", name)
        self.out_channels = check_size(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        self.stride = pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(f"{name}: kernel_size and stride must be positive and padding "
                             f"non-negative, got kernel_size={self.kernel_size}, "
                             f"stride={self.stride}, padding={self.padding}")
        dtype = float_dtype(dtype, name)
        channels = (self.in_channels, self.out_channels)
        weight_shape = (channels if transposed else channels[::-1]) + self.kernel_size
        self.weight = Parameter(np.empty(weight_shape, dtype=dtype))
        self.bias = Parameter(np.empty(self.out_channels, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # NOTE: fan_in is weight.shape[1]·kH·kW for both layers, as in PyTorch; for
        # ConvTranspose2d that is C_out·kH·kW (see init.fan_in_and_fan_out).
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            init_bias_(self.bias, init.fan_in_and_fan_out(self.weight)[0])

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r} got input of shape {tuple(x.shape)}: expected "
                             f"(N, {self.in_channels}, H, W)")

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """2-D cross-correlation of NCHW input with ``out_channels`` filters of shape (C_in, kH, kW).

    Default initialisation as PyTorch: weight and bias ~ U(-1/√fan_in, 1/√fan_in) with
    fan_in = C_in·kH·kW.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32):
        super().__init__("Conv2d", in_channels, out_channels, kernel_size, stride, padding, bias,
                         dtype, transposed=False)

    def forward(self, x):
        self._check_input(x)
        padded = tuple(n + 2 * p for n, p in zip(x.shape[2:], self.padding))
        if any(n < k for n, k in zip(padded, self.kernel_size)):
            raise ValueError(f"{self!r} got input of shape {tuple(x.shape)}: the padded input "
                             f"{padded[0]}x{padded[1]} is smaller than the "
                             f"{self.kernel_size[0]}x{self.kernel_size[1]} kernel")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the adjoint of Conv2d); weight of shape (C_in, C_out, kH, kW).

    ``output_padding`` (smaller than the stride) adds rows/columns at the bottom/right, to pick
    among the input sizes that a strided Conv2d maps to the same output size.
    Default initialisation as PyTorch: weight and bias ~ U(-1/√fan_in, 1/√fan_in) with
    fan_in = C_out·kH·kW.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True, dtype=np.float32):
        out_pad = pair(output_padding, "ConvTranspose2d output_padding")
        strides = pair(stride, "ConvTranspose2d stride")
        if any(op < 0 or op >= s for op, s in zip(out_pad, strides)):
            raise ValueError(f"ConvTranspose2d: output_padding {out_pad} must be non-negative and "
                             f"smaller than stride {strides}")
        super().__init__("ConvTranspose2d", in_channels, out_channels, kernel_size, stride, padding,
                         bias, dtype, transposed=True)
        self.output_padding = out_pad

    def forward(self, x):
        self._check_input(x)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)
