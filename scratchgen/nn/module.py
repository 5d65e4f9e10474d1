"""``Module`` and ``Parameter``: the bookkeeping that turns tensors into a model.

A module is a tree. Each node holds three kinds of named state:

* **parameters** — :class:`Parameter` tensors that the optimizer updates;
* **buffers** — plain ``np.ndarray`` state that is saved with the model but not trained
  (BatchNorm's running mean and variance);
* **submodules** — child modules, whose state is reached through dotted names
  (``"encoder.fc1.weight"``), exactly as in PyTorch.

Assigning an attribute files it under the right kind (``self.fc = Linear(2, 3)`` registers a
submodule), so a model is written as ordinary Python and still knows its parameters.
``state_dict()`` flattens the tree to ``{dotted name: array}`` — a plain dict of arrays that
``np.savez`` can store — and ``load_state_dict()`` puts it back, checking every name and shape.
"""
from collections import namedtuple

import numpy as np

from ..autograd import Tensor


class Parameter(Tensor):
    """A tensor that is a trainable part of a module: a leaf with ``requires_grad=True``.

    ``Parameter(data)`` keeps the dtype of an ndarray (lists and numbers become float32).
    """

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(ValueError, RuntimeError):
    """``load_state_dict`` found missing or unexpected keys, or shapes that do not match.

    NOTE: PyTorch raises ``RuntimeError`` here; this error is both a ``RuntimeError`` and a
    ``ValueError``, so either ``except`` clause catches it.
    """


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def float_dtype(dtype, layer):
    """``np.dtype(dtype)``, checked to be a floating-point type (layers' ``dtype=`` argument)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"{layer}: dtype must be a floating-point type such as np.float32 or "
                         f"np.float64, got {dt}")
    return dt


def _indent(text, spaces=2):
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


class Module:
    """Base class of every layer and model. Subclasses call ``super().__init__()`` first,
    assign parameters and submodules as attributes, and define ``forward``::

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(784, 400)
                self.fc2 = nn.Linear(400, 10)

            def forward(self, x):
                return self.fc2(F.relu(self.fc1(x)))
    """

    def __init__(self):
        # object.__setattr__ bypasses our own __setattr__, which needs these dicts to exist
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() was called: "
                                 f"call super().__init__() first in {type(self).__name__}.__init__")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r} of "
                                f"{type(self).__name__}: wrap it as nn.Parameter(...) (or assign None)")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"buffer {name!r} of {type(self).__name__} must be an np.ndarray "
                                f"or None, got {type(value).__name__}")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to submodule {name!r} of "
                                f"{type(self).__name__}: expected a Module or None")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails, i.e. for registered state
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Add a parameter (or None, for an optional one such as a missing bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter or None, got "
                            f"{type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, array):
        """Add non-trained state (an ndarray, or None) that ``state_dict`` saves."""
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"register_buffer({name!r}): expected an np.ndarray or None, got "
                            f"{type(array).__name__}")
        self._forget(name)
        self._buffers[name] = array

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every descendant, parents first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()
                        if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, recurse):
        # NOTE: a tensor shared by two modules is listed once, under its first name, so an
        # optimizer never updates it twice.
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self, recurse=True):
        """(dotted name, Parameter) pairs, e.g. ("0.weight", ...), ("encoder.fc1.bias", ...)."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse=True):
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse):
            yield buf

    def num_parameters(self):
        """The number of trainable scalars (shared parameters counted once)."""
        return sum(p.data.size for p in self.parameters())

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule and then on self (for custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state
    def _state_items(self):
        # PyTorch's order: each module's parameters, then its buffers, parents before children
        for prefix, module in self.named_modules():
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if value is not None:
                        key = f"{prefix}.{name}" if prefix else name
                        yield key, (value.data if isinstance(value, Tensor) else value)

    def state_dict(self):
        """``{dotted name: copy of the array}`` for every parameter and buffer."""
        return {key: np.array(array, copy=True) for key, array in self._state_items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place.

        Every problem is reported at once: missing keys and unexpected keys (unless
        ``strict=False``), shape mismatches and impossible dtype casts (always). Nothing is
        changed if any is found.
        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        given = {k: np.asarray(v.data if isinstance(v, Tensor) else v) for k, v in state_dict.items()}
        targets = dict(self._state_items())
        missing = [k for k in targets if k not in given]
        unexpected = [k for k in given if k not in targets]
        mismatched = [(k, targets[k].shape, given[k].shape)
                      for k in targets if k in given and given[k].shape != targets[k].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing key(s): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected key(s): {', '.join(unexpected)}")
        for key, expected, got in mismatched:
            problems.append(f"shape mismatch for {key}: expected {expected}, got {got}")
        for key, target in targets.items():
            if key in given and not np.can_cast(given[key].dtype, target.dtype, "same_kind"):
                problems.append(f"dtype mismatch for {key}: cannot cast {given[key].dtype} "
                                f"to {target.dtype}")
        if problems:
            hint = ("\n(strict=False skips missing and unexpected keys; shapes must still match)"
                    if missing or unexpected else "")
            raise StateDictError(f"cannot load state_dict into {type(self).__name__}:\n  "
                                 + "\n  ".join(problems) + hint)
        for key, target in targets.items():
            if key in given:
                np.copyto(target, given[key], casting="same_kind")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode=True):
        """Set training mode (True) or evaluation mode (False) on this module and all below it."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode) expects a bool, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's ``.grad`` to None."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) every parameter, e.g. the discriminator in a GAN."""
        for p in self.parameters():
            p.requires_grad = bool(flag)
        return self

    def to(self, dtype):
        """Cast every parameter and floating-point buffer to ``dtype`` (Parameters keep their identity)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"Module.to expects a floating-point dtype, got {dtype}")
        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None if p.grad is None else p.grad.astype(dtype)
            for name, buf in module._buffers.items():
                if buf is not None and buf.dtype.kind == "f":
                    module._buffers[name] = buf.astype(dtype)
        return self

    double = lambda self: self.to(np.float64)
    float = lambda self: self.to(np.float32)

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        """The text inside the parentheses, e.g. ``in_features=2, out_features=3, bias=True``."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        children = [f"({name}): {_indent(repr(m))}" for name, m in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
