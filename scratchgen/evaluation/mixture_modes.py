"""Mode coverage on the 2-D Gaussian-mixture benchmarks (ring of 8, grid of 25).

The standard metric of the mode-collapse literature (Metz et al. 2017, "Unrolled Generative
Adversarial Networks"; Srivastava et al. 2017, "VEEGAN", Sec. 5.1):

* a sample is **high quality** when it lies within ``n_std = 3`` standard deviations of the
  centre of its nearest mode;
* a mode is **covered** when at least ``min_count`` high-quality samples (1 in VEEGAN) have it
  as their nearest mode.

VEEGAN draws 2,500 samples and reports both numbers averaged over runs. For data drawn from the
mixture itself the expected high-quality fraction is P(|ε| ≤ 3σ) for a 2-D standard normal ε,
1 − exp(−9/2) ≈ 0.989, not 1: that is the ceiling a perfect generator reaches.
"""
import numpy as np


def mode_coverage(samples, mixture, n_std=3.0, min_count=1):
    """Coverage statistics of ``samples`` (n, D) against a :class:`~scratchgen.data.toy.GaussianMixture`.

    Returns a dict of plain Python numbers and lists:

    ``modes_covered``          modes with at least ``min_count`` high-quality samples
    ``n_modes``                number of modes of the mixture
    ``high_quality_fraction``  fraction of samples within ``n_std`` stds of their nearest mode
    ``counts``                 high-quality samples per mode (list of length n_modes)
    ``n_samples``              n
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != mixture.dim:
        raise ValueError(f"samples must have shape (n, {mixture.dim}) to match the mixture's centres; "
                         f"got {x.shape}")
    if len(x) == 0:
        raise ValueError("mode_coverage needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain NaN or infinity; the generator has diverged")
    if n_std <= 0 or min_count < 1:
        raise ValueError(f"n_std must be positive and min_count at least 1, got {n_std}, {min_count}")
    mode, dist = mixture.nearest_mode(x)
    hq = dist <= n_std * mixture.stds[mode]
    counts = np.bincount(mode[hq], minlength=mixture.n_modes)
    return {"modes_covered": int((counts >= min_count).sum()), "n_modes": int(mixture.n_modes),
            "high_quality_fraction": float(hq.mean()), "counts": counts.tolist(), "n_samples": len(x)}


def expected_high_quality_fraction(dim, n_std=3.0):
    """P(|ε| ≤ n_std) for ε ~ N(0, I_dim): the high-quality fraction of the data itself.

    Closed forms: 1 dimension erf(n_std/√2); 2 dimensions 1 − exp(−n_std²/2).
    """
    if dim == 1:
        from math import erf, sqrt
        return erf(n_std / sqrt(2.0))
    if dim == 2:
        return float(1.0 - np.exp(-0.5 * n_std ** 2))
    raise ValueError(f"closed form given only for dim 1 and 2, got {dim}")
