"""Time scratchgen's compute kernels against NumPy (and PyTorch, if it happens to be installed).

    python -m scratchgen.bench            # or: scratchgen bench
    python -m scratchgen.bench --quick    # fewer repeats
    python -m scratchgen.bench --only steps   # whole training steps of two presets (bench_steps.py)
    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python -m scratchgen.bench --cpu-time
                                          # one core each, timed by CPU time: steady on a busy machine

Everything is compared *in the same run*, because a shared machine can be 1.5x slower from one
minute to the next: each row interleaves the contenders and keeps the best of several repeats,
and the ratio column is what to read. Kernels are called once before timing, so compilation
(or loading Numba's on-disk cache) is not counted; the first-call times are printed separately.
"""
import os

# NOTE: both must precede the first numpy import and the first parallel kernel, as in
# scratchgen/__init__.py and scratchgen/kernels/__init__.py: they keep OpenBLAS's and Numba's
# (OpenMP's) thread pools from spinning after each call and starving each other.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from .kernels import conv as _conv  # noqa: E402
from .kernels import layouts as _layouts  # noqa: E402
from .kernels import matmul as _matmul  # noqa: E402
from .kernels import matmul_numba as _matmul_numba  # noqa: E402

MATMUL_SHAPES = [  # (n, k, m, dtype): an (n, k) @ (k, m) product
    (128, 128, 128, "float32"), (512, 512, 512, "float32"), (1024, 1024, 1024, "float32"),
    (128, 128, 128, "float64"), (512, 512, 512, "float64"), (1024, 1024, 1024, "float64"),
    # the MLP VAE 784-400-20 at batch 128: layers forward, and the small latent layers
    (128, 784, 400, "float32"), (128, 400, 784, "float32"),
    (128, 400, 20, "float32"), (128, 20, 400, "float32"),
    # its backward products: dW = xᵀ g (long inner dimension = batch) and dx = g Wᵀ
    (784, 128, 400, "float32"), (128, 400, 784, "float32"),
]
SECTIONS = ("matmul", "conv", "autograd", "steps")
CONV_LAYERS = [  # (name, x shape, w shape, stride, padding, transposed)
    ("conv 32->64 4x4 s2 p1 14x14", (64, 32, 14, 14), (64, 32, 4, 4), 2, 1, False),
    ("convT 128->64 4x4 s2 p1 7x7", (64, 128, 7, 7), (128, 64, 4, 4), 2, 1, True),
]


# ---------------------------------------------------------------------------- timing
_timer = time.perf_counter      # --cpu-time switches to time.thread_time


def _clock(fn):
    start = _timer()
    fn()
    return _timer() - start


def best_times(fns, repeats, budget=None):
    """Best wall time of each function, calling them in turn ``repeats`` times (interleaved, so
    a slow spell of the machine hits all of them alike). Stops early after ``budget`` seconds."""
    best = [float("inf")] * len(fns)
    started = time.perf_counter()
    for r in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], _clock(fn))
        if budget is not None and r >= 2 and time.perf_counter() - started > budget:
            break
    return best


def _torch():
    try:
        import torch
        return torch
    except Exception:  # noqa: BLE001 (not installed, or broken: either way, skip it)
        return None


# ---------------------------------------------------------------------------- the baseline
def im2col_numpy(x, kh, kw, stride, padding):
    """Patch matrix (N·Ho·Wo, C·kh·kw) by NumPy: a strided window view, then one copy."""
    sh, sw = stride
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw), (ho, wo)


class NumpyConv:
    """conv2d lowered onto numpy's BLAS matmul (im2col + matmul + col2im): the yardstick.

    Forward keeps its patch matrix for the weight gradient, as a framework would.
    """

    def __init__(self, x, w, stride, padding):
        self.x, self.w, self.stride, self.padding = x, w, (stride, stride), (padding, padding)

    def forward(self):
        n, o = self.x.shape[0], self.w.shape[0]
        self.cols, (ho, wo) = im2col_numpy(self.x, *self.w.shape[2:], self.stride, self.padding)
        out = self.cols @ self.w.reshape(o, -1).T                     # (N·L, O)
        return np.ascontiguousarray(out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2))

    def grad_weight(self, g):
        g_mat = g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])       # (N·L, O)
        return (g_mat.T @ self.cols).reshape(self.w.shape)

    def grad_input(self, g):
        n, c, h, wd = self.x.shape
        kh, kw = self.w.shape[2:]
        (sh, sw), (ph, pw) = self.stride, self.padding
        ho, wo = g.shape[2:]
        g_mat = g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])
        d_cols = (g_mat @ self.w.reshape(self.w.shape[0], -1)).reshape(n, ho, wo, c, kh, kw)
        dxp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[:, :, i: i + sh * (ho - 1) + 1: sh, j: j + sw * (wo - 1) + 1: sw] += \
                    d_cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dxp[:, :, ph: ph + h, pw: pw + wd]


# ---------------------------------------------------------------------------- sections
def first_calls():
    """Seconds for the first call of each kernel in this process: JIT compilation on a cold cache,
    loading compiled code from Numba's cache (``__pycache__``) on a warm one."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a, b = rng.random((1, 8, 8), dtype=dtype), rng.random((1, 8, 8), dtype=dtype)
        for kernel in ("dot", "axpy", "small"):
            seconds = _clock(lambda: _matmul_numba.matmul_3d(a, b, 1, kernel))
            rows.append((f"matmul {kernel} kernel {dtype}", seconds))
        big = rng.random((100, 100), dtype=dtype)
        rows.append((f"transpose {dtype}", _clock(lambda: _layouts.transposed(big, dtype))))
        x, w = rng.random((2, 3, 9, 9), dtype=dtype), rng.random((4, 3, 3, 3), dtype=dtype)

        def conv_all():
            y = _conv.conv2d_forward(x, w, 2, 1)
            _conv.conv2d_grad_input(y, w, x.shape, 2, 1)
            _conv.conv2d_grad_weight(x, y, w.shape, 2, 1)
        rows.append((f"conv2d fwd+bwd (im2col x2, col2im) {dtype}", _clock(conv_all)))
    return rows


def bench_matmul(repeats, torch=None):
    rng = np.random.default_rng(0)
    rows = []
    for n, k, m, dtype in MATMUL_SHAPES:
        a, b = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, m)).astype(dtype)
        fns = [lambda: np.matmul(a, b), lambda: _matmul.matmul(a, b)]
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            fns.append(lambda: torch.matmul(ta, tb))
        for fn in fns:
            fn()
        times = best_times(fns, repeats if n * k * m >= 2**24 else 4 * repeats, budget=10)
        gflops = [2 * n * k * m / t / 1e9 for t in times]
        kernel = _matmul_numba.choose_kernel(n, k, m, 1)
        rows.append((f"{n}x{k} @ {k}x{m}", dtype, kernel, gflops))
    return rows


def bench_alternating(repeats):
    """numpy's BLAS and the Numba kernel called in turn: each thread pool wakes up while the other
    may still be spinning. Compare with each called on its own (same shapes, per-call ms)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((128, 784)).astype(np.float32)
    b = rng.standard_normal((784, 400)).astype(np.float32)
    calls = 20

    def numpy_only():
        for _ in range(calls):
            np.matmul(a, b)

    def numba_only():
        for _ in range(calls):
            _matmul.matmul(a, b)

    def alternating():
        for _ in range(calls // 2):
            np.matmul(a, b)
            _matmul.matmul(a, b)

    times = best_times([numpy_only, numba_only, alternating], repeats)
    return [t / calls * 1e3 for t in times]


def bench_conv(repeats, torch=None):
    rng = np.random.default_rng(2)
    rows = []
    for name, x_shape, w_shape, stride, padding, transposed in CONV_LAYERS:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = (rng.standard_normal(w_shape) * 0.05).astype(np.float32)
        if transposed:
            # conv_transpose2d(x, w) is conv2d's input gradient: the conv2d maps the (bigger)
            # output back to x, so the roles of forward and grad_input swap
            h = (x_shape[2] - 1) * stride - 2 * padding + w_shape[2]
            big_shape = (x_shape[0], w_shape[1], h, h)
            base = NumpyConv(np.zeros(big_shape, np.float32), w, stride, padding)

            def ours_fwd():
                return _conv.conv2d_grad_input(x, w, big_shape, stride, padding)

            def ours_all():
                y = ours_fwd()
                _conv.conv2d_forward(y, w, stride, padding)
                _conv.conv2d_grad_weight(y, x, w.shape, stride, padding)

            def base_fwd():
                return base.grad_input(x)

            def base_all():
                y = base_fwd()
                base.x = y
                base.forward()              # d x = conv2d(g)
                base.grad_weight(x)         # d w from the patch matrix of g
        else:
            base = NumpyConv(x, w, stride, padding)

            def ours_fwd():
                return _conv.conv2d_forward(x, w, stride, padding)

            def ours_all():
                y = ours_fwd()
                _conv.conv2d_grad_input(y, w, x.shape, stride, padding)
                _conv.conv2d_grad_weight(x, y, w.shape, stride, padding)

            def base_fwd():
                return base.forward()

            def base_all():
                y = base.forward()
                base.grad_input(y)
                base.grad_weight(y)
        assert np.allclose(ours_fwd(), base_fwd(), rtol=1e-3, atol=1e-3), name
        fns = [base_fwd, ours_fwd, base_all, ours_all]
        if torch is not None:
            fns += _torch_conv(torch, x, w, stride, padding, transposed)
        for fn in fns:
            fn()
        times = best_times(fns, repeats, budget=15)
        rows.append((name, [t * 1e3 for t in times]))
    return rows


def _torch_conv(torch, x, w, stride, padding, transposed):
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)

    def fwd():
        with torch.no_grad():
            fn(tx, tw, stride=stride, padding=padding)

    def both():
        y = fn(tx, tw, stride=stride, padding=padding)
        y.backward(torch.ones_like(y))
    return [fwd, both]


def autograd_overhead(n_ops=10_000):
    """Microseconds per op to build, and to backpropagate through, a chain of ``n_ops`` tiny ops
    (``x = x * 1.0001 + 0.0`` on a one-element tensor): the engine's own cost, not the maths.

    Returns None until ``scratchgen.autograd`` exists.
    """
    try:
        from scratchgen.autograd import Tensor
    except ImportError:
        return None
    rows = []
    for gc_on in (True, False):
        (gc.enable if gc_on else gc.disable)()
        try:
            x0 = Tensor(np.ones(1), requires_grad=True)
            start = time.perf_counter()
            x = x0
            for _ in range(n_ops // 2):
                x = x * 1.0001 + 0.0
            built = time.perf_counter()
            x.sum().backward()
            done = time.perf_counter()
        finally:
            gc.enable()
        rows.append((gc_on, (built - start) / n_ops * 1e6, (done - built) / n_ops * 1e6))
    return rows


# ---------------------------------------------------------------------------- report
def _row(name, unit, baseline, ours, higher_is_better, torch_value=None, torch=False):
    """One line of the table; ratio > 1 means scratchgen is faster than the baseline."""
    def fmt(v):
        return "" if v is None else f"{v:.3g}" if v < 10 else f"{v:.1f}"
    ratio = "" if baseline is None else f"{ours / baseline if higher_is_better else baseline / ours:.2f}"
    extra = f"  {fmt(torch_value):>7}" if torch else ""
    return f"{name:<48} {unit:<8} {fmt(baseline):>8}  {fmt(ours):>10}  {ratio:>5}{extra}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scratchgen bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (best is kept)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--only", choices=SECTIONS, help="one section")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by the calling thread's CPU time, which other processes do not "
                             "inflate; only meaningful with OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1")
    args = parser.parse_args(argv)
    global _timer
    _timer = time.thread_time if args.cpu_time else time.perf_counter
    repeats = args.repeats or (3 if args.quick else 7)
    torch = None if args.no_torch else _torch()
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    import numba
    if args.cpu_time and (numba.get_num_threads() != 1 or os.environ.get("OPENBLAS_NUM_THREADS") != "1"):
        print("warning: --cpu-time counts only the calling thread; run with OPENBLAS_NUM_THREADS=1 "
              "NUMBA_NUM_THREADS=1 or the numbers are meaningless")
    first = first_calls()
    sections = {args.only} if args.only else set(SECTIONS)
    has_torch = torch is not None

    lines = [f"numpy {np.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads), "
             f"torch {torch.__version__ if has_torch else 'not installed'}; best of {repeats}, "
             f"contenders interleaved in one run; {'CPU' if args.cpu_time else 'wall'} time",
             "ratio = scratchgen's speed / the baseline's (> 1: scratchgen faster). Baselines: "
             "np.matmul (OpenBLAS); for conv2d an im2col + np.matmul lowering (bench.py); for train steps "
             "the same step in PyTorch (bench_steps.py)", "",
             f"{'benchmark':<48} {'unit':<8} {'baseline':>8}  {'scratchgen':>10}  {'ratio':>5}"
             + (f"  {'torch':>7}" if has_torch else "")]
    if "matmul" in sections:
        for shape, dtype, kernel, g in bench_matmul(repeats, torch):
            lines.append(_row(f"matmul {shape} {dtype} [{kernel}]", "GFLOP/s", g[0], g[1], True,
                              g[2] if has_torch else None, has_torch))
        np_ms, nb_ms, alt_ms = bench_alternating(repeats)
        lines.append(_row("numpy, Numba matmul alternating: each alone", "ms/call", np_ms, nb_ms, False))
        lines.append(_row("  in turn (baseline: mean alone; ratio ~1 = ok)", "ms/call",
                          (np_ms + nb_ms) / 2, alt_ms, False))
    if "conv" in sections:
        for name, ms in bench_conv(repeats, torch):
            lines.append(_row(f"{name} fwd", "ms", ms[0], ms[1], False,
                              ms[4] if has_torch else None, has_torch))
            lines.append(_row(f"{name} fwd+bwd", "ms", ms[2], ms[3], False,
                              ms[5] if has_torch else None, has_torch))
    if "autograd" in sections:
        rows = autograd_overhead()
        if rows is None:
            lines.append("autograd overhead: scratchgen.autograd not available yet")
        else:
            for gc_on, build, back in rows:
                gc_note = "gc on" if gc_on else "gc off"
                for what, us in (("build", build), ("backward", back)):
                    lines.append(_row(f"autograd 10,000-op chain, {what} ({gc_note})", "µs/op",
                                      None, us, True))
    if "steps" in sections:
        from .bench_steps import bench_steps
        for name, ours, theirs in bench_steps(repeats, torch):
            lines.append(_row(f"train step: {name}", "ms (med)", theirs, ours, False))
        if not has_torch:
            lines.append("  (train steps: install PyTorch to get its time as the baseline)")
    lines.append("")
    lines.append("first call of each kernel in this process, s (JIT compile on a cold cache, "
                 "cache load on a warm one):")
    lines += [f"  {name:<46} {t:6.2f}" for name, t in first]
    lines.append("matmul shapes: 128x784 @ 784x400 etc. are the MLP VAE's layers at batch 128; "
                 "fwd+bwd = forward, input gradient, weight gradient")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
