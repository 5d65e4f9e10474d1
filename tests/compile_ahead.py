"""Compile the Numba kernels for one dtype before the tests ask for them (see conftest.py)."""
import numpy as np

import scratchgen.functional as F
from scratchgen import Tensor, optim
from scratchgen.kernels import matmul_numba as mmn


def compile_kernels(dtype):
    """One small call of every kernel in ``dtype``, forward and backward: every matmul kernel
    by name, 3x3, 1x1, one-channel and transposed convolutions, batch norm, the activations and an
    Adam step. Each call is tiny; what it costs is Numba's compiling (or loading from its cache)."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    for kernel, (n, k, m) in (("dot", (8, 300, 40)), ("axpy", (40, 60, 64)), ("axpy", (40, 200, 64)),
                              ("small_a", (40, 60, 64)), ("narrow", (8, 40, 20)), ("narrow", (64, 40, 8)),
                              ("kmajor", (64, 40, 16)), ("kmajor", (64, 200, 64))):
        mmn.matmul_3d(r(1, n, k), r(1, k, m), 1, kernel=kernel)
        mmn.matmul_3d(r(1, k, n).swapaxes(1, 2), r(1, m, k).swapaxes(1, 2), 1, kernel=kernel)
    mmn.matmul_3d(r(1, 64, 40), r(1, 40, 8), 1)                              # the narrow dot kernel
    params = []

    def leaf(*shape):
        t = Tensor(r(*shape) * 0.1, requires_grad=True)
        params.append(t)
        return t

    x = Tensor(r(4, 1, 12, 12))
    h = F.leaky_relu(F.conv2d(x, leaf(32, 1, 3, 3), leaf(32), stride=2, padding=1), 0.2)      # one channel in
    h = F.conv2d(h, leaf(32, 32, 3, 3), None, padding=1)                                     # 32 -> 32, 3x3
    h = F.batch_norm(h, np.zeros(32, dtype), np.ones(32, dtype), leaf(32), leaf(32), training=True)
    h = F.relu(F.conv2d(h, leaf(64, 32, 1, 1), leaf(64)))                                    # 1x1
    h = F.conv_transpose2d(h, leaf(64, 32, 4, 4), leaf(32), stride=2, padding=1)               # transposed
    h = F.conv_transpose2d(h, leaf(32, 1, 4, 4), None, stride=2, padding=1)
    z = F.linear(Tensor(r(16, 64)), leaf(20, 64), leaf(20))
    z = F.batch_norm(z, np.zeros(20, dtype), np.ones(20, dtype), leaf(20), leaf(20), training=True)
    loss = F.binary_cross_entropy_with_logits(h, Tensor(rng.random(h.shape).astype(dtype))) + \
        F.softplus(z).mean() + F.sigmoid(z).mean()
    loss.backward()
    optim.Adam(params).step()
