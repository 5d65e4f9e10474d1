"""What the CPU reports, and what the kernels make of it: the vector width and the number of registers.

Nothing here is a number tuned on one machine: each choice follows from a property the CPU (or
LLVM, for the CPU it compiles for) reports, and each rule names the measurements behind it.

* ``vector_width_setting``: 256- or 512-bit vectors on CPUs with AVX-512 (set once, at import,
  by :mod:`scratchgen.kernels`).
* ``vector_registers``: 32 SIMD registers with AVX-512 (or on AArch64), 16 with AVX2 only. The
  4x4 dot tile of :mod:`scratchgen.kernels.matmul_numba` keeps 16 accumulators and 8 loaded
  vectors in registers, which only 32 hold; with 16 it spills, and the axpy strips serve better.
* ``vector_bytes``: how wide the vectors of the compiled loops are (32 or 64 bytes on x86).
* ``register_tile_shape``: the rows and the row width of the matmul's register tile
  (``matmul_numba.tiles.register_tile``), from the two above.
"""
import platform

# CPUs that run a 512-bit vector instruction as two 256-bit halves (as LLVM names them)
SPLIT_512_BIT = ("znver4",)


def vector_width_setting(cpu_name, features):
    """The LLVM tuning flag for the width of Numba's vector loops on this CPU, or None to keep LLVM's.

    * AVX2 only: None (256-bit vectors, 16 registers; nothing to choose).
    * AVX-512 whose FMA units are 512 bits wide (Intel's server CPUs): ``-prefer-256-bit``. LLVM's
      tuning for them prefers 256-bit vectors, and the matmul kernel then topped out near half of
      numpy's speed: measured on this project's Xeon (one core, float32), 1024 x 1024 matmul
      65 -> 89-92 GFLOP/s against numpy's 127-136.
    * AVX-512 on a CPU that splits each 512-bit instruction in two (AMD Zen 4, ``SPLIT_512_BIT``):
      ``+prefer-256-bit``. Its FMA throughput is the same at either width, and 256-bit loads and
      stores are cheaper, while AVX-512's 32 registers (and masks) stay available to 256-bit code.
      Measured (one thread, CPU time, AMD EPYC Zen 4, load 3.8, 512-bit -> 256-bit, GFLOP/s): the
      fused convolutions of the DCGAN's 128->64 layer 77/70/67 -> 83/79/86 (forward / input / weight
      gradient), x @ Wᵀ for the VAE's 784->400 layer 85 -> 96; whole steps, DCGAN 86-88 -> 77-85 ms,
      VQ-VAE 194-201 -> 179-184 ms, VAE unchanged within noise (8.2-9.2 ms).
    """
    if not features.get("avx512f"):
        return None
    return "+prefer-256-bit" if cpu_name in SPLIT_512_BIT else "-prefer-256-bit"


def _compiled_features():
    """The CPU features Numba compiles for, as a set of names ("avx512f", "prefer-256-bit", ...)
    that are switched on: ``NUMBA_CPU_FEATURES`` if set (as scratchgen.kernels sets it), else the host's."""
    import numba
    from llvmlite import binding as llvm

    features = numba.config.CPU_FEATURES
    if features is None:
        try:
            return {name for name, on in llvm.get_host_cpu_features().items() if on}
        except RuntimeError:        # LLVM could not read the host's features: assume the fewest
            return set()
    return {name[1:] for name in features.split(",") if name.startswith("+")}


def vector_registers():
    """SIMD registers the compiled kernels can use: 32 with AVX-512 (and on AArch64), else 16.

    Read from the features Numba compiles for (``NUMBA_CPU_FEATURES`` if set, as when compiling
    for another CPU), else from the host's.
    """
    if platform.machine().lower() in ("arm64", "aarch64"):
        return 32
    return 32 if "avx512f" in _compiled_features() else 16


def vector_bytes():
    """Bytes in one vector of the compiled loops: 64 with AVX-512 unless 256-bit vectors are
    preferred (``vector_width_setting``), 32 with AVX2 (16 on AArch64's NEON)."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return 16
    features = _compiled_features()
    return 64 if "avx512f" in features and "prefer-256-bit" not in features else 32


TILE_ROW_BYTES = 128    # one row of the register tile: two cache lines, 32 float32 or 16 float64


def register_tile_shape(registers=None, vector=None, row_bytes=TILE_ROW_BYTES):
    """(MR, row bytes) of the matmul's register tile: MR rows of ``row_bytes`` (TILE_ROW_BYTES) each, as
    many rows as the vector registers hold (the CPU's ``vector_registers`` and ``vector_bytes`` by
    default). The convolutions' narrow tile asks for rows of half that width (``conv_tiles``).

    The tile keeps MR x NV vectors of running sums (NV = TILE_ROW_BYTES / vector bytes) and, as LLVM
    schedules the loop, MR more for the numbers of A it broadcasts, while the rows of B it loads are
    read straight from memory by the multiply-adds; one register is left for the compiler:

        MR = (registers - 1) // (NV + 1)       AVX2: 16 registers, NV = 4 -> MR = 3 (3 x 32 float32)
                                               Zen 4 (AVX-512, 256-bit vectors): 32, 4 -> 6 (6 x 32)
                                               AVX-512 with 512-bit vectors: 32, 2 -> 10 (10 x 32)

    Measured (one thread, CPU time, AMD EPYC Zen 4, load 1.3-1.5; the tile alone on packed panels,
    GFLOP/s; numpy's BLAS ran the 1024 x 1024 product at 99-100): compiled for AVX-512 with 256-bit
    vectors, tiles (MR x NV) 6x4 94, 6x2 94-95, 6x3 94, 5x4 94, 4x5 97, 4x3 92 (4x4 71, once, not looked into); 8x3 79 and 12x2 70
    (more than 31 registers: the sums spill to memory). Compiled for a Zen 3 (AVX2, 16 registers) and
    run on the same core: 3x4 90, 5x2 87, 3x3 88, 4x2 83; 6x2 44 and 4x3 45 (spilled). The rule picks
    6x4 and 3x4. The 512-bit case (Intel) follows from the same count and has not been measured.
    """
    registers = vector_registers() if registers is None else registers
    vector = vector_bytes() if vector is None else vector
    per_row = max(1, row_bytes // vector)
    return max(1, (registers - 1) // (per_row + 1)), row_bytes
