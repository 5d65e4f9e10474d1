"""scratchgen: deep generative models from scratch in NumPy and Numba, written to be read.

Start with :mod:`scratchgen.autograd` (the engine) and :mod:`scratchgen.ops` (the op catalogue),
then :mod:`scratchgen.functional` (``F``), :mod:`scratchgen.nn` and :mod:`scratchgen.optim`.
"""
import os

# NOTE: OpenBLAS worker threads spin for ~0.1 s after each call and then fight Numba's
# parallel threads, making alternating calls ~10x slower. A short timeout keeps the two
# pools apart (measured on the project's 2-core machines). Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .random import manual_seed, get_rng  # noqa: E402
from .autograd import Tensor, no_grad, is_grad_enabled  # noqa: E402
# NOTE: importing ops attaches the op catalogue to Tensor (a + b, a.exp(), ...) before any other
# module of the package uses a tensor
from .ops import tensor, zeros, ones, randn, rand, zeros_like, ones_like, randn_like  # noqa: E402

from .finite_differences import gradcheck  # noqa: E402  (the function, from the module of finite-difference checks)

__version__ = "0.1.0"
