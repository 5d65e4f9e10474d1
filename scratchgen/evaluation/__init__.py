"""Evaluating generative models: what to measure when there is no likelihood to report.

==================  ========================================================================
file                what it measures
==================  ========================================================================
mixture_modes.py    2-D mixtures: modes covered, fraction of high-quality samples (VEEGAN)
classifier.py       scratchgen-trained classifiers (MLP, LeNet-like conv): class histogram, features
frechet.py          Fréchet distance of Gaussian fits of classifier features (small FID analogue)
parzen.py           the Parzen-window log-likelihood of Goodfellow et al. 2014 (and its caveat)
vae_metrics.py      VAEs: test ELBO and its terms, IWAE NLL (k up to 5000), bits/dim, active units
bayes_classifier.py p(y|x) ∝ p(x|y) p(y) from a CVAE; conditional-sample and discriminative baselines
sample_quality.py   images of every family: conv-classifier Fréchet distance, precision/recall, confidence
==================  ========================================================================
"""
from .frechet import frechet_distance, frechet_distance_of_features, gaussian_fit, sqrtm_psd
from .mixture_modes import expected_high_quality_fraction, mode_coverage
from .parzen import parzen_log_density, parzen_log_likelihood, select_bandwidth

__all__ = ["frechet_distance", "frechet_distance_of_features", "gaussian_fit", "sqrtm_psd",
           "expected_high_quality_fraction", "mode_coverage", "parzen_log_density",
           "parzen_log_likelihood", "select_bandwidth"]
