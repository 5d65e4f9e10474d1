"""Whole training steps of three presets, each library timed in a process of its own.

    python -m scratchgen.bench --only steps       # the table; --threads 1,2 by default

* ``vae``: one step of ``scratchgen train vae --preset pytorch-examples`` (784-400-20 MLP VAE,
  batch 128: encode, sample, decode, summed BCE + KL, backward, Adam), as github.com/pytorch/examples'
  vae/main.py does it;
* ``dcgan``: one iteration of ``scratchgen train gan --preset dcgan-mnist`` (batch 64: a
  discriminator step on real and fake images, then a non-saturating generator step on the same
  fakes, Adam β = (0.5, 0.999));
* ``vqvae``: one autoencoder step of ``scratchgen train vqvae --preset mnist``.

Each (library, step, thread count) runs in a fresh Python process (``measure_step`` behind
``python -m scratchgen.bench_steps --worker ...``), because two libraries' thread pools in one
process disturb each other: PyTorch's VAE step took 29 ms there against 9.3 ms in a process of
its own. Rounds alternate the libraries (scratchgen, PyTorch, scratchgen, ...) so a slow spell of
a shared machine hits both; the table gives the median of the rounds and their spread.

Thread settings, the same budget for both: T threads means ``NUMBA_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS`` = T for scratchgen, and ``torch.set_num_threads(T)``
with ``OMP_NUM_THREADS`` = T for PyTorch (its defaults otherwise). Both keep OpenMP's default wait
policy (libgomp's threads spin a few ms after a parallel loop, then sleep), each library's best: the
benchmark once set ``OMP_WAIT_POLICY=PASSIVE`` for both, which cost PyTorch's 2-thread steps 10-30%
(and ours 5-10%; see the NOTE in ``scratchgen/kernels/__init__.py``). The table's last line says which.

The PyTorch networks below are written to match scratchgen's presets layer for layer; each twin
is checked to have the same number of parameters as the preset's network (the VQ-VAE's also the
preset options it copies, ``VQVAE_TWIN``: its codebook is a buffer, not a parameter), and a preset
whose architecture has changed since is reported as having no twin rather than compared with the
wrong network. PyTorch is never imported unless it is installed.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

# (name, scratchgen model, preset, batch size); the PyTorch twins are in TWINS below
STEPS = [
    ("vae", "vae", "pytorch-examples", 128),
    ("dcgan", "gan", "dcgan-mnist", 64),
    ("vqvae", "vqvae", "mnist", 128),
]
TITLES = {"vae": "VAE pytorch-examples, batch 128", "dcgan": "DCGAN D + G step, batch 64",
          "vqvae": "VQ-VAE mnist, batch 128"}
# untimed steps before the clock starts, for both libraries: compiling is done, and each of
# scratchgen's timed call sites has run 3 times on one thread and 3 on all (threads.ThreadChoice),
# as in every later step of a training run. NOTE: with 3, the first timed steps still tried the
# slower choice, and a choice made on a disturbed sample stayed for the rest of a 20-step process:
# 8 processes of the VAE step on two threads, medians 5.3-9.8 ms, two above 7.5 (kernel time on two
# threads 39-92%); with 10, 5.35-5.74 ms and one at 7.6 (94-99%) (2026-12-07, idle machine)
WARMUP = 10


# ---------------------------------------------------------------------------- the steps
def scratchgen_step(model, preset, batch_size):
    """(one training step of ``scratchgen train MODEL --preset PRESET``, number of parameters)."""
    from .data import DATASETS
    from .models import get
    from .random import manual_seed
    from .training.config import resolve_config

    cls = get(model)
    config = resolve_config(cls, {"preset": preset})
    manual_seed(0)
    experiment = cls(config, DATASETS[config["data"]])
    x = np.random.default_rng(0).random((batch_size, 1, 28, 28), dtype=np.float32)
    y = np.zeros(batch_size, dtype=np.int64)
    return (lambda: experiment.train_step((x, y))), experiment.net.num_parameters()


def _torch_vae(torch):
    nn, F = torch.nn, torch.nn.functional
    enc = nn.Linear(784, 400)
    mu_head, log_var_head = nn.Linear(400, 20), nn.Linear(400, 20)
    dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
    params = [*enc.parameters(), *mu_head.parameters(), *log_var_head.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.rand(128, 784)

    def step():
        h = F.relu(enc(x))
        mu, log_var = mu_head(h), log_var_head(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum")
        loss = (recon - 0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())) / len(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, params


def _torch_dcgan(torch):
    nn, F = torch.nn, torch.nn.functional
    latent, w, dw = 100, 64, 32
    G = nn.Sequential(nn.Linear(latent, 2 * w * 49, bias=False), nn.BatchNorm1d(2 * w * 49), nn.ReLU(),
                      nn.Unflatten(1, (2 * w, 7, 7)),
                      nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                      nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Sigmoid())
    D = nn.Sequential(nn.Conv2d(1, dw, 4, 2, 1), nn.LeakyReLU(0.2),
                      nn.Conv2d(dw, 2 * dw, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * dw), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(2 * dw * 49, 1))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(64, 1, 28, 28)
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)

    def step():
        fake = G(torch.randn(64, latent))
        loss_d = (F.binary_cross_entropy_with_logits(D(x), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return step, [*G.parameters(), *D.parameters()]


# the options of the vqvae preset that its twin copies (checked: a changed preset has no twin)
VQVAE_TWIN = {"codebook_size": 256, "code_dim": 16, "channels": 64, "res_channels": 32, "res_blocks": 2,
              "downsample": 2, "codebook_update": "ema", "ema_decay": 0.99, "beta": 0.25, "restart_threshold": 0.1,
              "codebook_init": "data", "likelihood": "gaussian", "arch": "residual"}


def _torch_vqvae(torch):
    """The mnist preset's autoencoder step (scratchgen/models/vqvae.py with blocks.py): two 4x4
    stride-2 convolutions and a 3x3 one (64 channels), two residual blocks (ReLU, 3x3 conv to 32
    channels, ReLU, 1x1 conv back, skip) and a ReLU, a 1x1 convolution to D = 16; K = 256 codewords
    moved by moving averages (decay 0.99) with dead-code restarts (usage below 0.1/K), commitment
    loss β = 0.25; the decoder mirrors the encoder with two 4x4 stride-2 transposed convolutions.
    Adam, lr 1e-3, batch 128."""
    nn, F = torch.nn, torch.nn.functional
    o = VQVAE_TWIN
    C, R, D, K = o["channels"], o["res_channels"], o["code_dim"], o["codebook_size"]
    beta, decay, threshold = o["beta"], o["ema_decay"], o["restart_threshold"]

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv3, self.conv1 = nn.Conv2d(C, R, 3, padding=1), nn.Conv2d(R, C, 1)

        def forward(self, x):
            return x + self.conv1(F.relu(self.conv3(F.relu(x))))

    def stack():
        return [Residual(), Residual(), nn.ReLU()]

    enc = nn.Sequential(nn.Conv2d(1, C, 4, 2, 1), nn.ReLU(), nn.Conv2d(C, C, 4, 2, 1), nn.ReLU(),
                        nn.Conv2d(C, C, 3, padding=1), *stack(), nn.Conv2d(C, D, 1))
    dec = nn.Sequential(nn.Conv2d(D, C, 3, padding=1), *stack(),
                        nn.ConvTranspose2d(C, C, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(C, 1, 4, 2, 1))
    params = [*enc.parameters(), *dec.parameters()]     # the codebook is a buffer (moving averages)
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.rand(128, 1, 28, 28)
    with torch.no_grad():                               # codewords start on encoder outputs (init="data")
        first = enc(x).permute(0, 2, 3, 1).reshape(-1, D)
        codebook = first[torch.randperm(len(first))[:K]].clone()
    count, total, usage = torch.ones(K), codebook.clone(), torch.full((K,), 1 / K)

    def step():
        z_e = enc(x)                                                   # (N, D, 7, 7)
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, D)
        dist = (flat * flat).sum(1, keepdim=True) - 2 * flat @ codebook.T + (codebook * codebook).sum(1)
        k = dist.argmin(1)
        e = codebook[k].reshape(z_e.shape[0], 7, 7, D).permute(0, 3, 1, 2)
        used = torch.bincount(k, minlength=K).float()                  # moving averages, then e_k = s_k / n_k
        count.mul_(decay).add_(used, alpha=1 - decay)
        total.mul_(decay).add_(torch.zeros_like(total).index_add_(0, k, flat), alpha=1 - decay)
        codebook.copy_(total / count[:, None])
        usage.mul_(decay).add_(used / len(k), alpha=1 - decay)        # dead-code restarts
        dead = torch.nonzero(usage < threshold / K).flatten()
        if len(dead):
            rows = flat[torch.randint(len(flat), (len(dead),))]
            codebook[dead], count[dead], total[dead], usage[dead] = rows, 1.0, rows, 1 / K
        p = used[used > 0] / len(k)
        terms = [F.mse_loss(e, z_e.detach()), torch.exp(-(p * p.log()).sum())]   # logged: codebook loss, perplexity
        commitment = F.mse_loss(z_e, e)
        recon = F.mse_loss(dec(z_e + (e - z_e).detach()), x)          # straight-through
        loss = recon + beta * commitment
        opt.zero_grad()
        loss.backward()
        opt.step()
        return [loss.item(), recon.item(), commitment.item()] + [t.item() for t in terms]
    return step, params


TWINS = {"vae": _torch_vae, "dcgan": _torch_dcgan, "vqvae": _torch_vqvae}


# ---------------------------------------------------------------------------- one process
def _rss_mb():
    """Resident memory now (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb():
    """This process's peak resident memory: Linux's VmHWM, else ``ru_maxrss``.

    NOTE: on Linux ``ru_maxrss`` is not this program's own peak. A child started by fork + exec keeps
    the parent's peak as its floor (measured: a child of a 640 MB parent reported 637 MB, VmHWM 13 MB),
    so the workers of ``scratchgen bench``, started after its matmul and conv sections, all reported
    the parent's 515 MB. VmHWM belongs to the memory of the program now running, so it starts again at exec.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024                       # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB on Linux


def measure_step(library, name, threads, steps=20, warmup=WARMUP, memory_steps=0):
    """Time ``steps`` training steps of ``name`` with ``library`` in *this* process.

    Returns ``{"ms": [per-step wall ms], "cpu_ms": [...], "peak_rss_mb", "params",
    "growth_kb_per_step"}``; growth is measured only if ``memory_steps`` > 0, as the change in
    resident memory over that many further steps divided by their number. ``warmup`` untimed
    steps come first.
    """
    _, model, preset, batch_size = next(s for s in STEPS if s[0] == name)
    differs = []
    if library == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        step, params = TWINS[name](torch)
        n_params = sum(p.numel() for p in params)
    else:
        step, n_params = scratchgen_step(model, preset, batch_size)
        if name == "vqvae":     # the twin copies these options: report any the preset has changed
            from .models import get
            from .training.config import resolve_config
            options = resolve_config(get(model), {"preset": preset})["options"]
            differs = sorted(k for k, v in VQVAE_TWIN.items() if options.get(k) != v)
    for _ in range(warmup):
        step()
    if library != "torch":
        from .kernels.threads import time_on_threads
        before = time_on_threads()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    result = {"ms": wall, "cpu_ms": cpu, "params": int(n_params), "differs": differs}
    if library != "torch":      # the share of the timed kernels' time that ran on all threads
        (on_all, total), (on_all0, total0) = time_on_threads(), before
        result["threaded_share"] = (on_all - on_all0) / (total - total0) if total > total0 else None
    if memory_steps:
        before = _rss_mb()
        for _ in range(memory_steps):
            step()
        result["growth_kb_per_step"] = (_rss_mb() - before) * 1024 / memory_steps
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def thread_env(threads):
    """Environment for a process of either library limited to ``threads`` threads."""
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_in_process(library, name, threads, steps=20, warmup=WARMUP, memory_steps=0, python=None):
    """``measure_step`` in a fresh process (``python``: the interpreter, e.g. one with PyTorch)."""
    # PyTorch's process runs this file as a script, so it never imports scratchgen (nor Numba)
    # (-P: without its folder on sys.path, where scratchgen/random.py would hide the standard one)
    where = ["-P", os.path.abspath(__file__)] if library == "torch" else ["-m", "scratchgen.bench_steps"]
    cmd = [python or sys.executable, *where, "--worker", library, name, "--threads", str(threads),
           "--steps", str(steps), "--warmup", str(warmup), "--memory-steps", str(memory_steps)]
    env = thread_env(threads)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"benchmark worker {library} {name} ({threads} threads) failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_python():
    """An interpreter that can import torch: this one, or $SCRATCHGEN_TORCH_PYTHON; None if neither."""
    for python in (sys.executable, os.environ.get("SCRATCHGEN_TORCH_PYTHON")):
        if python and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


# ---------------------------------------------------------------------------- the comparison
def bench_steps(rounds=2, threads=(1, 2), names=None, steps=20, warmup=WARMUP, memory_steps=0, torch=True):
    """Rows ``{"name", "threads", "scratchgen": [...], "torch": [...] or None, ...}``.

    For each step and thread count, ``rounds`` rounds alternate the libraries, each round a
    fresh process per library; each library's list holds one median per round (ms).
    """
    python = torch_python() if torch else None
    rows = []
    for name, *_ in STEPS:
        if names and name not in names:
            continue
        for t in threads:
            libs = ["scratchgen"] + (["torch"] if python else [])
            medians = {lib: [] for lib in libs}
            cpu = {lib: [] for lib in libs}
            info, shares = {}, []
            for r in range(rounds):
                for lib in (libs if r % 2 == 0 else libs[::-1]):
                    res = run_in_process(lib, name, t, steps, warmup, memory_steps if r == 0 else 0,
                                         python if lib == "torch" else None)
                    medians[lib].append(statistics.median(res["ms"]))
                    cpu[lib].append(statistics.median(res["cpu_ms"]))
                    info.setdefault(lib, res)
                    if res.get("threaded_share") is not None:
                        shares.append(res["threaded_share"])
            twin_ok = (python is not None and info["torch"]["params"] == info["scratchgen"]["params"]
                       and not info["scratchgen"].get("differs"))
            rows.append({"name": name, "threads": t, "scratchgen": medians["scratchgen"],
                         "torch": medians["torch"] if twin_ok else None,
                         "cpu": {lib: cpu[lib] for lib in libs},
                         "params": {lib: info[lib]["params"] for lib in libs},
                         "differs": info["scratchgen"].get("differs", []),
                         "peak_rss_mb": {lib: info[lib]["peak_rss_mb"] for lib in libs},
                         "growth_kb_per_step": {lib: info[lib].get("growth_kb_per_step") for lib in libs},
                         "threaded_share": statistics.median(shares) if shares and t > 1 else None})
    return rows


def _spread(values):
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def format_rows(rows):
    """The issue's table: per step and thread count, PyTorch and scratchgen ms and the time ratio."""
    lines = [f"{'training step':<34} {'threads':>7}  {'PyTorch ms (range)':>20}  {'scratchgen ms (range)':>22}"
             f"  {'time ratio':>10}  {'CPU ratio':>9}  {'peak RSS MB (torch / ours)':>26}"]
    for row in rows:
        ours = row["scratchgen"]
        theirs = row["torch"]
        ratio = f"{statistics.median(ours) / statistics.median(theirs):.2f}" if theirs else "-"
        cpu_ratio = (f"{statistics.median(row['cpu']['scratchgen']) / statistics.median(row['cpu']['torch']):.2f}"
                     if theirs else "-")
        if theirs is None and row.get("differs"):
            note = f"no PyTorch twin (preset changed: {', '.join(row['differs'])})"
        elif theirs is None and "torch" in row["params"]:
            note = f"no PyTorch twin ({row['params']['torch']:,} vs {row['params']['scratchgen']:,} parameters)"
        else:
            note = _spread(theirs) if theirs else "PyTorch not found"
        rss = row["peak_rss_mb"]
        rss_text = f"{rss.get('torch', float('nan')):.0f} / {rss['scratchgen']:.0f}"
        lines.append(f"{TITLES[row['name']]:<34} {row['threads']:>7}  {note:>20}  {_spread(ours):>22}"
                     f"  {ratio:>10}  {cpu_ratio:>9}  {rss_text:>26}")
        share = row.get("threaded_share")
        if share is not None:
            lines.append(f"{'':<34} {'':>7}  scratchgen ran {100 * share:.0f}% of its timed parallel kernels' time on "
                         f"{row['threads']} threads (the rest on one: threads.ThreadChoice found them no faster)")
        growth = row["growth_kb_per_step"]
        if growth.get("scratchgen") is not None:
            lines.append(f"{'':<34} {'':>7}  memory growth, KiB per step: PyTorch "
                         f"{growth.get('torch', float('nan')):.2f}, scratchgen {growth['scratchgen']:.2f}")
    lines.append("time ratio = scratchgen's median wall time / PyTorch's (<= 1.0: scratchgen as fast or faster), "
                 "medians of per-round medians, range over rounds, each library in its own process; CPU ratio = "
                 "the same for process CPU time per step (steadier on a busy machine; at 1 thread it is the work)")
    lines.append(f"thread settings, T threads: {_settings_text()}")
    return lines


def _settings_text():
    """What each library's process is given (the module docstring says why)."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    return ("NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS = T for both, and "
            "torch.set_num_threads(T); " + (f"OMP_WAIT_POLICY={policy} for both (from the environment)" if policy
                                             else "OpenMP's wait policy each library's own default (libgomp: spin a few ms, then sleep)"))


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m scratchgen.bench_steps")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "STEP"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--memory-steps", type=int, default=0)
    args = parser.parse_args(argv)
    library, name = args.worker
    print(json.dumps(measure_step(library, name, args.threads, args.steps, args.warmup, args.memory_steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
