"""A conditional VAE told attributes, not only labels: "a thick, left-leaning 7".

The source note's side information is "digit labels, attributes, etc." Chapter 7's CVAE takes the
label only. Here the condition is a vector

    y = (one-hot class, standardised thickness, standardised slant)

with the attributes measured from each training image's pixels (:mod:`scratchgen.data.attributes`,
after Morpho-MNIST) and standardised with the training set's mean and standard deviation. As in
chapter 7, all three distributions see y:

* encoder q_ψ(z|x, y) = N(μ(x, y), diag σ²(x, y)) — an MLP on (x, y);
* decoder p_θ(x|z, y) = Bernoulli(σ(logits(z, y))) — an MLP on (z, y);
* prior p(z|y) = N(A y + a, diag exp(B y + b)) — linear in y, so a class's prior moves smoothly as
  the requested thickness or slant changes (starting at N(0, I): A = B = 0, a = b = 0).

Loss = −ELBO = KL(q(z|x, y) ‖ p(z|y)) − E_q log p(x|z, y), per image, averaged.

**Evaluation by measurement**: ask for each class and each value v ∈ {−2, −1, 0, 1, 2} of one
attribute (the other at 0), draw samples, *measure* the attribute of the samples with the same code
that measured the training images, and report the correlation and mean absolute error between the
requested and the measured value (in standard deviations), and the class accuracy of an independent
classifier on the samples.

Run ``python -m scratchgen.labs.attribute_cvae --out DIR --data-dir MNIST_DIR`` (the lecture's
figure: ``--out lectures/figures``); ``--label 7 --attribute thickness=+2 --attribute slant=-1`` also
draws that request. The condition vector, the prior p(z|y) and the evaluation by measurement are the
CVAE family's (:mod:`scratchgen.models.cvae`), which trains the same idea behind
``scratchgen train cvae --attributes thickness,slant``.
"""
import sys
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..data import attributes as A
from ..distributions import Bernoulli, Normal, kl_divergence
from ..models.blocks import mlp
from ..models.cvae import VALUES, AttributePrior, condition, evaluate_attributes
from ..models.cvae import parse_attributes as parse_named
from ..random import manual_seed
from . import lab_parser

ATTRIBUTES = ("thickness", "slant")


def prepare(data="mnist", split="train", n=None, data_dir=None, seed=0):
    """(images (N, 1, H, W) float32 in [0, 1], labels (N,), raw attributes (N, 2)) of a split, the
    first ``n`` of a seeded permutation if ``n`` is given."""
    from ..data import load
    ds = load(data, split, data_dir=data_dir, scale="01")
    idx = np.arange(len(ds.data)) if n is None else np.random.default_rng([seed, 8]).permutation(len(ds.data))[:n]
    x, labels = np.asarray(ds.data[idx], np.float32), np.asarray(ds.targets[idx])
    m = A.measure(x)
    raw = np.stack([m[a] for a in ATTRIBUTES], axis=1)
    keep = np.all(np.isfinite(raw), axis=1)                     # an image without ink has no thickness
    return x[keep], labels[keep], raw[keep]


class AttributeCVAE(nn.Module):
    """q(z|x, y), p(x|z, y) and p(z|y) for images (N, 1, H, W) and conditions y (N, c)."""

    def __init__(self, shape, cond_dim, latent=8, hidden=400):
        super().__init__()
        self.shape, self.latent = tuple(shape), latent
        d = int(np.prod(shape))
        self.encoder = mlp([d + cond_dim, hidden, 2 * latent])
        self.decoder = mlp([latent + cond_dim, hidden, d])
        self.prior = AttributePrior(cond_dim, latent)             # p(z|y) = N(0, I) at the start

    def _split(self, h):
        return h[:, :self.latent], h[:, self.latent:]

    def posterior(self, x, y):
        mu, log_var = self._split(self.encoder(F.cat([x.reshape(x.shape[0], -1), y], dim=1)))
        return Normal(mu, log_var=log_var)

    def decode(self, z, y):
        """p(x|z, y) as a Bernoulli over the flattened pixels."""
        return Bernoulli(self.decoder(F.cat([z, y], dim=1)))

    def loss(self, x, y):
        """(−ELBO averaged over the batch, mean reconstruction term, mean KL) for arrays x and y."""
        x, y = Tensor(np.asarray(x, np.float32)), Tensor(np.asarray(y, np.float32))
        q = self.posterior(x, y)
        z = q.rsample()
        recon = self.decode(z, y).log_prob(x.reshape(x.shape[0], -1), event_dims=1)
        kl = kl_divergence(q, self.prior(y), event_dims=1)
        return (kl - recon).mean(), recon.mean().item(), kl.mean().item()

    def sample(self, y, eps=None):
        """Decoder means σ(logits) for z ~ p(z|y) (z = m + σ·eps with the given eps): (N, 1, H, W)."""
        with no_grad():
            y = Tensor(np.asarray(y, np.float32))
            p = self.prior(y)
            z = p.rsample(eps=None if eps is None else Tensor(np.asarray(eps, np.float32)))
            return self.decode(z, y).logits.sigmoid().data.reshape(-1, *self.shape)


def train(model, x, y, epochs=10, batch=128, lr=1e-3, seed=0, log=None):
    """Adam on −ELBO over shuffled minibatches; returns the per-epoch mean loss."""
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, 9])
    history = []
    for epoch in range(epochs):
        order, total = rng.permutation(len(x)), 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            loss, _, _ = model.loss(x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(x))
        if log:
            log(f"epoch {epoch + 1}: -ELBO {history[-1]:.3f}")
    return history


def evaluate(sample_fn, mean, std, num_classes=10, n_per=20, values=VALUES, classifier=None, seed=0):
    """:func:`scratchgen.models.cvae.evaluate_attributes` for this lab's two attributes."""
    return evaluate_attributes(sample_fn, ATTRIBUTES, mean, std, num_classes, n_per, values, classifier, seed)


def plot_sweeps(model, mean, std, path, digits=(7, 2, 4), values=VALUES, num_classes=10, seed=0):
    """For each digit: a row with thickness swept and a row with slant swept (same z noise per row)."""
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    rng = np.random.default_rng([seed, 10])
    fig = Figure(figsize=(1.1 * len(values) + 1.5, 1.2 * 2 * len(digits) + 0.6))
    rows = [(d, j) for d in digits for j in range(len(ATTRIBUTES))]
    for r, (digit, j) in enumerate(rows):
        z = np.zeros((len(values), len(ATTRIBUTES)))
        z[:, j] = values
        eps = np.repeat(rng.standard_normal((1, model.latent)), len(values), axis=0)
        images = model.sample(condition(np.full(len(values), digit), z, num_classes), eps=eps)
        measured = A.measure(images)[ATTRIBUTES[j]]
        for c, (img, v, got) in enumerate(zip(images, values, measured)):
            ax = fig.add_subplot(len(rows), len(values), r * len(values) + c + 1)
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            shown = got if j == 1 else got                       # raw units: pixels, or radians
            ax.set_title(f"{v:+g}σ: {shown:.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{digit}, {ATTRIBUTES[j]}", fontsize=8)
    fig.suptitle("requested (in training standard deviations): measured (thickness in px, slant in rad)", fontsize=8)
    return save_figure(fig, path, tight_layout=True)


def parse_attributes(items):
    """['thickness=+2', 'slant=-1'] -> standardised vector (2,) in ATTRIBUTES order (others 0)."""
    asked = parse_named(items, ATTRIBUTES)
    return np.array([asked.get(name, 0.0) for name in ATTRIBUTES])


def main(argv=None):
    ap = lab_parser("scratchgen.labs.attribute_cvae", __doc__)
    ap.add_argument("--data", default="mnist", help="mnist (needs --data-dir or SCRATCHGEN_DATA) or digits8")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-train", type=int, default=20000, help="training images (attributes measured once)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=400)
    ap.add_argument("--n-per", type=int, default=20, help="evaluation samples per class and requested value")
    ap.add_argument("--label", type=int, default=None, help="also draw 16 samples of this class ...")
    ap.add_argument("--attribute", action="append", help="... with NAME=VALUE (standard deviations), repeatable")
    ap.add_argument("--no-classifier", action="store_true", help="skip the class accuracy (it trains a classifier once)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        requested = parse_attributes(args.attribute)
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out)
    manual_seed(args.seed)
    x, labels, raw = prepare(args.data, "train", args.n_train, args.data_dir, args.seed)
    z, mean, std = A.standardise(raw)
    num_classes = int(labels.max()) + 1
    print(f"{len(x)} training images; attribute means {dict(zip(ATTRIBUTES, mean.round(3)))}, "
          f"standard deviations {dict(zip(ATTRIBUTES, std.round(3)))}")
    model = AttributeCVAE(x.shape[1:], num_classes + len(ATTRIBUTES), args.latent, args.hidden)
    train(model, x, condition(labels, z, num_classes), epochs=args.epochs, seed=args.seed, log=print)
    clf = None
    if not args.no_classifier:
        from ..evaluation.classifier import load_or_train
        clf = load_or_train(args.data, data_dir=args.data_dir)
    res = evaluate(model.sample, mean, std, num_classes, args.n_per, classifier=clf, seed=args.seed)
    for name in ATTRIBUTES:
        print(f"{name}: correlation(requested, measured) = {res[name]['correlation']:.3f}, "
              f"mean absolute error = {res[name]['mae']:.3f} standard deviations")
    if "class_accuracy" in res:
        print(f"class accuracy of the samples (evaluation classifier): {res['class_accuracy']:.3f}")
    paths = [plot_sweeps(model, mean, std, out / f"attribute-cvae-{args.data}.png", num_classes=num_classes)]
    if args.label is not None:
        from ..training.plots import save_image_grid
        y = condition(np.full(16, args.label), np.repeat(requested[None], 16, axis=0), num_classes)
        shown = ", ".join(f"{a}={v:+g}" for a, v in zip(ATTRIBUTES, requested))
        paths.append(save_image_grid(model.sample(y), out / f"attribute-cvae-{args.label}.png", nrow=8,
                                     title=f"{args.label} with {shown} (standard deviations)"))
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
