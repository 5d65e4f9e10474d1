"""The model families, one file each, found by name: ``models.get("vae")``, ``models.names()``.

To add a family: write ``models/<name>.py`` with ``@register class MyModel(Experiment): name =
"mymodel" ...`` (``from .registry import register``) and import it below.
"""
from .registry import REGISTRY, get, names, register
from . import autoencoder, cvae, gan, vae, vqvae  # noqa: E402,F401  (each file registers its families)

__all__ = ["REGISTRY", "get", "names", "register"]
