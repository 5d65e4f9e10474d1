"""Which implementation every kernel runs: the NumPy reference or the Numba kernel.

Every kernel in this package comes twice, registered in one table per kernel::

    IMPLEMENTATIONS = {"numpy": matmul_reference, "numba": matmul_numba.matmul}

* ``"numpy"`` runs the **reference**: the kernel's definition written with NumPy array operations,
  as its docstring's formula reads (``np.einsum`` for a sum over an index, slices for a window),
  with no loop order, blocking or threads of our own. How fast it runs is NumPy's business (an
  ``einsum`` may hand a product to BLAS); what it computes is the formula. The tests compare every
  Numba kernel with it.
* ``"numba"`` runs the fast kernel, compiled by Numba (the default).

The public functions (``matmul``, ``conv2d_forward``, ``adam_update``, ...) check their arguments
once and then call ``implementation(IMPLEMENTATIONS)``, which reads the backend on every call, so
switching is cheap and can be scoped::

    with use_backend("numpy"):
        y = matmul(a, b)          # matmul_reference

The default is read once from the environment variable ``SCRATCHGEN_BACKEND`` (``numba`` if
unset), e.g. ``SCRATCHGEN_BACKEND=numpy python -m pytest`` checks that no result depends on the
compiled kernels.
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


def implementation(table):
    """The entry of a kernel's ``{"numpy": reference, "numba": kernel}`` table for the backend in use."""
    return table[_current]
