"""2-D convolution (cross-correlation) in NCHW layout: forward pass and both gradients.

    out[n, o, y, x] = Σ_{c, i, j} x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j]

with x (N, C, H, W), w (O, C, kH, kW), x_pad the input with ``ph`` zero rows above and below and
``pw`` zero columns left and right, and the output (N, O, Ho, Wo) where, as in PyTorch,

    Ho = (H + 2·ph − kH) // sh + 1        Wo = (W + 2·pw − kW) // sw + 1

The two gradients, for an upstream gradient g of the output's shape:

    dx_pad[n, c, y·sh + i, x·sw + j] += Σ_o g[n, o, y, x] · w[o, c, i, j]      (then crop)
    dw[o, c, i, j] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, c, y·sh + i, x·sw + j]

``conv2d_grad_input`` is also the forward pass of a transposed convolution, so it takes the
input's full shape: when the stride does not divide evenly, several heights H give the same Ho
(PyTorch's ``output_padding`` picks one) and the rows no window touches get zero gradient.

This module holds the definitions and the argument checks; each public function checks its
arguments once, then calls the entry of its table ``{"numpy": reference, "numba": kernel}`` for
the backend in use (:mod:`scratchgen.kernels.backend`):

* ``"numpy"`` (``*_reference``): a loop over the kH·kW kernel offsets; each offset is one einsum
  over a strided slice of the padded input. Reads like the formulas above.
* ``"numba"`` (:mod:`scratchgen.kernels.conv_numba`): *im2col* lowering. Every receptive field is
  a row of a "patch matrix" P (N·Ho·Wo, C·kH·kW); then forward is P @ w_matᵀ, grad_weight is
  gᵀ @ P and grad_input is g @ w_mat followed by *col2im* (the adjoint, adding patches back into
  the image). Register tiles read P where it lies in the image (:mod:`scratchgen.kernels.conv_tiles`);
  layers with few features or channels copy it and run the matmul kernels.
"""
import numpy as np

from . import conv_numba
from .backend import implementation
from .layouts import result_dtype


# ---------------------------------------------------------------------------- arguments
def pair(value, name):
    """``3`` -> ``(3, 3)``, ``(1, 2)`` -> ``(1, 2)``: a size, stride or padding given for both spatial
    axes; ``name`` (e.g. ``"conv2d stride"``) goes into the error for anything else.

    NOTE: the two usual cases, an int and a pair of ints, are answered first: a layer's forward and
    backward pass check their stride and padding eight times (the functional call, the kernels' entries),
    and the general test took 1.3 µs a call against 0.1-0.2. Measured (2026-12-07, one thread, AMD EPYC
    Zen 3, one process alternating the two in 41 rounds of 100 calls, with ``conv_numba._out_hw`` written
    without a generator): forward and both gradients of a layer with a batch of one image, the VQ-VAE's
    1x1 64->16 222 -> 194 µs, its 3x3 16->64 258 -> 228 µs; at a batch of 128 the 1x1 layer's 1.0 ms
    moved by less than the noise (0.994)."""
    if type(value) is int:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    p = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(p) != 2 or not all(isinstance(v, (int, np.integer)) for v in p):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in p)


def _output_size(op, x_shape, w_shape, stride, padding):
    """Validated (stride, padding, (Ho, Wo)) for input shape x_shape and weight shape w_shape."""
    stride, padding = pair(stride, f"{op}: stride"), pair(padding, f"{op}: padding")
    if len(x_shape) != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{op}: weight must be 4-D (C_out, C_in, kH, kW), got shape {tuple(w_shape)}")
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"{op}: input {tuple(x_shape)} has {x_shape[1]} channels but weight "
                         f"{tuple(w_shape)} expects {w_shape[1]} (weight is (C_out, C_in, kH, kW))")
    if min(stride) <= 0:
        raise ValueError(f"{op}: stride must be positive, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding}")
    padded = (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    if w_shape[2] > padded[0] or w_shape[3] > padded[1]:
        raise ValueError(f"{op}: kernel {tuple(w_shape[2:])} (weight {tuple(w_shape)}) is larger than "
                         f"the padded input {padded} (input {tuple(x_shape)}, padding {padding})")
    out_hw = ((padded[0] - w_shape[2]) // stride[0] + 1, (padded[1] - w_shape[3]) // stride[1] + 1)
    return stride, padding, out_hw


def _check_grad_out(op, grad_out, x_shape, w_shape, out_hw):
    expected = (x_shape[0], w_shape[0]) + tuple(out_hw)
    if grad_out.shape != expected:
        raise ValueError(f"{op}: grad_out has shape {grad_out.shape} but input {tuple(x_shape)} and "
                         f"weight {tuple(w_shape)} give an output of shape {expected}")


def _as_shape(shape, op, name):
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{op}: {name} must be a shape tuple, got {shape!r}") from None


# ---------------------------------------------------------------------------- NumPy definition
def _window(xp, i, j, stride, out_hw):
    """The (N, C, Ho, Wo) view of padded input ``xp`` that kernel offset (i, j) multiplies."""
    return xp[:, :, i: i + stride[0] * (out_hw[0] - 1) + 1: stride[0],
              j: j + stride[1] * (out_hw[1] - 1) + 1: stride[1]]


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))


def conv2d_forward_reference(x, w, stride, padding):
    """out[n, o, y, x] = Σ_{i, j} Σ_c x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j]."""
    stride, padding, out_hw = _output_size("conv2d", x.shape, w.shape, stride, padding)
    xp = _pad(x, padding)
    out = np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=np.result_type(x, w))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            out += np.einsum("nchw,oc->nohw", _window(xp, i, j, stride, out_hw), w[:, :, i, j],
                             optimize=True)
    return out


def conv2d_grad_input_reference(grad_out, w, x_shape, stride, padding):
    """dx_pad[n, c, y·sh + i, x·sw + j] += Σ_o g[n, o, y, x] · w[o, c, i, j]; dx = dx_pad cropped."""
    stride, padding, out_hw = _output_size("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_out("conv2d_grad_input", grad_out, x_shape, w.shape, out_hw)
    n, c, h, wd = x_shape
    dxp = np.zeros((n, c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=np.result_type(grad_out, w))
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            _window(dxp, i, j, stride, out_hw)[...] += np.einsum("nohw,oc->nchw", grad_out,
                                                                 w[:, :, i, j], optimize=True)
    return dxp[:, :, padding[0]: padding[0] + h, padding[1]: padding[1] + wd]


def conv2d_grad_weight_reference(x, grad_out, w_shape, stride, padding):
    """dw[o, c, i, j] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, c, y·sh + i, x·sw + j]."""
    stride, padding, out_hw = _output_size("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_grad_out("conv2d_grad_weight", grad_out, x.shape, w_shape, out_hw)
    xp = _pad(x, padding)
    dw = np.zeros(w_shape, dtype=np.result_type(x, grad_out))
    for i in range(w_shape[2]):
        for j in range(w_shape[3]):
            dw[:, :, i, j] = np.einsum("nchw,nohw->oc", _window(xp, i, j, stride, out_hw), grad_out,
                                       optimize=True)
    return dw


# ---------------------------------------------------------------------------- dispatch
FORWARD = {"numpy": conv2d_forward_reference, "numba": conv_numba.forward}
GRAD_INPUT = {"numpy": conv2d_grad_input_reference, "numba": conv_numba.grad_input}
GRAD_WEIGHT = {"numpy": conv2d_grad_weight_reference, "numba": conv_numba.grad_weight}


def kept_copy(x, w_shape, stride=1, padding=0):
    """For a layer that will run conv2d_forward and then conv2d_grad_weight on the same x: the
    copy of x the Numba kernels read (the patch matrix for the separate passes: ``conv_numba.kept_copy``;
    the register tiles copy x themselves when they run), made once and passed to both as ``x_copy``;
    None if the backend in use (or the layer's shape) has no use for it."""
    if implementation(FORWARD) is not conv_numba.forward:
        return None
    x, w_shape = np.asarray(x), tuple(w_shape)
    try:
        stride, padding, _ = _output_size("conv2d", x.shape, w_shape, stride, padding)
    except ValueError:
        return None             # the checks of conv2d_forward will explain what is wrong
    if x.dtype not in (np.float32, np.float64):
        return None
    return conv_numba.kept_copy(x, w_shape, stride, padding)


def _kept(x_copy, x, w_shape, stride, padding):
    """``x_copy`` if it is x's copy from ``kept_copy`` for this weight shape, stride and padding in
    x's (computing) dtype; None if only the dtype differs (x was promoted to its weight's dtype: the
    kernel makes its own copy)."""
    n, c, h, w = x.shape
    out_hw = _output_size("conv2d", x.shape, w_shape, stride, padding)[2]
    shapes = ((n, h + 2 * padding[0], w + 2 * padding[1], c), (n, c * w_shape[2] * w_shape[3], out_hw[0] * out_hw[1]))
    if x_copy.shape not in shapes:
        raise ValueError(f"x_copy of shape {x_copy.shape} is not the kernels' copy of an input {x.shape} for a "
                         f"weight {tuple(w_shape)} with stride {stride} and padding {padding}: make it with "
                         f"kept_copy(x, w_shape, stride, padding)")
    return x_copy if x_copy.dtype == x.dtype else None


def conv2d_forward(x, w, stride=1, padding=0, x_copy=None):
    """conv2d of x (N, C, H, W) with weight w (O, C, kH, kW), no bias -> (N, O, Ho, Wo).
    ``x_copy``: x's copy from ``kept_copy`` (read by the Numba kernels instead of making one)."""
    x, w = np.asarray(x), np.asarray(w)
    stride, padding, _ = _output_size("conv2d", x.shape, w.shape, stride, padding)
    dtype = result_dtype(x, w, op="conv2d")
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    if x_copy is not None and implementation(FORWARD) is conv_numba.forward:
        return conv_numba.forward(x, w, stride, padding, x_copy=_kept(x_copy, x, w.shape, stride, padding))
    return implementation(FORWARD)(x, w, stride, padding)


def conv2d_grad_input(grad_out, w, x_shape, stride=1, padding=0):
    """Gradient of conv2d with respect to its input of shape ``x_shape``, given grad_out."""
    grad_out, w = np.asarray(grad_out), np.asarray(w)
    x_shape = _as_shape(x_shape, "conv2d_grad_input", "x_shape")
    stride, padding, out_hw = _output_size("conv2d_grad_input", x_shape, w.shape, stride, padding)
    _check_grad_out("conv2d_grad_input", grad_out, x_shape, w.shape, out_hw)
    dtype = result_dtype(grad_out, w, op="conv2d_grad_input")
    grad_out, w = grad_out.astype(dtype, copy=False), w.astype(dtype, copy=False)
    return implementation(GRAD_INPUT)(grad_out, w, x_shape, stride, padding)


def conv2d_grad_weight(x, grad_out, w_shape, stride=1, padding=0, x_copy=None):
    """Gradient of conv2d with respect to its weight of shape ``w_shape``, given x and grad_out
    (and optionally ``x_copy`` as in ``conv2d_forward``)."""
    x, grad_out = np.asarray(x), np.asarray(grad_out)
    w_shape = _as_shape(w_shape, "conv2d_grad_weight", "w_shape")
    stride, padding, out_hw = _output_size("conv2d_grad_weight", x.shape, w_shape, stride, padding)
    _check_grad_out("conv2d_grad_weight", grad_out, x.shape, w_shape, out_hw)
    dtype = result_dtype(x, grad_out, op="conv2d_grad_weight")
    x, grad_out = x.astype(dtype, copy=False), grad_out.astype(dtype, copy=False)
    if x_copy is not None and implementation(GRAD_WEIGHT) is conv_numba.grad_weight:
        return conv_numba.grad_weight(x, grad_out, w_shape, stride, padding,
                                      x_copy=_kept(x_copy, x, w_shape, stride, padding))
    return implementation(GRAD_WEIGHT)(x, grad_out, w_shape, stride, padding)


def conv2d_backward(x, grad_out, w, stride=1, padding=0, x_copy=None):
    """Both gradients of conv2d, (dx, dw), as ``conv2d_grad_input`` and ``conv2d_grad_weight`` give them
    (``x_copy`` as there): for a layer that needs both, the Numba kernels then turn g around once for
    the two (``conv_numba.backward``)."""
    x, grad_out, w = np.asarray(x), np.asarray(grad_out), np.asarray(w)
    if (implementation(GRAD_INPUT) is not conv_numba.grad_input or implementation(GRAD_WEIGHT) is not conv_numba.grad_weight
            or not x.dtype == grad_out.dtype == w.dtype or x.dtype not in (np.float32, np.float64)):
        return (conv2d_grad_input(grad_out, w, x.shape, stride, padding),
                conv2d_grad_weight(x, grad_out, w.shape, stride, padding, x_copy=x_copy))
    stride, padding, out_hw = _output_size("conv2d_backward", x.shape, w.shape, stride, padding)
    _check_grad_out("conv2d_backward", grad_out, x.shape, w.shape, out_hw)
    x_copy = None if x_copy is None else _kept(x_copy, x, w.shape, stride, padding)
    return conv_numba.backward(x, grad_out, w, stride, padding, x_copy=x_copy)
