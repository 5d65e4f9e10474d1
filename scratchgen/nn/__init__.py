"""Layers, ``import scratchgen.nn as nn``: PyTorch's names, layouts and default initialisations.

=====================  =================================================================
file                   what it holds
=====================  =================================================================
``module.py``          ``Module`` (parameters, buffers, state_dict, train/eval), ``Parameter``
``linear.py``          ``Linear``, ``Identity``
``conv.py``            ``Conv2d``, ``ConvTranspose2d``
``norm.py``            ``BatchNorm1d``, ``BatchNorm2d``
``embedding.py``       ``Embedding``
``activation.py``      ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``
``shape.py``           ``Flatten``, ``Unflatten``
``container.py``       ``Sequential``
``init.py``            initialisation schemes (``nn.init.kaiming_uniform_`` ...)
``utils.py``           ``clip_grad_norm_``
=====================  =================================================================

Every layer's ``forward`` calls :mod:`scratchgen.functional`; the layer only holds the
parameters, checks shapes, and gives them PyTorch's default initial values.
"""
from . import init, utils
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .embedding import Embedding
from .linear import Identity, Linear
from .module import IncompatibleKeys, Module, Parameter, StateDictError
from .norm import BatchNorm1d, BatchNorm2d
from .shape import Flatten, Unflatten

__all__ = ["Module", "Parameter", "StateDictError", "IncompatibleKeys", "Linear", "Identity",
           "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "Embedding", "Sequential",
           "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Unflatten", "init", "utils"]
