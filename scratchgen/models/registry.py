"""The model registry: ``scratchgen train NAME`` looks NAME up here.

Each model family is an :class:`~scratchgen.training.experiment.Experiment` subclass in its own
file, decorated with :func:`register`. ``scratchgen.models`` imports every family file, so the
registry is complete once the package is imported.
"""
REGISTRY = {}


def register(cls):
    """Class decorator: make ``cls`` available as ``scratchgen train <cls.name>``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute `name`")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two model families are both named {cls.name!r}: "
                         f"{REGISTRY[cls.name].__name__} and {cls.__name__}")
    REGISTRY[cls.name] = cls
    return cls


def names():
    return sorted(REGISTRY)


def get(name):
    """The family registered as ``name``; a ValueError listing the valid names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(names())}")
    return REGISTRY[name]
