"""An autoregressive prior over a grid of discrete codes, for sampling from a VQ-VAE.

A VQ-VAE turns an image into a grid of L = H·W code indices c_1 … c_L (raster order, each in
0..K-1). To *generate*, we need a distribution over such grids. The chain rule of probability
writes any distribution over L variables as a product of conditionals,

    p(c) = Π_i p(c_i | c_1, …, c_{i-1}),

so a network that outputs, for every position i, K logits that depend only on the codes
*before* i, is a complete model: trained with the cross-entropy of the true code at every
position (all positions in one pass), sampled one position at a time.

The network here is MADE (Germain, Gregor, Murray & Larochelle, 2015, "MADE: Masked
Autoencoder for Distribution Estimation"): an MLP whose weight matrices are multiplied by
fixed 0/1 masks. Every unit gets a *degree*: input units of position i have degree i
(1-based), hidden units a degree m in 0..L-1, output units of position i degree i. A hidden
unit of degree m may see inputs of degree ≤ m (the codes c_1..c_m; m = 0 sees none), and the
outputs of position i may see hidden units of degree < i; so output i depends on c_1..c_{i-1}
only. Codes enter through a small embedding table (K, E) rather than one-hot vectors.

An optional *context* — another grid of codes (VQ-VAE-2's top level) — feeds every unit of the
first hidden layer without a mask, so p(c | context) = Π_i p(c_i | c_<i, context).

NOTE: a simplification of the papers, which use PixelCNN priors (VQ-VAE) and PixelCNN with
self-attention (VQ-VAE-2). A masked MLP is much smaller and easy to read, and is enough for the
4x4 and 7x7 grids of 8x8 digits and MNIST.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..random import get_rng
from ..autograd import Tensor, no_grad


def made_masks(length, hidden):
    """The 0/1 masks of a MADE over ``length`` positions with hidden layer sizes ``hidden``.

    Returns (degrees of each layer, masks): masks[j] has the shape (out, in) of layer j's
    weight, in position units: the input mask is (hidden[0], length) and the output mask
    (length, hidden[-1]); :class:`CodePrior` repeats them over the embedding and code axes.
    Hidden units take degrees 0, 1, …, length-1, 0, 1, … in turn (deterministic).
    """
    inputs = np.arange(1, length + 1)
    layers = [np.arange(h) % length for h in hidden]
    masks = [(layers[0][:, None] >= inputs[None, :])]
    masks += [(b[:, None] >= a[None, :]) for a, b in zip(layers[:-1], layers[1:])]
    masks.append(inputs[:, None] > layers[-1][None, :])
    return [inputs, *layers, inputs], [m.astype(np.float32) for m in masks]


class MaskedLinear(nn.Linear):
    """``Linear`` whose weight is multiplied by a fixed 0/1 mask (out, in) in every forward pass.

    The masked weights get zero gradient, so they never change. The mask is rebuilt from the
    sizes, so it is an attribute, not a buffer (it is not saved in the state_dict).
    """

    def __init__(self, in_features, out_features, mask):
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"MaskedLinear: mask shape {mask.shape} != weight shape {(out_features, in_features)}")
        self.mask = mask.astype(self.weight.dtype)

    def forward(self, x):
        return F.linear(x, self.weight * Tensor(self.mask), self.bias)


def check_codes(codes, length, what, owner):
    """``codes`` as an integer array (N, length), or a ValueError naming ``owner`` and ``what``."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != length:
        raise ValueError(f"{owner}: {what} must be integer codes (N, {length}), got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{owner}: {what} must be integers, got dtype {codes.dtype}")
    return codes


class CodePrior(nn.Module):
    """p(c_1..c_L [| context]) for grids of ``length`` codes in 0..num_codes-1 (a MADE).

    ``context_length`` > 0 adds a conditioning grid of that many codes, in 0..context_codes-1
    (``context_codes`` defaults to ``num_codes``: the same codebook).
    Methods take and return integer arrays of shape (N, length) — flatten (N, H, W) grids first.
    """

    def __init__(self, length, num_codes, hidden=(256,), embed=8, context_length=0, context_codes=None):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if length < 1 or num_codes < 2 or not hidden or min(hidden) < 1 or embed < 1:
            raise ValueError(f"CodePrior needs length >= 1, num_codes >= 2, non-empty positive hidden sizes and "
                             f"embed >= 1; got length={length}, num_codes={num_codes}, hidden={hidden}, embed={embed}")
        self.length, self.num_codes, self.embed_dim = int(length), int(num_codes), int(embed)
        self.context_length = int(context_length)
        _, masks = made_masks(self.length, hidden)
        self.embed = nn.Embedding(num_codes, embed)
        sizes = [self.length * embed, *hidden]
        layers = []
        for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mask = np.repeat(masks[j], embed, axis=1) if j == 0 else masks[j]
            layers.append(MaskedLinear(a, b, mask))
        self.hidden = nn.Sequential(*layers)
        self.out = MaskedLinear(hidden[-1], self.length * num_codes, np.repeat(masks[-1], num_codes, axis=0))
        if self.context_length:
            self.context_embed = nn.Embedding(context_codes or num_codes, embed)
            self.context = nn.Linear(self.context_length * embed, hidden[0])

    def _check(self, codes, length, what):
        return check_codes(codes, length, what, "CodePrior")

    def logits(self, codes, context=None):
        """Logits (N, length, num_codes); those of position i depend only on codes[:, :i] (and context)."""
        codes = self._check(codes, self.length, "codes")
        n = len(codes)
        h = self.embed(codes).reshape(n, -1)
        for j, layer in enumerate(self.hidden):
            h = layer(h)
            if j == 0 and self.context_length:
                if context is None:
                    raise ValueError("this CodePrior is conditional: pass context= (N, context_length) codes")
                ctx = self._check(context, self.context_length, "context")
                h = h + self.context(self.context_embed(ctx).reshape(n, -1))
            h = h.relu()
        return self.out(h).reshape(n, self.length, self.num_codes)

    def loss(self, codes, context=None):
        """Cross-entropy -(1/(N·L)) Σ log p(c_i | c_<i): nats per code (uniform guessing: log K)."""
        codes = self._check(codes, self.length, "codes")
        logits = self.logits(codes, context)
        return F.cross_entropy(logits.reshape(-1, self.num_codes), codes.reshape(-1))

    def log_prob(self, codes, context=None):
        """log p(c [| context]) of each grid, in nats: an array (N,)."""
        with no_grad():
            logp = F.log_softmax(self.logits(codes, context), dim=2).data
        codes = np.asarray(codes)
        return np.take_along_axis(logp, codes[:, :, None], axis=2)[:, :, 0].sum(axis=1)

    def sample(self, n, context=None, temperature=1.0):
        """``n`` grids (n, length), drawn one position at a time from p(c_i | c_<i): L passes; each
        position from softmax(logits / temperature) (below 1: the likelier codes likelier still)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        codes = np.zeros((n, self.length), dtype=np.int64)
        rng = get_rng()
        with no_grad():
            for i in range(self.length):
                p = F.softmax(self.logits(codes, context)[:, i].to(np.float64) / temperature, dim=1).data
                u = rng.random((n, 1))
                codes[:, i] = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), self.num_codes - 1)
        return codes
