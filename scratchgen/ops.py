"""The op catalogue: every primitive operation on a :class:`~scratchgen.autograd.Tensor`, its
forward computation beside its backward rule, in the order of this table (g = dL/d out):

=================  ========================  ===============================================
op                 forward                   backward
=================  ========================  ===============================================
a + b              a + b                     g, g
a - b              a - b                     g, -g
-a                 -a                        -g
a * b              a * b                     g * b, g * a
a / b              a / b                     g / b, -g * a / b**2
a ** p             a ** p                    g * p * a**(p-1)   (and g * out * log a for p)
a @ b              matmul kernel             g @ bᵀ, aᵀ @ g
a.exp()            e^a                       g * out
a.log()            log a                     g / a
a.sqrt()           √a                        g / (2 out)
a.abs()            |a|                       g * sign(a)
a.tanh()           tanh a                    g * (1 - out²)
a.sigmoid()        1 / (1 + e^-a)            g * out * (1 - out)
a.relu()           max(a, 0)                 g * [a > 0]
a.clamp(lo, hi)    min(max(a, lo), hi)       g * [lo <= a <= hi]
a.sum(axis)        Σ a                       g broadcast back to a's shape
a.max(axis)        max a                     g shared among the maxima
a.reshape(shape)   same numbers, new shape   g reshaped back
a.permute(dims)    axes reordered            g with the inverse order
a.expand(shape)    broadcast view            g (the engine sums it back: ``unbroadcast``)
a[idx]             a[idx]                    scatter-add g into zeros_like(a)
a.to(dtype)        cast                      g cast back
=================  ========================  ===============================================

Composed from those (their gradient follows): ``mean`` (sum times 1/n), ``min`` (−max(−a)),
``view``/``flatten``/``unsqueeze``/``squeeze`` (reshape), ``transpose``/``T`` (permute), the
reflected ``b - a``, ``b / a``, ``b @ a``, ``b ** a``. Comparisons (``<``, ``==``, ...) return
plain boolean arrays: no gradient flows through them. Creation ops (``tensor``, ``zeros``,
``randn``, ...) close the file.

Each op is a function of its tensor argument(s) and also a method of ``Tensor``
(``add(a, b)`` is ``a + b``, ``exp(a)`` is ``a.exp()``); the assignments at the end attach them.
Importing :mod:`scratchgen` does that, before any other module uses a tensor.
"""
import operator

import numpy as np

from . import random as _random
from .autograd import Tensor
from .kernels import activations
from .kernels.matmul import matmul as kernel_matmul


# ---------------------------------------------------------------------------- argument helpers
def lift(a, other):
    """A Python number or array becomes a constant tensor with ``a``'s float dtype."""
    if isinstance(other, Tensor):
        return other
    if isinstance(other, np.ndarray) and other.dtype.kind == "f":
        return Tensor(other)
    dtype = a.dtype if a.dtype.kind == "f" else None
    return Tensor(other, dtype=dtype)


def shape_arg(shape):
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3), as in PyTorch."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def axis_arg(axis, dim):
    """PyTorch's ``dim=`` and NumPy's ``axis=`` name the same thing; ``dim`` wins if both are given."""
    return dim if dim is not None else axis


# ---------------------------------------------------------------------------- arithmetic
def add(a, b):
    """a + b; backward: g, g."""
    b = lift(a, b)
    return Tensor.from_op(a.data + b.data, (a, b), lambda g: (g, g), "add")


def sub(a, b):
    """a - b; backward: g, -g."""
    b = lift(a, b)
    return Tensor.from_op(a.data - b.data, (a, b), lambda g: (g, -g), "sub")


def neg(a):
    """-a; backward: -g."""
    return Tensor.from_op(-a.data, (a,), lambda g: (-g,), "neg")


def mul(a, b):
    """a * b (elementwise); backward: g * b, g * a."""
    b = lift(a, b)
    x, y = a.data, b.data
    return Tensor.from_op(x * y, (a, b), lambda g: (g * y, g * x), "mul")


def div(a, b):
    """a / b; backward: g / b, -g * a / b²."""
    b = lift(a, b)
    x, y = a.data, b.data
    return Tensor.from_op(x / y, (a, b), lambda g: (g / y, -g * x / (y * y)), "div")


def pow(a, exponent):  # noqa: A001  (the op's name; the builtin is not used here)
    """a ** p for a number or a tensor p; backward: g * p * a^(p-1) (and g * out * log a for a tensor p)."""
    x = a.data
    if isinstance(exponent, Tensor):
        p = exponent.data
        out = x ** p
        # NOTE: d/dp a**p = a**p log a is only defined for a > 0.
        return Tensor.from_op(out, (a, exponent), lambda g: (g * p * x ** (p - 1), g * out * np.log(x)), "pow")
    p = exponent
    return Tensor.from_op(x ** p, (a,), lambda g: (g * p * x ** (p - 1),), "pow")


def matmul(a, b):
    """``a @ b`` with NumPy's rules. A 1-D operand is promoted here, once: a row vector on the left,
    a column on the right, removed from the result again (through ``reshape``, so its gradient
    follows); the kernel then only ever sees operands of two or more dimensions."""
    b = lift(a, b)
    x, y = a.data, b.data
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {x.shape} @ {y.shape}")
    if x.ndim == 1 or y.ndim == 1:
        if x.shape[-1] != y.shape[-2 if y.ndim > 1 else 0]:  # name the shapes the user passed
            raise ValueError(f"matmul: inner dimensions differ: {x.shape} @ {y.shape}")
        out = matmul(a.reshape(1, -1) if x.ndim == 1 else a, b.reshape(-1, 1) if y.ndim == 1 else b)
        keep = out.shape[:-2] + ((out.shape[-2],) if x.ndim > 1 else ()) + ((out.shape[-1],) if y.ndim > 1 else ())
        return out.reshape(keep)

    def backward(g):  # a product is computed only for an operand that needs its gradient
        return (kernel_matmul(g, y.swapaxes(-1, -2)) if a.requires_grad else None,
                kernel_matmul(x.swapaxes(-1, -2), g) if b.requires_grad else None)
    return Tensor.from_op(kernel_matmul(x, y), (a, b), backward, "matmul")


# the reflected forms: 2 - a, 2 / a, array @ a, 2 ** a
def rsub(a, b):
    """b - a, for a number or array b on the left."""
    return sub(lift(a, b), a)


def rdiv(a, b):
    """b / a, for a number or array b on the left."""
    return div(lift(a, b), a)


def rmatmul(a, b):
    """b @ a, for an array b on the left."""
    return matmul(lift(a, b), a)


def rpow(a, base):
    """base ** a, for a number base on the left."""
    return pow(lift(a, base), a)


# ---------------------------------------------------------------------------- elementwise functions
def exp(a):
    """e^a; backward: g * out."""
    out = np.exp(a.data)
    return Tensor.from_op(out, (a,), lambda g: (g * out,), "exp")


def log(a):
    """natural logarithm; backward: g / a."""
    x = a.data
    return Tensor.from_op(np.log(x), (a,), lambda g: (g / x,), "log")


def sqrt(a):
    """√a; backward: g / (2 out)."""
    out = np.sqrt(a.data)
    return Tensor.from_op(out, (a,), lambda g: (g / (2 * out),), "sqrt")


def abs(a):  # noqa: A001
    """|a|; backward: g * sign(a)."""
    # NOTE: |a| has a kink at 0; like PyTorch we use the subgradient sign(0) = 0.
    x = a.data
    return Tensor.from_op(np.abs(x), (a,), lambda g: (g * np.sign(x),), "abs")


def tanh(a):
    """tanh a; backward: g * (1 - out²)."""
    out = np.tanh(a.data)
    return Tensor.from_op(out, (a,), lambda g: (g * (1 - out * out),), "tanh")


def sigmoid(a):
    """σ(a) = 1 / (1 + e^-a); backward: g * out * (1 - out)."""
    x = a.data
    # NOTE: 1/(1+exp(-a)) overflows for large negative a; this form never exponentiates
    # a positive number: with e = exp(-|a|), σ(a) = 1/(1+e) for a >= 0 and e/(1+e) for a < 0.
    # The numerator max(e, a >= 0) is 1 or e (e <= 1) without np.where, which branches per
    # element: for logits of random sign that alone took 1 ms per 100k, 4x all the rest.
    e = np.exp(-np.abs(x))
    out = np.maximum(e, x >= 0) / (1 + e)
    return Tensor.from_op(out, (a,), lambda g: (g * out * (1 - out),), "sigmoid")


def relu(a):
    """max(a, 0); backward: g * [a > 0] (one Numba pass each: :mod:`scratchgen.kernels.activations`)."""
    x = a.data
    # NOTE: the kink at 0 gets gradient 0, as in PyTorch.
    return Tensor.from_op(activations.relu_forward(x), (a,), lambda g: (activations.relu_backward(g, x),), "relu")


def clamp(a, min=None, max=None):  # noqa: A002  (PyTorch's argument names)
    """a clipped to [min, max] (either may be None); backward: g where a was inside."""
    x = a.data
    inside = np.ones(x.shape, dtype=bool)
    if min is not None:
        inside &= x >= min
    if max is not None:
        inside &= x <= max
    return Tensor.from_op(np.clip(x, min, max), (a,), lambda g: (g * inside,), "clamp")


# ---------------------------------------------------------------------------- reductions
def sum(a, axis=None, keepdims=False, dim=None):  # noqa: A001
    """Σ over ``axis`` (or ``dim``; all axes if None); backward: g broadcast back."""
    axis = axis_arg(axis, dim)
    shape = a.shape

    def backward(g):
        if axis is not None and not keepdims:
            g = np.expand_dims(g, axis)
        return (np.broadcast_to(g, shape),)
    return Tensor.from_op(a.data.sum(axis=axis, keepdims=keepdims), (a,), backward, "sum")


def mean(a, axis=None, keepdims=False, dim=None):
    """The sum times 1/n, n the number of elements summed."""
    axis = axis_arg(axis, dim)
    axes = range(a.ndim) if axis is None else np.atleast_1d(axis)
    count = int(np.prod([a.shape[i] for i in axes]))
    return sum(a, axis=axis, keepdims=keepdims) * (1.0 / count)


def max(a, axis=None, keepdims=False, dim=None):  # noqa: A001
    """Maximum. NOTE: ties share the gradient equally (so the gradient sums to g)."""
    axis = axis_arg(axis, dim)
    x = a.data
    out = x.max(axis=axis, keepdims=True)

    def backward(g):
        if not keepdims:
            g = g.reshape(out.shape)
        winners = x == out
        return (g * winners / winners.sum(axis=axis, keepdims=True),)
    result = out if keepdims else (out.reshape(()) if axis is None else np.squeeze(out, axis))
    return Tensor.from_op(result, (a,), backward, "max")


def min(a, axis=None, keepdims=False, dim=None):  # noqa: A001
    """Minimum: -max(-a)."""
    return -max(-a, axis=axis, keepdims=keepdims, dim=dim)


# ---------------------------------------------------------------------------- shape
def reshape(a, *shape):
    """The same numbers in a new shape (``reshape(2, 3)`` or ``reshape((2, 3))``); backward: g reshaped back."""
    src = a.shape
    return Tensor.from_op(a.data.reshape(shape_arg(shape)), (a,), lambda g: (g.reshape(src),), "reshape")


def permute(a, *dims):
    """Axes reordered; backward: g with the inverse order."""
    dims = shape_arg(dims)
    out = a.data.transpose(dims)
    inverse = np.argsort([d % a.ndim for d in dims])  # NOTE: dims may be negative
    return Tensor.from_op(out, (a,), lambda g: (g.transpose(inverse),), "permute")


def transpose(a, dim0=-2, dim1=-1):
    """Swap two dimensions (PyTorch semantics, not NumPy's full reversal)."""
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


def reversed_dims(a):
    """All dimensions reversed (for a matrix, its transpose): ``a.T``."""
    return permute(a, tuple(reversed(range(a.ndim))))


def flatten(a, start_dim=0, end_dim=-1):
    """Dimensions start_dim..end_dim merged into one."""
    end = end_dim % a.ndim if a.ndim else 0
    return reshape(a, a.shape[:start_dim] + (-1,) + a.shape[end + 1:])


def unsqueeze(a, dim):
    """A new axis of length 1 at ``dim``."""
    return reshape(a, np.expand_dims(a.data, dim).shape)


def squeeze(a, dim=None):
    """Axes of length 1 removed (only ``dim`` if given)."""
    if dim is not None:  # PyTorch: an axis longer than 1 is left alone, not an error
        dim = tuple(int(d) for d in np.atleast_1d(dim) if a.shape[d] == 1)
    return reshape(a, np.squeeze(a.data, dim).shape)


def expand(a, *shape):
    """A broadcast view (-1 keeps a size); backward: g, summed back by the engine."""
    shape = shape_arg(shape)
    shape = tuple(s if s != -1 else a.shape[i - len(shape) + a.ndim] for i, s in enumerate(shape))
    return Tensor.from_op(np.broadcast_to(a.data, shape), (a,), lambda g: (g,), "expand")


def index(a, idx):
    """a[idx]; backward: g scatter-added into zeros shaped like a."""
    if isinstance(idx, Tensor):
        idx = idx.data
    elif isinstance(idx, tuple):
        idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    x = a.data

    def backward(g):
        full = np.zeros_like(x)
        np.add.at(full, idx, g)  # scatter-add: repeated indices accumulate
        return (full,)
    return Tensor.from_op(x[idx], (a,), backward, "index")


# ---------------------------------------------------------------------------- dtype
def to(a, dtype):
    """A cast to ``dtype`` (``a`` itself if it has it); backward: g cast back."""
    dtype = np.dtype(dtype)
    if dtype == a.dtype:
        return a
    src = a.dtype
    return Tensor.from_op(a.data.astype(dtype), (a,), lambda g: (g.astype(src),), "cast")


def to_float32(a):
    """``a.float()``: a cast to float32."""
    return to(a, np.float32)


def to_float64(a):
    """``a.double()``: a cast to float64."""
    return to(a, np.float64)


# ---------------------------------------------------------------------------- comparisons (no gradient)
def _comparison(name, fn):
    """``a < b`` and friends on the arrays: a plain boolean ndarray, outside the graph."""
    def compare(a, other):
        return fn(a.data, other.data if isinstance(other, Tensor) else other)
    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = f"Elementwise ``{name}`` as a boolean ndarray (no gradient flows through a comparison)."
    return compare


# ---------------------------------------------------------------------------- the catalogue as methods
Tensor.__add__ = Tensor.__radd__ = add
Tensor.__sub__, Tensor.__rsub__ = sub, rsub
Tensor.__neg__ = neg
Tensor.__mul__ = Tensor.__rmul__ = mul
Tensor.__truediv__, Tensor.__rtruediv__ = div, rdiv
Tensor.__pow__, Tensor.__rpow__ = pow, rpow
Tensor.__matmul__, Tensor.__rmatmul__ = matmul, rmatmul
Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs = exp, log, sqrt, abs
Tensor.tanh, Tensor.sigmoid, Tensor.relu = tanh, sigmoid, relu
Tensor.clamp = Tensor.clip = clamp
Tensor.sum, Tensor.mean, Tensor.max, Tensor.min = sum, mean, max, min
Tensor.reshape = Tensor.view = reshape
Tensor.permute, Tensor.transpose, Tensor.T = permute, transpose, property(reversed_dims)
Tensor.flatten, Tensor.unsqueeze, Tensor.squeeze, Tensor.expand = flatten, unsqueeze, squeeze, expand
Tensor.__getitem__ = index
Tensor.to, Tensor.float, Tensor.double = to, to_float32, to_float64
for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(Tensor, _name, _comparison(_name, getattr(operator, _name)))


# ---------------------------------------------------------------------------- creation ops
def tensor(data, requires_grad=False, dtype=None):
    """Like ``torch.tensor``: a new leaf tensor holding a copy of ``data``."""
    src = data.data if isinstance(data, Tensor) else data
    arr = np.array(src, copy=True)
    if not isinstance(src, (np.ndarray, np.generic)) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats become float32, as in Tensor(...)
    return Tensor(arr, requires_grad, dtype)


def zeros(*shape, dtype=np.float32, requires_grad=False):
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return Tensor(np.zeros(shape_arg(shape), dtype=dtype), requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False):
    """A tensor of ones."""
    return Tensor(np.ones(shape_arg(shape), dtype=dtype), requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False):
    """Standard normal draws from scratchgen's seeded generator."""
    return Tensor(_random.get_rng().standard_normal(shape_arg(shape)).astype(dtype), requires_grad)


def rand(*shape, dtype=np.float32, requires_grad=False):
    """Uniform [0, 1) draws from scratchgen's seeded generator."""
    return Tensor(_random.get_rng().random(shape_arg(shape)).astype(dtype), requires_grad)


def zeros_like(t, requires_grad=False):
    """Zeros with ``t``'s shape and dtype."""
    return Tensor(np.zeros_like(t.data), requires_grad)


def ones_like(t, requires_grad=False):
    """Ones with ``t``'s shape and dtype."""
    return Tensor(np.ones_like(t.data), requires_grad)


def randn_like(t, requires_grad=False):
    """Standard normal draws with ``t``'s shape and dtype."""
    return randn(*t.shape, dtype=t.dtype, requires_grad=requires_grad)
