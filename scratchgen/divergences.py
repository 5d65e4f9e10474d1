"""KL and Jensen–Shannon divergences between discrete distributions, and the JS variational identity.

Plain NumPy in float64: these are the lecture's definitions evaluated exactly on probability
vectors, the ground truth that the GAN's sample-based estimates are compared with. Every
function takes probability vectors along the **last axis** and broadcasts over the others, so a
batch of B pairs is two arrays of shape (B, K).

Zeros are handled by the conventions that make the definitions continuous:
0 log(0/q) = 0, and p log(p/0) = +inf for p > 0 (q cannot explain an outcome p produces).

The identity of the lecture (Goodfellow et al. 2014, "Generative Adversarial Nets", Prop. 1
and Thm. 1), for any t with values in [0, 1]:

    d_JS(p, q) = log 2 + ½ max_t { E_p[log t(x)] + E_q[log(1 - t(x))] },

with the maximum attained at the optimal discriminator t*(x) = p(x) / (p(x) + q(x)).
"""
import numpy as np

LOG2 = float(np.log(2.0))


def _check_probs(p, name, atol=1e-8):
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError(f"{name} must be a probability vector (last axis = outcomes), got a scalar")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains non-finite values")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative entries (min {p.min():.3g}); probabilities must be >= 0")
    sums = p.sum(axis=-1)
    if np.any(np.abs(sums - 1) > atol):
        worst = sums.ravel()[np.argmax(np.abs(sums - 1).ravel())]
        raise ValueError(f"{name} must sum to 1 along its last axis (within {atol}); found a sum of "
                         f"{worst:.10g}. Normalise it first: {name} / {name}.sum(-1, keepdims=True)")
    return p


def _check_pair(p, q):
    p, q = _check_probs(p, "p"), _check_probs(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must be over the same outcomes: p has {p.shape[-1]} (shape "
                         f"{p.shape}), q has {q.shape[-1]} (shape {q.shape})")
    return p, q


def _xlogy_ratio(p, q):
    """Elementwise p log(p / q) with 0 log(0/q) = 0 and p log(p/0) = +inf for p > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * (np.log(p) - np.log(q))
    out = np.where(p > 0, out, 0.0)
    return np.where((p > 0) & (q == 0), np.inf, out)


def kl(p, q):
    """d_KL(p, q) = Σ_x p(x) log(p(x) / q(x)) over the last axis; +inf where q = 0 < p."""
    p, q = _check_pair(p, q)
    return _xlogy_ratio(p, q).sum(axis=-1)


def entropy(p):
    """H(p) = -Σ_x p(x) log p(x) over the last axis (0 log 0 = 0)."""
    p = _check_probs(p, "p")
    return -_xlogy_ratio(p, np.ones_like(p)).sum(axis=-1)


def cross_entropy(p, q):
    """-E_{x~p}[log q(x)] = -Σ_x p(x) log q(x): the negative expected log-likelihood of q under data p.

    d_KL(p, q) = cross_entropy(p, q) - entropy(p), and entropy(p) does not depend on q: minimising
    the KL over a model q is maximising the expected log-likelihood — maximum likelihood
    (lecture 4, §4.2). +inf where q = 0 < p.
    """
    p, q = _check_pair(p, q)
    return entropy(p) + _xlogy_ratio(p, q).sum(axis=-1)


def js(p, q):
    """d_JS(p, q) = ½ d_KL(p, m) + ½ d_KL(q, m), m = (p + q) / 2.

    Symmetric, always finite (m > 0 wherever p or q is), and between 0 and log 2 (reached on
    disjoint supports).
    """
    p, q = _check_pair(p, q)
    # p log(p/m) = p log(p/(p + q)) + p log 2, and Σp = Σq = 1. NOTE: m = (p + q)/2 itself would round a
    # subnormal p (below ~1e-308, e.g. a far Gaussian tail) to m = 0 and make the sum +inf; p + q >= p never does.
    s = p + q
    return LOG2 + 0.5 * _xlogy_ratio(p, s).sum(axis=-1) + 0.5 * _xlogy_ratio(q, s).sum(axis=-1)


def reverse_kl_minus_2js(p, q):
    """d_KL(q, p) - 2 d_JS(p, q): what the non-saturating generator loss follows (Arjovsky & Bottou 2017).

    With the optimal discriminator t* = p/(p+q) held fixed, the gradient of the non-saturating loss
    -E_{x~q_θ}[log t*(x)] with respect to the model's parameters θ equals the gradient of this
    function of q_θ (lecture 5, §5.5): Σ_x ∂q(x) log((p + q)/p) on both sides.
    """
    p, q = _check_pair(p, q)
    return _xlogy_ratio(q, p).sum(axis=-1) - 2.0 * js(p, q)


def optimal_discriminator(p, q):
    """t*(x) = p(x) / (p(x) + q(x)): the t that maximises the value below, outcome by outcome.

    Where p(x) = q(x) = 0 any value is optimal (both terms carry weight 0); we return ½ there.
    """
    p, q = _check_pair(p, q)
    total = p + q
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, p / total, 0.5)


def value(p, q, t):
    """The GAN value V(t) = E_p[log t(x)] + E_q[log(1 - t(x))] = Σ_x p log t + q log(1 - t).

    ``t`` holds discriminator outputs in [0, 1], one per outcome (broadcast like p). A term with
    zero weight counts as 0 even where its log is -inf (t = 0 on an outcome p never produces).
    At t* the value equals 2 d_JS(p, q) - 2 log 2; it is -2 log 2 when p = q.

    NOTE: t is a probability, so it cannot be closer to 1 than about 1e-16: where q/p is below
    that, t* = p/(p + q) rounds to exactly 1 and log(1 - t*) = -inf although q > 0. (A
    discriminator that outputs logits, as :mod:`scratchgen.objectives.gan` uses, avoids this.)
    """
    p, q = _check_pair(p, q)
    t = np.asarray(t, dtype=np.float64)
    try:
        np.broadcast_shapes(t.shape, p.shape, q.shape)
    except ValueError:
        raise ValueError(f"t of shape {t.shape} does not broadcast with p {p.shape} and q {q.shape}; "
                         f"give one discriminator value per outcome") from None
    if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
        raise ValueError(f"discriminator values t must lie in [0, 1], got range "
                         f"[{np.nanmin(t):.3g}, {np.nanmax(t):.3g}]")
    with np.errstate(divide="ignore", invalid="ignore"):
        real = np.where(p > 0, p * np.log(t), 0.0)
        fake = np.where(q > 0, q * np.log1p(-t), 0.0)
    return real.sum(axis=-1) + fake.sum(axis=-1)


def js_variational(p, q, t):
    """log 2 + ½ (E_p[log t] + E_q[log(1 - t)]): a lower bound on d_JS(p, q) for every t.

    Equal to :func:`js` at t = :func:`optimal_discriminator` (p, q), and strictly smaller at any t
    that differs from t* on an outcome with p + q > 0. A parametric discriminator t_φ can only do
    as well as the best t, which is why a trained GAN discriminator gives a *lower* bound.
    """
    return LOG2 + 0.5 * value(p, q, t)
