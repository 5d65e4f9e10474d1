"""Gated PixelCNN: an autoregressive model of a grid of discrete codes, built from masked convolutions.

van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu (2016), "Conditional Image
Generation with PixelCNN Decoders" (the gated layer, the two stacks, conditioning); masked
convolutions of type A and B from van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel
Recurrent Neural Networks". Used here as the prior over VQ-VAE code grids (van den Oord et al.
2017; Razavi et al. 2019).

A grid c of H x W codes (each in 0..K-1) is modelled by the chain rule in raster order,

    p(c) = Π_{(r, s)} p(c_{r,s} | every code above row r, and codes left of s in row r),

so the K logits at position (r, s) may depend on those codes only. Convolutions see a square
around each position; a *mask* multiplies the kernel by 0/1 to cut away what lies ahead.

Two stacks remove the *blind spot* of a single masked k x k stack (whose receptive field misses a
growing wedge up and to the right of each position):

* the **vertical stack** v sees whole rows *above*: its k x k kernel keeps the rows up to and
  including the centre row (``vertical_mask``). It includes the current row, so its output is
  shifted down one row (:func:`shift_down`) before the horizontal stack reads it;
* the **horizontal stack** h sees the current row *to the left*: a 1 x k kernel keeping columns
  left of the centre (type **A**, the first layer: the position's own code is not visible) or up
  to and including the centre (type **B**, later layers: their input at the centre already
  describes only earlier codes).

One gated layer (``GatedLayer``), with ⊙ the elementwise product and σ the logistic sigmoid::

    v_pre = V * v                      + cond_v                (V: vertical masked conv, 2C channels)
    h_pre = H * h  + 1x1(shift_down(v_pre)) + cond_h           (H: horizontal masked conv, 2C)
    v'    = tanh(v_pre[:C]) ⊙ σ(v_pre[C:])                     (gate, :func:`gate`)
    g     = tanh(h_pre[:C]) ⊙ σ(h_pre[C:])
    h'    = h + 1x1(g)            (residual; not in the first layer, whose h is the code itself)
    skip  = 1x1(g)                (summed over layers, then ReLU, 1x1, ReLU, 1x1 -> K logits)

cond_v, cond_h: a learned bias per class (class conditioning, the paper's V^T y), and/or a 1x1
projection of a spatial map (VQ-VAE-2's bottom prior reads the upsampled top codes this way).

Training: cross-entropy of all H·W positions in one pass (the masks make every output see only
its past). Sampling: H·W passes, one position at a time (:meth:`GatedPixelCNN.sample`).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..random import get_rng
from .code_prior import check_codes
from ..autograd import Tensor, no_grad


# ---------------------------------------------------------------------- masks
def vertical_mask(kernel_size):
    """(k, k) 0/1: the rows up to and including the centre row (the vertical stack)."""
    k = kernel_size
    mask = np.zeros((k, k))
    mask[:k // 2 + 1, :] = 1
    return mask


def horizontal_mask(kernel_size, mask_type):
    """(1, k) 0/1: the columns left of the centre (type "A"), or up to and including it ("B")."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' (first layer) or 'B', got {mask_type!r}")
    k = kernel_size
    mask = np.zeros((1, k))
    mask[0, :k // 2 + (mask_type == "B")] = 1
    return mask


def single_stack_mask(kernel_size, mask_type):
    """(k, k) 0/1 of the original PixelCNN's one masked stack (rows above, and the centre row up to
    the centre): it has the blind spot. Used by the lecture's receptive-field figure and tests."""
    k = kernel_size
    mask = np.zeros((k, k))
    mask[:k // 2] = 1
    mask[k // 2, :k // 2 + (mask_type == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """Conv2d (stride 1) whose kernel is restricted by a fixed 0/1 ``mask`` (kH, kW) in every forward pass.

    The masked weights get zero gradient (d(w·m)/dw = m), so they never matter. The mask is
    built from the layer's arguments, not stored in checkpoints.

    The mask as a crop: the ones of the vertical and horizontal masks fill a rectangle (rows 0..k//2
    of a k x k kernel; columns 0..k//2 or 0..k//2-1 of a 1 x k one). Multiplying the whole kernel by
    the mask would spend a third of the multiply-adds (k = 3) on zeros, so the forward pass convolves
    with that rectangle of the kernel alone, on an input whose borders are shifted to match: output
    (i, j) reads input (i + u - ph, j + v - pw) for kernel rows r0 <= u < r1 and columns c0 <= v < c1
    (``box``), so the input gets ph - r0 rows on top and ph - (kH - r1) at the bottom (likewise for
    columns; a negative number cuts instead). Measured on the VQ-VAE mnist preset's prior step (one thread, CPU time, median
    of 10 steps, three rounds alternating with the full masked kernel in separate processes; AMD EPYC
    Zen 4, load 2.9): 697-776 ms -> 625-684 ms, about 9% less (the zeros are a quarter of the preset PixelCNN's
    multiply-adds; the shifted copy of each input takes part of it back).
    """

    def __init__(self, in_channels, out_channels, mask, padding, dtype=np.float32):
        mask = np.asarray(mask)
        super().__init__(in_channels, out_channels, mask.shape, padding=padding, dtype=dtype)
        self.mask = mask.astype(dtype)
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        self.box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) if len(rows) else None
        if self.box is not None:
            r0, r1, c0, c1 = self.box
            inside = self.mask[r0:r1, c0:c1]
            self.box_mask = None if inside.all() else inside   # the single-stack mask is no rectangle

    def forward(self, x):
        self._check_input(x)
        if self.box is None:     # a 1 x 1 type-A mask: nothing to see, only the bias is left
            return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)
        (r0, r1, c0, c1), (kh, kw), (ph, pw) = self.box, self.mask.shape, self.padding
        w = self.weight[:, :, r0:r1, c0:c1]
        if self.box_mask is not None:
            w = w * self.box_mask
        x = F.pad(x, (pw - c0, pw - (kw - c1), ph - r0, ph - (kh - r1)))
        return F.conv2d(x, w, self.bias)


# ---------------------------------------------------------------------- two small ops, forward and backward side by side
def shift_down(x):
    """Move a grid (N, C, H, W) down one row: row 0 becomes zeros, row H-1 falls off.

    out[:, :, r] = x[:, :, r-1];  backward: g_x[:, :, r] = g[:, :, r+1] (last row gets 0).
    """
    a = x.data
    out = np.zeros_like(a)
    out[:, :, 1:] = a[:, :, :-1]

    def backward(g):
        gx = np.zeros_like(g)
        gx[:, :, :-1] = g[:, :, 1:]
        return (gx,)
    return Tensor.from_op(out, (x,), backward, "shift_down")


def gate(x):
    """The gated activation tanh(a) ⊙ σ(b) of x = [a, b] split along channels (N, 2C, ...) -> (N, C, ...).

    With t = tanh a, s = σ(b):  d/da = g · s · (1 - t²),  d/db = g · t · s · (1 - s).
    """
    a = x.data
    c = a.shape[1] // 2
    if a.shape[1] != 2 * c:
        raise ValueError(f"gate needs an even number of channels [a, b], got shape {a.shape}")
    t = np.tanh(a[:, :c])
    s = 1 / (1 + np.exp(-a[:, c:]))
    out = t * s

    def backward(g):
        return (np.concatenate([g * s * (1 - t * t), g * t * s * (1 - s)], axis=1),)
    return Tensor.from_op(out, (x,), backward, "gate")


# ---------------------------------------------------------------------- one layer
class GatedLayer(nn.Module):
    """One gated layer with both stacks: (v, h[, cond_v, cond_h]) -> (v', h', skip). See the module docstring."""

    def __init__(self, in_channels, channels, kernel_size, first, skip_channels, dtype=np.float32):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"GatedLayer: kernel_size must be odd (the centre is the position), got {kernel_size}")
        p, C = kernel_size // 2, channels
        self.first = first
        self.v_conv = MaskedConv2d(in_channels, 2 * C, vertical_mask(kernel_size), (p, p), dtype)
        self.h_conv = MaskedConv2d(in_channels, 2 * C, horizontal_mask(kernel_size, "A" if first else "B"),
                                   (0, p), dtype)
        self.v_to_h = nn.Conv2d(2 * C, 2 * C, 1, dtype=dtype)
        self.h_out = nn.Conv2d(C, C, 1, dtype=dtype)
        self.skip = nn.Conv2d(C, skip_channels, 1, dtype=dtype)

    def forward(self, v, h, cond_v=None, cond_h=None):
        v_pre = self.v_conv(v)
        h_pre = self.h_conv(h) + self.v_to_h(shift_down(v_pre))
        if cond_v is not None:
            v_pre, h_pre = v_pre + cond_v, h_pre + cond_h
        g = gate(h_pre)
        h_new = self.h_out(g)
        if not self.first:  # the first layer's h is the code at the position itself: no residual
            h_new = h_new + h
        return gate(v_pre), h_new, self.skip(g)


class Conditioning(nn.Module):
    """Per layer, the biases (cond_v, cond_h) of the gates, from a class label and/or a spatial map."""

    def __init__(self, out_channels, num_classes=0, map_channels=0, dtype=np.float32):
        super().__init__()
        self.num_classes, self.map_channels = num_classes, map_channels
        if num_classes:
            self.class_v = nn.Embedding(num_classes, out_channels, dtype=dtype)
            self.class_h = nn.Embedding(num_classes, out_channels, dtype=dtype)
        if map_channels:
            self.map_v = nn.Conv2d(map_channels, out_channels, 1, dtype=dtype)
            self.map_h = nn.Conv2d(map_channels, out_channels, 1, dtype=dtype)

    def forward(self, labels=None, cond_map=None):
        v = h = None
        if self.num_classes:
            n = len(labels)
            v = self.class_v(labels).reshape(n, -1, 1, 1)
            h = self.class_h(labels).reshape(n, -1, 1, 1)
        if self.map_channels:
            mv, mh = self.map_v(cond_map), self.map_h(cond_map)
            v, h = (mv, mh) if v is None else (v + mv, h + mh)
        return v, h


# ---------------------------------------------------------------------- the network
class GatedPixelCNN(nn.Module):
    """p(codes [| label, context codes]) over an (H, W) grid of codes in 0..num_codes-1.

    ``num_classes`` > 0: class conditioning (a learned bias per class in every gate).
    ``context_grid`` = (h, w): a grid of context codes (in 0..context_codes-1; by default the same
    codebook size) at a coarser
    resolution — VQ-VAE-2's top codes — embedded, upsampled by ``H // h`` with a transposed
    convolution, and added to every gate through a 1x1 projection.

    Methods take and return integer arrays of flattened grids (N, H·W), like :class:`CodePrior`.
    """

    def __init__(self, grid, num_codes, channels=64, layers=5, kernel_size=3, embed=16, num_classes=0,
                 context_grid=None, context_codes=None, dtype=np.float32):
        super().__init__()
        self.grid, self.num_codes = tuple(int(s) for s in grid), int(num_codes)
        self.length = self.grid[0] * self.grid[1]
        if num_codes < 2 or channels < 1 or layers < 1 or embed < 1:
            raise ValueError(f"GatedPixelCNN needs num_codes >= 2 and positive channels, layers, embed; got "
                             f"num_codes={num_codes}, channels={channels}, layers={layers}, embed={embed}")
        self.num_classes = int(num_classes)
        self.embed = nn.Embedding(num_codes, embed, dtype=dtype)
        C = channels
        self.layers = nn.Sequential(*[GatedLayer(embed if i == 0 else C, C, kernel_size, i == 0, C, dtype)
                                      for i in range(layers)])
        self.context_grid = tuple(context_grid) if context_grid else None
        map_channels = 0
        if self.context_grid:
            factor = self.grid[0] // self.context_grid[0]
            if factor * self.context_grid[0] != self.grid[0] or factor * self.context_grid[1] != self.grid[1] \
                    or factor not in (1, 2):
                raise ValueError(f"GatedPixelCNN: the context grid {self.context_grid} must be the grid {self.grid} "
                                 f"or half of it")
            self.context_embed = nn.Embedding(context_codes or num_codes, embed, dtype=dtype)
            self.context_up = (nn.ConvTranspose2d(embed, C, 4, stride=2, padding=1, dtype=dtype) if factor == 2
                               else nn.Conv2d(embed, C, 3, padding=1, dtype=dtype))
            self.context_conv = nn.Conv2d(C, C, 3, padding=1, dtype=dtype)
            map_channels = C
        self.conditions = nn.Sequential(*[Conditioning(2 * C, self.num_classes, map_channels, dtype)
                                          for _ in range(layers if (self.num_classes or map_channels) else 0)])
        self.head1 = nn.Conv2d(C, C, 1, dtype=dtype)
        self.head2 = nn.Conv2d(C, num_codes, 1, dtype=dtype)

    # ---- checks
    def _check(self, codes, length, what):
        return check_codes(codes, length, what, "GatedPixelCNN")

    def context_map(self, context):
        """The upsampled, embedded context codes (N, C, H, W); computed once per batch."""
        if context is None:
            raise ValueError("this GatedPixelCNN is conditioned on context codes: pass context=(N, h·w) codes")
        h, w = self.context_grid
        ctx = self._check(context, h * w, "context").reshape(-1, h, w)
        e = self.context_embed(ctx).permute(0, 3, 1, 2)
        return self.context_conv(self.context_up(e).relu()).relu()

    def _labels(self, labels, n):
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this GatedPixelCNN is unconditional; do not pass labels")
            return None
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
                or labels.max() >= self.num_classes:
            raise ValueError(f"GatedPixelCNN: labels must be {n} integers in 0..{self.num_classes - 1}")
        return labels

    # ---- the forward pass
    def grid_logits(self, grid_codes, labels=None, cond_map=None):
        """Logits (N, K, h, W) for a grid of codes (N, h, W) — h may be fewer rows than H (sampling
        computes only the rows it needs: a row never depends on rows below it)."""
        x = self.embed(grid_codes).permute(0, 3, 1, 2)
        v = h = x
        skips = None
        for i, layer in enumerate(self.layers):
            cond_v = cond_h = None
            if len(self.conditions):
                cond_v, cond_h = self.conditions[i](labels, cond_map)
            v, h, s = layer(v, h, cond_v, cond_h)
            skips = s if skips is None else skips + s
        return self.head2(self.head1(skips.relu()).relu())

    def logits(self, codes, context=None, labels=None):
        """Logits (N, H·W, K); those of position i depend only on codes[:, :i] (and label, context)."""
        codes = self._check(codes, self.length, "codes")
        n = len(codes)
        cond_map = self.context_map(context) if self.context_grid else None
        out = self.grid_logits(codes.reshape(n, *self.grid), self._labels(labels, n), cond_map)
        return out.permute(0, 2, 3, 1).reshape(n, self.length, self.num_codes)

    def loss(self, codes, context=None, labels=None):
        """Cross-entropy -(1/(N·L)) Σ log p(c_i | c_<i): nats per code, all positions in one pass."""
        logits = self.logits(codes, context, labels)
        return F.cross_entropy(logits.reshape(-1, self.num_codes), np.asarray(codes).reshape(-1))

    def log_prob(self, codes, context=None, labels=None):
        """log p(c [| context, label]) of each grid, in nats: an array (N,)."""
        with no_grad():
            logp = F.log_softmax(self.logits(codes, context, labels), dim=2).data
        codes = np.asarray(codes)
        return np.take_along_axis(logp, codes[:, :, None], axis=2)[:, :, 0].sum(axis=1)

    def sample(self, n, context=None, labels=None, temperature=1.0):
        """``n`` grids (n, H·W): H·W passes, position (r, s) drawn from softmax(logits / temperature).

        Each pass runs the network on rows 0..r only (rows below cannot influence row r).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        H, W = self.grid
        codes = np.zeros((n, H, W), dtype=np.int64)
        rng = get_rng()
        labels = self._labels(labels, n)
        with no_grad():
            cond_map = self.context_map(context) if self.context_grid else None
            for r in range(H):
                crop = None if cond_map is None else Tensor(cond_map.data[:, :, :r + 1])
                for s in range(W):
                    logits = self.grid_logits(codes[:, :r + 1], labels, crop).data[:, :, r, s]
                    z = logits.astype(np.float64) / temperature
                    p = np.exp(z - z.max(axis=1, keepdims=True))
                    p /= p.sum(axis=1, keepdims=True)
                    u = rng.random((n, 1))
                    codes[:, r, s] = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), self.num_codes - 1)
        return codes.reshape(n, -1)


def receptive_field(logits_fn, codes, num_codes, position):
    """Which positions the logits at ``position`` depend on, found by perturbing one code at a time.

    ``logits_fn`` maps codes (1, L) to an array (1, L, K); ``codes`` (1, L) is the point where it is
    probed. Returns (L,) booleans: True where changing that code changes the logits at ``position``.
    (A probe can miss a dependence that happens to vanish at ``codes``; float64 networks make that rare.)
    """
    codes = np.asarray(codes)
    base = logits_fn(codes)[0, position]
    field = np.zeros(codes.shape[1], bool)
    for i in range(codes.shape[1]):
        other = codes.copy()
        other[0, i] = (other[0, i] + 1) % num_codes
        field[i] = np.abs(logits_fn(other)[0, position] - base).max() > 0
    return field
