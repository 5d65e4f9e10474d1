"""A plain (deterministic) autoencoder: the starting point of the VAE lecture.

An encoder maps an image x to a code z = e(x), a decoder maps the code back to pixel logits,
and training minimises the reconstruction error, here the Bernoulli negative log-likelihood
summed over pixels: -Σ_i [x_i log σ(l_i) + (1 - x_i) log(1 - σ(l_i))], averaged over images.

It is *not* a generative model: nothing says which codes are valid, so there is no way to draw
a new image. :meth:`AutoEncoder.sample` does the naive thing — decode codes drawn from a
diagonal Gaussian fitted to the training codes — and its samples show why the VAE puts a prior
on z and trains the encoder to respect it.
"""
import numpy as np

from .. import functional as F
from .. import nn, optim
from ..random import get_rng
from ..autograd import Tensor, no_grad
from ..training import plots
from ..training.experiment import Experiment, Option, int_list
from .registry import register
from .blocks import ACTIVATIONS, mlp

def check_unit_interval(config, model):
    """A Bernoulli decoder needs targets in [0, 1]: refuse other scalings with a clear message."""
    if config.get("scale", "01") != "01":
        raise ValueError(f"{model}: the Bernoulli decoder needs pixels in [0, 1] (--scale 01), "
                         f"got --scale {config.get('scale')}")


class MLPAutoEncoderNet(nn.Module):
    """x (N, C, H, W) -> code (N, latent) -> pixel logits (N, C, H, W)."""

    def __init__(self, shape, hidden, latent, activation="relu"):
        super().__init__()
        d = int(np.prod(shape))
        self.encoder = nn.Sequential(nn.Flatten(), mlp([d, *hidden, latent], activation))
        self.decoder = nn.Sequential(mlp([latent, *reversed(hidden), d], activation), nn.Unflatten(1, shape))

    def forward(self, x):
        """Pixel logits of the reconstruction of x."""
        return self.decoder(self.encoder(x))

    def loss(self, x):
        """Bernoulli negative log-likelihood summed over pixels, averaged over images; and the codes."""
        codes = self.encoder(x)
        logits = self.decoder(codes)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") * (1.0 / len(x)), codes.data


@register
class AutoEncoder(Experiment):
    name = "autoencoder"
    help = "deterministic MLP autoencoder (no prior: the lecture's starting point before the VAE)"
    defaults = dict(data="digits8", epochs=20, batch_size=16, lr=3e-3, scale="01")
    options = (
        Option("latent", int, 8, "size of the code z"),
        Option("hidden", int_list, [128], "hidden layer sizes, comma-separated, e.g. 400 or 200,200"),
        Option("activation", str, "relu", "hidden activation", tuple(ACTIVATIONS)),
    )
    presets = {
        "tiny": dict(help="a seconds-long smoke run", latent=2, hidden=[16], epochs=2),
    }
    loss_terms = ("loss",)
    code_momentum = 0.01  # of the running code statistics used by sample()

    def __init__(self, config, info):
        super().__init__(config, info)
        check_unit_interval(config, self.name)
        self.require_images()
        o = self.opts
        self.net = MLPAutoEncoderNet(info.shape, int_list(o["hidden"]), o["latent"], o["activation"])
        # running mean and variance of the codes: the Gaussian that sample() decodes from
        self.net.register_buffer("code_mean", np.zeros(o["latent"], np.float32))
        self.net.register_buffer("code_var", np.ones(o["latent"], np.float32))
        self.optimizer = optim.Adam(self.net.parameters(), lr=config["lr"])

    def describe(self):
        return f"autoencoder with {self.net.num_parameters():,} parameters"

    def train_step(self, batch):
        x, _ = batch
        self.net.train()
        loss, codes = self.net.loss(Tensor(x))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        m, net = self.code_momentum, self.net  # running statistics of the codes, as BatchNorm keeps
        net.code_mean[...] = (1 - m) * net.code_mean + m * codes.mean(0)
        net.code_var[...] = (1 - m) * net.code_var + m * codes.var(0)
        return {"loss": loss.item()}

    def evaluate(self, data):
        """``loss``: the mean over images of the reconstruction negative log-likelihood (nats)."""
        self.net.eval()
        total = 0.0
        with no_grad():
            for x, _ in self.batches(data):
                total += self.net.loss(Tensor(x))[0].item() * len(x)
        return {"loss": total / len(data)}

    def reconstruct(self, x):
        self.net.eval()
        with no_grad():
            return self.net(Tensor(x)).sigmoid().data

    def sample(self, n, label=None):
        """Decode z ~ N(code mean, diag code variance): pixel probabilities, shape (n, C, H, W)."""
        self.check_label(label)
        mean, var = self.net.code_mean, self.net.code_var
        z = mean + np.sqrt(var) * get_rng().standard_normal((n, len(mean)))
        self.net.eval()
        with no_grad():
            return self.net.decoder(Tensor(z.astype(np.float32))).sigmoid().data

    def figures(self, run, data):
        x = data[:32][0]
        return [plots.save_reconstructions(x, self.reconstruct(x), run.figures / "reconstructions.png",
                                           title="autoencoder: originals (odd rows), reconstructions (even rows)"),
                plots.save_image_grid(self.sample(64), run.figures / "samples.png",
                                      title="autoencoder: codes from a Gaussian fitted to training codes")]
