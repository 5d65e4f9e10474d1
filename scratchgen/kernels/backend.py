"""Which implementation the kernel dispatch functions call: Numba (fast) or plain NumPy.

Every kernel in this package comes twice: a NumPy version that reads like the maths and a
Numba version that is fast. ``matmul``, ``conv2d_forward`` and friends look up the backend
on each call, so switching is cheap and can be scoped::

    with use_backend("numpy"):
        y = matmul(a, b)          # NumPy's own matmul

The default is read once from the environment variable ``SCRATCHGEN_BACKEND`` (``numba`` if
unset), e.g. ``SCRATCHGEN_BACKEND=numpy python -m pytest`` checks that a result does not depend
on the compiled kernels.
"""
import contextlib
import os

BACKENDS = ("numba", "numpy")


def _checked(name, where):
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; valid names are "
                         f"{', '.join(repr(b) for b in BACKENDS)}")
    return name


_current = _checked(os.environ.get("SCRATCHGEN_BACKEND", "numba").strip().lower() or "numba",
                    "environment variable SCRATCHGEN_BACKEND")


def get_backend():
    """The backend in use: ``"numba"`` or ``"numpy"``."""
    return _current


def set_backend(name):
    """Select the backend for all later kernel calls; returns the previous one."""
    global _current
    previous, _current = _current, _checked(name, "set_backend")
    return previous


@contextlib.contextmanager
def use_backend(name):
    """Use backend ``name`` inside a ``with`` block, restoring the previous one afterwards."""
    previous = set_backend(name)
    try:
        yield name
    finally:
        set_backend(previous)
