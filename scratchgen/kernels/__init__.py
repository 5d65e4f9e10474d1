"""Compute kernels: each one as readable NumPy and as fast Numba, behind a backend switch.

* :mod:`.backend` — ``get_backend()``, ``set_backend(name)``, ``with use_backend(name):``
* :mod:`.matmul`  — ``matmul(a, b)`` with NumPy's broadcasting rules (import it from the
  module: ``from scratchgen.kernels.matmul import matmul``; re-exporting the function here would
  hide the module of the same name)
* :mod:`.conv`    — ``conv2d_forward``, ``conv2d_grad_input``, ``conv2d_grad_weight`` (NCHW)

Plain NumPy arrays go in and come out; :mod:`scratchgen.tensor` adds the autograd on top.
``python -m scratchgen.bench`` times them against NumPy.
"""
from .backend import BACKENDS, get_backend, set_backend, use_backend
from .conv import conv2d_forward, conv2d_grad_input, conv2d_grad_weight
from . import matmul

__all__ = ["BACKENDS", "get_backend", "set_backend", "use_backend", "matmul",
           "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"]
