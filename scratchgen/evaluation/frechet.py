"""The Fréchet distance between two Gaussians, and its use on classifier features.

For N(μ1, C1) and N(μ2, C2) the squared 2-Wasserstein (Fréchet) distance is (Dowson & Landau
1982; Heusel et al. 2017, "GANs trained by a two time-scale update rule ...", Eq. 6)

    d² = |μ1 − μ2|² + tr(C1 + C2 − 2 (C1^½ C2 C1^½)^½).

The matrix square roots are computed here from eigendecompositions of *symmetric* matrices
(:func:`sqrtm_psd`): C1^½ is symmetric, so C1^½ C2 C1^½ is symmetric positive semi-definite and
its square root's trace is Σ √λ_i over its eigenvalues. (FID code usually calls a general sqrtm
on the non-symmetric C1 C2, which has the same eigenvalues but can return complex noise.)

NOTE: this is a **small-scale analogue of FID**. FID uses the 2048-d pool features of an
Inception-v3 network trained on ImageNet; we use the hidden features of a small MLP classifier
trained in scratchgen on MNIST (:mod:`scratchgen.evaluation.classifier`). The numbers depend on
that network and on the sample sizes, and are **not comparable with published FIDs** — only with
each other, computed by the same classifier on the same number of samples.
"""
import numpy as np


def _symmetric(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
    if not np.allclose(a, a.T, rtol=1e-8, atol=1e-10 * max(1.0, np.abs(a).max())):
        raise ValueError(f"{name} must be symmetric (a covariance matrix)")
    return 0.5 * (a + a.T)


def sqrtm_psd(a):
    """The symmetric square root S (S @ S = a) of a symmetric positive semi-definite matrix.

    a = V diag(λ) Vᵀ  =>  a^½ = V diag(√λ) Vᵀ. Eigenvalues below zero (rounding on a singular
    matrix) are clipped to 0.
    """
    a = _symmetric(a, "a")
    lam, v = np.linalg.eigh(a)
    if lam.min() < -1e-8 * max(1.0, abs(lam.max())):
        raise ValueError(f"matrix is not positive semi-definite: smallest eigenvalue {lam.min():.3g}")
    return (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T


def gaussian_fit(features):
    """Mean (D,) and unbiased covariance (D, D) of feature rows (n, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must have shape (n, D) with n >= 2, got {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, cov1, mu2, cov2):
    """d² = |μ1 − μ2|² + tr(C1) + tr(C2) − 2 tr((C1^½ C2 C1^½)^½); ≥ 0, = 0 iff equal Gaussians."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = _symmetric(np.atleast_2d(cov1), "cov1"), _symmetric(np.atleast_2d(cov2), "cov2")
    if not (mu1.shape == mu2.shape and cov1.shape == cov2.shape == mu1.shape * 2):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, cov1 {cov1.shape}, mu2 {mu2.shape}, "
                         f"cov2 {cov2.shape}; expected (D,) means and (D, D) covariances")
    s1 = sqrtm_psd(cov1)
    lam = np.linalg.eigvalsh(0.5 * (s1 @ cov2 @ s1 + (s1 @ cov2 @ s1).T))
    cross = np.sqrt(np.clip(lam, 0.0, None)).sum()
    d2 = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * cross)
    return max(d2, 0.0)  # NOTE: rounding can give -1e-12 for identical Gaussians


def frechet_distance_of_features(features1, features2):
    """The Fréchet distance between Gaussian fits of two feature sets (n1, D) and (n2, D)."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))
