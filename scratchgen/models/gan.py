"""Generative adversarial networks (Goodfellow et al. 2014, "Generative Adversarial Nets").

Two networks play one game. The generator g_θ pushes noise ω ~ p_ω = N(0, I) forward to a fake
example g_θ(ω); the discriminator t_φ(x) = D(x) = σ(l_φ(x)) gives the probability that x is real.
Both are trained on the same value function (:mod:`scratchgen.objectives.gan`)

    V(θ, φ) = E_{x~p_data}[log D(x)] + E_{ω~p_ω}[log(1 − D(g_θ(ω)))],

φ ascending it and θ descending it (Goodfellow et al.'s Algorithm 1). One round here is

1. **discriminator step** (:meth:`GAN.discriminator_step`): a batch of real examples and a batch
   of fresh fakes; the fakes are treated as constants; one Adam step on φ that lowers −V, the
   binary cross-entropy with "real = 1, fake = 0". θ does not change.
2. every ``d_steps`` discriminator steps, a **generator step** (:meth:`GAN.generator_step`): fakes
   pass through the (just updated, now fixed) discriminator, and one Adam step on θ lowers the
   generator loss — ``minimax``: E log(1 − D(G(z))) (the original, saturating form), or
   ``non-saturating``: −E log D(G(z)) (same fixed point, strong gradients when D rejects fakes).
   φ does not change.

``--gan-loss wgan-gp`` (Gulrajani et al. 2017) makes D a critic f with no sigmoid: its step lowers
E f(fake) − E f(real) + λ E(‖∇f(x̂)‖ − 1)² (λ = ``--gp-weight``) and the generator's lowers −E f(fake)
(:mod:`scratchgen.objectives.wgan`); the logged bound is then the critic's Wasserstein estimate.

No real example ever reaches the generator, and both networks are updated every round whichever
one is "winning": each simply takes a gradient step on its own side of V.

Architectures (``--arch``):

* ``toy`` — MLPs for 2-D points (the ring of 8 and grid of 25 Gaussians), linear output;
* ``mlp`` — MLPs for images: ReLU generator with a sigmoid output, LeakyReLU(0.2) discriminator;
* ``dcgan`` — Radford et al. (2016), sized for 28x28 (or any H = W divisible by 4): generator
  Linear -> BN -> ReLU -> ConvTranspose(4, 2, 1) -> BN -> ReLU -> ConvTranspose(4, 2, 1) -> sigmoid;
  discriminator Conv(4, 2, 1) -> LeakyReLU(0.2) -> Conv(4, 2, 1) -> BN -> LeakyReLU(0.2) -> Linear.
  Weights N(0, 0.02), batch-norm scales N(1, 0.02), as in the paper.

Packing (``--pack m``, Lin et al. 2018, "PacGAN"): the discriminator judges m samples at once, all
real or all fake, stacked along the first feature axis. A generator that covers only some modes
makes packs that look unlike real packs far more often than single samples do, so collapse is
penalised; m = 1 is the plain GAN. With m > 1 the logged bound is the JS lower bound between the
*pack* distributions p^m and q^m.

NOTE: images are generated in [0, 1] with a sigmoid (= (tanh + 1)/2 of twice the logit) instead of
DCGAN's tanh on [−1, 1], so samples live on the same scale as the data and the evaluation
classifier (``--scale pm1`` switches to tanh and [−1, 1]).

Every epoch the held-out JS lower bound log 2 + ½ V is logged (``js_lower_bound``): with D fixed it
bounds d_JS(p_data, q_θ) from below (:func:`scratchgen.objectives.gan.js_lower_bound`).
"""
import math

import numpy as np

from .. import nn, optim
from ..data.datasets import TOY
from ..evaluation import mode_coverage
from ..objectives import gan as objectives
from ..objectives import wgan
from ..random import get_rng
from ..autograd import Tensor, no_grad
from ..training import plots
from ..training.experiment import Experiment, Option, int_list
from .registry import register
from .blocks import LEAKY_SLOPE, mlp_layers

GAN_LOSSES = {"minimax": objectives.generator_loss_saturating,
              "non-saturating": objectives.generator_loss_nonsaturating,
              "wgan-gp": wgan.generator_loss}   # the critic's scores in place of logits


def _output(scale):
    """The generator's last activation: none for points, sigmoid for [0, 1], tanh for [−1, 1]."""
    return {"raw": [], "01": [nn.Sigmoid()], "pm1": [nn.Tanh()]}[scale]


class MLPGenerator(nn.Module):
    """z (N, latent) -> x (N, *shape)."""

    def __init__(self, shape, latent, hidden, scale):
        super().__init__()
        self.net = nn.Sequential(*mlp_layers([latent, *hidden, int(np.prod(shape))], "relu"), *_output(scale),
                                 nn.Unflatten(1, tuple(shape)))

    def forward(self, z):
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """x (N, *shape) -> logit (N, 1)."""

    def __init__(self, shape, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *mlp_layers([int(np.prod(shape)), *hidden, 1], "leaky_relu"))

    def forward(self, x):
        return self.net(x)


class DCGANGenerator(nn.Module):
    """z (N, latent) -> (N, C, H, W); two stride-2 transposed convolutions from H/4 up to H."""

    def __init__(self, shape, latent, channels, scale):
        super().__init__()
        c, h, _ = shape
        s, w = h // 4, channels
        self.net = nn.Sequential(
            nn.Linear(latent, 2 * w * s * s, bias=False), nn.BatchNorm1d(2 * w * s * s), nn.ReLU(),
            nn.Unflatten(1, (2 * w, s, s)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, c, 4, stride=2, padding=1), *_output(scale))

    def forward(self, z):
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """(N, C, H, W) -> logit (N, 1); two stride-2 convolutions from H down to H/4."""

    def __init__(self, shape, channels):
        super().__init__()
        c, h, _ = shape
        s, w = h // 4, channels
        self.net = nn.Sequential(
            nn.Conv2d(c, w, 4, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Flatten(), nn.Linear(2 * w * s * s, 1))

    def forward(self, x):
        return self.net(x)


def dcgan_init(module):
    """Radford et al. 2016: conv and linear weights ~ N(0, 0.02); batch-norm scale ~ N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def packed_shape(shape, m):
    """The discriminator's input: m examples stacked along the first axis (features or channels)."""
    return (shape[0] * m, *shape[1:])


def pack(x, m):
    """(N, d, ...) -> (N // m, m·d, ...): consecutive groups of m examples become one input (a
    remainder of N mod m examples is dropped). Works on arrays and on Tensors (keeps the graph)."""
    n = (x.shape[0] // m) * m
    if n == 0:
        raise ValueError(f"a batch of {x.shape[0]} examples cannot fill one pack of {m}: use --batch-size >= {m}")
    return (x[:n] if n < x.shape[0] else x).reshape(n // m, x.shape[1] * m, *x.shape[2:])


def build(arch, shape, opts, scale):
    """``(generator, discriminator)`` for ``--arch``; the discriminator takes packs of ``opts["pack"]``."""
    d_shape = packed_shape(shape, opts.get("pack", 1))
    if arch in ("toy", "mlp"):
        return (MLPGenerator(shape, opts["latent"], int_list(opts["g_hidden"]), scale),
                MLPDiscriminator(d_shape, int_list(opts["d_hidden"])))
    if arch == "dcgan":
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 4:
            raise ValueError(f"--arch dcgan needs square images whose side is divisible by 4, got shape {shape}")
        g = DCGANGenerator(shape, opts["latent"], opts["g_channels"], scale)
        d = DCGANDiscriminator(d_shape, opts["d_channels"])
        dcgan_init(g)
        dcgan_init(d)
        return g, d
    raise ValueError(f"--arch must be one of toy, mlp, dcgan (or auto), got {arch!r}")


class GANNet(nn.Module):
    """The game's mathematics: the generator G pushes noise z ~ N(0, I) to fakes (:meth:`forward`),
    the discriminator D scores packs of ``pack_size`` examples (:meth:`logits`), and the two losses of a
    round (:meth:`discriminator_loss`, :meth:`generator_loss`). Both networks share one state_dict.
    """

    def __init__(self, generator, discriminator, latent, pack_size=1,
                 generator_loss=objectives.generator_loss_nonsaturating, gradient_penalty=None):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent, self.pack_size, self.g_loss = latent, pack_size, generator_loss
        # WGAN-GP (Gulrajani et al. 2017): D is a critic, its loss E f(fake) − E f(real) + λ·penalty
        self.gradient_penalty = gradient_penalty

    def noise(self, n):
        """n draws of z ~ N(0, I), (n, latent), from scratchgen's seeded generator."""
        return get_rng().standard_normal((n, self.latent)).astype(np.float32)

    def forward(self, n):
        """n fakes G(z), z ~ N(0, I)."""
        return self.generator(Tensor(self.noise(n)))

    def logits(self, x):
        """D's logit l_φ for each pack of ``pack_size`` consecutive examples of x (an array or a Tensor)."""
        packs = pack(x, self.pack_size)
        return self.discriminator(packs if isinstance(packs, Tensor) else Tensor(packs))

    def discriminator_loss(self, x, fake):
        """−V on real examples x and fakes held fixed (detached: θ does not move), and both logits.

        With a gradient penalty λ (``--gan-loss wgan-gp``): the critic's loss E f(fake) − E f(real)
        + λ E(‖∇f(x̂)‖ − 1)² at interpolates x̂ between real and fake packs, the input gradient
        written out for the MLP critic (:func:`scratchgen.objectives.wgan.mlp_input_gradient`)."""
        real_logits, fake_logits = self.logits(x), self.logits(fake.detach())
        if self.gradient_penalty is None:
            return objectives.discriminator_loss(real_logits, fake_logits), real_logits, fake_logits
        real, fakes = pack(np.asarray(x), self.pack_size), pack(fake.detach().data, self.pack_size)
        _, grad = wgan.mlp_input_gradient(self.discriminator.net, wgan.interpolates(real, fakes, get_rng()))
        loss = wgan.critic_loss(real_logits, fake_logits) + wgan.gradient_penalty(grad, self.gradient_penalty)
        return loss, real_logits, fake_logits

    def generator_loss(self, fake):
        """The generator's loss on fakes through D (minimax or non-saturating)."""
        return self.g_loss(self.logits(fake))


@register
class GAN(Experiment):
    name = "gan"
    help = "generative adversarial network: MLP, DCGAN or 2-D toy (Goodfellow et al., 2014)"
    defaults = dict(data="digits8", epochs=20, batch_size=64, lr=2e-4, scale="01")
    options = (
        Option("arch", str, "auto", "networks: toy (2-D points), mlp, dcgan; auto = toy for points, mlp for images",
               ("auto", "toy", "mlp", "dcgan")),
        Option("latent", int, 64, "size of the noise z ~ N(0, I)"),
        Option("g_hidden", int_list, [256, 256], "generator hidden sizes (toy, mlp), e.g. 256,256"),
        Option("d_hidden", int_list, [256, 256], "discriminator hidden sizes (toy, mlp), e.g. 256,256"),
        Option("g_channels", int, 64, "dcgan: generator channels after the first upsampling (2x before it)"),
        Option("d_channels", int, 32, "dcgan: discriminator channels after the first convolution (2x after the second)"),
        Option("lr_g", float, None, "generator learning rate; None = --lr"),
        Option("lr_d", float, None, "discriminator learning rate; None = --lr"),
        Option("beta1", float, 0.5, "Adam beta1 of both optimizers (DCGAN uses 0.5)"),
        Option("beta2", float, 0.999, "Adam beta2 of both optimizers"),
        Option("d_steps", int, 1, "discriminator steps per generator step (k in Goodfellow et al.'s Algorithm 1)"),
        Option("gan_loss", str, "non-saturating", "generator loss: minimax = E log(1 - D(G(z))) (saturates), "
               "non-saturating = -E log D(G(z)); wgan-gp = a Wasserstein critic with a gradient penalty "
               "(Gulrajani et al. 2017; MLP critics: --arch toy or mlp)", tuple(GAN_LOSSES)),
        Option("lr_decay", str, "none", "none, or linear: both learning rates fall linearly to 0 over the "
               "run's --epochs (so the generator settles instead of orbiting the modes)", ("none", "linear")),
        Option("gp_weight", float, 10.0, "--gan-loss wgan-gp: weight λ of the gradient penalty (Gulrajani et al. 2017)"),
        Option("pack", int, 1, "PacGAN: the discriminator judges packs of this many samples (Lin et al. 2018); "
               "1 = plain GAN"),
        Option("eval_samples", int, 2500, "fresh samples per evaluation (mode coverage, JS bound)"),
    )
    presets = {
        "tiny": dict(help="seconds-long smoke run: small MLP GAN on 8x8 digits", data="digits8", arch="mlp",
                     latent=8, g_hidden=[32], d_hidden=[32], epochs=2, batch_size=64, lr=1e-3),
        "tiny-dcgan": dict(help="seconds-long smoke run of the DCGAN code path on 8x8 digits", data="digits8",
                           arch="dcgan", latent=8, g_channels=8, d_channels=8, epochs=1, batch_size=64, lr=1e-3),
        "ring8": dict(help="target 1: ring of 8 Gaussians; 16-256-256-2 generator, discriminator on packs of 2 "
                           "(4-256-256-1), batch 512, Adam 5e-4 (0.5, 0.999) decayed linearly to 0 over 9,800 steps",
                      data="ring8", arch="toy", latent=16, g_hidden=[256, 256], d_hidden=[256, 256], pack=2,
                      lr_decay="linear", epochs=100, batch_size=512, lr=5e-4, log_every=100),
        "grid25": dict(help="grid of 25 Gaussians; the ring8 recipe", data="grid25", arch="toy", latent=16,
                       g_hidden=[256, 256], d_hidden=[256, 256], pack=2, lr_decay="linear", epochs=100,
                       batch_size=512, lr=5e-4, log_every=100),
        "mlp-mnist": dict(help="MLP GAN on MNIST: 100-256-256-784 generator, 784-256-256-1 discriminator",
                          data="mnist", arch="mlp", latent=100, g_hidden=[256, 256], d_hidden=[256, 256],
                          epochs=30, batch_size=64, lr=2e-4),
        "dcgan-mnist": dict(help="target 2: DCGAN for 28x28 MNIST, batch 64, Adam 2e-4 (0.5, 0.999), 10 epochs",
                            data="mnist", arch="dcgan", latent=100, g_channels=64, d_channels=32, epochs=10,
                            batch_size=64, lr=2e-4, eval_samples=1000),
    }
    eval_options = ("eval_samples",)
    loss_terms = ("loss", "loss_g", "js_lower_bound", "d_real", "d_fake")
    monitor = None  # no validation loss tells a better GAN from a worse one; best.npz = latest

    def __init__(self, config, info):
        super().__init__(config, info)
        o = self.opts  # options missing from an older run's config.json got their defaults in Experiment
        self.toy = info.name in TOY
        self.scale = "raw" if self.toy else config.get("scale", "01")
        arch = o["arch"] if o["arch"] != "auto" else ("toy" if self.toy else "mlp")
        if self.toy != (arch == "toy"):
            raise ValueError(f"--arch {arch} does not fit {info.name} (examples of shape {info.shape}): "
                             f"use --arch toy for 2-D points and mlp or dcgan for images")
        # --gan-loss, --d-steps, --latent, --pack: Experiment checked them (Option.choices, at least 1)
        if self.scale not in ("raw", "01", "pm1"):
            raise ValueError(f"the GAN generates pixels in [0, 1] (--scale 01) or [-1, 1] (--scale pm1), "
                             f"got --scale {self.scale}")
        self.arch = arch
        self.wgan = o["gan_loss"] == "wgan-gp"
        if self.wgan and arch == "dcgan":
            raise ValueError("--gan-loss wgan-gp needs an MLP critic (--arch toy or mlp): its gradient penalty "
                             "differentiates the critic's input gradient, written out for Linear and activation "
                             "layers only (and Gulrajani et al. drop batch norm from the critic)")
        self.g_loss = GAN_LOSSES[o["gan_loss"]]
        self.net = GANNet(*build(arch, info.shape, o, self.scale), o["latent"], o["pack"], self.g_loss,
                          gradient_penalty=o["gp_weight"] if self.wgan else None)
        if self.wgan:
            self.loss_terms = ("loss", "loss_g", "wasserstein", "gradient_penalty")
        self.G, self.D = self.net.generator, self.net.discriminator
        betas = (o["beta1"], o["beta2"])
        self.opt_g = optim.Adam(self.G.parameters(), lr=o["lr_g"] or config["lr"], betas=betas)
        self.opt_d = optim.Adam(self.D.parameters(), lr=o["lr_d"] or config["lr"], betas=betas)
        self.base_lr = (self.opt_g.lr, self.opt_d.lr)
        self.total_steps = max(1, config.get("epochs", 1) * self.steps_per_epoch)
        # a fixed latent batch: figures show the same z's as training goes on
        self.net.register_buffer("fixed_z", self.net.noise(64))
        self.mixture = TOY[info.name]() if self.toy else None
        if self.toy:  # the standard metric, logged every epoch beside the losses
            self.loss_terms = self.loss_terms + ("modes_covered", "high_quality_fraction")

    def describe(self):
        g, d = self.G.num_parameters(), self.D.num_parameters()
        pack_note = f", discriminator on packs of {self.opts['pack']}" if self.opts["pack"] > 1 else ""
        return (f"GAN ({self.arch}, {self.opts['gan_loss']} generator loss, latent {self.opts['latent']}, "
                f"{self.opts['d_steps']} D step(s) per G step{pack_note}) with {g:,} generator + {d:,} "
                f"discriminator parameters")

    # ---- the two moves of the game
    def discriminator_step(self, x):
        """One step on φ: lower −V on a real batch ``x`` and as many fresh fakes. Returns the terms
        and the fake batch's graph (reusable by a generator step that follows)."""
        self.net.train()
        fake = self.net(len(x))
        loss, real_logits, fake_logits = self.net.discriminator_loss(x, fake)
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        v = loss.item()
        if self.wgan:  # loss = −(E f(real) − E f(fake)) + penalty
            w = float(real_logits.data.mean() - fake_logits.data.mean())
            return {"loss": v, "wasserstein": w, "gradient_penalty": v + w}, fake
        return {"loss": v, "js_lower_bound": objectives.LOG2 - 0.5 * v,
                "d_real": float(real_logits.sigmoid().data.mean()),
                "d_fake": float(fake_logits.sigmoid().data.mean())}, fake

    def generator_step(self, n=None, fake=None):
        """One step on θ: lower the generator loss through the current discriminator (φ held fixed).

        ``fake`` may be a batch G(z) whose graph is still alive (the discriminator step's, as the
        PyTorch DCGAN example reuses it); otherwise ``n`` fresh fakes are drawn.
        """
        self.net.train()
        if fake is None:
            fake = self.net(n)
        loss = self.net.generator_loss(fake)
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        self.opt_d.zero_grad()  # the pass through D also filled D's gradients: they are not used
        return loss.item()

    def schedule(self):
        """Set both learning rates for the coming step (``--lr-decay``); a function of the step count
        kept in the optimizers' state, so a resumed run follows the same schedule.

        NOTE: the horizon is the run's ``--epochs``; resuming with a larger ``--epochs`` stretches the
        rest of the schedule (the learning rate jumps up to the new line)."""
        if self.opts["lr_decay"] == "linear":
            frac = max(0.0, 1.0 - self.opt_d.step_count / self.total_steps)
            self.opt_g.lr, self.opt_d.lr = self.base_lr[0] * frac, self.base_lr[1] * frac

    def train_step(self, batch):
        x, _ = batch
        self.schedule()
        terms, fake = self.discriminator_step(x)
        if self.opt_d.step_count % self.opts["d_steps"] == 0:
            loss_g = self.generator_step(fake=fake)
        else:  # no generator move this round: report its loss on these fakes, without a step
            with no_grad():
                loss_g = self.net.generator_loss(fake.detach()).item()
        return {**terms, "loss_g": loss_g}

    # ---- evaluation
    def sample(self, n, label=None):
        """``n`` fakes G(z), z ~ N(0, I): points (n, 2) for toy data, images (n, C, H, W) in the data's scale."""
        self.check_label(label)
        self.net.eval()
        with no_grad():
            return np.concatenate([self.net(min(1000, n - i)).data for i in range(0, n, 1000)])

    def logits(self, x):
        """Discriminator logits of ``x``, one per pack of ``--pack`` consecutive examples."""
        x, m = pack(np.asarray(x), self.opts["pack"]), 1000
        self.net.eval()
        with no_grad():
            return np.concatenate([self.D(Tensor(x[i:i + m])).data.reshape(-1) for i in range(0, len(x), m)])

    def js_bound(self, real, fake):
        """Held-out JS lower bound log 2 + ½(mean log D(real) + mean log(1 − D(fake))) and its standard error."""
        a = objectives.log_d(Tensor(self.logits(real).astype(np.float64))).data
        b = objectives.log_one_minus_d(Tensor(self.logits(fake).astype(np.float64))).data
        se = 0.5 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        return objectives.LOG2 + 0.5 * (a.mean() + b.mean()), se, a, b

    def evaluate(self, data):
        """On held-out real data and fresh fakes (``--eval-samples`` of each): ``loss`` (D's binary
        cross-entropy), ``js_lower_bound`` and its standard error ``js_lower_bound_se``, ``d_real``,
        ``d_fake``; for 2-D toy data also ``modes_covered`` and ``high_quality_fraction``."""
        n = min(len(data), self.opts["eval_samples"])
        real = data[:n][0]
        fake = self.sample(n)
        if self.wgan:  # the critic's scores are not logits: report its Wasserstein estimate instead
            a, b = self.logits(real).astype(np.float64), self.logits(fake).astype(np.float64)
            out = {"loss": float(b.mean() - a.mean()), "wasserstein": float(a.mean() - b.mean()),
                   "wasserstein_se": math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))}
            if self.toy:
                cov = mode_coverage(fake, self.mixture)
                out.update(modes_covered=cov["modes_covered"], high_quality_fraction=cov["high_quality_fraction"])
            return out
        bound, se, a, b = self.js_bound(real, fake)
        out = {"loss": float(-(a.mean() + b.mean())), "js_lower_bound": float(bound), "js_lower_bound_se": se,
               "d_real": float(np.exp(a).mean()), "d_fake": float(1 - np.exp(b).mean())}
        if self.toy:
            cov = mode_coverage(fake, self.mixture)
            out.update(modes_covered=cov["modes_covered"], high_quality_fraction=cov["high_quality_fraction"])
        return out

    def report(self, data, split):
        """``scratchgen eval``: the per-epoch metrics on ``split`` (prefixed), plus stable keys —

        * always ``js_lower_bound`` (held-out real data of the split vs fresh fakes);
        * 2-D toy data, on 2,500 fresh samples (VEEGAN's protocol): ``modes_covered``,
          ``high_quality_fraction``, ``mode_counts``;
        * labelled images, on 10,000 samples: ``class_histogram``, ``kl_to_uniform``,
          ``classes_covered`` (classes with >= 5% of the samples) from the cached evaluation
          classifier (``classifier_test_accuracy``), ``frechet_distance`` between its hidden
          features on the split's real images and on the samples (a small-scale analogue of FID,
          not comparable with published FIDs); for 28x28 images the convolutional classifier's
          ``conv_frechet_distance``, ``conv_precision``, ``conv_recall``, ``conv_mean_confidence``,
          ``conv_classes_covered`` (:mod:`scratchgen.evaluation.sample_quality`); and the Parzen-window estimate
          ``parzen_log_likelihood`` ± ``parzen_se`` with bandwidth ``parzen_sigma`` chosen on the
          validation split (Goodfellow et al. 2014; high variance, see
          :mod:`scratchgen.evaluation.parzen`).
        """
        out = super().report(data, split)
        key = "wasserstein" if self.wgan else "js_lower_bound"
        out[key] = out[f"{split}_{key}"]
        if self.toy:
            cov = mode_coverage(self.sample(2500), self.mixture)
            out.update(modes_covered=cov["modes_covered"], high_quality_fraction=cov["high_quality_fraction"],
                       mode_counts=cov["counts"])
        elif self.info.num_classes:
            out.update(self.image_report(data))
        return out

    def image_report(self, data, n=10000):
        from ..data import load
        from ..evaluation import classifier, frechet_distance_of_features, parzen_log_likelihood
        samples = self.sample(self.quality_samples or n)
        if self.scale == "pm1":
            samples, real = (samples + 1) / 2, (data.data + 1) / 2
        else:
            real = data.data
        clf = classifier.load_or_train(self.info.name, data_dir=self.config.get("data_dir"))
        out = classifier.label_report(clf, samples)
        out["classifier_test_accuracy"] = clf.test_accuracy
        out["frechet_distance"] = frechet_distance_of_features(clf.features(real), clf.features(samples))
        if self.info.shape[1] >= 16:  # the convolutional classifier's numbers (conv_*), as for every family
            from ..evaluation.sample_quality import image_quality
            conv = classifier.load_or_train(self.info.name, data_dir=self.config.get("data_dir"), kind="conv")
            out.update(image_quality(samples, real, conv))
        val = load(self.info.name, "val", data_dir=self.config.get("data_dir"), scale="01").data
        parzen = parzen_log_likelihood(real, samples, val[:len(real)], sigmas=np.logspace(-1.3, -0.3, 11))
        out.update(parzen_log_likelihood=parzen["mean"], parzen_se=parzen["se"], parzen_sigma=parzen["sigma"])
        return out

    # ---- state
    def checkpointed(self):
        return {"model": self.net, "opt_g": self.opt_g, "opt_d": self.opt_d}

    # ---- pictures
    def fixed_samples(self):
        self.net.eval()
        with no_grad():
            return self.G(Tensor(self.net.fixed_z)).data

    def interpolations(self, rows=8, steps=10):
        """Generator outputs along straight lines between pairs of the fixed z's: (rows * steps, ...)."""
        z = self.net.fixed_z
        t = np.linspace(0, 1, steps, dtype=np.float32)[None, :, None]
        path = (1 - t) * z[:rows, None] + t * z[rows:2 * rows, None]
        self.net.eval()
        with no_grad():
            return self.G(Tensor(path.reshape(rows * steps, -1))).data

    def figures(self, run, data):
        step = self.opt_g.step_count
        if self.toy:
            fake = self.sample(2500)
            cov = mode_coverage(fake, self.mixture)
            return [plots.save_points(fake, run.figures / "samples.png", reference=data[:2500][0],
                                      title=f"GAN after {step} generator steps: {cov['modes_covered']}/"
                                            f"{cov['n_modes']} modes, {100 * cov['high_quality_fraction']:.1f}% "
                                            f"high quality")]
        lo = -1.0 if self.scale == "pm1" else 0.0
        grid = self.fixed_samples()
        return [plots.save_image_grid(grid, run.figures / "samples.png", value_range=(lo, 1.0),
                                      title=f"GAN samples from a fixed z batch, {step} generator steps"),
                plots.save_image_grid(grid, run.figures / "fixed-z" / f"step-{step:07d}.png", value_range=(lo, 1.0),
                                      title=f"fixed z, {step} generator steps"),
                plots.save_image_grid(self.interpolations(), run.figures / "interpolations.png", nrow=10,
                                      value_range=(lo, 1.0), title="GAN: straight lines in z, left to right")]
