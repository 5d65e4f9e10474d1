"""The products and convolutions the presets really compute, timed at 1 and at all threads.

    python -m scratchgen.bench --only matmul       # every matmul shape of the presets, vs numpy's BLAS
    python -m scratchgen.bench --only conv         # every conv layer of DCGAN and VQ-VAE, vs PyTorch

The shapes are not a list kept by hand: ``record`` runs one training step of each preset and
writes down every call to the Numba matmul (n, k, m, batch, and the layout of each operand) and
every ``F.conv2d`` / ``F.conv_transpose2d`` layer, so the benchmark follows the models when they
change. The layout matters as much as the shape: a layer's x @ Wᵀ reads W as a transposed view,
a convolution's weight gradient reads its patch matrix transposed, and the kernels (like BLAS)
take some layouts for free and copy others, so each product is timed in the layout the step used.

Each thread count runs in a process of its own (``NUMBA_NUM_THREADS`` = ``OPENBLAS_NUM_THREADS`` =
T). Matmul: numpy's ``np.matmul`` (OpenBLAS) and scratchgen's kernel in that process, called in
turn; on one thread the time is the thread's CPU time, which other processes on a busy machine do
not inflate, on more it is wall time. Conv: scratchgen and PyTorch each in a process of its own
(their thread pools would disturb each other), forward + both gradients of each layer.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

PRESETS = [("vae", "vae", "pytorch-examples", 128), ("cvae", "cvae", "mnist", 128),
           ("dcgan", "gan", "dcgan-mnist", 64), ("vqvae", "vqvae", "mnist", 128)]
CONV_PRESETS = ("dcgan", "vqvae")


# ---------------------------------------------------------------------------- recording
def record(names=None):
    """``{"matmul": {preset: [(n, k, m, batch), ...]}, "conv": {preset: [layer dict, ...]}}``,
    from one training step of each preset (duplicates removed, first-seen order). The steps run on the
    Numba backend whatever ``SCRATCHGEN_BACKEND`` says: the products recorded are the ones its kernels
    are asked for (the NumPy references make none)."""
    from . import functional as F
    from .bench_steps import scratchgen_step
    from .kernels import conv_numba, use_backend
    from .kernels.matmul_numba import dispatch      # where matmul() and matmul_3d() look matmul_3d up

    products, layers = {}, {}
    current = []
    original = (dispatch.matmul_3d, conv_numba.matmul_3d, F.conv2d, F.conv_transpose2d, conv_numba.summed_products)

    def note(store, item):
        store.setdefault(current[0], [])
        if item not in store[current[0]]:
            store[current[0]].append(item)

    depth = [0]

    def matmul_3d(a, b, out_batch, kernel=None):
        if depth[0] == 0:       # the caller's product, not the one it may turn into (Cᵀ = BᵀAᵀ)
            note(products, (a.shape[1], a.shape[2], b.shape[2], out_batch, layout_of(a, out_batch),
                            layout_of(b, out_batch)))
        depth[0] += 1
        try:
            return original[0](a, b, out_batch, kernel)
        finally:
            depth[0] -= 1

    def summed_products(a, b):
        note(products, (a.shape[1], a.shape[2], b.shape[2], a.shape[0], layout_of(a), layout_of(b), True))
        return original[4](a, b)

    def conv2d(x, weight, bias=None, stride=1, padding=0):
        note(layers, dict(kind="conv2d", x=x.shape, w=weight.shape, stride=stride, padding=padding,
                          output_padding=0))
        return original[2](x, weight, bias, stride, padding)

    def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
        note(layers, dict(kind="conv_transpose2d", x=x.shape, w=weight.shape, stride=stride,
                          padding=padding, output_padding=output_padding))
        return original[3](x, weight, bias, stride, padding, output_padding)

    dispatch.matmul_3d = conv_numba.matmul_3d = matmul_3d
    F.conv2d, F.conv_transpose2d, conv_numba.summed_products = conv2d, conv_transpose2d, summed_products
    try:
        with use_backend("numba"):
            for name, model, preset, batch in PRESETS:
                if names and name not in names:
                    continue
                current[:] = [name]
                step, _ = scratchgen_step(model, preset, batch)
                step()
    finally:
        (dispatch.matmul_3d, conv_numba.matmul_3d, F.conv2d, F.conv_transpose2d,
         conv_numba.summed_products) = original
    return {"matmul": products, "conv": {k: v for k, v in layers.items() if k in CONV_PRESETS}}


def layout_of(x, out_batch=1):
    """"C" if the matrices of x (..., r, c) are C-contiguous, "T" if they are transposed views of
    C-contiguous ones, "S" otherwise (strided); followed by "1" if x is one matrix shared by a batch of
    ``out_batch`` products (a convolution's weights, broadcast over its images)."""
    shared = "1" if out_batch > 1 and x.shape[0] == 1 else ""
    if x.flags.c_contiguous:
        return "C" + shared
    return ("T" if np.swapaxes(x, -1, -2).flags.c_contiguous else "S") + shared


def laid_out(x, layout):
    """x's values in ``layout`` ("C", "T" or "S": every second column of a wider array; with a "1" after
    it, only x's first matrix, shared by the batch)."""
    if layout.endswith("1"):
        x, layout = x[:1], layout[0]
    if layout == "T":
        return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
    if layout == "S":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return np.ascontiguousarray(x)


def describe(product):
    """"64x12544 @ 12544x16ᵀ x2": the shapes, a ᵀ on a transposed operand (strided: ˢ), the batch, which
    operand is one matrix shared by the batch (", a shared"), and whether the batch's products are summed."""
    n, k, m, batch, a_layout, b_layout, summed = _fields(product)
    mark = {"C": "", "T": "ᵀ", "S": "ˢ"}
    shared = [name for name, layout in (("a", a_layout), ("b", b_layout)) if layout.endswith("1")]
    return (f"{n}x{k}{mark[a_layout[0]]} @ {k}x{m}{mark[b_layout[0]]}" + (f" x{batch}" if batch > 1 else "")
            + "".join(f", {name} shared" for name in shared) + (", summed" if summed else ""))


def _fields(product):
    """(n, k, m, batch, a layout, b layout, summed) of a recorded product (older records: 4 or 6 fields)."""
    return tuple(product) + ("C", "C", False)[len(product) - 4:]


# ---------------------------------------------------------------------------- in one process
def _clock(threads):
    return time.thread_time if threads == 1 else time.perf_counter


WARM_CALLS = 10         # untimed calls of each function first, or as many as WARM_SECONDS allow (at least 2)
WARM_SECONDS = 0.2


def warm_up(fns):
    """Call each function WARM_CALLS times (fewer if that takes over WARM_SECONDS) before any is timed.

    NOTE: the first calls of a product are not what a training run meets thousands of times: the thread
    rule (``threads.ThreadChoice``) tries one thread and all in turn for its first six calls, and the
    process's allocations and the cores' speed settle. Measured (2026-12-07, AMD EPYC Zen 3, two threads,
    the VAE's 128x400 @ 400x784ᵀ in a fresh process, µs per call): 1347 1329 944 1099 780 753 705 696 647
    608, then 600-670; best of the 7 timed calls after one untimed, 716-860 against 523-565 in a loop."""
    for fn in fns:
        started = time.perf_counter()
        for call in range(WARM_CALLS):
            fn()
            if call >= 1 and time.perf_counter() - started > WARM_SECONDS:
                break


def best_of(fns, timer, repeats, budget=5.0, wall=None):
    """Best time of each function, calling them in turn (a slow spell hits all alike), after
    ``warm_up``. ``wall``, a list, receives each function's best wall time too (with ``timer`` the
    thread's CPU time)."""
    warm_up(fns)
    best = [float("inf")] * len(fns)
    best_wall = [float("inf")] * len(fns)
    started = time.perf_counter()
    for r in range(repeats):
        for i, fn in enumerate(fns):
            t, w = timer(), time.perf_counter()
            fn()
            best[i] = min(best[i], timer() - t)
            best_wall[i] = min(best_wall[i], time.perf_counter() - w)
        if r >= 2 and time.perf_counter() - started > budget:
            break
    if wall is not None:
        wall[:] = best_wall
    return best


def time_products(shapes, threads, repeats=7, library=None):
    """[(numpy s, scratchgen s)] per float32 product (n, k, m, batch[, a layout, b layout[, summed]]), in
    this process, the two called in turn; both libraries get the operands in the same layout
    (``laid_out``). With ``library`` ("numpy" or "scratchgen"), [s] of that library alone. A summed
    product, Σ_z a[z] @ b[z], is one ``np.tensordot`` over the batch and k for numpy (which turns the
    operands into two matrices for one BLAS call) and ``summed_products`` for scratchgen."""
    from .kernels import matmul_numba
    rng = np.random.default_rng(0)
    timer = _clock(threads)
    out = []
    for product in shapes:
        n, k, m, batch, a_layout, b_layout, summed = _fields(product)
        a = laid_out(rng.standard_normal((batch, n, k)).astype(np.float32), a_layout)
        b = laid_out(rng.standard_normal((batch, k, m)).astype(np.float32), b_layout)
        if summed:
            fns = {"numpy": lambda: np.tensordot(a, b, axes=([0, 2], [0, 1])),
                   "scratchgen": lambda: matmul_numba.summed_products(a, b)}
        else:
            fns = {"numpy": lambda: np.matmul(a, b), "scratchgen": lambda: matmul_numba.matmul_3d(a, b, batch)}
        fns = list(fns.values()) if library is None else [fns[library]]
        reps = repeats if n * k * m * batch >= 2**24 else 4 * repeats
        times = best_of(fns, timer, reps)
        out.append(times if library is None else times[0])
    return out


def time_convs(layers, threads, library, repeats=7, parts=False):
    """([s], [wall s]) forward + input and weight gradients per layer, with ``library`` in this
    process: the first list on this run's clock (CPU time on one thread), the second wall time. With
    ``parts``, three numbers per layer: the whole layer, its forward pass alone (no graph recorded),
    and its backward pass alone (both gradients, again and again from one graph recorded before).

    The upstream gradient (ones) is made once per layer, outside the timed calls, for both libraries:
    filling it is the harness's work, not the layer's. NOTE: made inside, as it once was, NumPy's fill of
    the output of the VQ-VAE's conv 1->64, (128, 64, 14, 14), took 0.6 ms a call (one thread, cProfile over
    300 calls, 2026-12-07, AMD EPYC Zen 3) of a layer the benchmark timed at 5.7 ms, and PyTorch's
    ``ones_like`` may use its threads where NumPy's fill never does. Leaf gradients are reset before each
    call in both libraries (PyTorch's were added up from call to call before)."""
    timer = _clock(threads)
    rng = np.random.default_rng(0)
    fns = []
    for layer in layers:
        x = rng.standard_normal(layer["x"]).astype(np.float32)
        w = (0.05 * rng.standard_normal(layer["w"])).astype(np.float32)
        args = dict(stride=layer["stride"], padding=layer["padding"])
        if layer["kind"] == "conv_transpose2d":
            args["output_padding"] = layer["output_padding"]
        fns += _conv_calls(library, layer["kind"], x, w, args, threads, parts)
    wall = []                   # (best_of warms each function up first: compiling happens there)
    return best_of(fns, timer, repeats, budget=20, wall=wall), wall


def _conv_calls(library, kind, x, w, args, threads, parts):
    """``time_convs``'s functions for one layer in ``library``: [whole layer] or, with ``parts``, [whole
    layer, forward alone, backward alone]."""
    if library == "torch":
        import torch
        torch.set_num_threads(threads)
        op, leaves, no_grad = getattr(torch.nn.functional, kind), tuple(map(torch.from_numpy, (x, w))), torch.no_grad
        for leaf in leaves:
            leaf.requires_grad_(True)

        def backward(y, again=False):
            y.backward(upstream, retain_graph=again)     # ``again``: the graph serves the next call too
    else:
        from . import functional as F
        from .autograd import Tensor, no_grad
        op, leaves = getattr(F, kind), (Tensor(x, requires_grad=True), Tensor(w, requires_grad=True))

        def backward(y, again=False):
            y.backward(upstream)                          # our graph can always be run again
    output = op(*leaves, **args)
    upstream = (torch.ones(output.shape) if library == "torch" else np.ones(output.shape, np.float32))

    def whole():
        for leaf in leaves:
            leaf.grad = None
        backward(op(*leaves, **args))

    def forward():
        with no_grad():
            op(*leaves, **args)

    def backward_alone():
        for leaf in leaves:
            leaf.grad = None
        backward(output, again=True)
    return [whole, forward, backward_alone] if parts else [whole]


# ---------------------------------------------------------------------------- across processes
def _env(threads):
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def _worker(payload, python=None, script=False):
    """Run ``_main`` with a JSON payload in a fresh process; its JSON answer."""
    where = ["-P", os.path.abspath(__file__)] if script else ["-m", "scratchgen.bench_presets"]
    done = subprocess.run([python or sys.executable, *where, json.dumps(payload)], capture_output=True,
                          text=True, env=_env(payload["threads"]), timeout=3600)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"benchmark worker failed ({payload['what']}, {payload['threads']} threads): {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_products(threads=(1, 2), extra=((1024, 1024, 1024, 1),), recorded=None, rounds=2):
    """``{preset: [(shape, {T: (numpy s, ours s)})]}`` for every recorded product (+ ``extra``).

    On one thread both libraries are timed in one process, call by call in turn (CPU time: a slow
    spell of the machine hits both alike). On more, each library runs in processes of its own,
    ``rounds`` alternating ones, best of all: their thread pools would disturb each other. (After
    a call, OpenBLAS's threads spin for a while, waiting for the next, on the cores our threads
    need: on a 2-core AMD EPYC, with numpy's calls in between, kernels that shared their work out
    in equal static parts took 4-8x their time alone.)"""
    recorded = recorded if recorded is not None else record()["matmul"]
    shapes = {"square": [tuple(s) for s in extra], **recorded}
    flat = [s for group in shapes.values() for s in group]
    times = {}
    for t in threads:
        if t == 1:
            times[t] = _worker({"what": "products", "threads": t, "shapes": flat})
            continue
        best = {"numpy": [float("inf")] * len(flat), "scratchgen": [float("inf")] * len(flat)}
        for r in range(rounds):
            for lib in (("numpy", "scratchgen") if r % 2 == 0 else ("scratchgen", "numpy")):
                got = _worker({"what": "products", "threads": t, "shapes": flat, "library": lib})
                best[lib] = [min(x, y) for x, y in zip(best[lib], got)]
        times[t] = list(zip(best["numpy"], best["scratchgen"]))
    out, i = {}, 0
    for name, group in shapes.items():
        out[name] = [(shape, {t: times[t][i + j] for t in threads}) for j, shape in enumerate(group)]
        i += len(group)
    return out


def bench_conv_layers(threads=(1, 2), torch_python=None, rounds=2, recorded=None, parts=False):
    """``{preset: [(layer, {T: [(scratchgen's s, PyTorch's s or None, scratchgen's wall s, PyTorch's wall s or
    None)]})]}``, the best of ``rounds`` alternating processes per library: one tuple for the whole layer, then,
    with ``parts``, one for its forward pass alone and one for its backward pass alone (``time_convs``)."""
    recorded = recorded if recorded is not None else record()["conv"]
    flat = [layer for group in recorded.values() for layer in group]
    per = 3 if parts else 1         # numbers per layer: the whole layer (then its forward, its backward)
    best, wall = {}, {}
    for t in threads:
        for r in range(rounds):
            libs = ["scratchgen"] + (["torch"] if torch_python else [])
            for lib in (libs if r % 2 == 0 else libs[::-1]):
                got, got_wall = _worker({"what": "convs", "threads": t, "library": lib, "layers": flat,
                                         "parts": parts},
                                        torch_python if lib == "torch" else None, script=lib == "torch")
                for store, new in ((best, got), (wall, got_wall)):
                    old = store.get((t, lib), [float("inf")] * len(flat) * per)
                    store[(t, lib)] = [min(a, b) for a, b in zip(old, new)]

    def entry(t, k):                # k: the layer's index in ``flat``
        def timed(store, lib, i):
            return store[(t, lib)][i] if (t, lib) in store else None
        return [(timed(best, "scratchgen", i), timed(best, "torch", i), timed(wall, "scratchgen", i),
                 timed(wall, "torch", i)) for i in range(k * per, (k + 1) * per)]
    out, i = {}, 0
    for name, group in recorded.items():
        out[name] = [(layer, {t: entry(t, i + j) for t in threads}) for j, layer in enumerate(group)]
        i += len(group)
    return out


def _main(argv=None):
    payload = json.loads((argv or sys.argv[1:])[0])
    if payload["what"] == "products":
        result = time_products([tuple(s) for s in payload["shapes"]], payload["threads"],
                               library=payload.get("library"))
    else:
        layers = [{k: tuple(v) if isinstance(v, list) else v for k, v in layer.items()}
                  for layer in payload["layers"]]
        result = time_convs(layers, payload["threads"], payload["library"], parts=payload.get("parts", False))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
