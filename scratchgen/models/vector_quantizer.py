"""Vector quantisation: the discrete bottleneck of the VQ-VAE.

van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete Representation Learning".

The encoder outputs a grid of vectors z_e (N, D, H, W). A codebook e of K vectors (K, D)
replaces each of the N·H·W vectors by its nearest codeword:

    k(z) = argmin_j ||z - e_j||²                                    (nearest_codes)

Nearest-neighbour lookup is piecewise constant, so its derivative is zero almost everywhere
and the decoder's gradient would never reach the encoder. The *straight-through estimator*
copies it across the lookup:

    z_q = z_e + sg[e_k - z_e]     value e_k, gradient dL/dz_e := dL/dz_q     (straight_through)

(sg[·] = stop-gradient = ``Tensor.detach``). The codebook then gets no gradient from the
reconstruction, so two squared distances, with the stop-gradient on opposite sides, train it
and keep the encoder near it:

    codebook loss     mean ||sg[z_e] - e_k||²   its gradient reaches only e     (codebook_loss)
    commitment loss   mean ||z_e - sg[e_k]||²   its gradient reaches only z_e   (commitment_loss)

    VQ loss = codebook loss + β · commitment loss,   β = 0.25 (the paper's value)

Both are means over all N·H·W·D elements; their *values* are equal, only their gradients differ.

Instead of the codebook loss, ``update="ema"`` moves each codeword to a running average of the
encoder outputs assigned to it (the paper's Appendix A, decay γ = 0.99; VQ-VAE-2 uses this):

    n_k ← γ n_k + (1 - γ) |{i : k_i = k}|,   s_k ← γ s_k + (1 - γ) Σ_{i : k_i = k} z_i,   e_k = s_k / n_k

Here n and s start at 1 and e, so e is unchanged until a code is used, and a code that is not
used keeps its value (n and s shrink by the same factor). The commitment loss is still needed.

A codeword that is never the nearest gets no update at all: it is "dead". ``init="data"`` starts
every codeword on an encoder output of the first training batch, so all start in use;
:func:`perplexity` and :func:`code_counts` measure how many are used. ``restart_threshold`` > 0
adds *dead-code restarts*: a moving average u_k of the share of the batch's vectors assigned to
code k is kept, and a code with u_k < threshold / K is moved onto a random encoder output of the
current batch (as in Dhariwal et al. 2020, "Jukebox", and Williams et al. 2020).
"""
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..random import get_rng
from ..autograd import Tensor

UPDATES = ("loss", "ema")
INITS = ("data", "uniform")


# ---------------------------------------------------------------------- the pieces, one function each
def to_vectors(z):
    """(N, D, H, W) -> (N·H·W, D): one row per grid position, in raster order."""
    if z.ndim != 4:
        raise ValueError(f"expected a grid of vectors (N, D, H, W), got shape {tuple(z.shape)}")
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def to_grid(vectors, shape):
    """The inverse of :func:`to_vectors`: (N·H·W, D) -> (N, D, H, W) for ``shape`` = (N, D, H, W)."""
    n, d, h, w = shape
    return vectors.reshape(n, h, w, d).permute(0, 3, 1, 2)


def squared_distances(z, codebook):
    """||z_i - e_j||² for rows z (M, D) and codewords (K, D), as an (M, K) array.

    Written ||z||² - 2 z·e + ||e||²: one matrix product instead of an (M, K, D) array.
    NOTE: rounding can make a tiny distance slightly negative; the argmin does not care.
    """
    z, e = np.asarray(z), np.asarray(codebook)
    if z.ndim != 2 or e.ndim != 2 or z.shape[1] != e.shape[1]:
        raise ValueError(f"squared_distances expects vectors (M, D) and a codebook (K, D), got {z.shape} "
                         f"and {e.shape}")
    return (z * z).sum(1, keepdims=True) - 2 * z @ e.T + (e * e).sum(1)


def nearest_codes(z, codebook):
    """k_i = argmin_j ||z_i - e_j||² for each row of z (M, D): integer indices (M,). Ties go to the
    lowest index."""
    return squared_distances(z, codebook).argmin(axis=1)


def straight_through(z_e, e):
    """z_q = z_e + sg[e - z_e]: the value of ``e``, the gradient of the identity to ``z_e``.

    Whatever loss follows, dL/dz_e is exactly dL/dz_q, and ``e`` gets no gradient from it.
    """
    return z_e + (e - z_e).detach()


def codebook_loss(z_e, e):
    """mean ||sg[z_e] - e||²: pulls the chosen codewords towards the encoder outputs."""
    return F.mse_loss(e, z_e.detach())


def commitment_loss(z_e, e):
    """mean ||z_e - sg[e]||²: pulls the encoder outputs towards their codewords (weighted by β)."""
    return F.mse_loss(z_e, e.detach())


def code_counts(indices, num_codes):
    """How often each of the ``num_codes`` codes occurs in ``indices`` (any shape): (K,) integers."""
    return np.bincount(np.asarray(indices).ravel(), minlength=num_codes)


def perplexity(indices, num_codes):
    """exp(entropy) of the codes' empirical distribution: 1 if one code is used, K if all are
    used equally often — the "effective number of codes in use"."""
    p = code_counts(indices, num_codes) / max(np.size(indices), 1)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@dataclass
class Quantized:
    """What :class:`VectorQuantizer` returns for a grid z_e (N, D, H, W)."""
    z_q: Tensor              # (N, D, H, W): codeword values, straight-through gradient to z_e
    indices: np.ndarray      # (N, H, W): the chosen codes
    codebook_loss: Tensor    # scalar, mean ||sg[z_e] - e||²
    commitment_loss: Tensor  # scalar, mean ||z_e - sg[e]||² (not yet multiplied by β)
    loss: Tensor             # codebook_loss (if trained by loss) + β · commitment_loss
    perplexity: float        # of this batch's codes


# ---------------------------------------------------------------------- the layer
class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation of a grid of D-dimensional vectors with a codebook (K, D).

    ``update="loss"``: the codebook is a Parameter trained by the codebook loss (with the rest of
    the model, by its optimizer). ``update="ema"``: it is a buffer, moved by moving averages in
    :meth:`forward` while the module is in training mode.

    ``init="data"``: the first training-mode forward sets the codewords to K vectors of its input
    drawn at random. ``init="uniform"``: they stay at their initial U(-1/K, 1/K) values, as in
    common VQ-VAE implementations (where many codes tend to die: they start near the origin, away
    from the encoder's outputs, and a code that is never chosen gets no gradient).
    """

    def __init__(self, num_codes, dim, beta=0.25, update="loss", decay=0.99, init="data", restart_threshold=0.0,
                 dtype=np.float32):
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"VectorQuantizer: update must be one of {UPDATES}, got {update!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"VectorQuantizer: the moving-average decay must lie in (0, 1), got {decay}")
        if init not in INITS:
            raise ValueError(f"VectorQuantizer: init must be one of {INITS}, got {init!r}")
        if not 0.0 <= restart_threshold < 1.0:
            raise ValueError(f"VectorQuantizer: restart_threshold must lie in [0, 1) (a share of 1/K), "
                             f"got {restart_threshold}")
        if beta < 0:
            raise ValueError(f"VectorQuantizer: beta must be non-negative, got {beta}")
        for name, value in (("num_codes", num_codes), ("dim", dim)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"VectorQuantizer: {name} must be a positive integer, got {value!r}")
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.beta, self.update, self.decay = float(beta), update, float(decay)
        values = get_rng().uniform(-1 / num_codes, 1 / num_codes, (num_codes, dim)).astype(dtype)
        if update == "loss":
            self.codebook = nn.Parameter(values)
        else:
            self.register_buffer("codebook", values)
            self.register_buffer("ema_count", np.ones(num_codes, dtype))
            self.register_buffer("ema_sum", values.copy())
        self.restart_threshold = float(restart_threshold)
        if self.restart_threshold:
            self.register_buffer("usage", np.full(num_codes, 1 / num_codes, dtype))
        # 1 once the codebook has been set from data (init="data"), saved with the weights
        self.register_buffer("initialized", np.array(float(init == "uniform"), dtype))

    @classmethod
    def from_options(cls, o, codebook_size=None):
        """The quantiser a VQ-VAE's options describe (``codebook_size``, unless given, ``code_dim``, ``beta``,
        ``codebook_update``, ``ema_decay``, ``codebook_init`` and, if given, ``restart_threshold``)."""
        return cls(codebook_size or o["codebook_size"], o["code_dim"], beta=o["beta"], update=o["codebook_update"],
                   decay=o["ema_decay"], init=o["codebook_init"], restart_threshold=o.get("restart_threshold", 0.0))

    def _codebook_array(self):
        return self.codebook.data if isinstance(self.codebook, Tensor) else self.codebook

    def lookup(self, indices):
        """Codewords for integer ``indices`` (N, H, W) as a grid (N, D, H, W)."""
        table = self.codebook if isinstance(self.codebook, Tensor) else Tensor(self.codebook)
        return F.embedding(indices, table).permute(0, 3, 1, 2)

    def codes(self, z_e):
        """The nearest codes of a grid z_e (N, D, H, W) as integers (N, H, W), no gradient."""
        z = self._rows(z_e)
        n, _, h, w = z_e.shape
        return nearest_codes(z, self._codebook_array()).reshape(n, h, w)

    def _rows(self, z_e):
        """The grid's vectors as an array (N·H·W, D), checked."""
        z = z_e.data if isinstance(z_e, Tensor) else np.asarray(z_e)
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"VectorQuantizer(K={self.num_codes}, D={self.dim}) expects a grid (N, {self.dim}, H, W), "
                             f"got shape {tuple(z.shape)}")
        return z.transpose(0, 2, 3, 1).reshape(-1, self.dim)

    def init_from_data(self, z_e):
        """Codewords := K vectors of the grid z_e drawn at random (without replacement when there are
        enough). Called by the first training-mode forward when ``init="data"``."""
        z = self._rows(z_e)
        rows = get_rng().choice(len(z), self.num_codes, replace=len(z) < self.num_codes)
        self._codebook_array()[...] = z[rows]
        if self.update == "ema":
            self.ema_sum[...] = z[rows] * self.ema_count[:, None]
        self.initialized[...] = 1

    def forward(self, z_e):
        """Quantise z_e (N, D, H, W); in training mode, initialise from data (once) and, with
        ``update="ema"``, move the codewords after the lookup (assign, then update, as k-means)."""
        if self.training and not self.initialized:
            self.init_from_data(z_e)
        idx = self.codes(z_e)
        e = self.lookup(idx)
        if self.update == "ema" and self.training:
            self._ema_update(self._rows(z_e), idx.ravel())
        if self.restart_threshold and self.training:
            self.restart_dead_codes(self._rows(z_e), idx.ravel())
        book, commit = codebook_loss(z_e, e), commitment_loss(z_e, e)
        loss = commit * self.beta if self.update == "ema" else book + commit * self.beta
        return Quantized(straight_through(z_e, e), idx, book, commit, loss, perplexity(idx, self.num_codes))

    def restart_dead_codes(self, vectors, idx):
        """u_k ← γ u_k + (1-γ) count_k / M; every code with u_k < threshold / K moves onto a random row of
        ``vectors`` (M, D) (and gets u_k = 1/K). Takes effect from the next batch; returns how many moved."""
        g = self.decay
        self.usage *= g
        self.usage += (1 - g) * code_counts(idx, self.num_codes) / len(idx)
        dead = np.flatnonzero(self.usage < self.restart_threshold / self.num_codes)
        if len(dead):
            rows = vectors[get_rng().choice(len(vectors), len(dead), replace=len(vectors) < len(dead))]
            self._codebook_array()[dead] = rows
            if self.update == "ema":
                self.ema_count[dead] = 1
                self.ema_sum[dead] = rows
            self.usage[dead] = 1 / self.num_codes
        return len(dead)

    def _ema_update(self, vectors, idx):
        """n_k ← γ n_k + (1-γ) count_k;  s_k ← γ s_k + (1-γ) Σ z_i;  e_k = s_k / n_k."""
        g = self.decay
        sums = np.zeros_like(self.ema_sum)
        np.add.at(sums, idx, vectors)
        self.ema_count *= g
        self.ema_count += (1 - g) * code_counts(idx, self.num_codes)
        self.ema_sum *= g
        self.ema_sum += (1 - g) * sums
        # NOTE: a code unused for ~10^4 steps has n and s underflow to 0; it keeps its last value.
        np.divide(self.ema_sum, self.ema_count[:, None], out=self.codebook, where=self.ema_count[:, None] > 1e-30)

    def extra_repr(self):
        return f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, update={self.update!r}"
