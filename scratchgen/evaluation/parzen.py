"""The Parzen-window log-likelihood estimate used by Goodfellow et al. (2014), Sec. 5.

Fit a kernel density to n generated samples s_1..s_n, an isotropic Gaussian of bandwidth σ on
each, and report the mean log-density of held-out test images under it:

    log p̂(x) = log (1/n) Σ_i N(x; s_i, σ² I)
             = logsumexp_i(−|x − s_i|² / (2σ²)) − log n − (D/2) log(2πσ²).

σ is chosen to maximise the same quantity on *validation* images (:func:`select_bandwidth`),
never on the test images it is then reported on. The paper took this procedure from Breuleux
et al. (2011).

Caveat — from the paper itself: the authors note that this estimate has fairly high variance
and works poorly in high-dimensional spaces, and they used it only for want of a better method.
Theis, van den Oord & Bethge (2016, "A note on the evaluation of generative models") show that it
can rank models very differently from their true log-likelihood (a model that memorises the
training set scores well; needing ~10^5+ samples in 784 dimensions before it converges). Read it as
a historical baseline for comparing with the 2014 table, not as a likelihood.

Memory stays bounded: the test points and the samples are processed in chunks, and chunk
results are combined with a running log-sum-exp.
"""
import math

import numpy as np


def _rows(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"{name} must have one example per row, shape (n, ...), got {x.shape}")
    x = x.reshape(len(x), -1)
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def parzen_log_density(x, samples, sigmas, chunk_size=1000):
    """log p̂_σ(x) for each row of ``x`` and each bandwidth in ``sigmas``.

    x (m, ...) and samples (n, ...) are flattened per row. Returns an array (len(sigmas), m),
    or (m,) when ``sigmas`` is a single number. Distances are computed once per chunk and reused
    for every σ.
    """
    scalar = np.ndim(sigmas) == 0
    sig = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if np.any(~np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError(f"bandwidths must be positive numbers, got {sig}")
    x, s = _rows(x, "x"), _rows(samples, "samples")
    if x.shape[1] != s.shape[1]:
        raise ValueError(f"x has {x.shape[1]} values per example but samples have {s.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    n, d = s.shape
    inv2var = 1.0 / (2.0 * sig ** 2)                            # (S,)
    s_sq = (s ** 2).sum(1)
    out = np.empty((len(sig), len(x)))
    for a in range(0, len(x), chunk_size):
        xa = x[a:a + chunk_size]
        xa_sq = (xa ** 2).sum(1)
        running = np.full((len(sig), len(xa)), -np.inf)       # log Σ exp over samples seen so far
        for b in range(0, n, chunk_size):
            sq = xa_sq[:, None] + s_sq[None, b:b + chunk_size] - 2.0 * xa @ s[b:b + chunk_size].T
            sq = np.maximum(sq, 0.0)                           # NOTE: |x|²+|s|²−2x·s can round below 0
            e = -sq[None] * inv2var[:, None, None]             # (S, chunk_x, chunk_s)
            running = np.logaddexp(running, _logsumexp(e, axis=2))
        out[:, a:a + len(xa)] = running
    out += (-math.log(n) - 0.5 * d * np.log(2.0 * np.pi * sig ** 2))[:, None]
    return out[0] if scalar else out


def _logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def select_bandwidth(val_x, samples, sigmas, chunk_size=1000):
    """The σ in ``sigmas`` with the highest mean validation log-density, and the table of all.

    Returns ``(best_sigma, {sigma: mean log-density})``. If the best σ is at an end of the grid,
    the grid was too narrow: widen it.
    """
    sig = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    means = parzen_log_density(val_x, samples, sig, chunk_size).mean(1)
    best = int(np.argmax(means))
    return float(sig[best]), {float(k): float(v) for k, v in zip(sig, means)}


def parzen_log_likelihood(test_x, samples, val_x, sigmas=None, chunk_size=1000):
    """Goodfellow et al.'s protocol: choose σ on ``val_x``, report on ``test_x``.

    Returns a dict: ``mean`` (nats per example), ``se`` (its standard error over test points, the
    "±" of the paper's table), ``sigma`` (chosen), ``sigma_at_edge`` (True if σ hit an end of
    the grid) and ``validation`` (the σ -> mean validation log-density table).
    """
    if sigmas is None:
        sigmas = np.logspace(-1.3, 0.0, 14)  # 0.05 .. 1: covers pixels in [0, 1]
    sigma, table = select_bandwidth(val_x, samples, sigmas, chunk_size)
    ll = parzen_log_density(test_x, samples, sigma, chunk_size)
    grid = sorted(table)
    return {"mean": float(ll.mean()), "se": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
            "sigma": sigma, "sigma_at_edge": sigma in (grid[0], grid[-1]), "validation": table}
