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

Sampling needs a distribution over code grids: an autoregressive prior — a gated PixelCNN
(:class:`~scratchgen.models.pixelcnn.GatedPixelCNN`), or MADE
(:class:`~scratchgen.models.code_prior.CodePrior`) — fitted by cross-entropy to the codes of the
training images once the autoencoder is trained — for two levels, p(top) and p(bottom | top).
Both phases run inside one ``scratchgen train`` run: the first (1 - prior_fraction) of the
optimiser steps train the autoencoder; the rest freeze it and train the prior(s). (The phase
boundary is computed from --epochs, so resuming with more epochs moves it: the autoencoder then
trains again and the prior is fitted again at the end.)

Against the papers, for 8x8 and 28x28 digits on a CPU: the encoder and decoder are the papers'
(strided convolutions, residual blocks, transposed convolutions; ``--arch plain`` keeps the earlier
plain convolution stacks so old run folders load), but small; the gated PixelCNN priors have a few
layers of 32-64 channels and no self-attention (VQ-VAE-2's top prior has it in the paper); MADE
(``--prior made``) remains as the small option and as a comparison; class conditioning is optional
(``--prior-conditional 1``); the pixel reconstruction error is a mean squared error (a Gaussian
decoder with a fixed variance, as in the papers) or, for binarized data, a Bernoulli
cross-entropy. Decoder outputs are clipped to the data's range for reconstructions and samples.
"""
import math

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..training import plots
from ..training.experiment import Experiment, Option, int_list
from .registry import register
from .blocks import ResidualStack
from .code_prior import CodePrior
from .pixelcnn import GatedPixelCNN
from .vqvae_plain import PlainVQVAE2Net, PlainVQVAENet
from .vq_levels import OneLevelNet, TwoLevelNet
from .vector_quantizer import INITS, UPDATES, VectorQuantizer, code_counts, perplexity

RANGES = {"01": (0.0, 1.0), "pm1": (-1.0, 1.0)}


# ---------------------------------------------------------------------- encoders and decoders
def check_divisible(size, steps, what):
    """Each 4x4 stride-2 convolution halves the size exactly; refuse sizes that do not divide."""
    f = 2 ** steps
    if any(s % f for s in size):
        raise ValueError(f"{what}: the image size {size[0]}x{size[1]} must be divisible by 2^{steps} = {f} "
                         f"(one halving per stride-2 convolution); choose a smaller --downsample")


def strided(a, b):
    """Conv2d(kernel 4, stride 2, padding 1): H -> H/2 (the papers' downsampling step)."""
    return nn.Conv2d(a, b, 4, stride=2, padding=1)


def unstrided(a, b):
    """ConvTranspose2d(kernel 4, stride 2, padding 1): H -> 2H (the decoder's upsampling step)."""
    return nn.ConvTranspose2d(a, b, 4, stride=2, padding=1)


def encoder(in_channels, channels, res_channels, res_blocks, steps):
    """[strided conv, ReLU] x steps, 3x3 conv, residual stack: x -> features (C, H/2^steps, W/2^steps)."""
    layers = []
    for i in range(steps):
        layers += [strided(in_channels if i == 0 else channels, channels), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(channels, channels, 3, padding=1),
                         ResidualStack(channels, res_channels, res_blocks))


def decoder(in_channels, channels, res_channels, res_blocks, steps, out_channels):
    """The mirror: 3x3 conv, residual stack, [transposed conv, ReLU] x steps (no ReLU after the last)."""
    layers = [nn.Conv2d(in_channels, channels, 3, padding=1), ResidualStack(channels, res_channels, res_blocks)]
    for i in range(steps):
        last = i == steps - 1
        layers.append(unstrided(channels, out_channels if last else channels))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _arch(o):
    return o["channels"], o["res_channels"], o["res_blocks"], o["code_dim"], o["downsample"]


class VQVAENet(OneLevelNet):
    """One level: x -> encoder -> z_e -> quantizer -> z_q -> decoder -> x̂ (``levels`` = 1)."""

    def __init__(self, shape, o):
        super().__init__()
        c, (C, R, B, D, steps) = shape[0], _arch(o)
        check_divisible(shape[1:], steps, "VQ-VAE")
        self.grids = [tuple(s // 2 ** steps for s in shape[1:])]
        self.encoder = nn.Sequential(encoder(c, C, R, B, steps), nn.Conv2d(C, D, 1))
        self.quantizer = VectorQuantizer.from_options(o)
        self.decoder = decoder(D, C, R, B, steps, c)


class VQVAE2Net(TwoLevelNet):
    """Two levels, top first: the top grid has half the bottom grid's resolution (``levels`` = 2).

    The bottom encoder's features h are encoded once more into the top code; the top code is
    decoded back to the bottom resolution and shown to the bottom quantiser, so the bottom codes
    only add what the top ones miss; the decoder reads both (Razavi et al. 2019, Fig. 2a). With
    ``--bottom-dropout p`` the decoder sees zeros instead of the bottom codewords for a fraction p of the
    training images (:meth:`TwoLevelNet.bottom_keep_mask`), so that it cannot ignore the top level.
    """

    def __init__(self, shape, o):
        super().__init__()
        c, (C, R, B, D, steps) = shape[0], _arch(o)
        check_divisible(shape[1:], steps + 1, "VQ-VAE-2")
        bottom = tuple(s // 2 ** steps for s in shape[1:])
        self.grids = [tuple(s // 2 for s in bottom), bottom]
        self.encoder_bottom = encoder(c, C, R, B, steps)                            # x -> h (C, bottom)
        self.encoder_top = nn.Sequential(encoder(C, C, R, B, 1), nn.Conv2d(C, D, 1))  # h -> z_e top
        self.quantizer_top = VectorQuantizer.from_options(o)
        self.quantizer_bottom = VectorQuantizer.from_options(o, o.get("bottom_codebook_size") or None)
        self.decoder_top = decoder(D, C, R, B, 1, D)        # the top code, decoded for the bottom encoder
        self.encoder_bottom_out = nn.Conv2d(C + D, D, 1)    # [h, decoded top] -> z_e bottom
        self.upsample_top = unstrided(D, D)                 # the top code at the bottom resolution, for x̂
        self.decoder = decoder(2 * D, C, R, B, steps, c)
        self.bottom_dropout = float(o.get("bottom_dropout", 0.0))

    def quantize(self, x):
        """[Quantized top, Quantized bottom] for images x: the encoders and codebooks, no decoder."""
        h = self.encoder_bottom(x)
        top = self.quantizer_top(self.encoder_top(h))
        bottom = self.quantizer_bottom(self.encoder_bottom_out(F.cat([h, self.decoder_top(top.z_q)], dim=1)))
        return [top, bottom]


class Priors(nn.Module):
    """One prior per level, top first; each lower level is conditioned on the codes of the level
    above: p(top [| class]) p(bottom | top). ``sizes``: each level's codebook size. ``kind`` "pixelcnn"
    (:class:`GatedPixelCNN`) or "made" (:class:`CodePrior`). Codes are flattened grids (N, h·w)."""

    def __init__(self, grids, sizes, o, kind, num_classes=0):
        super().__init__()
        self.kind = kind
        levels = []
        for i, (grid, K) in enumerate(zip(grids, sizes)):
            context = sizes[i - 1] if i else None  # the codebook size of the level above
            if kind == "made":
                levels.append(CodePrior(grid[0] * grid[1], K, int_list(o["prior_hidden"]), o["prior_embed"],
                                        context_length=grids[i - 1][0] * grids[i - 1][1] if i else 0,
                                        context_codes=context))
            else:
                levels.append(GatedPixelCNN(grid, K, o["prior_channels"], o["prior_layers"],
                                            o["prior_kernel"], o["prior_embed"],
                                            num_classes=num_classes if i == 0 else 0,
                                            context_grid=grids[i - 1] if i else None, context_codes=context))
        self.levels = nn.Sequential(*levels)

    def _extra(self, i, labels):
        return {"labels": labels} if self.kind == "pixelcnn" and i == 0 and labels is not None else {}

    def losses(self, codes, labels=None):
        """Cross-entropy (nats per code) of each level; ``codes`` a list of (N, L_level) integer arrays."""
        return [p.loss(c, codes[i - 1] if i else None, **self._extra(i, labels))
                for i, (p, c) in enumerate(zip(self.levels, codes))]

    def sample(self, n, labels=None, temperature=1.0):
        codes = []
        for i, p in enumerate(self.levels):
            codes.append(p.sample(n, codes[-1] if i else None, temperature=temperature, **self._extra(i, labels)))
        return codes


VQ_OPTIONS = (
    Option("codebook_size", int, 32, "K: number of codewords"),
    Option("bottom_codebook_size", int, 0, "vqvae2: K of the bottom level's codebook (0: the same as "
                                           "--codebook-size); fewer bottom codes leave the bottom prior less to predict"),
    Option("bottom_dropout", float, 0.0, "vqvae2: fraction of the training images the decoder reconstructs from "
                                         "their top codes alone (bottom codewords zeroed), so that the top level "
                                         "must carry the picture and cannot be ignored", low=0.0, high=0.9),
    Option("code_dim", int, 8, "D: size of a codeword (the encoder's output channels)"),
    Option("arch", str, "residual", "encoder and decoder: the paper's strided convolutions with residual blocks, "
                                    "or the plain convolution stacks of earlier scratchgen", ("residual", "plain")),
    Option("channels", int, 32, "C: channels of the encoder's and decoder's convolutions"),
    Option("res_channels", int, 16, "hidden channels of a residual block (ReLU, 3x3 conv, ReLU, 1x1 conv, skip)"),
    Option("res_blocks", int, 2, "residual blocks in each encoder and decoder"),
    Option("downsample", int, 1, "stride-2 convolutions before the (bottom) code grid: 8x8 -> 4x4 with 1, "
                                 "28x28 -> 7x7 with 2"),
    Option("beta", float, 0.25, "weight of the commitment loss"),
    Option("codebook_update", str, "loss", "train the codebook by the codebook loss, or by moving averages "
                                           "of the encoder outputs", UPDATES),
    Option("ema_decay", float, 0.99, "--codebook-update ema: decay of the moving averages"),
    Option("codebook_init", str, "data", "initial codewords: encoder outputs of the first batch, or "
                                         "U(-1/K, 1/K)", INITS),
    Option("restart_threshold", float, 0.0, "dead-code restarts: a code whose moving-average usage falls below "
                                            "this fraction of the uniform share 1/K is moved onto a random "
                                            "encoder output of the batch (0: never)"),
    Option("likelihood", str, "gaussian", "decoder: gaussian (mean squared error on grey levels) or bernoulli "
                                          "(logits, cross-entropy; for binarized data)", ("gaussian", "bernoulli")),
    Option("prior_fraction", float, 0.5, "fraction of the training steps, at the end, that fit the prior "
                                         "(the autoencoder frozen)"),
    Option("prior", str, "pixelcnn", "the prior over code grids: gated PixelCNN, or MADE (a masked MLP)",
           ("pixelcnn", "made")),
    Option("prior_channels", int, 32, "--prior pixelcnn: channels of each stack"),
    Option("prior_layers", int, 4, "--prior pixelcnn: gated layers"),
    Option("prior_kernel", int, 3, "--prior pixelcnn: kernel size of the masked convolutions (odd)"),
    Option("prior_hidden", int_list, [256], "--prior made: hidden layer sizes, comma-separated"),
    Option("prior_embed", int, 8, "size of the code embeddings the prior reads"),
    Option("prior_conditional", int, 0, "1: the (top) prior is class-conditional, sample(label=...) works"),
    Option("compare_made", int, 0, "1: also fit a MADE prior (--prior-hidden) to the same codes, reported as "
                                   "prior_ce_made (which prior fits better)"),
    Option("prior_lr", float, 0.0, "Adam's learning rate of the prior phase (0: --lr)"),
    Option("prior_lr_schedule", str, "constant", "learning rate over the prior phase: constant, or cosine (from "
                                                 "--prior-lr down towards 0, one value per epoch)", ("constant", "cosine")),
    Option("temperature", float, 1.0, "sampling temperature of the prior (logits / T; the comparison MADE's too)"),
    Option("eval_samples", int, 10000, "scratchgen eval: samples drawn for the sample-quality numbers"),
    Option("eval_diagnosis", int, 1, "scratchgen eval: 1 also scores reconstructions of training images (recon_conv_*, "
                                     "the decoder's ceiling) and, for two levels, images with real top codes and "
                                     "sampled bottom ones (real_top_conv_*): which part limits the samples", low=0, high=1),
)


@register
class VQVAE(Experiment):
    name = "vqvae"
    help = "vector-quantised autoencoder with a gated PixelCNN prior over its codes (van den Oord et al., 2017)"
    levels = 1
    defaults = dict(data="digits8", epochs=20, batch_size=32, lr=3e-3, scale="01")
    options = VQ_OPTIONS
    eval_options = ("temperature", "eval_samples", "eval_diagnosis")
    sample_options = ("temperature",)
    presets = {
        "digits8": dict(help="small: 8x8 digits, 4x4 codes from 32 codewords of size 8, 2 residual blocks, a 3-layer "
                             "gated PixelCNN prior; 16 epochs (half of them fit the prior), seconds each",
                        data="digits8", epochs=16, batch_size=32, lr=3e-3, channels=32, res_channels=16, res_blocks=2,
                        codebook_size=32, code_dim=8, downsample=1, prior_fraction=0.5, prior_channels=32,
                        prior_layers=3, prior_embed=8),
        "mnist": dict(help="MNIST: 7x7 codes from 256 codewords of size 16, 64 channels, 2 residual blocks, EMA "
                           "codebook with dead-code restarts; a 6-layer gated PixelCNN prior (and a MADE beside it); "
                           "15 epochs, the last 9 fit the prior at a learning rate of 2e-3 lowered along a cosine; "
                           "both priors sample at temperature 0.9",
                      data="mnist", epochs=15, batch_size=128, lr=1e-3, channels=64, res_channels=32, res_blocks=2,
                      codebook_size=256, code_dim=16, downsample=2, codebook_update="ema", restart_threshold=0.1,
                      prior_fraction=0.6, prior_lr=2e-3, prior_lr_schedule="cosine",
                      prior_channels=64, prior_layers=6, prior_embed=16, prior_hidden=[512], compare_made=1,
                      temperature=0.9),
    }
    monitor = None  # best.npz = latest: the two phases optimise different things

    # a run folder written before the PixelCNN prior existed (its config.json has no "prior" option)
    # is rebuilt with the design of that time
    legacy = {"arch": "plain", "prior": "made"}

    def __init__(self, config, info):
        super().__init__(config, info)
        o = self.opts  # options missing from an older run's config.json got their defaults in Experiment
        if "prior" not in config.get("options", {}):  # a run from before the PixelCNN prior: its design
            o.update(self.legacy)
        self._check_setup(info, config)
        self.scale = config.get("scale", "01")
        self.conditional = bool(o["prior_conditional"])
        nets = {"residual": (VQVAENet, VQVAE2Net), "plain": (PlainVQVAENet, PlainVQVAE2Net)}[o["arch"]]
        self.net = nets[self.levels - 1](info.shape, o)
        classes = info.num_classes if self.conditional else 0
        self.prior = Priors(self.net.grids, self.codebook_sizes(), o, o["prior"], classes)
        self.optimizer = optim.Adam(self.net.parameters(), lr=config["lr"])
        self.prior_optimizer = optim.Adam(self.prior.parameters(), lr=o["prior_lr"] or config["lr"])
        self.made = None
        if o["compare_made"]:
            self.made = Priors(self.net.grids, self.codebook_sizes(), o, "made")
            self.made_optimizer = optim.Adam(self.made.parameters(), lr=o["prior_lr"] or config["lr"])
        self.suffixes = [""] if self.levels == 1 else ["_top", "_bottom"]
        self.loss_terms = ("loss", "recon", "codebook", "commitment",
                           *(f"perplexity{s}" for s in self.suffixes), *(f"prior_ce{s}" for s in self.suffixes),
                           *((f"prior_ce_made{s}" for s in self.suffixes) if self.made else ()))
        self.val_terms = tuple(f"codes_used{s}" for s in self.suffixes)

    def _check_setup(self, info, config):
        o = self.opts
        self.require_images()
        if config.get("scale", "01") not in RANGES:
            raise ValueError(f"{self.name} models pixels in [0, 1] (--scale 01) or [-1, 1] (--scale pm1), "
                             f"got --scale {config.get('scale')}")
        for key in ("codebook_size", "code_dim", "channels", "res_channels", "downsample", "prior_embed",
                    "prior_channels", "prior_layers"):
            if o[key] < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {o[key]}")
        if o["res_blocks"] < 0:
            raise ValueError(f"--res-blocks must be 0 or more, got {o['res_blocks']}")
        if o["bottom_dropout"] and (self.levels == 1 or o["arch"] != "residual"):
            raise ValueError(f"--bottom-dropout drops the bottom codes of a two-level model (vqvae2, --arch residual); "
                             f"got {o['bottom_dropout']} for {self.name} --arch {o['arch']}")
        if o["codebook_size"] < 2:
            raise ValueError(f"--codebook-size must be at least 2, got {o['codebook_size']}")
        if o["bottom_codebook_size"] and (self.levels == 1 or o["arch"] != "residual" or o["bottom_codebook_size"] < 2):
            raise ValueError(f"--bottom-codebook-size sets the bottom level of a two-level model (vqvae2, --arch "
                             f"residual) and must be at least 2; got {o['bottom_codebook_size']} for {self.name} "
                             f"--arch {o['arch']} (0 keeps --codebook-size for every level)")
        if o["prior_kernel"] < 1 or o["prior_kernel"] % 2 == 0:
            raise ValueError(f"--prior-kernel must be odd (the kernel's centre is the position), got {o['prior_kernel']}")
        if not 0.0 < o["prior_fraction"] < 1.0:
            raise ValueError(f"--prior-fraction must lie strictly between 0 and 1 (the share of training steps "
                             f"spent fitting the prior), got {o['prior_fraction']}")
        if o["temperature"] <= 0:
            raise ValueError(f"--temperature must be positive, got {o['temperature']}")
        if o["prior_conditional"] and (o["prior"] != "pixelcnn" or not info.num_classes):
            raise ValueError("--prior-conditional 1 needs --prior pixelcnn and a labelled dataset "
                             f"({info.name} has {info.num_classes or 'no'} classes)")
        if o["likelihood"] == "bernoulli" and self.config.get("scale", "01") != "01":
            raise ValueError("--likelihood bernoulli models pixels in [0, 1]: use --scale 01")

    def codebook_sizes(self):
        """K of each level, top first."""
        K = self.opts["codebook_size"]
        return [K] if self.levels == 1 else [K, self.opts["bottom_codebook_size"] or K]

    def describe(self):
        o = self.opts
        grids = " + ".join(f"{h}x{w}" for h, w in self.net.grids)
        sizes = "/".join(str(k) for k in self.codebook_sizes())
        return (f"{'VQ-VAE' if self.levels == 1 else 'VQ-VAE-2'} (codes {grids} from K={sizes} codewords "
                f"of size {o['code_dim']}) with {self.net.num_parameters():,} parameters, {o['prior']} prior with "
                f"{self.prior.num_parameters():,}; the prior is fitted during steps {self.autoencoder_steps() + 1}.."
                f"{self.total_steps()} at learning rate {o['prior_lr'] or self.config['lr']:g}"
                f"{' on a half cosine' if o['prior_lr_schedule'] == 'cosine' else ''}")

    # ---- the schedule
    def total_steps(self):
        n = self.info.splits.get(self.config.get("train_split", "train"), 0)
        return self.config["epochs"] * math.ceil(n / self.config["batch_size"])

    def autoencoder_steps(self):
        """Steps that train the autoencoder; the remaining prior_fraction of the steps fit the prior."""
        total = self.total_steps()
        return total - int(round(self.opts["prior_fraction"] * total))

    def prior_learning_rate(self, epoch):
        """The priors' learning rate in (0-based) ``epoch``: --prior-lr (or --lr), constant or cosine-annealed
        over the prior phase's epochs, η_i = η · (1 + cos(π i / n)) / 2 in its i-th of n epochs (Loshchilov &
        Hutter 2017, without restarts). A function of the epoch alone, so a resumed run follows it exactly."""
        lr = self.opts["prior_lr"] or self.config["lr"]
        if self.opts["prior_lr_schedule"] == "constant":
            return lr
        first = self.autoencoder_steps() // (self.total_steps() // self.config["epochs"])  # the phase's first epoch
        n = self.config["epochs"] - first
        i = min(max(epoch - first, 0), n - 1)
        return lr * 0.5 * (1 + math.cos(math.pi * i / n))

    def start_epoch(self, epoch):
        """The trainer calls this before each epoch: the priors' learning rate (:meth:`prior_learning_rate`)."""
        for opt in [self.prior_optimizer] + ([self.made_optimizer] if self.made else []):
            opt.lr = self.prior_learning_rate(epoch)

    def phase(self):
        return "autoencoder" if self.optimizer.step_count < self.autoencoder_steps() else "prior"

    # ---- the two kinds of step
    def forward(self, x):
        """(decoder output, [Quantized per level], reconstruction term, VQ-VAE loss) for images x.

        The reconstruction term is the mean squared error (Gaussian decoder) or the mean Bernoulli
        cross-entropy per pixel of the decoder's logits (``--likelihood bernoulli``)."""
        x = Tensor(x)
        out, qs = self.net(x)
        if self.opts["likelihood"] == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(out, x)
        else:
            recon = F.mse_loss(out, x)
        loss = recon
        for q in qs:
            loss = loss + q.loss
        return out, qs, recon, loss

    def flat_codes(self, qs):
        return [q.indices.reshape(len(q.indices), -1) for q in qs]

    def _labels(self, y):
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("this VQ-VAE's prior is class-conditional (--prior-conditional 1): pass the labels y")
        return np.asarray(y, dtype=np.int64)

    def _terms(self, qs, recon, loss, prior_losses=None, made_losses=None):
        terms = {"loss": loss.item(), "recon": recon.item(),
                 "codebook": sum(q.codebook_loss.item() for q in qs),
                 "commitment": sum(q.commitment_loss.item() for q in qs)}
        for s, q in zip(self.suffixes, qs):
            terms[f"perplexity{s}"] = q.perplexity
        for s, p in zip(self.suffixes, prior_losses or ()):
            terms[f"prior_ce{s}"] = p.item()
        for s, p in zip(self.suffixes, made_losses or ()):
            terms[f"prior_ce_made{s}"] = p.item()
        return terms

    def autoencoder_step(self, x, y=None):
        """Phase 1: one Adam step on encoder, codebook and decoder. The priors are not run: they are
        not trained yet, and measuring them on every batch cost a third of the step (the validation
        pass at the end of each epoch still reports their cross-entropy)."""
        self.net.train()
        _, qs, recon, loss = self.forward(x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return self._terms(qs, recon, loss)

    @staticmethod
    def _fit(prior, optimizer, losses):
        total = losses[0]
        for p in losses[1:]:
            total = total + p
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    def prior_step(self, x, y=None):
        """Phase 2: the autoencoder frozen (eval mode: no moving-average updates either); one Adam step
        on the prior's cross-entropy of the codes of x (and one on the comparison MADE's). The frozen
        autoencoder's terms are logged too, so the metrics stay one table."""
        self.net.eval()
        self.prior.train()
        with no_grad():
            _, qs, recon, loss = self.forward(x)
        codes = self.flat_codes(qs)
        prior_losses = self.prior.losses(codes, self._labels(y))
        self._fit(self.prior, self.prior_optimizer, prior_losses)
        made_losses = None
        if self.made:
            made_losses = self.made.losses(codes)
            self._fit(self.made, self.made_optimizer, made_losses)
        return self._terms(qs, recon, loss, prior_losses, made_losses)

    def train_step(self, batch):
        x, y = batch
        return self.autoencoder_step(x, y) if self.phase() == "autoencoder" else self.prior_step(x, y)

    # ---- evaluation
    def code_histograms(self, data):
        """How often each code occurs over the split, per level: a list of (K,) integer arrays."""
        counts = [np.zeros(k, np.int64) for k in self.codebook_sizes()]
        self.net.eval()
        with no_grad():
            for x, _ in self.batches(data):
                for c, q in zip(counts, self.net.quantize(Tensor(x))):
                    c += code_counts(q.indices, len(c))
        return counts

    def evaluate(self, data):
        """Means per element over the split: ``recon`` (pixel MSE, or Bernoulli cross-entropy per pixel),
        ``codebook``, ``commitment`` and the VQ-VAE ``loss``; per level the ``perplexity``, the number of
        distinct codes (``codes_used``) and of never-used ones (``dead_codes``) over the whole split, and
        the prior's cross-entropy ``prior_ce`` (nats per code; log K = guessing)."""
        self.net.eval()
        self.prior.eval()
        sums, n = {}, 0
        counts = [np.zeros(k, np.int64) for k in self.codebook_sizes()]
        with no_grad():
            for x, y in self.batches(data):
                _, qs, recon, loss = self.forward(x)
                codes = self.flat_codes(qs)
                terms = self._terms(qs, recon, loss, self.prior.losses(codes, self._labels(y)),
                                    self.made.losses(codes) if self.made else None)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v * len(x)
                for c, q in zip(counts, qs):
                    c += code_counts(q.indices, len(c))
                n += len(x)
        out = {k: v / n for k, v in sums.items()}
        for s, c in zip(self.suffixes, counts):
            out[f"perplexity{s}"] = perplexity(np.repeat(np.arange(len(c)), c), len(c))
            out[f"codes_used{s}"] = int((c > 0).sum())
            out[f"dead_codes{s}"] = int((c == 0).sum())
        return out

    def report(self, data, split):
        """``scratchgen eval``, stable keys. Per split: :meth:`evaluate`'s keys, the MSE of predicting every
        image by the split's mean image (``mse_data_mean``, the baseline ``recon`` must beat), the prior's
        ``prior_bits_per_code{level}`` and code length Σ_levels L · prior_ce / ln 2 (``prior_bits_per_image``).
        With ``--likelihood bernoulli`` on binary data: ``recon_nats_per_image`` = -log p(x | z_q) and the
        bound ``bound_nats`` = -log p(x | z_q) - log p(z_q) >= -log p(x) (the one-hot posterior has zero
        entropy). For labelled image data, the sample-quality report of
        :func:`scratchgen.evaluation.sample_quality.sample_quality` on 10,000 samples; with
        ``--compare-made 1``, the ``conv_`` keys also for samples whose codes the MADE drew
        (``made_conv_precision``, ...: which prior makes better images from the same decoder). With
        ``eval_diagnosis`` (on by default), the same ``conv_`` keys for reconstructions of training images
        (``recon_conv_*``: the ceiling the decoder sets for any prior) and, for two levels, for real top
        codes with sampled bottom ones (``real_top_conv_*``: what the bottom prior alone loses), and which level
        decides the class of a decoded image (``swap_class_of_top``, ``swap_class_of_bottom``: :meth:`swapped_levels`)."""
        out = {f"{split}_{k}": v for k, v in self.evaluate(data).items()}
        x = data[:][0]
        out[f"{split}_mse_data_mean"] = float(((x - x.mean(axis=0)) ** 2).mean())
        nats = 0.0
        for (h, w), s in zip(self.net.grids, self.suffixes):
            out[f"{split}_prior_bits_per_code{s}"] = out[f"{split}_prior_ce{s}"] / math.log(2)
            nats += h * w * out[f"{split}_prior_ce{s}"]
        out[f"{split}_prior_bits_per_image"] = nats / math.log(2)
        if self.opts["likelihood"] == "bernoulli":
            pixels = int(np.prod(self.info.shape))
            out[f"{split}_recon_nats_per_image"] = out[f"{split}_recon"] * pixels
            out[f"{split}_bound_nats"] = out[f"{split}_recon_nats_per_image"] + nats
        from ..evaluation.sample_quality import experiment_sample_quality
        out.update(experiment_sample_quality(self, data, n=self.opts["eval_samples"]))
        if self.made and not self.conditional:  # the same decoder, codes from the comparison MADE instead
            made = experiment_sample_quality(self, data, n=self.opts["eval_samples"],
                                             sample=lambda n: self._sample_from(self.made, n))
            out.update({f"made_{k}": v for k, v in made.items() if k.startswith("conv_")})
        if self.opts["eval_diagnosis"]:  # no labels needed: the class-conditional prior is the top one
            for prefix, real_levels in (("recon", self.levels), ("real_top", 1))[:self.levels]:
                part = experiment_sample_quality(self, data, n=self.opts["eval_samples"],
                                                 sample=self._real_codes_sampler(real_levels))
                out.update({f"{prefix}_{k}": v for k, v in part.items() if k.startswith("conv_")})
            if self.levels == 2 and part:  # part is {} where the classifiers do not apply (VQVAE2's method)
                out.update(self._level_swap_report(data))
        return out

    def _real_codes_sampler(self, real_levels):
        """``sample(n)`` for :meth:`report`'s diagnosis: the codes of the first ``real_levels`` levels (top
        first) come from n random *training* images (not the evaluated split, which is the reference),
        the rest from the prior given them; decoded. All levels real: reconstructions, the best any prior
        could do with this decoder. Top real, bottom sampled: how much the bottom prior loses."""
        from ..data import load
        from ..random import get_rng
        cache = {}

        def sample(n):
            if "x" not in cache:
                c = self.config
                cache["x"] = load(c["data"], c.get("train_split", "train"), data_dir=c.get("data_dir"),
                                  scale=c.get("scale", "01"), binarize=c.get("binarize"), seed=c["seed"])[:][0]
            x = cache["x"][get_rng().integers(0, len(cache["x"]), n)]
            codes = [k.reshape(n, -1) for k in self.encode(x)][:real_levels]
            self.prior.eval()
            with no_grad():
                for level in self.prior.levels[real_levels:]:
                    codes.append(level.sample(n, codes[-1], **({"temperature": self.opts["temperature"]}
                                                               if self.prior.kind == "pixelcnn" else {})))
            return self.decode([k.reshape(n, h, w) for k, (h, w) in zip(codes, self.net.grids)])
        return sample

    # ---- using the model
    def _clip(self, x):
        return np.clip(x, *RANGES[self.scale])

    def encode(self, x):
        """The code grids of images x: a list (top first) of integer arrays (N, h, w)."""
        self.net.eval()
        with no_grad():
            return [q.indices for q in self.net.quantize(Tensor(x))]

    def decode(self, codes):
        """Images from a list of code grids (top first): the decoder's mean (Gaussian: clipped to the data's
        range; Bernoulli: the pixel probabilities σ(logits))."""
        self.net.eval()
        with no_grad():
            out = self.net.decode_codes(codes).data
        if self.opts["likelihood"] == "bernoulli":
            return 1 / (1 + np.exp(-out))
        return self._clip(out)

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def sample(self, n, label=None):
        """Codes from the prior(s) (top first; ``--temperature``), decoded: (n, C, H, W) in the data's range."""
        label = self.check_label(label)
        labels = None
        if self.conditional:
            labels = np.full(n, label, np.int64) if label is not None else np.arange(n) % self.info.num_classes
        return self._sample_from(self.prior, n, labels)

    def _sample_from(self, prior, n, labels=None):
        prior.eval()
        flat = prior.sample(n, labels, self.opts["temperature"])
        return self.decode([c.reshape(n, h, w) for c, (h, w) in zip(flat, self.net.grids)])

    # ---- state
    def checkpointed(self):
        parts = {"model": self.net, "optimizer": self.optimizer, "prior": self.prior,
                 "prior_optimizer": self.prior_optimizer}
        if self.made:
            parts.update(made=self.made, made_optimizer=self.made_optimizer)
        return parts

    def figures(self, run, data):
        x = data[:32][0]
        title = "VQ-VAE" if self.levels == 1 else "VQ-VAE-2"
        rng = RANGES[self.scale]
        return [plots.save_reconstructions(x, self.reconstruct(x), run.figures / "reconstructions.png",
                                           title=f"{title}: originals (odd rows), reconstructions from the codes",
                                           value_range=rng),
                plots.save_image_grid(self.sample(64), run.figures / "samples.png",
                                      title=f"{title}: codes drawn from the {self.opts['prior']} prior, decoded",
                                      value_range=rng),
                save_code_usage(self.code_histograms(data), self.suffixes, run.figures / "code-usage.png",
                                title=f"{title}: how often each code is used ({data.split} split)")]


def class_decided_by(predicted, top_labels, bottom_labels):
    """For images decoded from the top codes of one image and the bottom codes of another with a different
    label: the share classified as the top donor's class, and the share classified as the bottom donor's.
    A hierarchy whose decoder ignores the top level scores near (0, 1); one whose top level carries the
    digit, near (1, 0). Pairs with equal labels are left out."""
    predicted, top_labels, bottom_labels = (np.asarray(a) for a in (predicted, top_labels, bottom_labels))
    differ = top_labels != bottom_labels
    if not differ.any():
        raise ValueError("class_decided_by needs pairs of images with different labels")
    return (float((predicted[differ] == top_labels[differ]).mean()),
            float((predicted[differ] == bottom_labels[differ]).mean()))


def save_code_usage(counts, suffixes, path, title):
    """Bar chart of each level's code histogram, codes sorted by use; dead codes show as empty bars."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 2.2 * len(counts)))
    axes = fig.subplots(len(counts), 1, squeeze=False)
    for ax, c, s in zip(axes[:, 0], counts, suffixes):
        order = np.sort(c)[::-1]
        ax.bar(np.arange(len(c)), order / max(order.sum(), 1), width=1.0, color="C0")
        ax.set_ylabel("fraction")
        ax.set_title(f"{s.strip('_') or 'codes'}: {int((c > 0).sum())}/{len(c)} used, "
                     f"perplexity {perplexity(np.repeat(np.arange(len(c)), c), len(c)):.1f}", fontsize=9)
    axes[-1, 0].set_xlabel("codes, most used first")
    fig.suptitle(title, fontsize=10)
    return plots.save_figure(fig, path, tight_layout=True)


@register
class VQVAE2(VQVAE):
    name = "vqvae2"
    help = ("two-level VQ-VAE: top codes at half the bottom resolution, gated PixelCNN priors p(top) p(bottom|top) "
            "(Razavi et al., 2019)")
    levels = 2
    presets = {
        "digits8": dict(VQVAE.presets["digits8"], help="small: 8x8 digits, 2x2 top and 4x4 bottom codes from 32 "
                                                       "codewords each; 16 epochs, seconds each"),
        "mnist": dict(VQVAE.presets["mnist"], downsample=1, channels=32, res_channels=16, prior_channels=32,
                      prior_layers=6, compare_made=0, bottom_codebook_size=32, bottom_dropout=0.5, epochs=8,
                      prior_fraction=0.5, temperature=1.0,
                      help="MNIST: 7x7 top codes from 256 codewords and 14x14 bottom codes from 32, of size 16, 32 "
                           "channels, EMA codebooks with dead-code restarts, half of the training images decoded "
                           "from their top codes alone; gated PixelCNN priors p(top), p(bottom | top) of 6 layers, "
                           "32 channels; 8 epochs, the last 4 fit the priors (learning rate 2e-3 along a cosine); samples at "
                           "temperature 1"),
    }

    def swapped_levels(self, x):
        """Images decoded from the top codes of x[:h] and the bottom codes of x[h:2h], h = len(x) // 2."""
        h = len(x) // 2
        top, bottom = self.encode(x[:2 * h])
        return self.decode([top[:h], bottom[h:]])

    def _level_swap_report(self, data, n=2000):
        """Which level decides the class? :func:`class_decided_by` of the conv classifier's labels of
        :meth:`swapped_levels` for the first ``n`` images of the split: ``swap_class_of_top``, ``swap_class_of_bottom``."""
        from ..evaluation.classifier import load_or_train
        x, y = data[:n]
        images = self.swapped_levels(x)
        if self.scale == "pm1":
            images = (images + 1) / 2
        conv = load_or_train(self.info.name, data_dir=self.config.get("data_dir"), kind="conv")
        h = len(images)
        of_top, of_bottom = class_decided_by(conv.predict(images), y[:h], y[h:2 * h])
        return {"swap_class_of_top": of_top, "swap_class_of_bottom": of_bottom}
