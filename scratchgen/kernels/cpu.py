"""What the CPU reports, and what the kernels make of it: the vector width and the number of registers.

Nothing here is a number tuned on one machine: each choice follows from a property the CPU (or
LLVM, for the CPU it compiles for) reports, and each rule names the measurements behind it.

* ``vector_width_setting``: 256- or 512-bit vectors on CPUs with AVX-512 (set once, at import,
  by :mod:`scratchgen.kernels`).
* ``vector_registers``: 32 SIMD registers with AVX-512 (or on AArch64), 16 with AVX2 only. The
  4x4 dot tile of :mod:`scratchgen.kernels.matmul_numba` keeps 16 accumulators and 8 loaded
  vectors in registers, which only 32 hold; with 16 it spills, and the axpy strips serve better.
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


def vector_registers():
    """SIMD registers the compiled kernels can use: 32 with AVX-512 (and on AArch64), else 16.

    Read from the features Numba compiles for (``NUMBA_CPU_FEATURES`` if set, as when compiling
    for another CPU), else from the host's.
    """
    import numba
    from llvmlite import binding as llvm

    if platform.machine().lower() in ("arm64", "aarch64"):
        return 32
    features = numba.config.CPU_FEATURES
    if features is None:
        try:
            return 32 if llvm.get_host_cpu_features().get("avx512f") else 16
        except RuntimeError:        # LLVM could not read the host's features: assume the fewest
            return 16
    return 32 if "+avx512f" in features.split(",") else 16
