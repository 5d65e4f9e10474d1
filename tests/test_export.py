"""The bridge out: ``scratchgen export RUN --to torch-state-dict`` and PyTorch loading the result.

The PyTorch half is skipped when PyTorch is not installed (it is never a dependency).
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli
from scratchgen.autograd import Tensor, no_grad
from scratchgen.data import load
from scratchgen.random import get_rng, manual_seed
from scratchgen.training import isolated_rng
from scratchgen.training.config import load_run

OLD_VAE = Path(__file__).parent / "fixtures" / "old_runs" / "vae-mlp"   # 64-16-2 ReLU MLP VAE, one epoch


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "vae"
    shutil.copytree(OLD_VAE, folder)
    return folder


def test_export_writes_every_array_of_the_network_and_nothing_pickled(run, capsys):
    assert cli.main(["export", str(run), "--to", "torch-state-dict"]) == 0
    out = capsys.readouterr().out
    path = run / "torch_state_dict.npz"
    assert f"wrote 10 arrays" in out and "net.load_state_dict(state)" in out and str(path) in out
    _, _, experiment, _ = load_run(run)
    expected = experiment.net.state_dict()
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(expected)
        for k, v in expected.items():
            np.testing.assert_array_equal(z[k], v)
    assert "encoder.mu.weight" in expected and not any(k.startswith("optimizer") for k in expected)


def test_export_refuses_a_file_that_is_not_npz_and_a_folder_without_a_run(run, tmp_path, capsys):
    assert cli.main(["export", str(run), "--out", str(tmp_path / "w.pt")]) == 1
    assert "must end in .npz" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nothing")]) == 1
    assert "not a scratchgen run folder" in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()


def torch_twin(torch, shape=(1, 8, 8), hidden=16, latent=2):
    """The PyTorch network with the modules of scratchgen's MLP VAE, under the same names."""
    nn, d = torch.nn, int(np.prod(shape))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(d, hidden), nn.ReLU()))
            self.mu, self.log_var = nn.Linear(hidden, latent), nn.Linear(hidden, latent)

        def forward(self, x):
            h = self.body(x)
            return self.mu(h), self.log_var(h)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d)),
                                     nn.Unflatten(1, shape))

        def forward(self, z):
            return self.net(z)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Encoder(), Decoder()

        def loss(self, x, eps):
            """pytorch/examples' test loss per image: summed BCE (from logits) + KL to N(0, I)."""
            mu, log_var = self.encoder(x)
            logits = self.decoder(mu + torch.exp(0.5 * log_var) * eps)
            bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
            return (bce + kl) / len(x)

    return VAE()


def test_a_pytorch_twin_loaded_from_the_export_gets_the_same_test_loss(run):
    torch = pytest.importorskip("torch")
    assert cli.main(["export", str(run)]) == 0
    _, config, experiment, _ = load_run(run)
    test = load("digits8", "test", scale=config["scale"], binarize=config["binarize"], seed=config["seed"])
    x = test[:][0]
    assert len(x) <= 500  # one evaluation batch: the noise below is the noise evaluate() draws
    with isolated_rng(config["seed"]):
        ours = experiment.evaluate(test)["loss"]
    manual_seed(config["seed"])
    eps = get_rng().standard_normal((len(x), config["options"]["latent"])).astype(np.float32)

    net = torch_twin(torch)
    path = str(run / "torch_state_dict.npz")
    state = {k: torch.from_numpy(v) for k, v in np.load(path).items()}   # the documented two lines
    net.load_state_dict(state)
    with torch.no_grad():
        theirs = net.loss(torch.from_numpy(x), torch.from_numpy(eps)).item()
    assert ours == pytest.approx(theirs, rel=1e-5), (ours, theirs)
    with no_grad():  # and the same numbers without the trainer around them
        again = experiment.net(Tensor(x), eps=eps[None]).elbo_mean.item()
    assert -again == pytest.approx(theirs, rel=1e-5)


def test_a_pytorch_dcgan_twin_draws_the_same_images_and_scores_them_the_same(tmp_path):
    """Convolutions, transposed convolutions (weights (C_in, C_out, kH, kW)) and batch norm in eval mode
    (running statistics) move over too: the DCGAN of tests/fixtures/old_runs/gan-dcgan."""
    torch = pytest.importorskip("torch")
    folder = tmp_path / "gan"
    shutil.copytree(OLD_VAE.parent / "gan-dcgan", folder)
    assert cli.main(["export", str(folder)]) == 0
    _, config, experiment, _ = load_run(folder)
    nn, w, latent, s = torch.nn, config["options"]["g_channels"], config["options"]["latent"], 2

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = nn.Module()
            self.generator.net = nn.Sequential(
                nn.Linear(latent, 2 * w * s * s, bias=False), nn.BatchNorm1d(2 * w * s * s), nn.ReLU(),
                nn.Unflatten(1, (2 * w, s, s)),
                nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1), nn.Sigmoid())
            d = config["options"]["d_channels"]
            self.discriminator = nn.Module()
            self.discriminator.net = nn.Sequential(
                nn.Conv2d(1, d, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(d, 2 * d, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * d), nn.LeakyReLU(0.2),
                nn.Flatten(), nn.Linear(2 * d * s * s, 1))
            self.register_buffer("fixed_z", torch.zeros(64, latent))

    net = Net()
    state = {k: torch.from_numpy(v) for k, v in np.load(folder / "torch_state_dict.npz").items()}
    net.load_state_dict(state)
    net.eval()
    experiment.net.eval()
    z = experiment.net.fixed_z
    with torch.no_grad():
        images = net.generator.net(torch.from_numpy(z)).numpy()
        logits = net.discriminator.net(torch.from_numpy(images)).numpy()
    with no_grad():
        ours = experiment.G(Tensor(z)).data
        our_logits = experiment.D(Tensor(ours)).data
    np.testing.assert_allclose(ours, images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_logits, logits, rtol=1e-5, atol=1e-5)
