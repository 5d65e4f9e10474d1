"""The matmul kernels' block and tile sizes, and the shape thresholds that choose between the kernels.

The kernels read these as constants: Numba takes a module's globals as fixed numbers when it
compiles a function, so a loop over ``TILE_ROWS`` rows has a constant trip count LLVM can unroll.
The register tile's shape comes from what the CPU reports (``cpu.register_tile_shape``); where a
number came from a measurement, the measurement is written beside it.
"""
from ..cpu import register_tile_shape, vector_registers


# NOTE: "reassoc" lets LLVM split a sum over k into several partial sums (that is what makes the
# dot-product loop vectorise) and "contract" lets it fuse a*b + c into one FMA. Results then differ
# from a left-to-right sum by rounding only; NaN and inf keep their meaning (no "fast" flag).
FASTMATH = {"reassoc", "contract"}
ROW_BLOCK = 64          # rows of A (and C) in one parallel task of the dot kernel or the strips, at most
COL_BLOCK = 256         # rows of Bᵀ (columns of C) in one task: 256 rows of a K block stay in L2
K_BLOCK_BYTES = 4096    # inner dimension handled per pass: 8 rows of it (a 4x4 tile) fit in L1
AXPY_COL_BLOCK = 512    # columns of out in one axpy task: long rows amortise each strip's set-up
AXPY_K_BLOCK = 128      # rows of b per pass: a 128 x 512 block of b stays in L2
TILE_ROW_BLOCK = 32     # rows of a per task of the register tiles (rounded down to whole tiles)
# inner dimension from which the axpy order runs on register tiles, not strips: a tile's fixed cost
# (zeroing, adding into out) is worth 40-80 steps of k, and with k = 16 the tiles ran 64 x 16 @ 16 x 25088
# at 0.69-0.76 of numpy, the strips at 1.04; from k = 128 on the tiles won (e.g. 784 x 128ᵀ @ 128 x 400
# 0.85 -> 0.89, 400 x 128ᵀ @ 128 x 784 0.83 -> 0.90; one thread, Zen 4; appendix A, §A.8)
TILE_MIN_K = 128
PAD_BYTES = 64          # one cache line added to each packed row (see matmul_axpy)
# an a of at most this many bytes runs on ``matmul_tiles_small_a`` (packed whole, once per thread): the L2
# of the smallest core among the project's CPUs (AMD Zen 3: 512 KB; on it, the VAE's 128 x 784 a, 392 KB,
# still ran 0.88 -> 0.93 of numpy's time with it)
SMALL_A_BYTES = 512 * 1024
# a product with a narrow output and fewer multiply-adds than this runs on the narrow kernels, on the
# calling thread, with no pool and no Python bookkeeping (matmul_3d): at ~100 GFLOP/s that is 80 µs of
# work, which two threads would cut by 40 µs, about what the bookkeeping of a pooled call costs (8-11 µs)
# a few times over. NOTE: a shape rule, not a timed one: the narrow and the pooled kernels add in
# different orders, and a rule from measured costs (threads must save 8 measured parallel calls) sent the
# VAE's 128x400 @ 400x20 (1.0 million multiply-adds) one way in some processes and the other way in
# others, so two runs of the same seed could differ. 2^22 is far from every narrow product of the
# presets (0.2-1.0 million, and 6.4 million and more).
NARROW_MOST_WORK = 2 ** 22
AXPY_MAX_K = 256               # inner dimension below this: the axpy kernel, ...
DOT_MAX_M = 32                 # ... unless out has fewer columns than this: then the dot kernel
# a 4x4 dot tile holds 16 accumulators and 8 loaded vectors: 32 SIMD registers (AVX-512) hold
# them, 16 (AVX2) do not, and the spilled tile runs at about half speed (see choose_kernel)
DOT_TILE_FITS = vector_registers() >= 32
# the axpy kernel's register tile: TILE_ROWS rows of TILE_ROW_BYTES, as many rows as the CPU's vector
# registers hold (constants when the kernels compile: cpu.register_tile_shape says why)
TILE_ROWS, TILE_ROW_BYTES = register_tile_shape()
# the narrow tile: rows half as wide (16 float32, 8 float64), as many more as the registers hold, for
# products whose output has only half a tile row of columns (``matmul_kmajor``, ``conv_tiles``)
NARROW_ROWS, NARROW_ROW_BYTES = register_tile_shape(row_bytes=TILE_ROW_BYTES // 2)
# a narrow product with at least NARROW_TILES_MIN_ROWS output rows (four tiles of rows share each column
# of b) and NARROW_TILES_MIN_K <= k < TILE_MIN_K runs on register tiles that read b in place
# (``_few_rows_tiles``), else on the strips; below 16 steps of k a tile's fixed cost (zeroing its sums,
# storing them) outweighs what it saves: measured in ``_few_rows_tiles``
NARROW_TILES_MIN_ROWS = 4 * TILE_ROWS
NARROW_TILES_MIN_K = 16
