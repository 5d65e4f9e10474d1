"""Procedural toy data whose true distribution is known exactly.

* :func:`ring_of_gaussians` -- 8 Gaussians on a circle of radius 2, std 0.02, and
  :func:`grid_of_gaussians` -- 25 Gaussians on the grid {-4,-2,0,2,4}^2, std 0.05: the standard
  mode-collapse benchmarks for GANs (Metz et al., "Unrolled GANs", 2017; Srivastava et al.,
  "VEEGAN", 2017). Both return a :class:`GaussianMixture`, so ``.centers`` and ``.std`` are
  at hand for counting recovered modes, and ``.log_pdf`` for exact likelihoods.
* :func:`two_moons` and :func:`swiss_roll` -- 2-D shapes for flows and diffusion demos.
* :class:`GaussianMixture1D` -- 1-D mixtures with ``pdf``/``log_pdf``/``sample`` for computing
  KL, JS and other divergences exactly on a grid.

Every sampler takes ``rng``: an int seed, a ``numpy.random.Generator``, or ``None`` for
scratchgen's global generator (:func:`scratchgen.manual_seed` makes that reproducible).
"""
import numpy as np

from scratchgen.random import get_rng


def as_rng(rng=None):
    """An int becomes a fresh seeded Generator; None means scratchgen's global generator."""
    if rng is None:
        return get_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, a non-negative int seed or a numpy Generator; got {rng!r}")


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


class GaussianMixture:
    """Mixture of isotropic Gaussians: p(x) = sum_k w_k N(x; c_k, s_k^2 I).

    ``centers`` is (K, D); ``stds`` a scalar or (K,); ``weights`` (K,) summing to 1 (default equal).
    """

    def __init__(self, centers, stds, weights=None):
        self.centers = np.atleast_2d(np.asarray(centers, dtype=np.float64))
        k, d = self.centers.shape
        self.stds = np.broadcast_to(np.asarray(stds, dtype=np.float64), (k,)).copy()
        self.weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (k,) or (self.weights < 0).any() or not np.isclose(self.weights.sum(), 1.0):
            raise ValueError(f"weights must be {k} non-negative numbers summing to 1; got {self.weights}")
        if (self.stds <= 0).any():
            raise ValueError(f"stds must be positive; got {self.stds}")

    @property
    def dim(self):
        return self.centers.shape[1]

    @property
    def n_modes(self):
        return self.centers.shape[0]

    @property
    def std(self):
        """The common standard deviation (an error if the components differ)."""
        if not np.all(self.stds == self.stds[0]):
            raise ValueError(f"components have different stds {self.stds}; use .stds")
        return float(self.stds[0])

    def sample(self, n, rng=None, return_labels=False):
        """n points, shape (n, D); with ``return_labels`` also each point's component index."""
        rng = as_rng(rng)
        labels = rng.choice(self.n_modes, size=n, p=self.weights)
        x = self.centers[labels] + self.stds[labels, None] * rng.standard_normal((n, self.dim))
        return (x, labels) if return_labels else x

    def _check(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (n, {self.dim}); got {x.shape}")
        return x

    def component_log_pdf(self, x):
        """(n, K) array of log N(x_i; c_k, s_k^2 I)."""
        x = self._check(x)
        sq = ((x[:, None, :] - self.centers[None]) ** 2).sum(-1)
        var = self.stds ** 2
        return -0.5 * sq / var - 0.5 * self.dim * np.log(2 * np.pi * var)

    def log_pdf(self, x):
        """log p(x) for each row of x, computed stably with log-sum-exp."""
        with np.errstate(divide="ignore"):  # a zero weight gives log 0 = -inf, which is right
            return _logsumexp(self.component_log_pdf(x) + np.log(self.weights), axis=1)

    def pdf(self, x):
        return np.exp(self.log_pdf(x))

    def nearest_mode(self, x):
        """(index, distance) of the closest centre to each row of x."""
        x = self._check(x)
        dist = np.sqrt(((x[:, None, :] - self.centers[None]) ** 2).sum(-1))
        idx = dist.argmin(1)
        return idx, dist[np.arange(len(x)), idx]

    def __repr__(self):
        return f"{type(self).__name__}(n_modes={self.n_modes}, dim={self.dim}, stds={self.stds.tolist()})"


def ring_of_gaussians(n_modes=8, radius=2.0, std=0.02):
    """Equal-weight Gaussians at angles 2*pi*k/n_modes on a circle (mode k=0 at (radius, 0))."""
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return GaussianMixture(radius * np.stack([np.cos(angles), np.sin(angles)], 1), std)


def grid_of_gaussians(side=5, spacing=2.0, std=0.05):
    """Equal-weight Gaussians on a side x side grid centred at 0 (default centres -4, -2, 0, 2, 4)."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    gx, gy = np.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(np.stack([gx.ravel(), gy.ravel()], 1), std)


def two_moons(n, noise=0.05, rng=None):
    """Two interleaved half circles of radius 1, centred on the origin; returns (x (n, 2), label (n,))."""
    rng = as_rng(rng)
    label = rng.integers(0, 2, size=n)
    t = rng.uniform(0.0, np.pi, size=n)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.where(label[:, None] == 0, upper, lower) - np.array([0.5, 0.25])
    return x + noise * rng.standard_normal((n, 2)), label


def swiss_roll(n, noise=0.05, scale=0.2, rng=None):
    """The 2-D swiss roll: scale * (t cos t, t sin t) for t ~ U[1.5 pi, 4.5 pi], plus N(0, noise^2).

    With the defaults the points fill roughly [-2, 2.8]^2.
    """
    rng = as_rng(rng)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(size=n))
    x = scale * np.stack([t * np.cos(t), t * np.sin(t)], 1)
    return x + noise * rng.standard_normal((n, 2))


class GaussianMixture1D(GaussianMixture):
    """A 1-D mixture: ``sample`` returns shape (n,), ``pdf``/``log_pdf`` keep the shape of x."""

    def __init__(self, means, stds, weights=None):
        super().__init__(np.reshape(np.asarray(means, dtype=np.float64), (-1, 1)), stds, weights)

    @property
    def means(self):
        return self.centers[:, 0]

    def sample(self, n, rng=None, return_labels=False):
        x, labels = super().sample(n, rng, return_labels=True)
        return (x[:, 0], labels) if return_labels else x[:, 0]

    def log_pdf(self, x):
        x = np.asarray(x, dtype=np.float64)
        return super().log_pdf(x.reshape(-1, 1)).reshape(x.shape)

    def pdf(self, x):
        return np.exp(self.log_pdf(x))

    def mean(self):
        return float(self.weights @ self.means)

    def var(self):
        """Law of total variance: E[s_k^2] + Var[m_k]."""
        return float(self.weights @ (self.stds ** 2 + self.means ** 2) - self.mean() ** 2)


def bimodal_1d(gap=4.0, std=0.5, weights=(0.5, 0.5)):
    """Two bumps at -gap/2 and +gap/2: the classic picture of mode-covering vs mode-seeking fits."""
    return GaussianMixture1D([-gap / 2, gap / 2], std, weights)
