"""Functional API, ``import scratchgen.functional as F``: PyTorch's names and semantics.

Ops that need their own backward rule (for speed or numerical stability) are written with
``Tensor.from_op`` and keep forward and backward side by side; the rest are composed from the
primitives in :mod:`scratchgen.ops`, which then differentiate themselves.
"""
import numpy as np

from .kernels import activations as _activations
from .kernels import batch_norm as _batch_norm
from .kernels import bias as _bias
from .kernels import conv as _conv
from .kernels.conv import pair
from .kernels.matmul import matmul
from .autograd import Tensor, is_grad_enabled


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _as_tensor(x, like=None):
    if isinstance(x, Tensor):
        return x
    return Tensor(x, dtype=like.dtype if like is not None and like.dtype.kind == "f" else None)


# ---------------------------------------------------------------------- activations
def relu(x):
    return x.relu()


def sigmoid(x):
    return x.sigmoid()


def tanh(x):
    return x.tanh()


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, negative_slope · x elsewhere (:mod:`scratchgen.kernels.activations`)."""
    a = x.data
    return Tensor.from_op(_activations.leaky_relu_forward(a, negative_slope), (x,),
                          lambda g: (_activations.leaky_relu_backward(g, a, negative_slope),), "leaky_relu")


def softplus(x):
    """log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so that it never overflows; its
    derivative is σ(x), which the same pass returns (:mod:`scratchgen.kernels.activations`: the same
    bits as ``Tensor.sigmoid``, from the same e^-|x|)."""
    out, sig = _activations.softplus_forward(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * sig,), "softplus")


def logsumexp(x, dim, keepdim=False):
    """log Σ_dim e^x. NOTE: shifts by the max first, so e^x never overflows."""
    a = x.data
    m = a.max(axis=dim, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.exp(a - m).sum(axis=dim, keepdims=True)) + m
    out = s if keepdim else np.squeeze(s, axis=dim)

    def backward(g):
        g = g if keepdim else np.expand_dims(g, dim)
        return (g * np.exp(a - s),)  # the gradient of logsumexp is the softmax
    return Tensor.from_op(out, (x,), backward, "logsumexp")


def log_softmax(x, dim):
    return x - logsumexp(x, dim, keepdim=True)


def softmax(x, dim):
    a = x.data
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    out = e / e.sum(axis=dim, keepdims=True)

    def backward(g):
        return (out * (g - (g * out).sum(axis=dim, keepdims=True)),)
    return Tensor.from_op(out, (x,), backward, "softmax")


# ---------------------------------------------------------------------- losses
def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """-[t log σ(x) + (1 - t) log(1 - σ(x))], written as softplus(x) - t x for stability.

    The per-element gradient with respect to the logit is σ(x) - t.
    """
    target = _as_tensor(target, logits)
    if target.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {target.shape} "
                         f"differs from logits shape {logits.shape}")
    x, t = logits.data, target.data
    soft, sig = _activations.softplus_forward(x)
    loss = soft - x * t
    out = Tensor.from_op(loss, (logits, target), lambda g: (g * (sig - t), -g * x), "bce_logits")
    return _reduce(out, reduction)


def cross_entropy(logits, target, reduction="mean"):
    """-log softmax(logits)[target] for logits (N, C) and integer class indices (N,)."""
    idx = np.asarray(target.data if isinstance(target, Tensor) else target)
    if logits.ndim != 2 or idx.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy expects logits (N, C) and targets (N,), got "
                         f"{logits.shape} and {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"cross_entropy targets must be integer class indices, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy targets must lie in [0, {logits.shape[1]}), "
                         f"got min {idx.min()}, max {idx.max()}")
    return _reduce(-log_softmax(logits, 1)[np.arange(len(idx)), idx], reduction)


def mse_loss(input, target, reduction="mean"):
    target = _as_tensor(target, input)
    if target.shape != input.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} differs from target shape {target.shape}")
    diff = input - target
    return _reduce(diff * diff, reduction)


# ---------------------------------------------------------------------- layers
def linear(x, weight, bias=None):
    """y = x Wᵀ + b with W of shape (out_features, in_features), as in PyTorch; x is (..., in).

    The gradients, for upstream g of y's shape (leading axes flattened into rows):

        dx = g W        dW = gᵀ x        db = Σ_rows g

    One op instead of ``x @ weight.T + bias``: dW comes out in W's own layout and no transposed
    copy of x, g or W is made (the matmul kernels read ``gᵀ`` in place).
    """
    x = _as_tensor(x, weight)
    if x.ndim < 1 or weight.ndim != 2 or x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}) "
                         f"but weight expects {weight.shape[-1]} (weight shape {weight.shape}, "
                         f"which must be (out_features, in_features))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},) for "
                         f"weight shape {weight.shape}")
    xd, wd = x.data, weight.data
    rows = xd.reshape(-1, xd.shape[-1])
    out = matmul(rows, wd.T)
    if bias is not None:
        out = out + bias.data
    params = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g = g.reshape(-1, wd.shape[0])
        grads = (matmul(g, wd).reshape(xd.shape) if x.requires_grad else None,
                 matmul(g.T, rows) if weight.requires_grad else None)
        return grads if bias is None else grads + (g.sum(axis=0) if bias.requires_grad else None,)
    return Tensor.from_op(out.reshape(xd.shape[:-1] + (wd.shape[0],)), params, backward, "linear")


def embedding(indices, weight):
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``indices`` of any shape."""
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"embedding indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise ValueError(f"embedding indices must lie in [0, {weight.shape[0]}), got min "
                         f"{idx.min()}, max {idx.max()}")
    return weight[idx]


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation, NCHW input and (C_out, C_in, kH, kW) weight, as ``torch.nn.functional.conv2d``.

    out[n, o, i, j] = bias[o] + Σ_{c, u, v} x_pad[n, c, i·sh + u, j·sw + v] · weight[o, c, u, v]
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    xd, wd = x.data, weight.data
    # NOTE: the weight gradient reads x again; the fast kernels' copy of x (channels-last, or its
    # patch matrix) is made once and kept until then (None where no kernel wants it, or when no
    # gradient will be taken)
    keep = _conv.kept_copy(xd, wd.shape, stride, padding) if weight.requires_grad and is_grad_enabled() else None
    out = _conv.conv2d_forward(xd, wd, stride, padding, x_copy=keep)
    in_place = bias if _bias_fits(out, bias) else None

    def backward(g):
        if x.requires_grad and weight.requires_grad:        # both at once: the kernels turn g around once
            grads = _conv.conv2d_backward(xd, g, wd, stride, padding, x_copy=keep)
        else:
            grads = (_conv.conv2d_grad_input(g, wd, xd.shape, stride, padding) if x.requires_grad else None,
                     _conv.conv2d_grad_weight(xd, g, wd.shape, stride, padding, x_copy=keep)
                     if weight.requires_grad else None)
        return tuple(grads) + _bias_gradient(g, in_place)
    return _with_bias(out, x, weight, bias, in_place, backward, "conv2d")


def _bias_fits(out, bias):
    """Can a convolution's bias go into its output array in place? A (C,) bias of the output's dtype.

    NOTE: in place, the bias costs one pass over the output the kernel has just made, and its gradient
    Σ_{n,h,w} g is part of the op's backward rule (``kernels.bias``). As ``y + b.reshape(1, -1, 1, 1)``
    it was a node of its own, with a new array as large as y and a sum that NumPy ran over runs of
    H·W numbers on one thread: ~5.7 ms of a ~150 ms VQ-VAE training step (one thread). A bias of another
    dtype or shape keeps that general form (and NumPy's promotion rules)."""
    return (bias is not None and bias.data.dtype == out.dtype and bias.shape == (out.shape[1],)
            and out.flags.c_contiguous and out.flags.writeable)


def _with_bias(out, x, weight, bias, in_place, backward, name):
    """The op's Tensor with its bias added: into ``out`` if ``in_place`` (the bias, then a parent of
    the op) else as a node of its own; without a bias, the op alone."""
    if in_place is not None:
        _bias.add_bias(out, in_place.data)
        return Tensor.from_op(out, (x, weight, in_place), backward, name)
    y = Tensor.from_op(out, (x, weight), backward, name)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def _bias_gradient(g, in_place):
    """(db,) for an op whose bias was added in place; () otherwise."""
    if in_place is None:
        return ()
    return (_bias.bias_gradient(g) if in_place.requires_grad else None,)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution with (C_in, C_out, kH, kW) weight, as ``torch.nn.functional.conv_transpose2d``.

    It is the adjoint of conv2d: its forward is conv2d's input gradient, so
    H_out = (H - 1)·sh - 2·ph + kH + output_padding_h.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    out_pad = pair(output_padding, "output_padding")
    xd, wd = x.data, weight.data
    if xd.ndim != 4 or wd.ndim != 4:
        raise ValueError(f"conv_transpose2d expects a 4-D input (N, C, H, W) and a 4-D weight "
                         f"(C_in, C_out, kH, kW), got {xd.shape} and {wd.shape}")
    if xd.shape[1] != wd.shape[0]:
        raise ValueError(f"conv_transpose2d: input has {xd.shape[1]} channels (shape {xd.shape}) "
                         f"but weight {wd.shape} expects {wd.shape[0]}")
    if min(stride) <= 0:
        raise ValueError(f"conv_transpose2d: stride must be positive, got {stride}")
    if any(op < 0 or op >= s for op, s in zip(out_pad, stride)):
        raise ValueError(f"conv_transpose2d: output_padding {out_pad} must be >= 0 and smaller "
                         f"than stride {stride}")
    h = (xd.shape[2] - 1) * stride[0] - 2 * padding[0] + wd.shape[2] + out_pad[0]
    w = (xd.shape[3] - 1) * stride[1] - 2 * padding[1] + wd.shape[3] + out_pad[1]
    if h <= 0 or w <= 0:
        raise ValueError(f"conv_transpose2d: output size would be {(h, w)} for input {xd.shape}, "
                         f"weight {wd.shape}, stride {stride}, padding {padding}")
    out_shape = (xd.shape[0], wd.shape[1], h, w)
    out = _conv.conv2d_grad_input(xd, wd, out_shape, stride, padding)
    in_place = bias if _bias_fits(out, bias) else None

    def backward(g):
        # both read g, the fast kernels as one copy (channels-last, or its patch matrix): made once for both
        keep = _conv.kept_copy(g, wd.shape, stride, padding) if x.requires_grad and weight.requires_grad else None
        return (_conv.conv2d_forward(g, wd, stride, padding, x_copy=keep) if x.requires_grad else None,
                _conv.conv2d_grad_weight(g, xd, wd.shape, stride, padding, x_copy=keep)
                if weight.requires_grad else None) + _bias_gradient(g, in_place)
    return _with_bias(out, x, weight, bias, in_place, backward, "conv_transpose2d")


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but the channel axis 1, as ``torch.nn.functional.batch_norm``:

        y = γ x̂ + β,   x̂ = (x − μ) / √(σ² + eps)   per channel.

    In training mode μ and σ² are the batch's mean and biased variance over the M values of each
    channel, and the running statistics (ndarrays, updated in place) move towards them with the
    *unbiased* variance, as PyTorch does. In eval mode μ and σ² are the running statistics.

    One op in both modes, so that γ and β are applied in one place and the backward pass is the
    closed form (a handful of passes over x, where composing it from + − × ÷ made about twenty):

        dβ = Σ g        dγ = Σ g x̂        dx = γ/σ · (g − dβ/M − x̂ · dγ/M)   (training)
                                           dx = γ/σ · g                       (eval: μ, σ constants)

    The arithmetic of both passes is :mod:`scratchgen.kernels.batch_norm` (a NumPy reference and
    fused Numba passes, one read of x per sum); this op keeps the running statistics.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input (N, C, ...), got shape {x.shape}")
    a = x.data
    count = a.size // x.shape[1]
    one = np.ones(x.shape[1], dtype=a.dtype)
    gamma = weight.data if weight is not None else one
    beta = bias.data if bias is not None else 0 * one
    if training:
        if count < 2:
            raise ValueError(f"batch_norm in training mode needs more than one value per channel, "
                             f"got input shape {x.shape}")
        out, mean, var, inv_std = _batch_norm.batch_norm_forward(a, gamma, beta, eps)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * count / (count - 1)
    else:
        out, mean, var, inv_std = _batch_norm.batch_norm_forward(
            a, gamma, beta, eps, np.asarray(running_mean, dtype=a.dtype), np.asarray(running_var, dtype=a.dtype))

    def backward(g):
        dx, d_gamma, d_beta = _batch_norm.batch_norm_backward(g, a, mean, inv_std, gamma, training)
        return (dx,) + ((d_gamma,) if weight is not None else ()) + ((d_beta,) if bias is not None else ())
    parents = (x,) + ((weight,) if weight is not None else ()) + ((bias,) if bias is not None else ())
    return Tensor.from_op(out, parents, backward, "batch_norm")


# ---------------------------------------------------------------------- borders
def pad(x, pad):
    """Zero borders, as PyTorch's ``F.pad(x, pad)``: ``pad`` holds (before, after) pairs from the last
    dimension backwards — (left, right) or (left, right, top, bottom) for images (N, C, H, W). A negative
    number cuts that many rows or columns off instead.

    out[..., top + i, left + j] = x[..., i, j] where both exist, zero elsewhere;
    backward: g_x[..., i, j] = g[..., top + i, left + j], zero for what was cut off.
    """
    pad = tuple(int(p) for p in pad)
    a = x.data
    if len(pad) % 2 or len(pad) > 2 * a.ndim:
        raise ValueError(f"pad: give (before, after) pairs for at most {a.ndim} dimensions of a tensor of shape "
                         f"{a.shape}, last dimension first; got {pad}")
    widths = [(0, 0)] * a.ndim
    for i in range(len(pad) // 2):
        widths[a.ndim - 1 - i] = pad[2 * i], pad[2 * i + 1]
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, widths))
    if min(shape) < 1:
        raise ValueError(f"pad {pad} would leave nothing of a tensor of shape {a.shape} (result {shape})")
    kept = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(a.shape, widths))
    into = tuple(slice(max(lo, 0), max(lo, 0) + k.stop - k.start) for (lo, _), k in zip(widths, kept))
    out = np.zeros(shape, dtype=a.dtype)
    out[into] = a[kept]

    def backward(g):
        gx = np.zeros_like(a)
        gx[kept] = g[into]
        return (gx,)
    return Tensor.from_op(out, (x,), backward, "pad")


# ---------------------------------------------------------------------- joining
def cat(tensors, dim=0):
    tensors = list(tensors)
    sizes = [t.shape[dim] for t in tensors]
    try:
        out = np.concatenate([t.data for t in tensors], axis=dim)
    except ValueError as e:
        raise ValueError(f"cat along dim {dim}: shapes {[t.shape for t in tensors]} do not fit ({e})")
    bounds = np.cumsum(sizes)[:-1]
    return Tensor.from_op(out, tensors, lambda g: np.split(g, bounds, axis=dim), "cat")


def stack(tensors, dim=0):
    tensors = list(tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    out = np.stack([t.data for t in tensors], axis=dim)
    n = len(tensors)
    return Tensor.from_op(out, tensors,
                          lambda g: [np.take(g, i, axis=dim) for i in range(n)], "stack")
