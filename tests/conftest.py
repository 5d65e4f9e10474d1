"""Shared pytest set-up: one reproducible Hypothesis profile for the whole suite.

``SCRATCHGEN_HYPOTHESIS_PROFILE=thorough pytest`` runs more (still derandomized) examples.
"""
import os

from hypothesis import HealthCheck, settings

# No deadline (the first call of a Numba kernel compiles it), few examples (every gradient check
# perturbs every element), and derandomize so a failure reproduces on every machine.
settings.register_profile("scratchgen", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", parent=settings.get_profile("scratchgen"), max_examples=300)
settings.load_profile(os.environ.get("SCRATCHGEN_HYPOTHESIS_PROFILE", "scratchgen"))
