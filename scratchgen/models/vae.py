"""The variational autoencoder (Kingma & Welling, 2014, "Auto-Encoding Variational Bayes").

The lecture's three pieces, in code:

* encoder q_ψ(z|x) = N(μ(x), diag exp(log σ²(x))): a network with a mean head and a
  log-variance head (:class:`MLPEncoder`);
* decoder q_θ(x|z) = Bernoulli(σ(logits(z))), one independent Bernoulli per pixel
  (:class:`MLPDecoder`), for binary or grey pixels in [0, 1];
* prior p(z) = N(0, I).

Training maximises the ELBO of :func:`scratchgen.objectives.elbo` with one reparameterised
sample per image, optionally with β (the KL weight), a linear KL warm-up and free bits.

Extension points (the conditional VAE and the convolutional variants build on these):

* :data:`ARCHITECTURES` maps ``--arch`` to a function ``(shape, options) -> (encoder, decoder)``;
* :meth:`VAE.posterior`, :meth:`VAE.decode` and :meth:`VAE.prior` take the label ``y``
  (ignored here), so a CVAE overrides them to condition on it and inherits the rest.
"""
import numpy as np

from .. import nn, optim
from ..objectives import elbo
from ..random import get_rng
from ..tensor import Tensor, no_grad
from ..training import plots
from ..training.experiment import Experiment, Option, int_list, prefixed, unprefixed
from . import register
from .autoencoder import check_unit_interval, mlp


class MLPEncoder(nn.Module):
    """x (N, C, H, W) -> (μ, log σ²), each (N, latent)."""

    def __init__(self, shape, hidden, latent, activation="relu"):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), mlp([int(np.prod(shape)), *hidden], activation,
                                                    final_activation=True))
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.log_var(h)


class MLPDecoder(nn.Module):
    """z (N, latent) -> Bernoulli logits (N, C, H, W)."""

    def __init__(self, shape, hidden, latent, activation="relu"):
        super().__init__()
        self.net = nn.Sequential(mlp([latent, *reversed(hidden), int(np.prod(shape))], activation),
                                 nn.Unflatten(1, tuple(shape)))

    def forward(self, z):
        return self.net(z)


def build_mlp(shape, opts):
    hidden = int_list(opts["hidden"])
    return (MLPEncoder(shape, hidden, opts["latent"], opts["activation"]),
            MLPDecoder(shape, hidden, opts["latent"], opts["activation"]))


ARCHITECTURES = {"mlp": build_mlp}


class VAENet(nn.Module):
    """Holds the encoder and the decoder, so their parameters share one state_dict."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


@register
class VAE(Experiment):
    name = "vae"
    help = "variational autoencoder with a Bernoulli decoder (Kingma & Welling, 2014)"
    defaults = dict(data="digits8", epochs=20, batch_size=16, lr=3e-3, scale="01")
    options = (
        Option("arch", str, "mlp", "encoder/decoder architecture", tuple(ARCHITECTURES)),
        Option("latent", int, 8, "size of the latent z"),
        Option("hidden", int_list, [128], "hidden layer sizes, comma-separated, e.g. 400 or 200,200"),
        Option("activation", str, "relu", "hidden activation", ("relu", "tanh", "leaky_relu")),
        Option("beta", float, 1.0, "weight of the KL term in the loss (beta-VAE)"),
        Option("warmup_steps", int, 0, "raise the KL weight linearly from 0 to beta over this many steps"),
        Option("free_bits", float, 0.0, "free bits: minimum KL in nats per latent dimension (batch mean)"),
    )
    presets = {
        "tiny": dict(help="a seconds-long smoke run", latent=2, hidden=[16], epochs=2),
        "pytorch-examples": dict(help="pytorch/examples VAE: 784-400-20 ReLU MLP, grey MNIST, Adam 1e-3, "
                                      "batch 128, 10 epochs", data="mnist", epochs=10, batch_size=128,
                                 lr=1e-3, hidden=[400], latent=20, activation="relu"),
    }
    loss_terms = ("loss", "recon", "kl")

    def __init__(self, config, info):
        super().__init__(config, info)
        check_unit_interval(info, config, self.name)
        if self.opts["arch"] not in ARCHITECTURES:
            raise ValueError(f"--arch must be one of {sorted(ARCHITECTURES)}, got {self.opts['arch']!r}")
        self.net = VAENet(*ARCHITECTURES[self.opts["arch"]](info.shape, self.opts))
        self.optimizer = optim.Adam(self.net.parameters(), lr=config["lr"])

    def describe(self):
        o = self.opts
        return f"VAE ({o['arch']}, latent {o['latent']}) with {self.net.num_parameters():,} parameters"

    # ---- the model: the three distributions (a CVAE overrides these to use y)
    def posterior(self, x, y=None):
        """q_ψ(z|x) as its (μ, log σ²) pair."""
        return self.net.encoder(x)

    def prior(self, y=None):
        """p(z); None means the standard normal N(0, I)."""
        return None

    def decode(self, z, y=None):
        """Bernoulli logits of q_θ(x|z)."""
        return self.net.decoder(z)

    def elbo(self, x, y=None, kl_weight=1.0, free_bits=0.0):
        x = Tensor(x)
        return elbo(x, self.posterior(x, y), lambda z: self.decode(z, y), prior=self.prior(y),
                    likelihood="bernoulli", kl_weight=kl_weight, free_bits=free_bits)

    def kl_weight(self):
        """β, ramped linearly from 0 over ``warmup_steps`` optimizer steps (Bowman et al., 2016)."""
        beta, warm = self.opts["beta"], self.opts["warmup_steps"]
        return beta if warm <= 0 else beta * min(1.0, self.optimizer.step_count / warm)

    # ---- the protocol
    def train_step(self, batch):
        x, y = batch
        self.net.train()
        result = self.elbo(x, y, kl_weight=self.kl_weight(), free_bits=self.opts["free_bits"])
        self.optimizer.zero_grad()
        result.loss.backward()
        self.optimizer.step()
        return {"loss": result.loss.item(), "recon": -result.reconstruction_mean.item(),
                "kl": result.kl_mean.item()}

    def evaluate(self, data):
        """Per-image means over the split: ``loss`` = -ELBO (β = 1, no free bits), ``recon`` =
        -E_q[log q_θ(x|z)], ``kl``, and ``elbo``; all in nats, one sample of z per image."""
        self.net.eval()
        sums = {"recon": 0.0, "kl": 0.0}
        with no_grad():
            for x, y in self.batches(data):
                r = self.elbo(x, y)
                sums["recon"] -= float(r.reconstruction.data.astype(np.float64).sum())
                sums["kl"] += float(r.kl.data.astype(np.float64).sum())
        recon, kl = sums["recon"] / len(data), sums["kl"] / len(data)
        return {"loss": recon + kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def sample(self, n, label=None):
        """Decoder means σ(logits) for z ~ p(z) (or p(z|y)): pixel probabilities in [0, 1], (n, C, H, W)."""
        y = self.check_label(label)
        y = None if y is None else np.full(n, y)
        self.net.eval()
        with no_grad():
            prior = self.prior(y)
            z = (Tensor(get_rng().standard_normal((n, self.opts["latent"])).astype(np.float32))
                 if prior is None else prior.sample())
            return self.decode(z, y).sigmoid().data

    def reconstruct(self, x, y=None):
        """Decoder means at the posterior mean μ(x)."""
        self.net.eval()
        with no_grad():
            mu, _ = self.posterior(Tensor(x), y)
            return self.decode(mu, y).sigmoid().data

    def state_dict(self):
        return {**prefixed("model", self.net.state_dict()),
                **prefixed("optimizer", self.optimizer.state_dict())}

    def load_state_dict(self, state):
        self.net.load_state_dict(unprefixed("model", state))
        self.optimizer.load_state_dict(unprefixed("optimizer", state))

    def figures(self, run, data):
        x, y = data[:32]
        return [plots.save_reconstructions(x, self.reconstruct(x, y), run.figures / "reconstructions.png",
                                           title="VAE: originals (odd rows) and reconstructions (even rows)"),
                plots.save_image_grid(self.sample(64), run.figures / "samples.png",
                                      title="VAE: samples, z ~ N(0, I) (decoder means)")]
