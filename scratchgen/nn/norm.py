"""Batch normalisation (Ioffe & Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift").

Per channel c: y = (x - μ_c) / √(σ²_c + eps) · weight_c + bias_c.

* ``train()`` mode: μ and σ² are the batch's mean and (biased) variance over every axis but
  the channel axis. The running estimates move towards them:
  running ← (1 - momentum) · running + momentum · batch statistic, where the variance fed to
  ``running_var`` is the unbiased one (n / (n - 1) times the batch variance), as in PyTorch.
* ``eval()`` mode: μ and σ² are ``running_mean`` and ``running_var``, so an output no longer
  depends on the other examples in its batch.
"""
import numpy as np

from .. import functional as F
from .linear import check_size
from .module import Module, Parameter, float_dtype


class _BatchNorm(Module):
    _input_shapes = ""  # what forward accepts, for error messages

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_size(num_features, "num_features", name)
        if not eps > 0:
            raise ValueError(f"{name}: eps must be positive, got {eps}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must lie in [0, 1], got {momentum}")
        self.eps, self.momentum = float(eps), float(momentum)
        dtype = float_dtype(dtype, name)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=dtype))
        self.bias = Parameter(np.zeros(c, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
        self.register_buffer("running_var", np.ones(c, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def _shape_ok(self, x):
        raise NotImplementedError

    def forward(self, x):
        if not self._shape_ok(x):
            raise ValueError(f"{self!r} got input of shape {tuple(x.shape)}: expected "
                             f"{self._input_shapes.format(C=self.num_features)}")
        if self.training:
            self.num_batches_tracked += 1
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm of features (N, C) or of sequences (N, C, L)."""
    _input_shapes = "(N, {C}) or (N, {C}, L)"

    def _shape_ok(self, x):
        return x.ndim in (2, 3) and x.shape[1] == self.num_features


class BatchNorm2d(_BatchNorm):
    """Batch norm of images (N, C, H, W): statistics over N, H and W for each channel."""
    _input_shapes = "(N, {C}, H, W)"

    def _shape_ok(self, x):
        return x.ndim == 4 and x.shape[1] == self.num_features
