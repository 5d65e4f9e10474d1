"""scratchgen.kernels as a whole: the backend switch, the kernels as plain Python with the JIT off,
memory a step keeps, and what the CPU reports.

The kernels themselves are checked against their NumPy definitions in ``test_matmul_kernels.py``,
``test_conv_kernels.py`` and ``test_elementwise_kernels.py``; how threads share their work in
``test_threads.py``.
"""
import os

import numba
import pytest

from scratchgen.kernels import conv, matmul as mm
from scratchgen.kernels.backend import BACKENDS, get_backend, set_backend, use_backend

from kernel_checks import run_python


# ---------------------------------------------------------------------- backend switch
def test_backend_switch_scopes_and_restores():
    start = get_backend()
    with use_backend("numpy"):
        assert get_backend() == "numpy"
        with use_backend("numba"):
            assert get_backend() == "numba"
        assert get_backend() == "numpy"
    assert get_backend() == start
    with pytest.raises(RuntimeError):
        with use_backend("numpy"):
            raise RuntimeError("boom")
    assert get_backend() == start
    previous = set_backend("numpy")
    try:
        assert previous == start and get_backend() == "numpy"
    finally:
        set_backend(previous)


def test_every_kernel_has_one_table_entry_per_backend_and_numpy_means_the_reference():
    from scratchgen.kernels import activations, adam, batch_norm
    tables = {"batch_norm_forward": (batch_norm.FORWARD, batch_norm.batch_norm_forward_reference),
              "batch_norm_backward": (batch_norm.BACKWARD, batch_norm.batch_norm_backward_reference),
              "leaky_relu_forward": (activations.FORWARD, activations.leaky_relu_forward_reference),
              "leaky_relu_backward": (activations.BACKWARD, activations.leaky_relu_backward_reference),
              "relu_forward": (activations.RELU_FORWARD, activations.relu_forward_reference),
              "relu_backward": (activations.RELU_BACKWARD, activations.relu_backward_reference),
              "softplus_forward": (activations.SOFTPLUS, activations.softplus_forward_reference),
              "matmul": (mm.IMPLEMENTATIONS, mm.matmul_reference),
              "conv2d_forward": (conv.FORWARD, conv.conv2d_forward_reference),
              "conv2d_grad_input": (conv.GRAD_INPUT, conv.conv2d_grad_input_reference),
              "conv2d_grad_weight": (conv.GRAD_WEIGHT, conv.conv2d_grad_weight_reference),
              "adam_update": (adam.IMPLEMENTATIONS, adam.adam_update_reference)}
    for name, (table, reference) in tables.items():
        assert set(table) == set(BACKENDS), name
        assert table["numpy"] is reference, name
        assert table["numba"] is not reference, name


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="'numba', 'numpy'"):
        set_backend("cuda")
    with pytest.raises(ValueError, match="cuda"):
        with use_backend("cuda"):
            pass


def test_backend_default_comes_from_environment():
    code = "from scratchgen.kernels.backend import get_backend; print(get_backend())"
    assert run_python(code, SCRATCHGEN_BACKEND="numpy").stdout.strip() == "numpy"
    bad = run_python(code, SCRATCHGEN_BACKEND="fortran")
    assert bad.returncode != 0 and "SCRATCHGEN_BACKEND" in bad.stderr and "'numba'" in bad.stderr


# ---------------------------------------------------------------------- without the JIT
def test_kernels_run_as_plain_python_with_jit_disabled():
    # NUMBA_DISABLE_JIT=1 turns every @njit into the Python function it decorates (for debugging
    # and reading with a debugger); the kernels must still be valid Python on tiny inputs
    result = run_python("""
        import numpy as np
        from scratchgen.kernels import conv, layouts, matmul_numba as mmn
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 6, 7))
        for kernel in ("dot", "axpy", "narrow", "kmajor"):
            assert np.allclose(mmn.matmul_3d(a, b, 2, kernel=kernel), a @ b), kernel
        tiles = np.zeros((2, 5, 7))                              # the register tiles on a heap tile
        mmn.tiles.matmul_tiles(a, b, tiles, False, False, 1)
        assert np.allclose(tiles, a @ b)
        at = np.swapaxes(rng.standard_normal((2, 6, 5)), 1, 2)
        for x, y in ((a, b[:, :, :2].copy()), (at, b[:, :, :2]), (a[:, :2], b)):   # dot, flip, rows
            assert np.allclose(mmn.matmul_3d(x, y, 2, kernel="narrow"), x @ y)
        big = rng.standard_normal((70, 70))
        assert np.array_equal(layouts.transposed(big, np.float64)[0], big.T)
        x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
        y = conv.conv2d_forward(x, w, 2, 1)
        assert np.allclose(y, conv.conv2d_forward_reference(x, w, 2, 1))
        assert np.allclose(conv.conv2d_grad_input(y, w, x.shape, 2, 1),
                           conv.conv2d_grad_input_reference(y, w, x.shape, 2, 1))
        assert np.allclose(conv.conv2d_grad_weight(x, y, w.shape, 2, 1),
                           conv.conv2d_grad_weight_reference(x, y, w.shape, 2, 1))
        from scratchgen.kernels import conv_numba                # the conv tiles on heap tiles
        assert np.allclose(conv_numba.forward(x, w, (2, 2), (1, 1), tiles=True), y)
        assert np.allclose(conv_numba.grad_input(y, w, x.shape, (2, 2), (1, 1), tiles=True),
                           conv.conv2d_grad_input_reference(y, w, x.shape, 2, 1))
        assert np.allclose(conv_numba.grad_weight(x, y, w.shape, (2, 2), (1, 1), tiles=True),
                           conv.conv2d_grad_weight_reference(x, y, w.shape, 2, 1))
        wt = rng.standard_normal((2, 7, 6))                      # b as a transposed view: packed from bᵀ
        assert np.allclose(mmn.matmul_3d(a, np.swapaxes(wt, 1, 2), 2, kernel="axpy"), a @ np.swapaxes(wt, 1, 2))
        from scratchgen.kernels import activations as act, batch_norm as bn
        for shape in [(4, 3), (4, 3, 5)]:                        # features (row sums) and planes
            xb, g, c = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(3)
            fused, reference = bn.batch_norm_forward_numba(xb, c, c, 1e-5), bn.batch_norm_forward_reference(xb, c, c, 1e-5)
            assert all(np.allclose(u, v) for u, v in zip(fused, reference))
            mean, inv_std = reference[1], reference[3]
            assert all(np.allclose(u, v) for u, v in zip(bn.batch_norm_backward_numba(g, xb, mean, inv_std, c, True),
                                                         bn.batch_norm_backward_reference(g, xb, mean, inv_std, c, True)))
            assert np.array_equal(act.leaky_relu_backward_numba(g, xb, 0.1), act.leaky_relu_backward_reference(g, xb, 0.1))
            assert np.array_equal(act.relu_forward_numba(xb), act.relu_forward_reference(xb))
        import numba
        assert numba.config.DISABLE_JIT
        print("ok")
    """, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_adam_kernel_gives_numpys_bits_also_as_plain_python():
    # with the JIT off, the kernel's scalars are NumPy scalars of the arrays' dtype, so the same
    # roundings happen in the interpreter
    result = run_python("""
        import numpy as np
        import scratchgen.optim as optim
        from scratchgen.kernels.backend import use_backend
        from scratchgen.nn import Parameter
        import numba
        assert numba.config.DISABLE_JIT
        finals = []
        for backend in ("numba", "numpy"):
            rng = np.random.default_rng(0)
            p = Parameter(rng.standard_normal((3, 4)).astype(np.float32))
            opt = optim.Adam([p], lr=0.1, weight_decay=0.01)
            with use_backend(backend):
                for _ in range(5):
                    p.grad = rng.standard_normal((3, 4)).astype(np.float32)
                    opt.step()
            finals.append(p.data)
        assert finals[0].dtype == np.float32 and np.array_equal(*finals)
        print("ok")
    """, NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------- freed memory
def test_a_step_that_frees_and_reallocates_its_arrays_takes_no_fresh_pages():
    # kernels/heap.py keeps freed memory in malloc's heap; without it (the opt-out, or another C
    # library) this loop took ~1,900 page faults per round on the project's machine
    code = """
        import resource, numpy as np
        import scratchgen.kernels as kernels
        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        def step():   # arrays of a few MB, written and freed, as a training step makes them
            arrays = [np.ones(n, np.float32) for n in (1_000_000, 800_000, 1_200_000, 500_000)]
            del arrays
        step(); step()
        before = faults()
        for _ in range(5):
            step()
        print(kernels.KEEPS_FREED_MEMORY, (faults() - before) // 5)
    """
    kept, faults = run_python(code).stdout.split()
    if kept != "True":
        pytest.skip("malloc's thresholds are only set with glibc on Linux")
    assert int(faults) < 100, faults          # 3,500 pages were written per round
    assert run_python(code, SCRATCHGEN_KEEP_FREED_MEMORY="0").stdout.split()[0] == "False"


# ---------------------------------------------------------------------- vector width
def test_the_vector_width_follows_what_the_cpu_reports():
    import scratchgen.kernels as kernels
    assert kernels.vector_width_setting("znver3", {"avx2": True, "avx512f": False}) is None
    assert kernels.vector_width_setting("znver4", {"avx2": True, "avx512f": True}) == "+prefer-256-bit"
    assert kernels.vector_width_setting("sapphirerapids", {"avx2": True, "avx512f": True}) == "-prefer-256-bit"
    from llvmlite import binding as llvm
    setting = kernels.vector_width_setting(llvm.get_host_cpu_name(), llvm.get_host_cpu_features())
    if setting and os.environ.get("NUMBA_CPU_FEATURES") is None:     # this process: the host's setting
        assert numba.config.CPU_FEATURES.endswith("," + setting)
