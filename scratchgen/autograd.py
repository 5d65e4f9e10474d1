"""The autograd engine: a tensor that remembers how it was made, and ``backward()``.

A :class:`Tensor` wraps a NumPy array (``.data``). An op builds its output with
:meth:`Tensor.from_op`, handing over its inputs (``_parents``) and its *backward rule*: a function
from the gradient of the loss with respect to the output, ``g``, to the gradients with respect to
each input (the vector–Jacobian products). This file is the whole engine; the ops themselves, each
forward beside its backward, are the catalogue in :mod:`scratchgen.ops`.

Rules of the engine (each is tested in ``tests/test_autograd.py``):

* **Topological order.** ``loss.backward()`` sorts the graph (iteratively, so a chain of
  10,000 ops does not hit Python's recursion limit) and visits every node after all the
  nodes that use it, so a node's gradient is complete before it is passed on.
* **Reuse adds up.** A node used twice (``b = a + a; c = b * b``) receives the sum of the
  gradients from both uses — the multivariable chain rule.
* **Leaves accumulate.** Only leaves (tensors created by the user with
  ``requires_grad=True``) keep ``.grad``; backward *adds* into it, exactly like PyTorch, so two
  ``backward()`` calls on two graphs that share a leaf give the sum. Optimizers clear it with
  ``zero_grad()``. A leaf's first gradient is the array the rules computed, not a copy, when
  nothing else holds that array (:func:`owned`); ``.grad`` never shares memory with another array.
* **Broadcasting** follows NumPy. A rule may return a gradient in the broadcast shape; the
  engine sums it back to the input's shape (:func:`unbroadcast`).
* **dtypes.** A tensor keeps the dtype of its array: float64 arrays stay float64, and Python
  lists or scalars become float32 (PyTorch's default). A Python number combined with a tensor
  takes the tensor's dtype; two tensors of different float dtypes combine by NumPy promotion
  (float32 with float64 gives float64). Gradients always have their tensor's dtype.
* ``with no_grad():`` computes values without recording anything.
"""
import contextlib
import sys

import numpy as np

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


def owned(g):
    """``g`` itself if nothing but the caller's variable refers to it (or, for a C-contiguous view, to
    the array it views), else a C-contiguous copy: what a leaf's ``.grad`` may keep without sharing
    memory with any other array.

    NOTE: PyTorch's AccumulateGrad does the same: it keeps an incoming gradient whose reference count
    says nothing else uses it. Copying every leaf gradient cost the VAE's step ten copies of its
    650,000 parameters' gradients: on two threads the step took 7.44-7.82 ms with the copies and
    7.03-7.31 without (AMD EPYC Zen 3, four alternating processes each, 60 steps). The weight
    gradients arrive as views (a matmul's (1, n, m) output reshaped), of arrays nothing else holds.
    ``sys.getrefcount`` counts its own argument: 3 references are the caller's variable, this
    function's argument and that one (for the base: the view's pointer, ``base`` and the argument)."""
    base = g.base
    alone = sys.getrefcount(g) <= 3
    if base is not None:
        alone = alone and isinstance(base, np.ndarray) and base.base is None and sys.getrefcount(base) <= 3
    return g if alone and g.flags.c_contiguous else g.copy()


def as_array(data, dtype=None):
    """``data`` (a Tensor, array, number or list) as an ndarray: ``dtype`` if given, else arrays keep
    theirs and Python floats become float32."""
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
    kept), a Python number or a (nested) list (floats become float32). Arithmetic, ``exp``,
    ``sum``, ``reshape`` and the other ops are defined in :mod:`scratchgen.ops`.
    """

    __array_priority__ = 100  # so ndarray * Tensor calls Tensor.__rmul__
    __hash__ = object.__hash__  # NOTE: == is elementwise (scratchgen.ops), so hash by identity

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = as_array(data, dtype)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients; got dtype "
                            f"{self.data.dtype}. Create it with dtype=np.float32 or np.float64.")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._parents = ()
        self._backward = None
        self._op = ""

    @staticmethod
    def from_op(data, parents, backward, op=""):
        """Build the output of an op. ``backward(g)`` returns one gradient (or None) per parent.

        Every op of :mod:`scratchgen.ops` and :mod:`scratchgen.functional` is built this way.
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
        grad = as_array(grad, self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward(grad): grad has shape {grad.shape}, tensor has shape {self.shape}")

        order = self._topological_order()
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf
                node.grad = owned(g) if node.grad is None else node.grad + g
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

    # ------------------------------------------------------------------ what it holds
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def is_leaf(self):
        return self._backward is None

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
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
