"""Time scratchgen against numpy's BLAS and PyTorch, on the machine at hand; ratios first.

    python -m scratchgen.bench                  # or: scratchgen bench (all sections)
    python -m scratchgen.bench --only matmul    # every product the presets compute, vs np.matmul
    python -m scratchgen.bench --only conv      # every conv layer of DCGAN and VQ-VAE, vs PyTorch
    python -m scratchgen.bench --only steps     # whole training steps, vs PyTorch
    python -m scratchgen.bench --only epoch     # a whole VAE epoch, vs the same training in PyTorch
    python -m scratchgen.bench --only memory    # resident memory over 1,000 steps
    python -m scratchgen.bench --only coldstart # Numba compile time from an empty cache, then again

Every comparison is made *in the same run*, because a shared machine can be 1.5x slower from one
minute to the next, and each library (and each thread count) runs in a process of its own,
because two thread pools in one process disturb each other. ``--threads 1,2`` (the default: 1
and all cores) sets how many threads each side gets. On one thread, times are the CPU time of
the thread (steady on a busy machine); on more, wall time — check the load (``uptime``) first.
PyTorch is looked for in this interpreter, then in ``$SCRATCHGEN_TORCH_PYTHON``; it is never a
dependency. Kernels are called once before timing, so compilation is not counted; the
``coldstart`` section measures it.
"""
import os

# NOTE: this must precede the first numpy import, as in scratchgen/__init__.py: it keeps OpenBLAS's
# thread pool from spinning after each call and starving Numba's. OpenMP's wait policy is left to each
# library's defaults (libgomp spins a few ms, then sleeps), in our processes and in PyTorch's: setting
# OMP_WAIT_POLICY=PASSIVE for both, as this benchmark once did, made PyTorch's 2-thread VQ-VAE step
# 10-30% slower (medians of 3 and 2 alternating rounds, 129 against 115 ms and 142 against 106 ms).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from .kernels import conv as _conv  # noqa: E402
from .kernels import layouts as _layouts  # noqa: E402
from .kernels import matmul as _matmul  # noqa: E402
from .kernels import matmul_numba as _matmul_numba  # noqa: E402

SECTIONS = ("matmul", "conv", "autograd", "steps", "epoch", "memory", "coldstart")


# ---------------------------------------------------------------------------- timing
def _clock(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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


# ---------------------------------------------------------------------------- sections
def first_calls():
    """Seconds for the first call of each kernel in this process: JIT compilation on a cold cache,
    loading compiled code from Numba's cache (``__pycache__``) on a warm one."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a, b = rng.random((1, 8, 8), dtype=dtype), rng.random((1, 8, 8), dtype=dtype)
        for kernel in ("dot", "axpy"):
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


def autograd_overhead(n_ops=10_000, repeats=5):
    """Microseconds per op to build, and to backpropagate through, a chain of ``n_ops`` tiny ops
    (``x = x * 1.0001 + 0.0`` on a one-element tensor): the engine's own cost, not the maths. Medians of
    ``repeats`` chains, with Python's garbage collector on and off in turn.

    NOTE: one chain each, as it once was, the row with the collector on swung from 2.5 to 19.8 µs per op
    for the backward pass between runs of the benchmark (2026-12-07, AMD EPYC Zen 3): whether one of
    the collector's full passes over every object of the process fell inside the timed loop or not.

    Returns None until ``scratchgen.autograd`` exists.
    """
    try:
        from scratchgen.autograd import Tensor
    except ImportError:
        return None
    times = {True: [], False: []}
    for _ in range(repeats):
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
            times[gc_on].append(((built - start) / n_ops * 1e6, (done - built) / n_ops * 1e6))
    return [(gc_on, float(np.median([b for b, _ in times[gc_on]])), float(np.median([d for _, d in times[gc_on]])))
            for gc_on in (True, False)]


def coldstart(argv=("train", "vae", "--data", "digits8", "--epochs", "1")):
    """Run ``scratchgen ARGV`` twice in fresh processes sharing one empty Numba cache folder:
    [(wall s, Numba compile s, signatures compiled)] for the first and the second run, read from
    the line the command prints (``scratchgen.kernels.compile_time.compile_note``)."""
    import re
    import subprocess
    import sys
    import tempfile
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
        for i in range(2):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "scratchgen", *argv, "--out", os.path.join(tmp, f"run{i}")],
                                  capture_output=True, text=True, env=env, timeout=3600)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"coldstart run failed: {done.stderr.strip().splitlines()[-1:]}")
            found = re.search(r"Numba compiled (\d+) kernel signatures in ([\d.]+) s", done.stdout)
            runs.append((wall, float(found.group(2)), int(found.group(1))) if found else (wall, 0.0, 0))
    return runs


# ---------------------------------------------------------------------------- report
def _threads(text):
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2; got {text!r}")
    return values


def _ratio_line(name, cells):
    return f"{name:<40} " + "  ".join(f"{c:>18}" for c in cells)


def matmul_lines(threads, verbose, rounds=2):
    from .bench_presets import bench_products, describe
    results = bench_products(threads, rounds=rounds)
    head = [f"{t} thread{'s' if t > 1 else ''}: numpy / ours" for t in threads]
    lines = ["matmul, float32: GFLOP/s of np.matmul (OpenBLAS) / scratchgen, and scratchgen's speed as a "
             "fraction of numpy's (target >= 0.8); one thread: both libraries in one process, call by call, CPU "
             f"time; more threads: each library in processes of its own, {rounds} alternating rounds, best wall time",
             _ratio_line("products, layouts as the step used them (ᵀ: a transposed view) x batch", head)]
    for name, rows in results.items():
        totals = {t: [0.0, 0.0] for t in threads}
        worst = {t: (float("inf"), None) for t in threads}
        for product, by_t in rows:
            n, k, m, batch = product[:4]
            flops = 2 * n * k * m * batch
            cells = []
            for t in threads:
                numpy_s, ours_s = by_t[t]
                totals[t][0] += numpy_s
                totals[t][1] += ours_s
                worst[t] = min(worst[t], (numpy_s / ours_s, describe(product)))
                cells.append(f"{flops / numpy_s / 1e9:.0f}/{flops / ours_s / 1e9:.0f} {numpy_s / ours_s:.2f}")
            if verbose or name == "square":
                lines.append(_ratio_line(f"  {name}: {describe(product)}", cells))
        if name != "square":
            lines.append(_ratio_line(f"  {name}: all {len(rows)} products, total time",
                                     [f"{totals[t][0] / totals[t][1]:.2f}" for t in threads]))
            lines.append(_ratio_line(f"  {name}: slowest product",
                                     [f"{worst[t][0]:.2f} {worst[t][1]}" for t in threads]))
    return lines


def conv_lines(threads, torch_python, rounds=2, verbose=False):
    """The conv section's lines; with ``verbose``, each layer's forward pass and backward pass (both
    gradients) below it, timed apart: which part of a layer two threads speed up."""
    from .bench_presets import bench_conv_layers
    results = bench_conv_layers(threads, torch_python, rounds, parts=verbose)
    gain = 1 in threads and max(threads) > 1        # a last column: more threads' wall time over one's
    lines = ["conv forward + both gradients, ms: PyTorch / scratchgen and scratchgen's time as a multiple of "
             "PyTorch's (target <= 1.0)" + ("; last column: wall time on " + str(max(threads)) + " threads / on 1, "
                                            "scratchgen's (target <= 0.6) and PyTorch's beside it, which shows what "
                                            "the layer allows (meaningless when the load exceeds the cores)"
                                            if gain else ""),
             _ratio_line("layer", [f"{t} thread{'s' if t > 1 else ''}" for t in threads]
                         + (["threads gain, ours / PyTorch's"] if gain else []))]
    for name, rows in results.items():
        for layer, by_t in rows:
            c_in, c_out = (layer["w"][0], layer["w"][1]) if layer["kind"] == "conv_transpose2d" \
                else (layer["w"][1], layer["w"][0])
            label = (f"  {name} {'convT' if layer['kind'] == 'conv_transpose2d' else 'conv'} {c_in}->{c_out} "
                     f"{layer['w'][2]}x{layer['w'][3]} s{layer['stride'][0]} {layer['x'][2]}x{layer['x'][3]}")
            parts = (label, "    forward alone", "    backward alone")[:len(by_t[threads[0]])]
            lines += [_ratio_line(part, _conv_cells(threads, {t: by_t[t][i] for t in threads}))
                      for i, part in enumerate(parts)]
    return lines


def _conv_cells(threads, times):
    """A conv row's cells from ``times`` {T: (ours s, PyTorch's s or None, our wall s, PyTorch's wall s or None)}:
    PyTorch / ours and the ratio for each thread count, then (with 1 and more threads) the wall time on the
    most over one, ours and, where it was timed, PyTorch's: a layer whose two threads gain little in both
    libraries is bound by something neither library's kernels control (the memory's speed, say)."""
    cells = []
    for t in threads:
        ours, theirs = times[t][:2]
        cells.append(f"{theirs * 1e3:.1f}/{ours * 1e3:.1f} {ours / theirs:.2f}" if theirs else f"-/{ours * 1e3:.1f}")
    if 1 in threads and max(threads) > 1:      # wall time on both sides
        most, one = times[max(threads)], times[1]
        cells.append(f"{most[2] / one[2]:.2f}" + (f" / {most[3] / one[3]:.2f}" if most[3] and one[3] else ""))
    return cells


def core_speeds(seconds=0.05):
    """{core: speed relative to the fastest} for the cores this process may run on, measured now: one
    thread pinned to each core in turn runs the same one-thread Numba loop (``threads.one_thread_madds``)
    for ``seconds``, and a core's speed is how many calls it got through (a core another program shares
    in time slices then counts as slow, as it is for our threads). None where a thread cannot be pinned
    (not Linux) or there is only one core.

    Why: a kernel's threads finish together only if the cores run alike. On a laptop with performance
    and efficiency cores, next to another busy program, or on a virtual machine whose host shares out
    the cores unevenly, one core may run at a fraction of another's speed, and two threads then save far
    less than half the time (appendix A, §A.13). The speeds drift from minute to minute on such a machine,
    so this is a snapshot, taken just before the sections run. The thread's own affinity is restored."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    from .kernels.threads import one_thread_madds
    a, b = np.ones((32, 64), np.float32), np.ones((64, 64), np.float32)
    c = np.zeros((32, 64), np.float32)
    one_thread_madds(a, b, c)                                         # compiled (or loaded) before any timing
    rate = {}
    try:
        for core in cores:
            os.sched_setaffinity(0, {core})                 # this thread only: pid 0 is the caller
            one_thread_madds(a, b, c)                                 # on the core before the clock starts
            started, calls = time.perf_counter(), 0
            while calls < 5 or time.perf_counter() - started < seconds:
                one_thread_madds(a, b, c)
                calls += 1
            rate[core] = calls / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, set(cores))
    fastest = max(rate.values())
    return {core: r / fastest for core, r in rate.items()}


def core_speeds_line(speeds):
    """One line naming each core's speed relative to the fastest, or why there is none."""
    if speeds is None:
        return "core speeds: not measured (one core, or this OS cannot pin a thread to a core)"
    text = ", ".join(f"cpu{core} {speed:.2f}" for core, speed in speeds.items())
    note = ("" if min(speeds.values()) >= 0.9 else
            "; the cores run unequally now, and two-thread times depend on which one a process gets")
    return f"core speeds now (one thread pinned to each in turn, 1.00 = the fastest): {text}{note}"


def _load():
    try:
        return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scratchgen bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SECTIONS, help="one section")
    parser.add_argument("--threads", type=_threads, default=(1, os.cpu_count() or 1),
                        help="thread counts to compare, e.g. 1,2 (default: 1 and all cores)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="processes per library and setting, alternating (default 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per process")
    parser.add_argument("--memory-steps", type=int, default=1000,
                        help="steps over which the memory section measures growth")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--verbose", action="store_true", help="every matmul shape, not only summaries; each conv layer's forward and backward passes apart")
    args = parser.parse_args(argv)
    threads = tuple(sorted(set(args.threads)))
    import numba

    from .bench_steps import torch_python
    python = None if args.no_torch else torch_python()
    sections = [args.only] if args.only else list(SECTIONS)

    def say(*lines):
        print("\n".join(lines), flush=True)

    say(f"numpy {np.__version__}, numba {numba.__version__}, PyTorch: {python or 'not found'}; "
        f"{os.cpu_count()} cores; threads compared: {', '.join(map(str, threads))}; {_load()}",
        core_speeds_line(core_speeds()))
    if "matmul" in sections:
        say("", *matmul_lines(threads, args.verbose, args.rounds))
        np_ms, nb_ms, alt_ms = bench_alternating(5)
        say(f"numpy and Numba matmul called in turn in one process ({numba.get_num_threads()} threads): "
            f"{alt_ms:.3f} ms/call against {np_ms:.3f} / {nb_ms:.3f} alone (about their mean = no fight)")
    if "conv" in sections:
        say("", *conv_lines(threads, python, args.rounds, args.verbose), _load())
    if "autograd" in sections:
        say("", "autograd overhead, µs per op (10,000-op chain, medians of 5): build / backward")
        for gc_on, build, back in autograd_overhead() or []:
            say(f"  gc {'on' if gc_on else 'off'}: {build:.1f} / {back:.1f}")
    if "steps" in sections:
        from .bench_steps import WARMUP, bench_steps, format_rows
        say("", f"training steps ({args.steps} per process after {WARMUP} untimed, "
                f"{args.rounds} alternating rounds)",
            *format_rows(bench_steps(args.rounds, threads, steps=args.steps, torch=python is not None)),
            _load())
    if "epoch" in sections:
        from .bench_epochs import bench_epochs, format_rows as epoch_rows
        if not os.environ.get("SCRATCHGEN_DATA"):
            say("", "whole epochs: skipped, they read MNIST: set SCRATCHGEN_DATA to the folder holding mnist/")
        else:
            say("", "whole epochs: `scratchgen train vae --preset pytorch-examples` and the same training in PyTorch "
                    f"(pytorch/examples vae/main.py), 1 epoch per process, {args.rounds} alternating rounds",
                *epoch_rows(bench_epochs(args.rounds, threads, python=python)), _load())
    if "memory" in sections:
        from .bench_steps import bench_steps, format_rows
        say("", f"memory: peak resident set, and growth over {args.memory_steps} further steps (1 thread)",
            *format_rows(bench_steps(1, (1,), steps=5, memory_steps=args.memory_steps,
                                     torch=python is not None)))
    if "coldstart" in sections:
        (wall1, comp1, n1), (wall2, comp2, n2) = coldstart()
        say("", "cold start: `scratchgen train vae --data digits8 --epochs 1` twice, empty Numba cache",
            f"  first run:  {wall1:.1f} s, of which compiling {n1} kernel signatures {comp1:.1f} s",
            f"  second run: {wall2:.1f} s, {n2} signatures compiled ({comp2:.1f} s)"
            + ("  (ok: all loaded from the cache)" if n2 == 0 else "  (NOT ok: compiled again)"))
    if "matmul" in sections or not args.only:
        say("", "first call of each kernel in this process, s (compile on a cold cache, load on a warm one):",
            *[f"  {name:<46} {t:6.2f}" for name, t in first_calls()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
