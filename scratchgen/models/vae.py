"""The variational autoencoder (Kingma & Welling, 2014, "Auto-Encoding Variational Bayes").

The lecture's three pieces, in code:

* encoder q_ψ(z|x) = N(μ(x), diag exp(log σ²(x))): a network with a mean head and a
  log-variance head (:class:`MLPEncoder`, :class:`ConvEncoder`);
* decoder q_θ(x|z): one independent Bernoulli per pixel from logits (binary or grey pixels in
  [0, 1]), or a Gaussian N(mean(z), σ² I) whose single σ² is learned with the networks — the
  "σ-VAE" of Rybkin, Daniilidis & Levine (2021, "Simple and Effective VAE Training with
  Calibrated Decoders"): the best σ² is the mean squared error, so nothing has to be tuned;
* prior p(z) = N(0, I).

Training maximises the ELBO of :func:`scratchgen.objectives.elbo` with one reparameterised
sample per image, optionally with β (the KL weight), a linear KL warm-up and free bits:

    loss = -(1/N) Σ_n recon_n + w(t) · Σ_j max(λ, (1/N) Σ_n KL_nj),
    w(t) = β · min(1, t / warmup_steps)       (t = optimizer steps taken, w = β if warmup_steps = 0)

Presets (``scratchgen train vae --preset NAME``):

* ``pytorch-examples`` — the VAE of github.com/pytorch/examples (vae/main.py): 784-400-20 ReLU
  MLPs, grey pixels with a summed Bernoulli cross-entropy, Adam 1e-3, batch 128, 10 epochs;
* ``burda-1layer`` — the one-stochastic-layer VAE of Burda, Grosse & Salakhutdinov (2016,
  "Importance Weighted Autoencoders", Sec. 5): 784-200-200-50 tanh MLPs, Bernoulli decoder,
  dynamically binarized MNIST, evaluated by the IWAE bound with k = 5000; Adam with their
  learning-rate schedule (``lr_schedule="burda"``), cut off at 100 of their 3,280 epochs.

Extension points (the conditional VAE builds on these):

* :data:`ARCHITECTURES` maps ``--arch`` to ``(shape, options, condition) -> (encoder, decoder)``,
  where ``condition`` is the width of an extra input vector (a one-hot label) fed to both;
* :meth:`VAE.posterior`, :meth:`VAE.decode` and :meth:`VAE.prior` take the label ``y``
  (ignored here), so a CVAE overrides them to condition on it and inherits the rest.
"""
from functools import partial

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..evaluation import vae_metrics
from ..distributions import Bernoulli, Normal
from ..objectives import elbo
from ..random import get_rng
from ..autograd import Tensor, no_grad
from ..training.experiment import Experiment, Option, int_list
from .registry import register
from .blocks import ACTIVATIONS, mlp

LIKELIHOODS = ("bernoulli", "gaussian")


def _with_condition(h, c):
    """Append the conditioning vector c (N, k) to the features h (N, m); h unchanged if c is None."""
    return h if c is None else F.cat([h, c if isinstance(c, Tensor) else Tensor(c, dtype=h.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """x (N, C, H, W) [and c (N, k)] -> (μ, log σ²), each (N, latent)."""

    def __init__(self, shape, hidden, latent, activation="relu", condition=0):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), mlp([int(np.prod(shape)) + condition, *hidden], activation,
                                                    final_activation=True))
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)

    def forward(self, x, c=None):
        h = self.body(_with_condition(x.reshape(x.shape[0], -1), c))
        return self.mu(h), self.log_var(h)


class MLPDecoder(nn.Module):
    """z (N, latent) [and c (N, k)] -> decoder output (N, C, H, W): logits or Gaussian means."""

    def __init__(self, shape, hidden, latent, activation="relu", condition=0):
        super().__init__()
        self.net = nn.Sequential(mlp([latent + condition, *reversed(hidden), int(np.prod(shape))], activation),
                                 nn.Unflatten(1, tuple(shape)))

    def forward(self, z, c=None):
        return self.net(_with_condition(z, c))


def _conv_geometry(shape, channels):
    c, h, w = shape
    f = 2 ** len(channels)
    if h % f or w % f:
        raise ValueError(f"--arch conv halves the image {len(channels)} times (kernel 4, stride 2, padding 1), "
                         f"so height and width must be multiples of {f}; got {h}x{w}. Use fewer --channels "
                         f"or --arch mlp.")
    return c, (channels[-1], h // f, w // f)


class ConvEncoder(nn.Module):
    """x (N, C, H, W) -> [Conv2d(k4, s2, p1) -> act] per channel count -> MLP -> (μ, log σ²).

    Each convolution halves the height and width (28 -> 14 -> 7 with two of them).
    """

    def __init__(self, shape, hidden, latent, activation="relu", condition=0, channels=(32, 64)):
        super().__init__()
        c, feat = _conv_geometry(shape, channels)
        layers = []
        for a, b in zip((c, *channels[:-1]), channels):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.body = mlp([int(np.prod(feat)) + condition, *hidden], activation, final_activation=True)
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)

    def forward(self, x, c=None):
        h = self.body(_with_condition(self.conv(x), c))
        return self.mu(h), self.log_var(h)


class ConvDecoder(nn.Module):
    """The encoder mirrored: z -> MLP -> (channels[-1], H/2^L, W/2^L) -> ConvTranspose2d(k4, s2, p1)
    layers, each doubling the size, the last one without activation (logits or means)."""

    def __init__(self, shape, hidden, latent, activation="relu", condition=0, channels=(32, 64)):
        super().__init__()
        c, feat = _conv_geometry(shape, channels)
        self.body = nn.Sequential(mlp([latent + condition, *reversed(hidden), int(np.prod(feat))], activation,
                                      final_activation=True), nn.Unflatten(1, feat))
        outs = (*reversed(channels[:-1]), c)
        layers = []
        for i, (a, b) in enumerate(zip(reversed(channels), outs)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(ACTIVATIONS[activation]())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z, c=None):
        return self.deconv(self.body(_with_condition(z, c)))


def build_mlp(shape, opts, condition=0):
    hidden = int_list(opts["hidden"])
    return (MLPEncoder(shape, hidden, opts["latent"], opts["activation"], condition),
            MLPDecoder(shape, hidden, opts["latent"], opts["activation"], condition))


def build_conv(shape, opts, condition=0):
    hidden, channels = int_list(opts["hidden"]), int_list(opts.get("channels", [32, 64]))
    return (ConvEncoder(shape, hidden, opts["latent"], opts["activation"], condition, channels),
            ConvDecoder(shape, hidden, opts["latent"], opts["activation"], condition, channels))


ARCHITECTURES = {"mlp": build_mlp, "conv": build_conv}


class StandardPrior(nn.Module):
    """p(z) = N(0, I), the same for every image. It returns None, which stands for N(0, I) in
    :func:`scratchgen.objectives.elbo` and :meth:`VAE.sample`; it has no parameters."""

    def forward(self, y=None):
        return None


class VAENet(nn.Module):
    """The VAE's mathematics in one module: the three distributions and, in :meth:`forward`, the
    ELBO of a batch. The encoder and decoder networks (and, for a Gaussian decoder, its learned
    log σ²) share one state_dict.

    * :meth:`posterior` q_ψ(z|x) = N(μ(x), diag exp(log σ²(x))), from the encoder's two heads;
    * ``prior(y)`` p(z): a module, :class:`StandardPrior` here (a CVAE's learned p(z|y) replaces it);
    * :meth:`decode` q_θ(x|z): ``Bernoulli(logits=decoder(z))``, or ``Normal(decoder(z), log σ²)``.

    Every method takes the label ``y``, ignored here: the conditional VAE overrides :meth:`condition`
    and the prior.
    """

    def __init__(self, encoder, decoder, likelihood="bernoulli", prior=None):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.gaussian = likelihood == "gaussian"
        if self.gaussian:
            # one σ² for every pixel; starts at σ = 1 and shrinks towards the reconstruction error
            self.log_sigma2 = nn.Parameter(np.zeros((1, 1, 1, 1), dtype=np.float32))
        self.prior = prior if prior is not None else StandardPrior()

    def condition(self, y, rows):
        """What the encoder and decoder read beside x or z: nothing here (a CVAE: the label)."""
        return None

    def posterior(self, x, y=None):
        """q_ψ(z|x): a Normal over the latent, (N, latent)."""
        mu, log_var = self.encoder(x, self.condition(y, x.shape[0]))
        return Normal(mu, log_var=log_var)

    def decode(self, z, y=None):
        """q_θ(x|z), one distribution per pixel: (N, C, H, W)."""
        out = self.decoder(z, self.condition(y, z.shape[0]))
        return Normal(out, log_var=self.log_sigma2) if self.gaussian else Bernoulli(logits=out)

    def forward(self, x, y=None, kl_weight=1.0, free_bits=0.0, eps=None):
        """The ELBO of the batch x (one reparameterised sample of z per image) and its terms:
        encode, sample z = μ + σ ε, decode, log q_θ(x|z), KL — :func:`scratchgen.objectives.elbo`."""
        return elbo(x, self.posterior(x, y), partial(self.decode, y=y), prior=self.prior(y),
                    kl_weight=kl_weight, free_bits=free_bits, eps=eps)


VAE_OPTIONS = (
    Option("arch", str, "mlp", "encoder/decoder architecture", tuple(ARCHITECTURES)),
    Option("latent", int, 8, "size of the latent z"),
    Option("hidden", int_list, [128], "hidden layer sizes, comma-separated, e.g. 400 or 200,200 "
                                      "(for --arch conv: the fully connected layers after the convolutions)"),
    Option("channels", int_list, [32, 64], "--arch conv: channels of the stride-2 convolutions"),
    Option("activation", str, "relu", "hidden activation", tuple(ACTIVATIONS)),
    Option("likelihood", str, "bernoulli", "decoder distribution: Bernoulli logits, or a Gaussian "
                                           "with one learned variance", LIKELIHOODS),
    Option("beta", float, 1.0, "weight of the KL term in the loss (beta-VAE)"),
    Option("warmup_steps", int, 0, "raise the KL weight linearly from 0 to beta over this many steps"),
    Option("free_bits", float, 0.0, "free bits: minimum KL in nats per latent dimension (batch mean)"),
    Option("lr_schedule", str, "constant", "constant, or burda: Burda et al.'s Adam schedule, learning rate "
                                          "lr·10^(-i/7) for the 3^i epochs of stage i = 0, 1, 2, ...",
           ("constant", "burda")),
    Option("adam_eps", float, 1e-8, "Adam's epsilon, added to the root of the second-moment estimate "
                                    "(Burda et al. 2016 used 1e-4)"),
    Option("iwae_k", int, 1000, "evaluation: importance samples of the IWAE log-likelihood estimate"),
    Option("iwae_examples", int, 1000, "evaluation: test images the IWAE estimate uses (0 = all)", low=0),
)


@register
class VAE(Experiment):
    name = "vae"
    help = "variational autoencoder, MLP or convolutional (Kingma & Welling, 2014)"
    defaults = dict(data="digits8", epochs=20, batch_size=16, lr=3e-3, scale="01")
    options = VAE_OPTIONS
    eval_options = ("iwae_k", "iwae_examples")
    presets = {
        "tiny": dict(help="a seconds-long smoke run", latent=2, hidden=[16], epochs=2),
        "pytorch-examples": dict(help="pytorch/examples VAE: 784-400-20 ReLU MLP, grey MNIST (all 60k training "
                                      "images, validated on test), Adam 1e-3, batch 128, 10 epochs",
                                 data="mnist", train_split="trainval", epochs=10, batch_size=128,
                                 lr=1e-3, hidden=[400], latent=20, activation="relu", iwae_k=1000,
                                 iwae_examples=1000),
        "burda-1layer": dict(help="Burda et al. 2016 one-layer VAE: 784-200-200-50 tanh MLPs, dynamically "
                                  "binarized MNIST, batch 20, Adam 1e-3 (epsilon 1e-4) with their schedule "
                                  "(1e-3·10^(-i/7) for 3^i epochs); IWAE k=5000 at evaluation",
                             data="mnist", binarize="dynamic", epochs=100, batch_size=20, lr=1e-3,
                             lr_schedule="burda", adam_eps=1e-4, hidden=[200, 200], latent=50,
                             activation="tanh", iwae_k=5000,
                             iwae_examples=1000),
    }

    def __init__(self, config, info):
        super().__init__(config, info)
        o = self.opts  # options missing from an older run's config.json got their defaults in Experiment
        self._check_setup(info, config)
        self.net = self.make_net(info)
        self.optimizer = optim.Adam(self.net.parameters(), lr=config["lr"], eps=o["adam_eps"])
        self.base_lr = config["lr"]
        self.loss_terms = ("loss", "recon", "kl") + (("kl_weight",) if o["warmup_steps"] > 0 else ())
        # logged every epoch beside the losses: the per-dimension KL shows posterior collapse
        self.val_terms = ("elbo", "active_units", *(f"kl_{j}" for j in range(o["latent"])))

    def _check_setup(self, info, config):
        self.require_images()  # --arch and --likelihood: Experiment checked them against Option.choices
        if self.opts["likelihood"] == "bernoulli" and config.get("scale", "01") != "01":
            raise ValueError(f"{self.name}: the Bernoulli decoder needs pixels in [0, 1] (--scale 01), got "
                             f"--scale {config.get('scale')}; use --likelihood gaussian for [-1, 1] pixels")

    def make_net(self, info):
        """The encoder and decoder of ``--arch``, in one module (a CVAE adds its prior)."""
        return VAENet(*ARCHITECTURES[self.opts["arch"]](info.shape, self.opts), likelihood=self.opts["likelihood"])

    def describe(self):
        o = self.opts
        return (f"VAE ({o['arch']}, latent {o['latent']}) with {self.net.num_parameters():,} parameters, "
                f"{o['likelihood']} decoder")

    def elbo(self, x, y=None, kl_weight=1.0, free_bits=0.0, eps=None):
        """The network's ELBO on a batch of images (an array): ``self.net(x, y, ...)``."""
        return self.net(Tensor(x), y, kl_weight=kl_weight, free_bits=free_bits, eps=eps)

    def kl_weight(self):
        """β, ramped linearly from 0 over ``warmup_steps`` optimizer steps (Bowman et al., 2016)."""
        beta, warm = self.opts["beta"], self.opts["warmup_steps"]
        return beta if warm <= 0 else beta * min(1.0, self.optimizer.step_count / warm)

    def learning_rate(self, epoch):
        """The learning rate in (0-based) ``epoch``: constant, or Burda et al.'s (2016, Sec. 5) schedule,
        lr·10^(-i/7) during stage i, which lasts 3^i epochs — stages start at epochs 0, 1, 4, 13, 40, 121, ...
        (their 3,280 epochs are stages 0-7). It depends on the epoch only, so a resumed run follows it exactly.
        The trainer passes the epoch through :meth:`start_epoch`."""
        if self.opts["lr_schedule"] == "constant":
            return self.base_lr
        stage = 0
        while epoch >= (3 ** (stage + 1) - 1) // 2:   # stages 0..i together last (3^(i+1) - 1) / 2 epochs
            stage += 1
        return self.base_lr * 10 ** (-stage / 7)

    # ---- the protocol
    def start_epoch(self, epoch):
        """Adam's learning rate for ``epoch`` (:meth:`learning_rate`); the trainer calls this."""
        self.optimizer.lr = self.learning_rate(epoch)

    def train_step(self, batch):
        """One step of the lecture's loop: encode, sample z = μ + σ ε, decode, loss = -ELBO
        (with the current KL weight and free bits), backward through both networks, Adam."""
        x, y = batch
        self.net.train()
        w = self.kl_weight()
        result = self.net(Tensor(x), y, kl_weight=w, free_bits=self.opts["free_bits"])
        self.optimizer.zero_grad()
        result.loss.backward()
        self.optimizer.step()
        terms = {"loss": result.loss.item(), "recon": -result.reconstruction_mean.item(),
                 "kl": result.kl_mean.item()}
        if "kl_weight" in self.loss_terms:
            terms["kl_weight"] = w
        return terms

    def evaluate(self, data):
        """Per-image means over the split (one sample of z per image, β = 1, no free bits):
        ``loss`` = -ELBO, ``recon`` = -E_q[log q_θ(x|z)], ``kl``, ``elbo``; ``active_units`` and
        the per-dimension KL ``kl_<j>`` (see :func:`scratchgen.evaluation.vae_metrics.elbo_statistics`)."""
        stats = vae_metrics.elbo_statistics(self, self.batches(data))
        out = {k: stats[k] for k in ("loss", "recon", "kl", "elbo", "active_units")}
        out.update({f"kl_{j}": v for j, v in enumerate(stats["kl_per_dim"])})
        return out

    def report(self, data, split):
        """``scratchgen eval``: the ELBO and its terms, bits/dim, active units, and the IWAE
        estimate of the negative log-likelihood (``nll_iwae`` with ``nll_iwae_k`` samples on the
        first ``nll_iwae_examples`` images); for labelled images of 16x16 or more, the sample quality of
        10,000 samples (:func:`scratchgen.evaluation.sample_quality.sample_quality`), as for every family."""
        out = vae_metrics.report(self, data, split, k=self.opts["iwae_k"], examples=self.opts["iwae_examples"])
        from ..evaluation.sample_quality import experiment_sample_quality
        out.update(experiment_sample_quality(self, data))
        return out

    def sample(self, n, label=None):
        """Decoder means E[x|z] for z ~ p(z) (or p(z|y)): (n, C, H, W)."""
        y = self.check_label(label)
        y = None if y is None else np.full(n, y)
        return self.sample_given(n, y)

    def sample_given(self, n, y=None):
        self.net.eval()
        with no_grad():
            prior = self.net.prior(y)
            z = (Tensor(get_rng().standard_normal((n, self.opts["latent"])).astype(np.float32))
                 if prior is None else prior.sample())
            return self.net.decode(z, y).mean.data

    def encode_mean(self, x, y=None, batch_size=1000):
        """Posterior means μ(x) as an array (N, latent), in batches."""
        self.net.eval()
        with no_grad():
            return np.concatenate([self.net.posterior(Tensor(x[i:i + batch_size]),
                                                      None if y is None else y[i:i + batch_size]).loc.data
                                   for i in range(0, len(x), batch_size)])

    def decode_mean(self, z, y=None):
        """E[x|z] for given latent codes z (N, latent)."""
        self.net.eval()
        with no_grad():
            return self.net.decode(Tensor(np.asarray(z, dtype=np.float32)), y).mean.data

    def reconstruct(self, x, y=None):
        """Decoder means at the posterior mean μ(x)."""
        return self.decode_mean(self.encode_mean(x, y), y)

    def figures(self, run, data):
        from . import vae_figures
        return vae_figures.vae_figures(self, run, data)
