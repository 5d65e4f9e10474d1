"""A minimal reverse-mode automatic differentiation engine.

A :class:`Tensor` wraps a NumPy array (``.data``). Every operation on tensors that require
gradients records, in the output, its inputs (``_parents``) and a *backward rule*: a function
that maps the gradient of the loss with respect to the output, ``g``, to the gradients with
respect to each input (the vector–Jacobian products). Each rule is written right below the
forward computation that it differentiates, so the file reads as a table:

=============  ==========================  =========================================
op             forward                     backward  (g = dL/d out)
=============  ==========================  =========================================
a + b          a + b                       g, g
a * b          a * b                       g * b, g * a
a / b          a / b                       g / b, -g * a / b**2
a ** p         a ** p                      g * p * a**(p-1)   (and g * out * log a for p)
a @ b          matmul kernel               g @ bᵀ, aᵀ @ g
exp(a)         e^a                         g * out
log(a)         log a                       g / a
tanh(a)        tanh a                      g * (1 - out²)
sigmoid(a)     1 / (1 + e^-a)              g * out * (1 - out)
relu(a)        max(a, 0)                   g * [a > 0]
sum(a, axis)   Σ a                         g broadcast back to a's shape
a[idx]         a[idx]                      scatter-add g into zeros_like(a)
=============  ==========================  =========================================

Rules of the engine (each is tested in ``tests/test_autograd.py``):

* **Topological order.** ``loss.backward()`` sorts the graph (iteratively, so a chain of
  10,000 ops does not hit Python's recursion limit) and visits every node after all the
  nodes that use it, so a node's gradient is complete before it is passed on.
* **Reuse adds up.** A node used twice (``b = a + a; c = b * b``) receives the sum of the
  gradients from both uses — the multivariable chain rule.
* **Leaves accumulate.** Only leaves (tensors created by the user with
  ``requires_grad=True``) keep ``.grad``; backward *adds* into it, exactly like PyTorch, so two
  ``backward()`` calls on two graphs that share a leaf give the sum. Optimizers clear it with
  ``zero_grad()``.
* **Broadcasting** follows NumPy. A rule may return a gradient in the broadcast shape; the
  engine sums it back to the input's shape (:func:`unbroadcast`).
* **dtypes.** A tensor keeps the dtype of its array: float64 arrays stay float64, and Python
  lists or scalars become float32 (PyTorch's default). A Python number combined with a tensor
  takes the tensor's dtype; two tensors of different float dtypes combine by NumPy promotion
  (float32 with float64 gives float64). Gradients always have their tensor's dtype.
* ``with no_grad():`` computes values without recording anything.
"""
import contextlib

import numpy as np

from . import random as _random

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Context manager: operations inside build no graph (for evaluation and updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if grad.shape != tuple(shape):  # a backward rule returned the wrong shape: fail loudly
        raise RuntimeError(f"internal error: gradient of shape {grad.shape} for an input of shape {tuple(shape)}")
    return grad


def _to_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.generic):  # NOTE: NumPy ops on 0-d arrays return scalars; keep their dtype
        data = np.asarray(data)
    if isinstance(data, np.ndarray):
        return data if dtype is None else data.astype(dtype, copy=False)
    arr = np.asarray(data)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``Tensor(data, requires_grad=False, dtype=None)``. ``data`` may be an ndarray (its dtype is
    kept), a Python number or a (nested) list (floats become float32).
    """

    __array_priority__ = 100  # so ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients; got dtype "
                            f"{self.data.dtype}. Create it with dtype=np.float32 or np.float64.")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._parents = ()
        self._backward = None
        self._op = ""

    # ------------------------------------------------------------------ graph building
    @staticmethod
    def from_op(data, parents, backward, op=""):
        """Build the output of an op. ``backward(g)`` returns one gradient (or None) per parent.

        Extensions (``functional.conv2d`` and friends) use this to add ops with their own rule.
        """
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._backward = backward
            out._op = op
        return out

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient (same shape as self); it may be omitted only for a
        tensor with a single element (a scalar loss), where it defaults to 1.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: none of its "
                               "inputs had requires_grad=True (or it was computed under no_grad).")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without an argument needs a scalar output; this "
                                   f"tensor has shape {self.shape}. Reduce it (e.g. .sum()) or "
                                   f"pass grad= of the same shape.")
            grad = np.ones_like(self.data)
        grad = _to_array(grad, self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward(grad): grad has shape {grad.shape}, tensor has shape {self.shape}")

        order = self._topological_order()
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                pg = unbroadcast(np.asarray(pg, dtype=parent.data.dtype), parent.shape)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    def _topological_order(self):
        """Nodes ordered so that every node comes after all of its inputs (iterative DFS)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
        return order

    # ------------------------------------------------------------------ basic properties
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = lambda self, dim=None: self.data.shape if dim is None else self.data.shape[dim]
    numel = lambda self: self.data.size
    is_leaf = property(lambda self: self._backward is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = f", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{extra})"

    def item(self):
        return self.data.item()

    def numpy(self):
        """The underlying array (shared, not copied), as ``torch.Tensor.numpy`` does."""
        return self.data

    def tolist(self):
        return self.data.tolist()

    def detach(self):
        """A tensor sharing the same data, cut off from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------------ dtype
    def to(self, dtype):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        src = self.dtype
        return Tensor.from_op(self.data.astype(dtype), (self,), lambda g: (g.astype(src),), "cast")

    float = lambda self: self.to(np.float32)
    double = lambda self: self.to(np.float64)

    # ------------------------------------------------------------------ arithmetic
    def _lift(self, other):
        """A Python number or array becomes a constant tensor with self's float dtype."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, np.ndarray) and other.dtype.kind == "f":
            return Tensor(other)
        dtype = self.dtype if self.dtype.kind == "f" else None
        return Tensor(other, dtype=dtype)

    def __add__(self, other):
        other = self._lift(other)
        return Tensor.from_op(self.data + other.data, (self, other), lambda g: (g, g), "add")

    def __sub__(self, other):
        other = self._lift(other)
        return Tensor.from_op(self.data - other.data, (self, other), lambda g: (g, -g), "sub")

    def __mul__(self, other):
        other = self._lift(other)
        a, b = self.data, other.data
        return Tensor.from_op(a * b, (self, other), lambda g: (g * b, g * a), "mul")

    def __truediv__(self, other):
        other = self._lift(other)
        a, b = self.data, other.data
        return Tensor.from_op(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)), "div")

    def __pow__(self, exponent):
        a = self.data
        if isinstance(exponent, Tensor):
            out = a ** exponent.data
            # NOTE: d/dp a**p = a**p log a is only defined for a > 0.
            return Tensor.from_op(out, (self, exponent),
                                  lambda g: (g * exponent.data * a ** (exponent.data - 1),
                                             g * out * np.log(a)), "pow")
        p = exponent
        return Tensor.from_op(a ** p, (self,), lambda g: (g * p * a ** (p - 1),), "pow")

    def __neg__(self):
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __matmul__(self, other):
        from .kernels.matmul import matmul as kernel_matmul
        other = self._lift(other)
        a, b = self.data, other.data
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul needs at least 1-D operands, got shapes {a.shape} @ {b.shape}")
        if a.ndim == 1 or b.ndim == 1:  # NumPy's rule: a 1-D operand is a row / column vector
            if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:  # name the shapes the user passed
                raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape}")
            a2 = self.reshape(1, -1) if a.ndim == 1 else self
            b2 = other.reshape(-1, 1) if b.ndim == 1 else other
            out = a2 @ b2
            shape = out.shape[:-2] + ((out.shape[-2],) if a.ndim > 1 else ()) + \
                ((out.shape[-1],) if b.ndim > 1 else ())
            return out.reshape(shape)

        def backward(g):  # a product is computed only for an operand that needs its gradient
            return (kernel_matmul(g, np.swapaxes(b, -1, -2)) if self.requires_grad else None,
                    kernel_matmul(np.swapaxes(a, -1, -2), g) if other.requires_grad else None)
        return Tensor.from_op(kernel_matmul(a, b), (self, other), backward, "matmul")

    __radd__ = __add__
    __rmul__ = __mul__
    __rsub__ = lambda self, other: self._lift(other) - self
    __rtruediv__ = lambda self, other: self._lift(other) / self
    __rmatmul__ = lambda self, other: self._lift(other) @ self

    def __rpow__(self, base):
        return self._lift(base) ** self

    # comparisons give plain boolean arrays (no gradient flows through a comparison)
    def _value(self, other):
        return other.data if isinstance(other, Tensor) else other

    __lt__ = lambda self, other: self.data < self._value(other)
    __le__ = lambda self, other: self.data <= self._value(other)
    __gt__ = lambda self, other: self.data > self._value(other)
    __ge__ = lambda self, other: self.data >= self._value(other)
    __eq__ = lambda self, other: self.data == self._value(other)
    __ne__ = lambda self, other: self.data != self._value(other)
    __hash__ = object.__hash__

    # ------------------------------------------------------------------ elementwise functions
    def exp(self):
        out = np.exp(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * out,), "exp")

    def log(self):
        a = self.data
        return Tensor.from_op(np.log(a), (self,), lambda g: (g / a,), "log")

    def sqrt(self):
        out = np.sqrt(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g / (2 * out),), "sqrt")

    def abs(self):
        # NOTE: |a| has a kink at 0; like PyTorch we use the subgradient sign(0) = 0.
        a = self.data
        return Tensor.from_op(np.abs(a), (self,), lambda g: (g * np.sign(a),), "abs")

    def tanh(self):
        out = np.tanh(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self):
        a = self.data
        # NOTE: 1/(1+exp(-a)) overflows for large negative a; this form never exponentiates
        # a positive number: with e = exp(-|a|), σ(a) = 1/(1+e) for a >= 0 and e/(1+e) for a < 0.
        # The numerator max(e, a >= 0) is 1 or e (e <= 1) without np.where, which branches per
        # element: for logits of random sign that alone took 1 ms per 100k, 4x all the rest.
        e = np.exp(-np.abs(a))
        out = np.maximum(e, a >= 0) / (1 + e)
        return Tensor.from_op(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self):
        a = self.data
        # NOTE: the kink at 0 gets gradient 0, as in PyTorch.
        return Tensor.from_op(np.maximum(a, 0), (self,), lambda g: (g * (a > 0),), "relu")

    def clamp(self, min=None, max=None):
        a = self.data
        inside = np.ones(a.shape, dtype=bool)
        if min is not None:
            inside &= a >= min
        if max is not None:
            inside &= a <= max
        return Tensor.from_op(np.clip(a, min, max), (self,), lambda g: (g * inside,), "clamp")

    clip = clamp

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False, dim=None):
        axis = dim if dim is not None else axis
        shape = self.shape

        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            return (np.broadcast_to(g, shape),)
        return Tensor.from_op(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims=False, dim=None):
        axis = dim if dim is not None else axis
        axes = range(self.ndim) if axis is None else np.atleast_1d(axis)
        count = int(np.prod([self.shape[i] for i in axes]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False, dim=None):
        """Maximum. NOTE: ties share the gradient equally (so the gradient sums to g)."""
        axis = dim if dim is not None else axis
        a = self.data
        out = a.max(axis=axis, keepdims=True)

        def backward(g):
            if not keepdims:
                g = g.reshape(out.shape)
            winners = a == out
            return (g * winners / winners.sum(axis=axis, keepdims=True),)
        result = out if keepdims else (out.reshape(()) if axis is None else np.squeeze(out, axis))
        return Tensor.from_op(result, (self,), backward, "max")

    def min(self, axis=None, keepdims=False, dim=None):
        return -((-self).max(axis=axis, keepdims=keepdims, dim=dim))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        src = self.shape
        return Tensor.from_op(self.data.reshape(shape), (self,), lambda g: (g.reshape(src),), "reshape")

    view = reshape

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        out = self.data.transpose(dims)
        inverse = np.argsort([d % self.ndim for d in dims])  # NOTE: dims may be negative
        return Tensor.from_op(out, (self,), lambda g: (g.transpose(inverse),), "permute")

    def transpose(self, dim0=-2, dim1=-1):
        """Swap two dimensions (PyTorch semantics, not NumPy's full reversal)."""
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    @property
    def T(self):
        """All dimensions reversed (for a matrix, its transpose)."""
        return self.permute(tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0, end_dim=-1):
        end = end_dim % self.ndim if self.ndim else 0
        shape = self.shape[:start_dim] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def unsqueeze(self, dim):
        return self.reshape(np.expand_dims(self.data, dim).shape)

    def squeeze(self, dim=None):
        if dim is not None:  # PyTorch: an axis longer than 1 is left alone, not an error
            dim = tuple(int(d) for d in np.atleast_1d(dim) if self.shape[d] == 1)
        return self.reshape(np.squeeze(self.data, dim).shape)

    def expand(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape = tuple(s if s != -1 else self.shape[i - len(shape) + self.ndim]
                      for i, s in enumerate(shape))
        return Tensor.from_op(np.broadcast_to(self.data, shape), (self,), lambda g: (g,), "expand")

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        a = self.data

        def backward(g):
            full = np.zeros_like(a)
            np.add.at(full, index, g)  # scatter-add: repeated indices accumulate
            return (full,)
        return Tensor.from_op(a[index], (self,), backward, "index")


# ---------------------------------------------------------------------- constructors
def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def tensor(data, requires_grad=False, dtype=None):
    """Like ``torch.tensor``: a new leaf tensor holding a copy of ``data``."""
    src = data.data if isinstance(data, Tensor) else data
    arr = np.array(src, copy=True)
    if not isinstance(src, (np.ndarray, np.generic)) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats become float32, as in Tensor(...)
    return Tensor(arr, requires_grad, dtype)


def zeros(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False):
    """Standard normal draws from scratchgen's seeded generator."""
    return Tensor(_random.get_rng().standard_normal(_shape(shape)).astype(dtype), requires_grad)


def rand(*shape, dtype=np.float32, requires_grad=False):
    """Uniform [0, 1) draws from scratchgen's seeded generator."""
    return Tensor(_random.get_rng().random(_shape(shape)).astype(dtype), requires_grad)


def zeros_like(t, requires_grad=False):
    return Tensor(np.zeros_like(t.data), requires_grad)


def ones_like(t, requires_grad=False):
    return Tensor(np.ones_like(t.data), requires_grad)


def randn_like(t, requires_grad=False):
    return randn(*t.shape, dtype=t.dtype, requires_grad=requires_grad)
