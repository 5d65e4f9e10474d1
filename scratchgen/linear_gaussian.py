"""A latent-variable model whose likelihood and posterior are exact: the linear-Gaussian model.

    p_ω(ω)      = N(0, I_d)
    q_θ(x | ω)  = N(W ω + b, σ² I_D)

(Probabilistic PCA, Tipping & Bishop 1999.) Everything a VAE can only bound or estimate is
available in closed form here, so it is the test bench for the ELBO and IWAE code:

* marginal   x ~ N(b, C),  C = W Wᵀ + σ² I_D                    -> :meth:`log_prob`
* posterior  ω | x ~ N(m, S),  S = (I_d + Wᵀ W / σ²)⁻¹,  m = S Wᵀ (x - b) / σ²   -> :meth:`posterior`
* the ELBO of any Gaussian q = N(m_q, S_q), in closed form       -> :meth:`elbo`

      ELBO = E_q[log q_θ(x|ω)] - d_KL(q, p_ω)
      E_q[log q_θ(x|ω)] = -D/2 log(2π σ²) - (‖x - W m_q - b‖² + tr(W S_q Wᵀ)) / (2σ²)
      d_KL(q, N(0, I))  = ½ (tr S_q + ‖m_q‖² - d - log det S_q)

  with ELBO = log p(x) - d_KL(q, p(ω|x)) ≤ log p(x), equality exactly when q is the posterior.

All computations are NumPy float64; :meth:`decoder` gives the same likelihood as Tensors, so
:func:`scratchgen.objectives.elbo` and :func:`~scratchgen.objectives.iwae_bound` run on it.
"""
import numpy as np

from . import random as _random
from .autograd import Tensor
from .distributions import Normal

LOG_2PI = float(np.log(2 * np.pi))


class LinearGaussian:
    """``LinearGaussian(W, b, noise_std)`` with W of shape (D, d), b of shape (D,), σ > 0."""

    def __init__(self, W, b, noise_std):
        self.W = np.asarray(W, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        if self.W.ndim != 2 or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"W must be (D, d) and b (D,), got W {self.W.shape} and b {self.b.shape}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        self.noise_std = float(noise_std)
        self.data_dim, self.latent_dim = self.W.shape

    @classmethod
    def random(cls, data_dim, latent_dim, noise_std=0.5, seed=0):
        """A model with W and b drawn from N(0, 1) by a generator seeded with ``seed``."""
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((data_dim, latent_dim)), rng.standard_normal(data_dim), noise_std)

    @property
    def noise_var(self):
        return self.noise_std ** 2

    def _check_x(self, x):
        x = np.atleast_2d(np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float64))
        if x.shape[-1] != self.data_dim:
            raise ValueError(f"x must have {self.data_dim} features (shape (N, {self.data_dim})), "
                             f"got shape {x.shape}")
        return x

    def sample(self, n, rng=None):
        """(x, z): n draws of ω ~ N(0, I) and x = W ω + b + σ ε; scratchgen's generator by default."""
        rng = rng if rng is not None else _random.get_rng()
        z = rng.standard_normal((n, self.latent_dim))
        x = z @ self.W.T + self.b + self.noise_std * rng.standard_normal((n, self.data_dim))
        return x, z

    def marginal_cov(self):
        """C = W Wᵀ + σ² I_D, the covariance of x."""
        return self.W @ self.W.T + self.noise_var * np.eye(self.data_dim)

    def log_prob(self, x):
        """Exact log p(x) = log N(x; b, C) per row of x, via the Cholesky factor C = L Lᵀ:
        -½ (D log 2π + 2 Σ log L_ii + ‖L⁻¹(x - b)‖²)."""
        x = self._check_x(x)
        L = np.linalg.cholesky(self.marginal_cov())
        y = np.linalg.solve(L, (x - self.b).T)                          # L⁻¹ (x - b), (D, N)
        return -0.5 * (self.data_dim * LOG_2PI + 2 * np.log(np.diag(L)).sum() + (y ** 2).sum(axis=0))

    def posterior(self, x):
        """The exact posterior p(ω | x) = N(m, S): returns m of shape (N, d) and S of shape (d, d)
        (the same covariance for every x)."""
        x = self._check_x(x)
        precision = np.eye(self.latent_dim) + self.W.T @ self.W / self.noise_var
        S = np.linalg.inv(precision)
        m = (x - self.b) @ self.W @ S / self.noise_var                  # rows: S Wᵀ (x - b) / σ²
        return m, S

    def elbo(self, x, q_mean, q_cov):
        """The ELBO of q(ω|x) = N(q_mean, q_cov) in closed form, per row of x.

        ``q_mean`` is (N, d) (or (d,)); ``q_cov`` is (d, d) or (N, d, d) and must be symmetric
        positive definite (use ``np.diag(v)`` for a diagonal q).
        """
        x = self._check_x(x)
        m = np.broadcast_to(np.asarray(q_mean, dtype=np.float64), (x.shape[0], self.latent_dim))
        S = np.broadcast_to(np.asarray(q_cov, dtype=np.float64),
                            (x.shape[0], self.latent_dim, self.latent_dim))
        d, D, s2 = self.latent_dim, self.data_dim, self.noise_var
        resid = x - m @ self.W.T - self.b
        trace_wsw = np.einsum("ij,njk,ik->n", self.W, S, self.W)        # tr(W S Wᵀ)
        expected_log_lik = -0.5 * D * np.log(2 * np.pi * s2) - ((resid ** 2).sum(axis=1) + trace_wsw) / (2 * s2)
        sign, logdet = np.linalg.slogdet(S)
        if np.any(sign <= 0):
            raise ValueError("q_cov must be positive definite")
        kl = 0.5 * (np.trace(S, axis1=1, axis2=2) + (m ** 2).sum(axis=1) - d - logdet)
        return expected_log_lik - kl

    def decoder(self, z):
        """q_θ(x | ω) = N(W ω + b, σ² I) as a :class:`~scratchgen.distributions.Normal` of Tensors."""
        mean = z @ Tensor(self.W.T.astype(z.dtype)) + Tensor(self.b.astype(z.dtype))
        log_var = Tensor(np.full(mean.shape, np.log(self.noise_var), dtype=z.dtype))
        return Normal(mean, log_var=log_var)
