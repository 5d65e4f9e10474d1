"""VQ-VAE and VQ-VAE-2: autoencoders with a discrete code, and a prior fitted to the codes afterwards.

* VQ-VAE — van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete Representation
  Learning": ``scratchgen train vqvae``.
* VQ-VAE-2 — Razavi, van den Oord & Vinyals (2019), "Generating Diverse High-Fidelity Images
  with VQ-VAE-2": a two-level hierarchy, ``scratchgen train vqvae2``.

The model (one level)::

    x --encoder--> z_e (D, h, w) --nearest codeword--> z_q = e_k (D, h, w) --decoder--> x̂
                                   (VectorQuantizer)   k: an h x w grid of integers in 0..K-1

    loss = mean (x̂ - x)²  +  mean ||sg[z_e] - e_k||²  +  β · mean ||z_e - sg[e_k]||²
           reconstruction    codebook loss               commitment loss   (vector_quantizer.py)

Two levels (VQ-VAE-2): the bottom encoder's features are encoded once more, at half the
resolution, into a *top* grid; its codewords are upsampled and shown to the bottom encoder
(so the bottom codes only need to add what the top ones miss), and the decoder reads both::

    x -> h (C, hb, wb) -> z_e_top (D, ht, wt) -> quantise -> q_top
         [h, up(q_top)] -> z_e_bottom (D, hb, wb) -> quantise -> q_bottom
         decoder([q_bottom, up(q_top)]) -> x̂

Sampling needs a distribution over code grids: an autoregressive prior
(:class:`~scratchgen.models.code_prior.CodePrior`), fitted by cross-entropy to the codes of the
training images once the autoencoder is trained — for two levels, p(top) and p(bottom | top).
Both phases run inside one ``scratchgen train`` run: the first (1 - prior_fraction) of the
optimiser steps train the autoencoder; the rest freeze it and train the prior(s). (The phase
boundary is computed from --epochs, so resuming with more epochs moves it: the autoencoder then
trains again and the prior is fitted again at the end.)

Simplifications, for 8x8 and 28x28 digits on a CPU: plain convolution stacks (no residual
blocks), a MADE prior instead of PixelCNN (with self-attention in VQ-VAE-2), no class
conditioning, the pixel reconstruction error as a mean squared error (a Gaussian decoder with a
fixed variance, as in the papers). Decoder outputs are clipped to the data's range for
reconstructions and samples.
"""
import math

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..training import plots
from ..training.experiment import Experiment, Option, int_list
from .registry import register
from .code_prior import CodePrior
from .vector_quantizer import INITS, UPDATES, VectorQuantizer, code_counts, perplexity

RANGES = {"01": (0.0, 1.0), "pm1": (-1.0, 1.0)}


# ---------------------------------------------------------------------- building blocks
def grid_sizes(size, steps):
    """Image size (H, W) and the sizes after each stride-2 convolution: H -> ceil(H / 2)."""
    sizes = [tuple(size)]
    for _ in range(steps):
        sizes.append(tuple((s + 1) // 2 for s in sizes[-1]))
    return sizes


def down(a, b):
    """Conv2d(kernel 3, stride 2, padding 1): halves the size (rounding up)."""
    return nn.Conv2d(a, b, 3, stride=2, padding=1)


def up(a, b, small, big):
    """ConvTranspose2d(kernel 3, stride 2, padding 1) from size ``small`` back to ``big``.

    Its output is 2·small - 1 + output_padding; output_padding 1 restores an even size.
    """
    return nn.ConvTranspose2d(a, b, 3, stride=2, padding=1,
                              output_padding=tuple(B - (2 * s - 1) for s, B in zip(small, big)))


def stem(in_channels, channels, steps):
    """[down, ReLU] x steps, then a 3x3 convolution and ReLU: x -> features (channels, H/2^steps, ...)."""
    layers = []
    for i in range(steps):
        layers += [down(in_channels if i == 0 else channels, channels), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())


def decoder(in_channels, channels, out_channels, sizes):
    """3x3 convolution and ReLU, then [up, ReLU] back through ``sizes`` (image first), the last
    transposed convolution without activation."""
    layers = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()]
    steps = list(zip(sizes[:0:-1], sizes[-2::-1]))  # (small, big) pairs, from the code grid up
    for i, (small, big) in enumerate(steps):
        last = i == len(steps) - 1
        layers.append(up(channels, out_channels if last else channels, small, big))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def quantizer(o):
    return VectorQuantizer(o["codebook_size"], o["code_dim"], beta=o["beta"], update=o["codebook_update"],
                           decay=o["ema_decay"], init=o["codebook_init"])


class VQVAENet(nn.Module):
    """One level: x -> encoder -> z_e -> quantizer -> z_q -> decoder -> x̂ (``levels`` = 1)."""

    def __init__(self, shape, o):
        super().__init__()
        c, C, D, steps = shape[0], o["channels"], o["code_dim"], o["downsample"]
        sizes = grid_sizes(shape[1:], steps)
        self.grids = [sizes[-1]]
        self.encoder = nn.Sequential(stem(c, C, steps), nn.Conv2d(C, D, 1))
        self.quantizer = quantizer(o)
        self.decoder = decoder(D, C, c, sizes)

    @property
    def quantizers(self):
        return [self.quantizer]

    def forward(self, x):
        """-> (x̂, [Quantized]) for images x (N, C, H, W)."""
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.z_q), [q]

    def decode_codes(self, codes):
        """x̂ from a list with one grid of integer codes (N, h, w)."""
        return self.decoder(self.quantizer.lookup(codes[0]))


class VQVAE2Net(nn.Module):
    """Two levels, top first: the top grid has half the bottom grid's resolution (``levels`` = 2)."""

    def __init__(self, shape, o):
        super().__init__()
        c, C, D, steps = shape[0], o["channels"], o["code_dim"], o["downsample"]
        sizes = grid_sizes(shape[1:], steps + 1)
        bottom, top = sizes[-2], sizes[-1]
        self.grids = [top, bottom]
        self.encoder_bottom = stem(c, C, steps)                                       # x -> h
        self.encoder_top = nn.Sequential(down(C, C), nn.ReLU(), nn.Conv2d(C, D, 1))    # h -> z_e top
        self.quantizer_top, self.quantizer_bottom = quantizer(o), quantizer(o)
        self.top_to_bottom = up(D, C, top, bottom)      # the top code, decoded for the bottom encoder
        self.encoder_bottom_out = nn.Conv2d(2 * C, D, 1)   # [h, decoded top] -> z_e bottom
        self.upsample_top = up(D, D, top, bottom)       # the top code at the bottom resolution, for x̂
        self.decoder = decoder(2 * D, C, c, sizes[:-1])

    @property
    def quantizers(self):
        return [self.quantizer_top, self.quantizer_bottom]

    def forward(self, x):
        h = self.encoder_bottom(x)
        top = self.quantizer_top(self.encoder_top(h))
        z_e_bottom = self.encoder_bottom_out(F.cat([h, self.top_to_bottom(top.z_q).relu()], dim=1))
        bottom = self.quantizer_bottom(z_e_bottom)
        return self.decode(top.z_q, bottom.z_q), [top, bottom]

    def decode(self, q_top, q_bottom):
        return self.decoder(F.cat([q_bottom, self.upsample_top(q_top)], dim=1))

    def decode_codes(self, codes):
        """x̂ from [top codes (N, ht, wt), bottom codes (N, hb, wb)]."""
        return self.decode(self.quantizer_top.lookup(codes[0]), self.quantizer_bottom.lookup(codes[1]))


class Priors(nn.Module):
    """One :class:`CodePrior` per level, top first; each lower level is conditioned on the codes of
    the level above: p(top) p(bottom | top)."""

    def __init__(self, grids, num_codes, hidden, embed):
        super().__init__()
        lengths = [h * w for h, w in grids]
        self.levels = nn.Sequential(*[CodePrior(n, num_codes, hidden, embed, context_length=lengths[i - 1] if i else 0)
                                      for i, n in enumerate(lengths)])

    def losses(self, codes):
        """Cross-entropy (nats per code) of each level; ``codes`` a list of (N, L_level) integer arrays."""
        return [p.loss(c, codes[i - 1] if i else None) for i, (p, c) in enumerate(zip(self.levels, codes))]

    def sample(self, n):
        codes = []
        for i, p in enumerate(self.levels):
            codes.append(p.sample(n, codes[-1] if i else None))
        return codes


VQ_OPTIONS = (
    Option("codebook_size", int, 32, "K: number of codewords"),
    Option("code_dim", int, 8, "D: size of a codeword (the encoder's output channels)"),
    Option("channels", int, 32, "channels of the hidden convolutions"),
    Option("downsample", int, 1, "stride-2 convolutions before the (bottom) code grid: 8x8 -> 4x4 with 1, "
                                 "28x28 -> 7x7 with 2"),
    Option("beta", float, 0.25, "weight of the commitment loss"),
    Option("codebook_update", str, "loss", "train the codebook by the codebook loss, or by moving averages "
                                           "of the encoder outputs", UPDATES),
    Option("ema_decay", float, 0.99, "--codebook-update ema: decay of the moving averages"),
    Option("codebook_init", str, "data", "initial codewords: encoder outputs of the first batch, or "
                                         "U(-1/K, 1/K)", INITS),
    Option("prior_fraction", float, 0.5, "fraction of the training steps, at the end, that fit the prior "
                                         "(the autoencoder frozen)"),
    Option("prior_hidden", int_list, [256], "hidden layer sizes of the MADE prior, comma-separated"),
    Option("prior_embed", int, 8, "size of the code embeddings the prior reads"),
)


@register
class VQVAE(Experiment):
    name = "vqvae"
    help = "vector-quantised autoencoder with a learned autoregressive prior (van den Oord et al., 2017)"
    levels = 1
    defaults = dict(data="digits8", epochs=20, batch_size=32, lr=3e-3, scale="01")
    options = VQ_OPTIONS
    presets = {
        "digits8": dict(help="small: 8x8 digits, 4x4 codes from 32 codewords of size 8; 16 epochs (half of them fit "
                                     "the prior), seconds each",
                        data="digits8", epochs=16, batch_size=32, lr=3e-3, channels=32, codebook_size=32,
                        code_dim=8, downsample=1, prior_hidden=[256], prior_fraction=0.5),
        "mnist": dict(help="MNIST: 7x7 codes from 64 codewords of size 16, 64 channels, batch 128, 10 epochs",
                      data="mnist", epochs=10, batch_size=128, lr=1e-3, channels=64, codebook_size=64,
                      code_dim=16, downsample=2, prior_hidden=[512], prior_fraction=0.3),
    }
    monitor = None  # best.npz = latest: the two phases optimise different things

    def __init__(self, config, info):
        super().__init__(config, info)
        o = self.opts  # options missing from an older run's config.json got their defaults in Experiment
        self._check_setup(info, config)
        self.scale = config.get("scale", "01")
        self.net = (VQVAENet if self.levels == 1 else VQVAE2Net)(info.shape, o)
        self.prior = Priors(self.net.grids, o["codebook_size"], int_list(o["prior_hidden"]), o["prior_embed"])
        self.optimizer = optim.Adam(self.net.parameters(), lr=config["lr"])
        self.prior_optimizer = optim.Adam(self.prior.parameters(), lr=config["lr"])
        self.suffixes = [""] if self.levels == 1 else ["_top", "_bottom"]
        self.loss_terms = ("loss", "recon", "codebook", "commitment",
                           *(f"perplexity{s}" for s in self.suffixes), *(f"prior_ce{s}" for s in self.suffixes))
        self.val_terms = tuple(f"codes_used{s}" for s in self.suffixes)

    def _check_setup(self, info, config):
        o = self.opts
        self.require_images()
        if config.get("scale", "01") not in RANGES:
            raise ValueError(f"{self.name} models pixels in [0, 1] (--scale 01) or [-1, 1] (--scale pm1), "
                             f"got --scale {config.get('scale')}")
        for key in ("codebook_size", "code_dim", "channels", "downsample", "prior_embed"):
            if o[key] < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {o[key]}")
        if o["codebook_size"] < 2:
            raise ValueError(f"--codebook-size must be at least 2, got {o['codebook_size']}")
        if not 0.0 < o["prior_fraction"] < 1.0:
            raise ValueError(f"--prior-fraction must lie strictly between 0 and 1 (the share of training steps "
                             f"spent fitting the prior), got {o['prior_fraction']}")

    def describe(self):
        o = self.opts
        grids = " + ".join(f"{h}x{w}" for h, w in self.net.grids)
        return (f"{'VQ-VAE' if self.levels == 1 else 'VQ-VAE-2'} (codes {grids} from K={o['codebook_size']} codewords "
                f"of size {o['code_dim']}) with {self.net.num_parameters():,} parameters, prior with "
                f"{self.prior.num_parameters():,}; the prior is fitted during steps {self.autoencoder_steps() + 1}.."
                f"{self.total_steps()}")

    # ---- the schedule
    def total_steps(self):
        n = self.info.splits.get(self.config.get("train_split", "train"), 0)
        return self.config["epochs"] * math.ceil(n / self.config["batch_size"])

    def autoencoder_steps(self):
        """Steps that train the autoencoder; the remaining prior_fraction of the steps fit the prior."""
        total = self.total_steps()
        return total - int(round(self.opts["prior_fraction"] * total))

    def phase(self):
        return "autoencoder" if self.optimizer.step_count < self.autoencoder_steps() else "prior"

    # ---- the two kinds of step
    def forward(self, x):
        """(x̂, [Quantized per level], reconstruction MSE, VQ-VAE loss) for images x."""
        x = Tensor(x)
        x_hat, qs = self.net(x)
        recon = F.mse_loss(x_hat, x)
        loss = recon
        for q in qs:
            loss = loss + q.loss
        return x_hat, qs, recon, loss

    def flat_codes(self, qs):
        return [q.indices.reshape(len(q.indices), -1) for q in qs]

    def _terms(self, qs, recon, loss, prior_losses):
        terms = {"loss": loss.item(), "recon": recon.item(),
                 "codebook": sum(q.codebook_loss.item() for q in qs),
                 "commitment": sum(q.commitment_loss.item() for q in qs)}
        for s, q, p in zip(self.suffixes, qs, prior_losses):
            terms[f"perplexity{s}"], terms[f"prior_ce{s}"] = q.perplexity, p.item()
        return terms

    def autoencoder_step(self, x):
        """Phase 1: one Adam step on encoder, codebook and decoder (the prior is only measured)."""
        self.net.train()
        _, qs, recon, loss = self.forward(x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        with no_grad():
            prior_losses = self.prior.losses(self.flat_codes(qs))
        return self._terms(qs, recon, loss, prior_losses)

    def prior_step(self, x):
        """Phase 2: the autoencoder frozen (eval mode: no moving-average updates either); one Adam step
        on the prior's cross-entropy of the codes of x."""
        self.net.eval()
        self.prior.train()
        with no_grad():
            _, qs, recon, loss = self.forward(x)
        prior_losses = self.prior.losses(self.flat_codes(qs))
        total = prior_losses[0]
        for p in prior_losses[1:]:
            total = total + p
        self.prior_optimizer.zero_grad()
        total.backward()
        self.prior_optimizer.step()
        return self._terms(qs, recon, loss, prior_losses)

    def train_step(self, batch):
        x, _ = batch
        return self.autoencoder_step(x) if self.phase() == "autoencoder" else self.prior_step(x)

    # ---- evaluation
    def evaluate(self, data):
        """Means per element over the split: ``recon`` (pixel MSE), ``codebook``, ``commitment`` and the
        VQ-VAE ``loss``; per level the ``perplexity`` and number of distinct codes (``codes_used``) over the
        whole split, and the prior's cross-entropy ``prior_ce`` (nats per code; log K = guessing)."""
        self.net.eval()
        sums, n = {}, 0
        counts = [np.zeros(self.opts["codebook_size"], np.int64) for _ in self.suffixes]
        with no_grad():
            for x, _ in self.batches(data):
                _, qs, recon, loss = self.forward(x)
                terms = self._terms(qs, recon, loss, self.prior.losses(self.flat_codes(qs)))
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v * len(x)
                for c, q in zip(counts, qs):
                    c += code_counts(q.indices, len(c))
                n += len(x)
        out = {k: v / n for k, v in sums.items()}
        for s, c in zip(self.suffixes, counts):
            out[f"perplexity{s}"] = perplexity(np.repeat(np.arange(len(c)), c), len(c))
            out[f"codes_used{s}"] = int((c > 0).sum())
        return out

    def report(self, data, split):
        """``scratchgen eval``: :meth:`evaluate`, the MSE of predicting every image by the split's mean
        image (``mse_data_mean``, the baseline ``recon`` must beat), and the prior's code length
        Σ_levels L · prior_ce / ln 2 in bits per image (``prior_bits_per_image``)."""
        out = {f"{split}_{k}": v for k, v in self.evaluate(data).items()}
        x = data[:][0]
        out[f"{split}_mse_data_mean"] = float(((x - x.mean(axis=0)) ** 2).mean())
        out[f"{split}_prior_bits_per_image"] = sum(
            h * w * out[f"{split}_prior_ce{s}"] for (h, w), s in zip(self.net.grids, self.suffixes)) / math.log(2)
        return out

    # ---- using the model
    def _clip(self, x):
        return np.clip(x, *RANGES[self.scale])

    def encode(self, x):
        """The code grids of images x: a list (top first) of integer arrays (N, h, w)."""
        self.net.eval()
        with no_grad():
            return [q.indices for q in self.net(Tensor(x))[1]]

    def decode(self, codes):
        """Images from a list of code grids (top first), clipped to the data's range."""
        self.net.eval()
        with no_grad():
            return self._clip(self.net.decode_codes(codes).data)

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def sample(self, n, label=None):
        """Codes from the prior(s) (top first), decoded: (n, C, H, W) in the data's range."""
        self.check_label(label)
        self.prior.eval()
        flat = self.prior.sample(n)
        return self.decode([c.reshape(n, h, w) for c, (h, w) in zip(flat, self.net.grids)])

    # ---- state
    def checkpointed(self):
        return {"model": self.net, "optimizer": self.optimizer, "prior": self.prior,
                "prior_optimizer": self.prior_optimizer}

    def figures(self, run, data):
        x = data[:32][0]
        title = "VQ-VAE" if self.levels == 1 else "VQ-VAE-2"
        rng = RANGES[self.scale]
        return [plots.save_reconstructions(x, self.reconstruct(x), run.figures / "reconstructions.png",
                                           title=f"{title}: originals (odd rows), reconstructions from the codes",
                                           value_range=rng),
                plots.save_image_grid(self.sample(64), run.figures / "samples.png",
                                      title=f"{title}: codes drawn from the prior, decoded", value_range=rng)]


@register
class VQVAE2(VQVAE):
    name = "vqvae2"
    help = ("two-level VQ-VAE: top codes at half the bottom resolution, priors p(top) p(bottom|top) "
            "(Razavi et al., 2019)")
    levels = 2
    presets = {
        "digits8": dict(VQVAE.presets["digits8"], help="small: 8x8 digits, 2x2 top and 4x4 bottom codes from 32 "
                                                       "codewords each; 16 epochs, seconds each"),
        "mnist": dict(VQVAE.presets["mnist"], help="MNIST: 4x4 top and 7x7 bottom codes from 64 codewords of size "
                                                   "16, 64 channels, batch 128, 10 epochs"),
    }
