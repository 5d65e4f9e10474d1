"""The VAE model family on the bundled 8x8 digits: training, the loss terms exactly as documented
(β, KL warm-up, free bits), the architectures and likelihoods, and a checkpoint used in a fresh
process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli
from scratchgen.data import DATASETS, ArrayDataset, DataLoader, load
from scratchgen.models.vae import VAE
from scratchgen.random import get_rng, manual_seed
from scratchgen.autograd import Tensor
from scratchgen.training.config import load_run, resolve_config

REPO = Path(__file__).resolve().parent.parent
DIGITS = DATASETS["digits8"]


def make(**given):
    """A VAE on digits8 built the way `scratchgen train vae` builds it (options as on the command line)."""
    config = resolve_config(VAE, {"latent": 3, "hidden": [32], **given})
    manual_seed(config["seed"])
    return VAE(config, DIGITS)


def softplus(a):
    return np.logaddexp(0.0, a)


def by_hand(model, x, eps):
    """Per-example reconstruction log q(x|z) and per-dimension KL (N, d), in float64 NumPy, from the
    networks' weights: the documented formulas written out independently of objectives.elbo."""
    w = {k: v.astype(np.float64) for k, v in model.net.state_dict().items()}
    h = np.maximum(x.reshape(len(x), -1) @ w["encoder.body.1.0.weight"].T + w["encoder.body.1.0.bias"], 0)
    mu = h @ w["encoder.mu.weight"].T + w["encoder.mu.bias"]
    lv = h @ w["encoder.log_var.weight"].T + w["encoder.log_var.bias"]
    z = mu + np.exp(0.5 * lv) * eps
    g = np.maximum(z @ w["decoder.net.0.0.weight"].T + w["decoder.net.0.0.bias"], 0)
    logits = g @ w["decoder.net.0.2.weight"].T + w["decoder.net.0.2.bias"]
    xf = x.reshape(len(x), -1)
    recon = (xf * logits - softplus(logits)).sum(axis=1)
    kl = 0.5 * (mu ** 2 + np.exp(lv) - 1.0 - lv)
    return recon, kl


@pytest.fixture(scope="module")
def digits():
    return load("digits8", "train"), load("digits8", "val")


@pytest.fixture(scope="module")
def trained(digits):
    """A small VAE trained for 6 epochs, with its validation ELBO before and after."""
    train, val = digits
    model = make(latent=4, hidden=[64], batch_size=32, lr=3e-3)
    manual_seed(1)
    before = model.evaluate(val)
    loader = DataLoader(train, batch_size=32, shuffle=True, seed=0)
    for epoch in range(6):
        for batch in loader.iter_epoch(epoch):
            model.train_step(batch)
    manual_seed(1)
    return model, before, model.evaluate(val)


def test_smoke_training_raises_the_elbo_and_beats_the_data_mean(trained, digits):
    model, before, after = trained
    train, val = digits
    assert after["elbo"] > before["elbo"] + 5.0, (before["elbo"], after["elbo"])
    x, _ = val[:]
    rec = model.reconstruct(x)

    def bce(target, p):  # summed binary cross-entropy per image
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return -(target * np.log(p) + (1 - target) * np.log(1 - p)).reshape(len(target), -1).sum(1).mean()
    mean_image = np.broadcast_to(train.data.mean(axis=0), x.shape)
    assert bce(x, rec) < bce(x, mean_image) - 3.0
    assert ((rec - x) ** 2).mean() < ((mean_image - x) ** 2).mean()


def test_evaluate_loss_is_summed_bce_plus_kl_per_image(digits):
    """The pytorch/examples convention: test loss = (Σ over images of summed BCE + KL) / N."""
    model = make()
    x, _ = digits[1][:50]
    manual_seed(3)
    eps = get_rng().standard_normal((1, 50, 3))[0]
    recon, kl = by_hand(model, x, eps)
    manual_seed(3)
    got = model.evaluate(ArrayDataset(x))
    assert got["loss"] == pytest.approx((-recon + kl.sum(1)).mean(), rel=1e-5)
    assert got["recon"] == pytest.approx(-recon.mean(), rel=1e-5)
    assert got["kl"] == pytest.approx(kl.sum(1).mean(), rel=1e-5)
    assert got["elbo"] == -got["loss"]
    for j in range(3):
        assert got[f"kl_{j}"] == pytest.approx(kl[:, j].mean(), rel=1e-4)


@pytest.mark.parametrize("beta,warmup,free_bits", [(1.0, 0, 0.0), (0.5, 4, 0.0), (1.0, 3, 0.05), (2.0, 0, 0.3)])
def test_train_step_loss_is_recon_plus_weighted_free_bits_kl(digits, beta, warmup, free_bits):
    """loss = -mean_n recon_n + w(t) Σ_j max(λ, mean_n KL_nj), w(t) = β min(1, t / warmup)."""
    model = make(beta=beta, warmup_steps=warmup, free_bits=free_bits)
    x, _ = digits[0][:40]
    for t in range(6):
        expected_w = beta if warmup == 0 else beta * min(1.0, t / warmup)
        assert model.kl_weight() == pytest.approx(expected_w)
        manual_seed(100 + t)
        eps = get_rng().standard_normal((1, 40, 3))[0]
        recon, kl = by_hand(model, x, eps)
        expected = -recon.mean() + expected_w * np.maximum(free_bits, kl.mean(axis=0)).sum()
        manual_seed(100 + t)
        terms = model.train_step((x, None))
        assert terms["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-3)
        assert terms["kl"] == pytest.approx(kl.sum(1).mean(), rel=1e-4)
        if warmup:
            assert terms["kl_weight"] == pytest.approx(expected_w)


def test_free_bits_stop_the_kl_gradient_below_the_floor(digits):
    """With λ above every dimension's batch-mean KL, the KL term is the constant d·λ: the loss's
    gradient equals the reconstruction's alone."""
    model = make(free_bits=50.0)
    x, _ = digits[0][:20]
    eps = np.random.default_rng(0).standard_normal((1, 20, 3))

    def grads(kl_weight, free_bits):
        r = model.elbo(x, kl_weight=kl_weight, free_bits=free_bits, eps=eps)
        model.optimizer.zero_grad()
        r.loss.backward()
        return r, {n: p.grad.copy() for n, p in model.net.named_parameters()}

    r, with_floor = grads(1.0, 50.0)
    assert r.kl_term.item() == pytest.approx(3 * 50.0)
    _, recon_only = grads(0.0, 0.0)
    _, plain = grads(1.0, 0.0)
    for name in with_floor:
        np.testing.assert_allclose(with_floor[name], recon_only[name], rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(plain[n], recon_only[n], atol=1e-6) for n in plain)


def test_kl_weight_is_restored_from_a_checkpoint():
    model = make(warmup_steps=10)
    x = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
    for _ in range(4):
        model.train_step((x, None))
    copy = make(warmup_steps=10)
    copy.load_state_dict(model.state_dict())
    assert copy.kl_weight() == model.kl_weight() == pytest.approx(0.4)


def test_conv_architecture_shapes_and_learning():
    model = make(arch="conv", channels=[4, 8], hidden=[16], latent=2, lr=1e-2)
    x = (np.random.default_rng(0).random((16, 1, 8, 8)) < 0.3).astype(np.float32)
    q = model.net.posterior(Tensor(x))
    assert q.loc.shape == q.log_var.shape == (16, 2)
    assert model.sample(5).shape == (5, 1, 8, 8) and model.reconstruct(x).shape == x.shape
    first = model.train_step((x, None))["loss"]
    for _ in range(30):
        last = model.train_step((x, None))["loss"]
    assert last < first - 5.0


def test_conv_architecture_refuses_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="multiples of 16; got 8x8"):
        make(arch="conv", channels=[4, 8, 16, 32])


def test_gaussian_likelihood_learns_its_variance():
    """σ-VAE: the decoder's single log σ² is a parameter; on data the model fits closely it falls."""
    model = make(likelihood="gaussian", lr=1e-2)
    x = np.random.default_rng(0).random((32, 1, 8, 8)).astype(np.float32) * 0.1 + 0.45
    start = float(model.net.log_sigma2.data.ravel()[0])
    for _ in range(40):
        model.train_step((x, None))
    assert float(model.net.log_sigma2.data.ravel()[0]) < start - 0.2
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_bernoulli_decoder_refuses_pm1_pixels():
    with pytest.raises(ValueError, match="--likelihood gaussian"):
        make(scale="pm1")
    make(scale="pm1", likelihood="gaussian")  # fine


def test_activation_and_sizes_are_configurable():
    model = make(hidden=[20, 10], latent=5, activation="tanh")
    names = dict(model.net.named_parameters())
    assert names["encoder.body.1.0.weight"].shape == (20, 64)
    assert names["encoder.body.1.2.weight"].shape == (10, 20)
    assert names["encoder.mu.weight"].shape == (5, 10)
    assert type(model.net.encoder.body[1][1]).__name__ == "Tanh"


def test_presets_are_the_published_recipes():
    pe = resolve_config(VAE, {"preset": "pytorch-examples"})
    assert (pe["data"], pe["epochs"], pe["batch_size"], pe["lr"], pe["binarize"]) == ("mnist", 10, 128, 1e-3, None)
    assert pe["train_split"] == "trainval"  # all 60,000 training images, as pytorch/examples
    assert (pe["options"]["hidden"], pe["options"]["latent"], pe["options"]["activation"]) == ([400], 20, "relu")
    b = resolve_config(VAE, {"preset": "burda-1layer"})
    assert (b["data"], b["binarize"]) == ("mnist", "dynamic")
    assert (b["options"]["hidden"], b["options"]["latent"], b["options"]["activation"]) == ([200, 200], 50, "tanh")
    assert b["options"]["iwae_k"] == 5000
    # Burda et al. 2016, section 5: Adam with beta = (0.9, 0.999), epsilon = 1e-4, batches of 20
    assert (b["batch_size"], b["lr"], b["options"]["lr_schedule"], b["options"]["adam_eps"]) == \
        (20, 1e-3, "burda", 1e-4)
    assert pe["options"]["adam_eps"] == 1e-8                 # PyTorch's default, as pytorch/examples


def test_the_adam_epsilon_option_reaches_the_optimiser():
    assert make(adam_eps=1e-4).optimizer.eps == 1e-4
    assert make().optimizer.eps == 1e-8


def test_sampling_and_reconstruction_from_a_checkpoint_in_a_fresh_process(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "vae", "--epochs", "1", "--out", str(out), "--latent", "2", "--hidden", "16",
                     "--batch-size", "64", "--plot-every", "1000"]) == 0
    x, _ = load("digits8", "val")[:6]
    np.save(tmp_path / "x.npy", x)
    script = f"""
import numpy as np, json
from scratchgen.training.config import load_run
from scratchgen.random import manual_seed
run, config, model, meta = load_run({str(out)!r})
manual_seed(7)
np.save({str(tmp_path / 's.npy')!r}, model.sample(5))
np.save({str(tmp_path / 'r.npy')!r}, model.reconstruct(np.load({str(tmp_path / 'x.npy')!r})))
print(json.dumps(meta["epoch"]))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 1
    run, config, model, meta = load_run(out)
    manual_seed(7)
    samples, recon = np.load(tmp_path / "s.npy"), np.load(tmp_path / "r.npy")
    assert samples.shape == (5, 1, 8, 8) and np.all((samples >= 0) & (samples <= 1))
    np.testing.assert_array_equal(samples, model.sample(5))
    np.testing.assert_array_equal(recon, model.reconstruct(x))
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"reconstructions.png", "samples.png", "interpolations.png", "latent_manifold.png",
            "latent_scatter.png", "latent_kl.png"} <= figures


def test_eval_reports_the_stable_keys_and_takes_evaluation_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "vae", "--epochs", "1", "--out", str(out), "--latent", "2", "--hidden", "16",
                     "--batch-size", "64", "--plot-every", "1000", "--train-split", "trainval"]) == 0
    assert "1547 train / 250 validation" in capsys.readouterr().out  # trainval trains on train+val, validates on test
    assert cli.main(["eval", str(out), "--json", "--set", "iwae_k=7", "--set", "iwae_examples=5"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("test_loss", "test_elbo", "nll_iwae", "nll_iwae_k", "seconds_per_epoch", "active_units"):
        assert key in report, key
    assert (report["nll_iwae_k"], report["nll_iwae_examples"]) == (7, 5)
    assert cli.main(["eval", str(out), "--set", "latent=3"]) == 1
    assert "iwae_examples, iwae_k" in capsys.readouterr().err  # only evaluation settings may change


def test_burda_learning_rate_schedule():
    """lr·10^(-i/7) for the 3^i epochs of stage i: stages start at epochs 0, 1, 4, 13, 40, 121."""
    model = make(lr=1e-3, lr_schedule="burda")
    starts = [0, 1, 4, 13, 40, 121]
    for stage, first in enumerate(starts):
        assert model.learning_rate(first) == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-12)
        if first:
            assert model.learning_rate(first - 1) == pytest.approx(1e-3 * 10 ** (-(stage - 1) / 7), rel=1e-12)
    assert make(lr=2e-3).learning_rate(50) == 2e-3            # the default is a constant rate


def test_train_step_uses_the_scheduled_learning_rate(digits):
    train, _ = digits
    model = make(lr=1e-3, lr_schedule="burda")
    x = train.data[:8]
    for epoch in range(5):
        model.start_epoch(epoch)   # as the trainer does before each epoch
        model.train_step((x, None))
        assert model.optimizer.lr == pytest.approx(model.learning_rate(epoch), rel=1e-12)
    assert model.optimizer.lr < 1e-3
