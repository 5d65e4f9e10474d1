"""Whole training steps of two presets, timed beside the same step in PyTorch (if it is installed).

    python -m scratchgen.bench --only steps

* ``vae pytorch-examples``: one step of the 784-400-20 MLP VAE at batch 128 (encode, sample,
  decode, summed BCE + KL, backward, Adam), as github.com/pytorch/examples' vae/main.py does it;
* ``gan dcgan-mnist``: one iteration of the DCGAN at batch 64 (a discriminator step on real and
  fake images, then a non-saturating generator step on the same fakes, Adam β = (0.5, 0.999)).

Both run on a fixed random batch (the data loader is not timed) after a few warm-up steps. The
PyTorch networks below are written to match scratchgen's presets layer for layer (same shapes,
same losses, same optimizer settings); they exist only for this comparison, and PyTorch is never
imported unless it is installed and ``--no-torch`` is not given.
"""
import time

import numpy as np


def _scratchgen_step(model, preset, batch_size):
    """A function that runs one training step of ``scratchgen train MODEL --preset PRESET``."""
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
    return lambda: experiment.train_step((x, y))


def _torch_vae_step(torch):
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
    return step


def _torch_dcgan_step(torch):
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
    return step


STEPS = [  # (name, scratchgen model, preset, batch size, PyTorch twin)
    ("vae pytorch-examples (batch 128)", "vae", "pytorch-examples", 128, _torch_vae_step),
    ("gan dcgan-mnist (D + G step, batch 64)", "gan", "dcgan-mnist", 64, _torch_dcgan_step),
]


def _median_ms(fn, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def bench_steps(repeats, torch=None, warmup=3, per_block=5):
    """``[(name, scratchgen ms, torch ms or None)]``: medians over ``repeats`` interleaved blocks of
    ``per_block`` steps each (scratchgen's block, then PyTorch's, and again), after ``warmup`` steps."""
    rows = []
    for name, model, preset, batch_size, torch_twin in STEPS:
        contenders = [_scratchgen_step(model, preset, batch_size)]
        if torch is not None:
            torch.manual_seed(0)
            contenders.append(torch_twin(torch))
        for fn in contenders:
            for _ in range(warmup):
                fn()
        block_medians = [[] for _ in contenders]
        for _ in range(repeats):
            for i, fn in enumerate(contenders):
                block_medians[i].append(_median_ms(fn, per_block))
        ms = [float(np.median(b)) for b in block_medians]
        rows.append((name, ms[0], ms[1] if torch is not None else None))
    return rows
