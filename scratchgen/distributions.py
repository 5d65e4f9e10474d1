"""Probability distributions on Tensors: Normal, Bernoulli, Categorical, and their closed-form KLs.

Everything here works on :class:`~scratchgen.autograd.Tensor`, so log-densities, entropies and KL
divergences are differentiable with respect to the parameters, and ``Normal.rsample`` lets
gradients flow through a sample (the reparameterisation trick of Kingma & Welling, 2014,
"Auto-Encoding Variational Bayes", and Rezende et al., 2014).

Notation of the lectures (``lectures/04-elbo.md``): the encoder's distribution q_ψ(ω|x) and the prior
p_ω are :class:`Normal` objects over the latent ω (``z`` in code); the decoder's likelihood
q_θ(x|ω) is a :class:`Bernoulli` (from logits) or a :class:`Normal`.

Shapes. A distribution has a *batch shape* (the broadcast shape of its parameters). Every
method is **elementwise over the batch shape**: ``log_prob``, ``entropy`` and
:func:`kl_divergence` return one number per element and sum over nothing, so a diagonal
Gaussian over a 20-dimensional latent gives shape (N, 20), and the caller sums the event
dimensions — or passes ``event_dims=k`` to sum the last k axes. (Categorical is the exception
that proves the rule: its last parameter axis holds the K class logits, and one draw is one
index, so its batch shape is ``logits.shape[:-1]``.)

Sampling draws from scratchgen's seeded generator (:func:`scratchgen.random.get_rng`).
"""
import numpy as np

from . import functional as F
from . import random as _random
from .autograd import Tensor, no_grad

LOG_2PI = float(np.log(2 * np.pi))


def _as_float_tensor(value, name, like=None):
    """A Tensor holding ``value``. Arrays and numbers become constants, with ``like``'s dtype if
    given, else by Tensor's rules (a float64 array stays float64; lists and numbers give float32)."""
    if isinstance(value, Tensor):
        t = value
    else:
        if np.asarray(value).dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric, got dtype {np.asarray(value).dtype}")
        t = Tensor(value, dtype=like.dtype if like is not None else None)
        if t.dtype.kind != "f":
            t = Tensor(t.data, dtype=np.float32)
    if t.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def _sum_last(t, event_dims):
    """Sum the last ``event_dims`` axes (the dimensions that form one event)."""
    if not isinstance(event_dims, (int, np.integer)) or event_dims < 0 or event_dims > t.ndim:
        raise ValueError(f"event_dims must be an int in [0, {t.ndim}] for a result of shape "
                         f"{t.shape}, got {event_dims!r}")
    for _ in range(int(event_dims)):
        t = t.sum(axis=-1)
    return t


def _sample_shape(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _check_finite(t, name):
    if not np.all(np.isfinite(t.data)):
        bad = t.data[~np.isfinite(t.data)].ravel()[:3]
        raise ValueError(f"{name} contains non-finite values (e.g. {bad.tolist()}); check the "
                         f"network output that produced it (a diverging loss or a 0/0).")


class Normal:
    """Diagonal Gaussian N(loc, σ²), parametrised by *either* ``log_var`` = log σ² *or* ``std`` = σ.

    ``Normal(loc, log_var=lv)`` — what a VAE encoder outputs (the lecture's q_ψ(ω|x) with mean
    and log-variance heads); ``Normal(loc, std=s)`` — a scale given directly. Exactly one of the
    two is required: the name says which parametrisation you mean, so nothing is guessed.

    Both attributes exist afterwards and are differentiable functions of what was passed:
    ``std = exp(½ log_var)`` and ``log_var = 2 log std``.

    NOTE: the standard deviation is exp(½ log σ²), *not* exp(log σ²). Using exp(log_var) as the
    std (a slip found in published code) samples with variance σ⁴; ``tests/test_distributions.py``
    shows the variance test catching it.
    """

    has_rsample = True

    def __init__(self, loc, log_var=None, std=None):
        if (log_var is None) == (std is None):
            raise ValueError("Normal(loc, log_var=..., std=...): pass exactly one of log_var "
                             "(log σ², what an encoder head outputs) or std (σ > 0); got "
                             + ("both" if log_var is not None else "neither"))
        self.loc = _as_float_tensor(loc, "loc")
        if log_var is not None:
            self.log_var = _as_float_tensor(log_var, "log_var", like=self.loc)
            self.std = (self.log_var * 0.5).exp()
        else:
            self.std = _as_float_tensor(std, "std", like=self.loc)
            if not np.all(self.std.data > 0):
                raise ValueError(f"Normal: std must be positive, got min {self.std.data.min()}; "
                                 f"to output a scale from a network use log_var=... instead")
            self.log_var = self.std.log() * 2.0
        try:
            self.batch_shape = np.broadcast_shapes(self.loc.shape, self.log_var.shape)
        except ValueError:
            raise ValueError(f"Normal: loc shape {self.loc.shape} and log_var/std shape "
                             f"{self.log_var.shape} do not broadcast") from None

    def __repr__(self):
        return f"Normal(batch_shape={self.batch_shape}, dtype={self.loc.dtype})"

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.log_var.exp()

    def rsample(self, shape=(), eps=None):
        """A reparameterised sample z = μ + σ ε, ε ~ N(0, I): differentiable in μ and σ.

        The result has shape ``shape + batch_shape``. ``eps`` (an array of that shape) fixes the
        noise — the hand-derived gradients and tests use it; by default it is drawn from
        scratchgen's seeded generator.
        """
        out_shape = _sample_shape(shape) + tuple(self.batch_shape)
        if eps is None:
            eps = _random.get_rng().standard_normal(out_shape)
        eps = np.asarray(eps.data if isinstance(eps, Tensor) else eps)
        if eps.shape != out_shape:
            raise ValueError(f"Normal.rsample: eps has shape {eps.shape}, expected sample shape + "
                             f"batch shape = {out_shape}")
        return self.loc + self.std * Tensor(eps.astype(self.loc.dtype))

    def sample(self, shape=()):
        """A sample with no gradient (same draw as ``rsample`` but cut from the graph)."""
        with no_grad():
            return self.rsample(shape).detach()

    def log_prob(self, x, event_dims=0):
        """log N(x; μ, σ²) = -½ [log 2π + log σ² + (x - μ)² / σ²], elementwise.

        ``event_dims=k`` sums the last k axes (e.g. 1 for a diagonal Gaussian over vectors).
        """
        x = _as_float_tensor(x, "x", like=self.loc)
        diff = x - self.loc
        out = (self.log_var + diff * diff / self.variance + LOG_2PI) * -0.5
        return _sum_last(out, event_dims)

    def entropy(self, event_dims=0):
        """H = ½ [log(2π e) + log σ²], elementwise."""
        out = (self.log_var + (LOG_2PI + 1.0)) * 0.5
        return _sum_last(out.expand(self.batch_shape), event_dims)


class Bernoulli:
    """Bernoulli over {0, 1} with P(x = 1) = σ(logits); the decoder likelihood q_θ(x|ω) for pixels.

    Only logits are accepted: every quantity is computed from them with softplus, never from a
    probability that may have rounded to exactly 0 or 1:
    log p = -softplus(-l) and log(1 - p) = -softplus(l).
    """

    has_rsample = False

    def __init__(self, logits):
        self.logits = _as_float_tensor(logits, "logits")
        _check_finite(self.logits, "Bernoulli logits")
        self.batch_shape = self.logits.shape

    def __repr__(self):
        return f"Bernoulli(batch_shape={self.batch_shape}, dtype={self.logits.dtype})"

    @property
    def probs(self):
        return self.logits.sigmoid()

    mean = probs

    @property
    def variance(self):
        p = self.probs
        return p * (1.0 - p)

    def sample(self, shape=()):
        """0/1 draws (as floats of the logits' dtype), u < p with u ~ U[0, 1); no gradient."""
        out_shape = _sample_shape(shape) + tuple(self.batch_shape)
        u = _random.get_rng().random(out_shape)
        return Tensor((u < self.probs.data).astype(self.logits.dtype))

    def rsample(self, shape=()):
        raise NotImplementedError("a Bernoulli sample is discrete, so it has no reparameterised "
                                  "gradient; use sample() (or a relaxation such as Gumbel-softmax)")

    def log_prob(self, x, event_dims=0):
        """log p(x) = x l - softplus(l) (= -BCE-with-logits), elementwise; x may be in [0, 1]."""
        x = _as_float_tensor(x, "x", like=self.logits)
        return _sum_last(x * self.logits - F.softplus(self.logits), event_dims)

    def entropy(self, event_dims=0):
        """H = -p log p - (1-p) log(1-p) = softplus(l) - p l."""
        return _sum_last(F.softplus(self.logits) - self.probs * self.logits, event_dims)


class Categorical:
    """Categorical over {0, ..., K-1}; ``logits`` has shape (*batch, K), normalised by log-softmax.

    ``log_prob`` takes integer indices of shape (*sample, *batch). ``mean`` and ``variance`` are
    those of the one-hot vector of the draw: E[onehot] = p and Var[onehot] = p(1 - p) (the mean
    of the index itself means nothing for class labels).
    """

    has_rsample = False

    def __init__(self, logits):
        self.logits = _as_float_tensor(logits, "logits")
        if self.logits.ndim < 1 or self.logits.shape[-1] < 1:
            raise ValueError(f"Categorical logits need a last axis of K >= 1 classes, got shape "
                             f"{self.logits.shape}")
        _check_finite(self.logits, "Categorical logits")
        self.num_classes = self.logits.shape[-1]
        self.batch_shape = self.logits.shape[:-1]

    def __repr__(self):
        return f"Categorical(batch_shape={self.batch_shape}, num_classes={self.num_classes})"

    @property
    def log_probs(self):
        return F.log_softmax(self.logits, dim=-1)

    @property
    def probs(self):
        return F.softmax(self.logits, dim=-1)

    mean = probs

    @property
    def variance(self):
        p = self.probs
        return p * (1.0 - p)

    def sample(self, shape=()):
        """Integer draws by the Gumbel-max trick: argmax_k (l_k + g_k), g_k = -log(-log u_k).

        (Gumbel 1954; used for sampling since Maddison et al. 2014.) No gradient.
        """
        out_shape = _sample_shape(shape) + tuple(self.batch_shape)
        u = _random.get_rng().random(out_shape + (self.num_classes,))
        u = np.maximum(u, np.finfo(np.float64).tiny)  # NOTE: u = 0 would give log(0)
        gumbel = -np.log(-np.log(u))
        return Tensor(np.argmax(self.logits.data + gumbel, axis=-1).astype(np.int64))

    def rsample(self, shape=()):
        raise NotImplementedError("a Categorical sample is discrete, so it has no reparameterised "
                                  "gradient; use sample() (or a Gumbel-softmax relaxation)")

    def log_prob(self, value, event_dims=0):
        """log p(value) = log_softmax(l)[value], for integer ``value`` of shape (*sample, *batch)."""
        idx = np.asarray(value.data if isinstance(value, Tensor) else value)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"Categorical.log_prob needs integer class indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_classes):
            raise ValueError(f"Categorical.log_prob: indices must lie in [0, {self.num_classes}), "
                             f"got min {idx.min()}, max {idx.max()}")
        one_hot = (idx[..., None] == np.arange(self.num_classes)).astype(self.logits.dtype)
        return _sum_last((self.log_probs * one_hot).sum(axis=-1), event_dims)

    def entropy(self, event_dims=0):
        """H = -Σ_k p_k log p_k."""
        return _sum_last(-(self.probs * self.log_probs).sum(axis=-1), event_dims)


# ---------------------------------------------------------------------- KL divergences
def _kl_normal_normal(p, q):
    # KL(N(μp, σp²) || N(μq, σq²)) = ½ [log σq² - log σp² + (σp² + (μp - μq)²) / σq² - 1]
    diff = p.loc - q.loc
    return (q.log_var - p.log_var + (p.variance + diff * diff) / q.variance - 1.0) * 0.5


def _kl_bernoulli_bernoulli(p, q):
    # With a, b the logits of p and q, log p - log q = softplus(b) - softplus(a) + a - b and
    # log(1-p) - log(1-q) = softplus(b) - softplus(a), so
    # KL = σ(a)(a - b) + softplus(b) - softplus(a): no log of a rounded probability anywhere.
    a, b = p.logits, q.logits
    return a.sigmoid() * (a - b) + F.softplus(b) - F.softplus(a)


def _kl_categorical_categorical(p, q):
    # KL = Σ_k p_k (log p_k - log q_k), with both logs from log-softmax.
    return (p.probs * (p.log_probs - q.log_probs)).sum(axis=-1)


_KL_TABLE = {
    (Normal, Normal): _kl_normal_normal,
    (Bernoulli, Bernoulli): _kl_bernoulli_bernoulli,
    (Categorical, Categorical): _kl_categorical_categorical,
}


def kl_divergence(p, q, event_dims=0):
    """KL(p || q) = E_p[log p - log q] in closed form, elementwise over the batch shape.

    Supported pairs: Normal–Normal (general diagonal q, e.g. the conditional prior p_ω(ω|y) of a
    CVAE — with q = N(0, 1) it reduces to ½(μ² + σ² - 1 - log σ²), the VAE regulariser of Kingma
    & Welling 2014, Appendix B), Bernoulli–Bernoulli and Categorical–Categorical (from logits).
    ``event_dims=k`` sums the last k axes, e.g. the latent dimensions of a diagonal Gaussian.
    """
    rule = _KL_TABLE.get((type(p), type(q)))
    if rule is None:
        supported = ", ".join(f"{a.__name__}–{b.__name__}" for a, b in _KL_TABLE)
        raise ValueError(f"kl_divergence has no closed form for {type(p).__name__}–"
                         f"{type(q).__name__}; supported pairs: {supported}. For other pairs "
                         f"estimate E_p[log p(x) - log q(x)] by Monte Carlo.")
    return _sum_last(rule(p, q), event_dims)
