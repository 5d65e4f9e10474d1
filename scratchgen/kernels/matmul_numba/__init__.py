"""The Numba matmul kernels: cache-blocked loop nests, one chosen by the product's shape and layout.

``matmul(a, b)`` here is the ``"numba"`` entry of :mod:`scratchgen.kernels.matmul` (which checks the
arguments and holds the definition, ``matmul_reference``). One file per kernel family; read them in
this order:

* :mod:`.dispatch`      ``matmul``, ``matmul_3d``, ``summed_products``, and which kernel runs a product
                        (``choose_kernel``, ``narrow_plan``, ``kmajor_pays``, ``transpose_pays``)
* :mod:`.dot`           ``matmul_dot``: each C element a dot product of a row of A and a row of Bᵀ,
                        sixteen at a time in a 4x4 tile held in registers, the vector loop along k
                        (x @ Wᵀ with a long k; outputs too narrow for the axpy order);
                        ``matmul_dot_summed``: the same tiles summing a batch, Σ_z A[z] @ B[z]
* :mod:`.axpy`          ``matmul_axpy``: C rows as sums of scaled B rows ("a x plus y"), four rows by
                        four k at a time on a packed block of B, the vector loop along the output row,
                        so a short k (the 20-d latent, a convolution's few channels) costs no more
* :mod:`.tiles`         ``register_tile``: MR x NR sums kept in vector registers for the whole k loop;
                        ``matmul_tiles`` (the axpy order from TILE_MIN_K on, on packed panels) and
                        ``matmul_tiles_small_a`` (an A that fits in L2, packed whole once)
* :mod:`.kmajor`        ``matmul_kmajor``: the tiles reading a transposed A (gᵀ, g[n]ᵀ) where it lies
* :mod:`.narrow_output` ``matmul_narrow``, ``matmul_narrow_dot``: narrow outputs and few rows, on the
                        calling thread with no pool
* :mod:`.packing`       copies of operand blocks into contiguous panels, as the kernels read them
* :mod:`.blocks`        how a kernel cuts its output into the blocks its threads claim
* :mod:`.sizes`         block and tile sizes and the thresholds between kernels, with the measurements
                        behind them

Layouts: the dot kernel reads rows of A and of Bᵀ, the axpy kernel rows of B and single numbers
of A (any strides, so ``gᵀ @ x`` in a linear layer's backward pass needs no copy). The layout
helpers are in :mod:`scratchgen.kernels.layouts`; how many threads a product wakes is decided by
its size and its own timings in :mod:`scratchgen.kernels.threads`; threads take blocks one at a
time (:mod:`scratchgen.kernels.tasks`).

Two thread pools: Numba's and OpenBLAS's (NumPy's) each keep their threads busy-waiting for a
while after a call; alternating the two then made every call ~10x slower until
``OPENBLAS_THREAD_TIMEOUT`` was set (``scratchgen/__init__.py`` does it before importing numpy;
``python -m scratchgen.bench`` measures alternating calls).

The names below are what the rest of the package uses; the kernels themselves live in their
modules (``matmul_numba.kmajor.matmul_kmajor``). To replace an entry point (as the benchmark's
recorder does), replace it in :mod:`.dispatch`, where the other entry points look it up.
"""
from . import axpy, blocks, dispatch, dot, kmajor, narrow_output, packing, sizes, tiles  # noqa: F401
from .blocks import balanced_blocks, in_turn, tile_block  # noqa: F401
from .dispatch import (  # noqa: F401
    choose_kernel, copies_for_dot, kmajor_pays, matmul, matmul_3d, narrow, narrow_plan, packing_dominates,
    summed_products, transpose_pays)
from .sizes import (  # noqa: F401
    AXPY_COL_BLOCK, AXPY_K_BLOCK, AXPY_MAX_K, COL_BLOCK, DOT_MAX_M, DOT_TILE_FITS, FASTMATH, K_BLOCK_BYTES,
    NARROW_MOST_WORK, NARROW_ROW_BYTES, NARROW_ROWS, NARROW_TILES_MIN_K, NARROW_TILES_MIN_ROWS, PAD_BYTES,
    ROW_BLOCK, SMALL_A_BYTES, TILE_MIN_K, TILE_ROW_BLOCK, TILE_ROW_BYTES, TILE_ROWS)
from .tiles import register_tile, strided_tile  # noqa: F401
