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

**Attributes** (``--attributes thickness,slant``): the condition becomes the vector
y = (one-hot class, standardised attributes), the attributes measured from each image's pixels by
:mod:`scratchgen.data.attributes` (after Morpho-MNIST) and standardised with the training split's
mean and standard deviation (measured once, kept in the checkpoint as buffers). The prior is then
linear in y, p(z|y) = N(A y + a, diag exp(B y + b)) (:class:`AttributePrior`), so a class's prior
moves smoothly as the requested thickness or slant changes. A bare label (sampling without
attributes, the Bayes classifier) stands for the mean attributes, 0 standard deviations.
"""
import hashlib

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from ..data import attributes as A
from ..distributions import Normal
from ..evaluation import bayes_classifier, vae_metrics
from ..training.experiment import Option, name_list
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


MEASURE_CHUNK = 1000   # images measured at once (measuring 28x28 images upsamples them to 112x112)


def condition(labels, z_attributes, num_classes=10):
    """y = (one-hot label, standardised attributes): (N, K + m) float32."""
    return np.concatenate([one_hot(np.asarray(labels), num_classes), np.asarray(z_attributes, np.float32)],
                          axis=1)


class AttributePrior(nn.Module):
    """p(z|y) = N(A y + a, diag exp(B y + b)) for y = (one-hot, attributes): linear in y, starting at
    N(0, I) (A = B = 0, a = b = 0). Given bare labels (N,), the attributes are 0 (their mean)."""

    def __init__(self, cond_dim, latent, num_classes=None):
        super().__init__()
        self.latent, self.num_classes, self.cond_dim = latent, num_classes, cond_dim
        self.linear = nn.Linear(cond_dim, 2 * latent)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, y):
        if y is None:
            raise ValueError("the conditional VAE needs the condition y of every image; this batch has none")
        if not isinstance(y, Tensor):
            y = np.asarray(y)
            if y.ndim == 1:   # labels only: the mean attributes
                y = condition(y, np.zeros((len(y), self.cond_dim - self.num_classes)), self.num_classes)
            y = Tensor(y.astype(np.float32))
        h = self.linear(y)
        return Normal(h[:, :self.latent], log_var=h[:, self.latent:])


class CVAENet(VAENet):
    """The VAE's three distributions, each also given the label y (as a one-hot vector): the
    encoder and decoder read it, and ``prior`` is the learned :class:`ClassPrior` p(z|y);
    ``forward`` (the ELBO) is the VAE's."""

    def __init__(self, encoder, decoder, prior, num_classes, likelihood="bernoulli", attributes=()):
        super().__init__(encoder, decoder, likelihood, prior)
        self.num_classes, self.attributes = num_classes, tuple(attributes)
        # how many training images of each class the model has seen: the empirical p(y)
        self.register_buffer("class_counts", np.zeros(num_classes, dtype=np.float64))
        if self.attributes:  # the training split's attribute mean and std (std 0: not measured yet)
            self.register_buffer("attribute_mean", np.zeros(len(self.attributes), dtype=np.float64))
            self.register_buffer("attribute_std", np.zeros(len(self.attributes), dtype=np.float64))
        self.measured = {}   # image digest -> raw attributes (not state: measuring is a pure function)

    def measured_condition(self, x, y):
        """y = (one-hot label, standardised attributes measured from the images x): the condition of
        training and of the ELBO. Without attributes, or if y already is a condition, y unchanged."""
        if not self.attributes or y is None or np.ndim(y) != 1:
            return y
        z = self.standardised_attributes(np.asarray(x.data if isinstance(x, Tensor) else x))
        return condition(y, np.nan_to_num(z), self.num_classes)   # an image without ink: the mean

    def standardised_attributes(self, x):
        """(N, m) attributes of the images x in training standard deviations. Each image is measured
        once per process: the values are remembered by the image's digest (training sees the same
        images every epoch; a freshly binarized image is new)."""
        keys = [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in x]
        new = [i for i, k in enumerate(keys) if k not in self.measured]
        for start in range(0, len(new), MEASURE_CHUNK):   # chunks: measuring upsamples each image 4x
            idx = new[start:start + MEASURE_CHUNK]
            m = A.measure(x[idx])
            raw = np.stack([m[a] for a in self.attributes], axis=1)
            self.measured.update(zip((keys[i] for i in idx), raw))
        raw = np.array([self.measured[k] for k in keys]).reshape(len(x), len(self.attributes))
        return A.standardise(raw, self.attribute_mean, self.attribute_std)[0]

    def forward(self, x, y=None, **kw):
        return super().forward(x, self.measured_condition(x, y), **kw)

    def condition(self, y, rows):
        """The labels y (N,) as one-hot rows — or the condition vectors (N, K + m) as they are —
        repeated to ``rows`` rows: the encoder and decoder read them."""
        if y is None:
            raise ValueError("the conditional VAE needs the label y of every image; this batch has none")
        y = np.asarray(y)
        if y.ndim == 2:
            c = y.astype(np.float32)
        elif self.attributes:
            c = condition(y, np.zeros((len(y), len(self.attributes))), self.num_classes)
        else:
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
        Option("attributes", name_list, [], "condition also on these attributes measured from the pixels, "
               "standardised (comma-separated, e.g. thickness,slant; empty: the label only)",
               choices=A.ATTRIBUTES),
        Option("attribute_samples", int, 20, "evaluation: samples per class and requested attribute value"),
    )
    eval_options = ("iwae_k", "iwae_examples", "bayes_k", "bayes_examples", "conditional_samples",
                    "attribute_samples")
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
        k, names = info.num_classes, self.opts["attributes"]
        encoder, decoder = ARCHITECTURES[self.opts["arch"]](info.shape, self.opts, condition=k + len(names))
        prior = (AttributePrior(k + len(names), self.opts["latent"], k) if names
                 else ClassPrior(k, self.opts["latent"]))
        return CVAENet(encoder, decoder, prior, k, self.opts["likelihood"], names)

    def describe(self):
        return "C" + super().describe()

    def log_class_prior(self):
        """log p(y) from the label counts seen in training (uniform before any training)."""
        counts = self.net.class_counts + 1e-12
        return np.log(counts / counts.sum())

    # ---- the protocol
    def start_epoch(self, epoch):
        """With attributes, before the first step: measure the training split once (remembered per image);
        a new run keeps its mean and standard deviation (the checkpoint carries them on)."""
        super().start_epoch(epoch)
        net = self.net
        if net.attributes and not net.measured:
            # NOTE: a resumed run measures the training split here too, in the same chunks, so its
            # conditions are the uninterrupted run's to the last bit
            from ..data import load
            c = self.config
            data = load(c["data"], c.get("train_split", "train"), data_dir=c.get("data_dir"), scale=c["scale"],
                        binarize=c.get("binarize"), seed=c["seed"])
            new_run = not np.any(net.attribute_std)
            if new_run:   # mean 0 and std 1 for now: the standardised values are the raw ones
                net.attribute_std[...] = 1.0
            raw = net.standardised_attributes(np.asarray(data.data))
            if new_run:   # the standardisation, from the whole split (images with ink)
                _, net.attribute_mean[...], net.attribute_std[...] = A.standardise(raw[np.all(np.isfinite(raw), 1)])

    def train_step(self, batch):
        x, y = batch
        self.net.condition(y, len(x))
        self.net.class_counts += np.bincount(np.asarray(y), minlength=self.info.num_classes)
        return super().train_step(batch)

    def sample(self, n, label=None, attributes=None):
        """E[x|z, y] with z ~ p(z|y): all of class ``label``, or labels 0, 1, ..., K-1, 0, ... if None;
        ``attributes`` ({name: standard deviations}, others 0) for a run trained with them."""
        y = self.check_label(label)
        y = np.arange(n) % self.info.num_classes if y is None else np.full(n, y)
        if attributes:
            z = np.zeros((n, len(self.net.attributes)))
            for name, value in attributes.items():
                if name not in self.net.attributes:
                    trained = ", ".join(self.net.attributes) or "none"
                    raise ValueError(f"this run was trained with attributes: {trained}; it cannot be asked for "
                                     f"{name!r}" + ("" if self.net.attributes else
                                                    ". Train one with --attributes thickness,slant"))
                z[:, self.net.attributes.index(name)] = value
            y = condition(y, z, self.info.num_classes)
        return self.sample_given(n, y)

    def attribute_report(self, seed=0):
        """Correlation and mean absolute error between requested and measured attributes (in training
        standard deviations), per attribute (:func:`evaluate_attributes`)."""
        res = evaluate_attributes(lambda y: self.sample_given(len(y), y), self.net.attributes,
                                  self.net.attribute_mean, self.net.attribute_std, self.info.num_classes,
                                  self.opts["attribute_samples"], seed=seed)
        return {f"{a}_{k}": res[a][k] for a in self.net.attributes for k in ("correlation", "mae")}

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
        if self.net.attributes:
            out.update(self.attribute_report(self.config["seed"]))
        return out

    def figures(self, run, data):
        from . import vae_figures
        return vae_figures.cvae_figures(self, run, data)


VALUES = (-2.0, -1.0, 0.0, 1.0, 2.0)


def evaluate_attributes(sample_fn, names, mean, std, num_classes=10, n_per=20, values=VALUES, classifier=None,
                        seed=0):
    """Ask for each class and value of each attribute (the others at 0), measure the samples.

    ``sample_fn(y) -> images`` for conditions y (N, K + m). Returns, per attribute, ``correlation``
    and ``mae`` between the requested and the measured standardised value, and the
    ``requested``/``measured`` arrays; and ``class_accuracy`` of ``classifier`` on all samples (if given).
    """
    from ..random import manual_seed
    manual_seed(seed)
    out, all_images, all_labels = {}, [], []
    for j, name in enumerate(names):
        requested, measured = [], []
        for k in range(num_classes):
            z = np.zeros((len(values) * n_per, len(names)))
            z[:, j] = np.repeat(values, n_per)
            images = sample_fn(condition(np.full(len(z), k), z, num_classes))
            got = A.measure(images)[name]
            ok = np.isfinite(got)
            requested.append(z[ok, j])
            measured.append((got[ok] - mean[j]) / std[j])
            all_images.append(images)
            all_labels.append(np.full(len(images), k))
        r, m = np.concatenate(requested), np.concatenate(measured)
        out[name] = {"correlation": float(np.corrcoef(r, m)[0, 1]), "mae": float(np.abs(r - m).mean()),
                     "requested": r, "measured": m}
    if classifier is not None:
        images, labels = np.concatenate(all_images), np.concatenate(all_labels)
        out["class_accuracy"] = float((classifier.predict(images) == labels).mean())
    return out


def parse_attributes(items, names=A.ATTRIBUTES):
    """``["thickness=+2", "slant=-1"]`` -> ``{"thickness": 2.0, "slant": -1.0}``, names among ``names``."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ValueError(f"--attribute takes NAME=VALUE with NAME one of {', '.join(names)}, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--attribute {item!r}: the value must be a number of standard deviations, "
                             f"like thickness=+2") from None
    return out
