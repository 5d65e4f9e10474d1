"""The conditional VAE (Sohn, Lee & Yan, 2015, "Learning Structured Output Representation using
Deep Conditional Generative Models"), conditioned on a class label y given as a one-hot vector.

Every distribution of the VAE now also sees y:

* encoder q_ψ(z|x, y) = N(μ(x, y), diag σ²(x, y)): the one-hot label is appended to the
  encoder's input features;
* decoder q_θ(x|z, y): the one-hot label is appended to z;
* conditional prior p(z|y) = N(m_y, diag exp(s_y)): one learned mean vector m_y and one
  log-variance vector s_y per class (:class:`ClassPrior`), both starting at N(0, I).

The regulariser is then the KL between two general diagonal Gaussians, still in closed form
(:func:`scratchgen.distributions.kl_divergence`):

    KL(q ‖ p) = ½ Σ_j [ s_yj - log σ²_j + (σ²_j + (μ_j - m_yj)²) / exp(s_yj) - 1 ].

With the label counts seen in training as p(y), the model is a class-conditional density
p(x|y) p(y), so Bayes' rule makes it a classifier
(:mod:`scratchgen.evaluation.bayes_classifier`).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..distributions import Normal
from ..evaluation import bayes_classifier, vae_metrics
from ..training.experiment import Option
from .registry import register
from .vae import ARCHITECTURES, VAE, VAE_OPTIONS, VAENet


def one_hot(y, num_classes, dtype=np.float32):
    """Integer labels (N,) -> one-hot rows (N, K), with a clear error for bad labels."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {y.dtype} and shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got range [{y.min()}, {y.max()}]")
    return (y[:, None] == np.arange(num_classes)).astype(dtype)


class ClassPrior(nn.Module):
    """p(z|y) = N(m_y, diag exp(s_y)): a table of K mean rows and K log-variance rows."""

    def __init__(self, num_classes, latent):
        super().__init__()
        self.mean = nn.Parameter(np.zeros((num_classes, latent), dtype=np.float32))
        self.log_var = nn.Parameter(np.zeros((num_classes, latent), dtype=np.float32))

    def forward(self, y):
        if y is None:
            raise ValueError("the conditional VAE needs the label y of every image; this batch has none")
        y = np.asarray(y)
        return Normal(F.embedding(y, self.mean), log_var=F.embedding(y, self.log_var))


class CVAENet(VAENet):
    """The VAE's three distributions, each also given the label y (as a one-hot vector): the
    encoder and decoder read it, and ``prior`` is the learned :class:`ClassPrior` p(z|y);
    ``forward`` (the ELBO) is the VAE's."""

    def __init__(self, encoder, decoder, prior, num_classes, likelihood="bernoulli"):
        super().__init__(encoder, decoder, likelihood, prior)
        self.num_classes = num_classes
        # how many training images of each class the model has seen: the empirical p(y)
        self.register_buffer("class_counts", np.zeros(num_classes, dtype=np.float64))

    def condition(self, y, rows):
        """The labels y (N,) as one-hot rows, repeated to ``rows`` rows: the encoder and decoder read them."""
        if y is None:
            raise ValueError("the conditional VAE needs the label y of every image; this batch has none")
        c = one_hot(y, self.num_classes)
        if rows != len(c) and len(c) and rows % len(c) == 0:
            # NOTE: the ELBO and IWAE code stack S samples of z for N images as S·N rows, sample
            # by sample (row r belongs to image r mod N), so the labels repeat the same way.
            c = np.tile(c, (rows // len(c), 1))
        return c


@register
class CVAE(VAE):
    name = "cvae"
    help = "conditional VAE: q(z|x,y), p(x|z,y) and a learned per-class prior p(z|y) (Sohn et al., 2015)"
    conditional = True
    defaults = dict(data="digits8", epochs=20, batch_size=16, lr=3e-3, scale="01")
    options = VAE_OPTIONS + (
        Option("bayes_k", int, 100, "evaluation: importance samples per class for log p(x|y) (Bayes classifier)"),
        Option("bayes_examples", int, 0, "evaluation: test images the Bayes classifier labels (0 = all)"),
        Option("conditional_samples", int, 1000, "evaluation: samples per class labelled by the evaluation "
                                                 "classifier"),
    )
    eval_options = ("iwae_k", "iwae_examples", "bayes_k", "bayes_examples", "conditional_samples")
    presets = {
        "tiny": dict(help="a seconds-long smoke run", latent=2, hidden=[16], epochs=2),
        # NOTE: latent 8, not 20: with a larger code the decoder can draw any digit whatever the label
        # says, which hurts both conditional samples and the Bayes-rule classifier (lecture 7, §7.4)
        "mnist": dict(help="784(+10)-400-8 ReLU MLPs, grey MNIST, Adam 1e-3, batch 128, 40 epochs",
                      data="mnist", epochs=40, batch_size=128, lr=1e-3, hidden=[400], latent=8,
                      activation="relu", iwae_k=100, iwae_examples=1000, bayes_k=100, bayes_examples=0),
    }

    def _check_setup(self, info, config):
        super()._check_setup(info, config)
        if not info.num_classes:
            raise ValueError(f"a conditional VAE needs labels; {info.name} has none. Use a labelled dataset "
                             f"(mnist, fashion-mnist, digits8).")

    def make_net(self, info):
        k = info.num_classes
        encoder, decoder = ARCHITECTURES[self.opts["arch"]](info.shape, self.opts, condition=k)
        return CVAENet(encoder, decoder, ClassPrior(k, self.opts["latent"]), k, self.opts["likelihood"])

    def describe(self):
        return "C" + super().describe()

    def log_class_prior(self):
        """log p(y) from the label counts seen in training (uniform before any training)."""
        counts = self.net.class_counts + 1e-12
        return np.log(counts / counts.sum())

    # ---- the protocol
    def train_step(self, batch):
        x, y = batch
        self.net.condition(y, len(x))
        self.net.class_counts += np.bincount(np.asarray(y), minlength=self.info.num_classes)
        return super().train_step(batch)

    def sample(self, n, label=None):
        """E[x|z, y] with z ~ p(z|y): all of class ``label``, or labels 0, 1, ..., K-1, 0, ... if None."""
        y = self.check_label(label)
        y = np.arange(n) % self.info.num_classes if y is None else np.full(n, y)
        return self.sample_given(n, y)

    def report(self, data, split):
        """The VAE metrics (with y), plus ``bayes_accuracy`` (classification by p(y|x) ∝ p(x|y) p(y),
        :mod:`scratchgen.evaluation.bayes_classifier`), ``conditional_accuracy`` (samples of each class
        that the evaluation classifier labels as that class) and ``discriminative_accuracy`` (an MLP
        classifier trained in scratchgen on the same data for as many epochs); on 28x28 images the
        sample quality of :mod:`scratchgen.evaluation.sample_quality`."""
        o = self.opts
        out = vae_metrics.report(self, data, split, k=o["iwae_k"], examples=o["iwae_examples"])
        x, y = data[:]
        n = len(x) if o["bayes_examples"] <= 0 else min(o["bayes_examples"], len(x))
        bayes = bayes_classifier.evaluate_cvae(self, x[:n], y[:n], k=o["bayes_k"])
        out.update({"bayes_accuracy": bayes["accuracy"], "bayes_k": o["bayes_k"], "bayes_examples": n,
                    "bayes_confusion": bayes["confusion"].tolist()})
        out.update(bayes_classifier.conditional_accuracy(self, o["conditional_samples"],
                                                         data_dir=self.config.get("data_dir")))
        out.update(bayes_classifier.discriminative_baseline(
            self.config["data"], x[:n], y[:n], hidden=self.opts["hidden"], epochs=self.config["epochs"],
            seed=self.config["seed"], data_dir=self.config.get("data_dir")))
        from ..evaluation.sample_quality import experiment_sample_quality
        out.update(experiment_sample_quality(self, data))  # samples of all classes in turn
        return out

    def figures(self, run, data):
        from . import vae_figures
        return vae_figures.cvae_figures(self, run, data)
