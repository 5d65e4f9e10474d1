"""Compute kernels: each one as a readable NumPy reference and as fast Numba, behind a backend switch.

One idea per module; a kernel's definition and dispatch, its Numba code and the layout helpers
live apart (as minitorch keeps ``tensor_ops`` apart from ``fast_ops``):

* :mod:`.backend`      — ``get_backend()``, ``set_backend(name)``, ``with use_backend(name):``, and
  ``implementation(table)``: every kernel is one table ``{"numpy": reference, "numba": kernel}``
* :mod:`.matmul`       — ``matmul(a, b)`` with NumPy's broadcasting rules, and its definition
  ``matmul_reference`` (import it from the module: ``from scratchgen.kernels.matmul import matmul``;
  re-exporting the function here would hide the module of the same name)
* :mod:`.matmul_numba` — the cache-blocked Numba matmul kernels, a folder: one module per kernel family,
  and ``dispatch``, which chooses among them
* :mod:`.conv`         — ``conv2d_forward``, ``conv2d_grad_input``, ``conv2d_grad_weight`` (NCHW):
  definitions, argument checks, NumPy references; ``conv2d_backward`` (both gradients of a layer at once)
* :mod:`.conv_numba`   — conv2d lowered onto register tiles or onto im2col / col2im and the matmul kernels
* :mod:`.conv_tiles`   — register tiles that read a convolution's patches straight from the image
* :mod:`.layouts`      — operands in the dtype and memory layout a kernel reads, and the transposing copy
* :mod:`.threads`      — how many threads a call wakes: by its work, and by timing its own calls
* :mod:`.tasks`        — ``claim_task``: threads take a kernel's tasks one at a time from a shared counter
* :mod:`.stack`        — ``stack_tile``: a register tile's sums in an array on the stack
* :mod:`.adam`         — ``adam_update``: Adam's step as a NumPy reference and one fused Numba pass
* :mod:`.batch_norm`   — batch normalisation's forward and backward arithmetic: reference and fused passes
* :mod:`.activations`  — the ReLU, the leaky ReLU and softplus with their gradients: reference and one Numba pass each
* :mod:`.bias`         — a convolution's bias added in place, and its gradient: reference and one Numba pass each
* :mod:`.compile_time` — how long Numba spent compiling in this process
* :mod:`.heap`         — freed memory kept for the next step (fewer page faults), set at import
* :mod:`.cpu`          — what the CPU reports (vector width, registers) and what the kernels make of it

Plain NumPy arrays go in and come out; :mod:`scratchgen.ops` adds the autograd on top.
``python -m scratchgen.bench`` times them against NumPy (and PyTorch, if installed).
"""
import os

# NOTE: Numba's parallel kernels run on OpenMP (libgomp) threads, which by default spin for a few
# milliseconds after every parallel loop before they go to sleep. We used to put them to sleep at once
# (OMP_WAIT_POLICY=PASSIVE), because on a busy 2-core machine spinning threads starved the next call
# (128x784 @ 784x400: 32 ms per call instead of 2.2). Since threads.ThreadChoice runs a call site on
# one thread when two do not pay, that no longer happens, and sleeping threads cost every parallel call
# a wake-up: 34 µs against 1.8 µs for a spinning pool (AMD EPYC Zen 4, 2 cores). Measured, medians of 6
# alternating processes, 2 threads, ms per training step (PASSIVE -> libgomp's default): quiet, VAE 7.5 ->
# 6.8, VQ-VAE 134 -> 127; with another program busy on one core, VAE 9.7 -> 7.8, VQ-VAE 158 -> 161. So
# the pool keeps libgomp's defaults; OMP_WAIT_POLICY in the environment still decides if it is set.


def _choose_vector_width():
    """Set Numba's CPU features with ``vector_width_setting`` for the host CPU.

    This sets Numba's features for the whole process, so it is skipped when they are already
    configured (``NUMBA_CPU_FEATURES``), and it has no effect if another library compiled Numba
    code before scratchgen was imported. Compiled kernels are cached per CPU name and features.
    """
    import numba
    from llvmlite import binding as llvm

    from .cpu import vector_width_setting

    if numba.config.CPU_FEATURES is not None or numba.config.DISABLE_JIT:
        return
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:            # LLVM could not read the host's features: keep its defaults
        return
    setting = vector_width_setting(llvm.get_host_cpu_name(), features)
    if setting:
        numba.config.CPU_FEATURES = features.flatten() + "," + setting


_choose_vector_width()

from .cpu import vector_registers, vector_width_setting  # noqa: E402,F401
from .heap import keep_freed_memory  # noqa: E402

# NOTE: a DCGAN step re-faulted 3,626 fresh pages (14 MB) that malloc had handed back to the system
# the step before: ~8% of its time. Keep freed memory for reuse (see heap.py for what it costs).
KEEPS_FREED_MEMORY = keep_freed_memory()

from . import compile_time  # noqa: E402,F401  (counts compilations from here on)
from .backend import BACKENDS, get_backend, set_backend, use_backend  # noqa: E402
from .conv import conv2d_forward, conv2d_grad_input, conv2d_grad_weight  # noqa: E402
from . import matmul  # noqa: E402

__all__ = ["BACKENDS", "get_backend", "set_backend", "use_backend", "matmul",
           "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"]
