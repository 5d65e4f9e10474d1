"""Whole epochs: ``scratchgen train vae --preset pytorch-examples`` against the same training in PyTorch.

    python -m scratchgen.bench --only epoch       # needs MNIST: SCRATCHGEN_DATA=/path/to/data

A training step is not an epoch: an epoch also shuffles and batches the data, keeps the running
loss, and ends with a pass over the test images. Each side runs one epoch in a process of its own,
back to back, alternating which goes first:

* scratchgen: the real command, ``scratchgen train vae --preset pytorch-examples --epochs 1``; its
  epoch time is the one the trainer writes to ``metrics.csv`` (loader, steps and running means,
  from the first batch to the last);
* PyTorch: ``torch_vae_epochs`` below, our own script doing what github.com/pytorch/examples'
  vae/main.py does on a CPU — the same 784-400-20 network, summed binary cross-entropy plus KL, Adam
  1e-3, a ``DataLoader`` shuffling batches of 128 from a ``TensorDataset``, ``loss.item()`` after
  every step, then the test loss over the 10,000 test images. (That script reads MNIST through
  torchvision, turning each image into a tensor one at a time; here the images are converted once
  up front, which makes the PyTorch side a little faster than the original, not slower.)

The table gives seconds per training epoch (the ratio), the test pass, and each whole process's wall
time (imports, reading MNIST, and for scratchgen its checkpoint and figures as well), for each thread
count. PyTorch's process runs this file as a script: it never imports scratchgen.
"""
import csv
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


# ---------------------------------------------------------------------------- the PyTorch side
def _idx_images(path):
    """uint8 images (N, 28, 28) from an MNIST IDX file (gzip)."""
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 28, 28)


def torch_vae_epochs(data_dir, epochs=1, threads=1, seed=1):
    """``{"train_s": [...], "test_s": [...], "loss": ...}``: vae/main.py's training on a CPU."""
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    def dataset(name):
        images = torch.from_numpy(_idx_images(os.path.join(data_dir, "mnist", name)).copy())
        return TensorDataset(images.float().div_(255).unsqueeze(1), torch.zeros(len(images)))

    train_loader = DataLoader(dataset("train-images-idx3-ubyte.gz"), batch_size=128, shuffle=True)
    test_loader = DataLoader(dataset("t10k-images-idx3-ubyte.gz"), batch_size=128, shuffle=False)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x.view(-1, 784)))
            mu, log_var = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, log_var

    def loss_function(recon, x, mu, log_var):
        bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
        return bce - 0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())

    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    log, result = [], {"train_s": [], "test_s": []}
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        train_loss = 0.0
        for batch, (x, _) in enumerate(train_loader):
            optimizer.zero_grad()
            recon, mu, log_var = model(x)
            loss = loss_function(recon, x, mu, log_var)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            if batch % 10 == 0:     # the script prints a progress line every 10 batches
                log.append(f"epoch {epoch} [{batch * len(x)}/{len(train_loader.dataset)}] {loss.item() / len(x):.6f}")
        result["train_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for x, _ in test_loader:
                recon, mu, log_var = model(x)
                test_loss += loss_function(recon, x, mu, log_var).item()
        result["test_s"].append(time.perf_counter() - start)
        result["loss"] = train_loss / len(train_loader.dataset)
    return result


# ---------------------------------------------------------------------------- the scratchgen side
def scratchgen_vae_epochs(epochs=1):
    """``{"train_s": [...]}``: ``scratchgen train vae --preset pytorch-examples`` in this process's
    environment (a child process), its epoch times read from the run's metrics.csv."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        done = subprocess.run([sys.executable, "-m", "scratchgen", "train", "vae", "--preset", "pytorch-examples",
                               "--epochs", str(epochs), "--out", out], capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
            raise RuntimeError(f"scratchgen train vae failed: {tail[0]}")
        with open(os.path.join(out, "metrics.csv"), newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "epoch"]
    return {"train_s": [float(r["seconds"]) for r in rows], "loss": float(rows[-1]["train_loss"])}


# ---------------------------------------------------------------------------- back to back
def run_epochs(library, threads, epochs=1, python=None):
    """One process of ``library`` for ``epochs`` epochs on ``threads`` threads: its result, plus
    ``wall_s``, the whole process's wall time."""
    from .bench_steps import thread_env
    where = [python, "-P", os.path.abspath(__file__)] if library == "torch" else \
        [sys.executable, "-m", "scratchgen.bench_epochs"]
    cmd = where + [json.dumps({"library": library, "threads": threads, "epochs": epochs})]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads), timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"epoch worker {library} ({threads} threads) failed: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall_s": wall}


def bench_epochs(rounds=2, threads=(1, 2), epochs=1, python=None):
    """Rows ``{"threads", "scratchgen": [result per round], "torch": [...] or None}``, the libraries
    alternating which runs first."""
    rows = []
    for t in threads:
        libs = ["scratchgen"] + (["torch"] if python else [])
        results = {lib: [] for lib in libs}
        for r in range(rounds):
            for lib in (libs if r % 2 == 0 else libs[::-1]):
                results[lib].append(run_epochs(lib, t, epochs, python))
        rows.append({"threads": t, "scratchgen": results["scratchgen"], "torch": results.get("torch")})
    return rows


def _median(results, key):
    return statistics.median(v for res in results for v in (res[key] if isinstance(res[key], list) else [res[key]]))


def format_rows(rows):
    """Per thread count: seconds per training epoch (PyTorch / scratchgen, ratio), PyTorch's test pass,
    and the processes' wall times; medians over rounds."""
    lines = [f"{'threads':>7}  {'train epoch s, PyTorch / scratchgen':>36}  {'ratio':>6}  {'PyTorch test pass s':>19}"
             f"  {'process wall s, PyTorch / scratchgen':>36}"]
    for row in rows:
        ours, theirs = row["scratchgen"], row["torch"]
        if theirs:
            lines.append(f"{row['threads']:>7}  {_median(theirs, 'train_s'):>17.2f} / {_median(ours, 'train_s'):<16.2f}"
                         f"  {_median(ours, 'train_s') / _median(theirs, 'train_s'):>6.2f}  {_median(theirs, 'test_s'):>19.2f}"
                         f"  {_median(theirs, 'wall_s'):>17.1f} / {_median(ours, 'wall_s'):<16.1f}")
        else:
            lines.append(f"{row['threads']:>7}  {'- / ' + format(_median(ours, 'train_s'), '.2f'):>36}  {'-':>6}  {'-':>19}"
                         f"  {'- / ' + format(_median(ours, 'wall_s'), '.1f'):>36}")
    lines.append("ratio = scratchgen's seconds per training epoch / PyTorch's (target <= 1.1); the same MNIST epoch "
                 "(60,000 images, batch 128) in processes of their own, alternating; process wall time includes "
                 "imports and reading MNIST, and scratchgen's validation, checkpoint and figures")
    return lines


def _main(argv=None):
    """The worker: one JSON payload {"library", "threads", "epochs"} in, one JSON result out."""
    job = json.loads((argv or sys.argv[1:])[0])
    if job["library"] == "torch":
        result = torch_vae_epochs(os.environ["SCRATCHGEN_DATA"], job["epochs"], job["threads"])
    else:
        result = scratchgen_vae_epochs(job["epochs"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
