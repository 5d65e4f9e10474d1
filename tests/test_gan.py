"""The GAN family: the alternation of the game, its options, and the workflow end to end.

The identity "value at the optimal discriminator = 2 JS(p, q) − 2 log 2" is tested where the
value function lives: tests/test_objectives.py (on empirical distributions, through the logits
path) and tests/test_divergences.py (on exact discrete p and q).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli
from scratchgen.data import DATASETS, ArrayDataset, load
from scratchgen.models.gan import GAN
from scratchgen.objectives import gan as objectives
from scratchgen.random import manual_seed
from scratchgen.training import RunDir, Trainer
from scratchgen.training.config import load_run

REPO = Path(__file__).resolve().parent.parent
FAST = ["--plot-every", "1000", "--log-every", "10"]


def make(data="ring8", seed=0, **options):
    family_opts = {o.name: o.default for o in GAN.options}
    family_opts.update(arch="toy" if data in ("ring8", "grid25") else "mlp", latent=4, g_hidden=[16],
                       d_hidden=[16], g_channels=4, d_channels=4, eval_samples=500)
    family_opts.update(options)
    manual_seed(seed)
    return GAN(dict(lr=1e-3, scale="01", data=data, data_dir=None, options=family_opts), DATASETS[data])


def params(module):
    return {k: v.data.copy() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not np.array_equal(before[k], v.data)}


@pytest.mark.parametrize("data,arch", [("ring8", "toy"), ("digits8", "mlp"), ("digits8", "dcgan")])
def test_each_step_changes_only_its_own_players_parameters(data, arch):
    gan = make(data, arch=arch)
    x = load(data, "train").data[:32]
    g0, d0 = params(gan.G), params(gan.D)
    gan.discriminator_step(x)
    assert changed(g0, gan.G) == set()
    assert changed(d0, gan.D) == set(d0)          # every discriminator parameter moved
    g1, d1 = params(gan.G), params(gan.D)
    gan.generator_step(32)
    assert changed(d1, gan.D) == set()
    assert changed(g1, gan.G) == set(g1)
    assert all(p.grad is None for p in gan.D.parameters())   # D's gradients from the G pass are dropped


def test_a_generator_step_reusing_the_discriminator_steps_fakes_also_leaves_d_alone():
    gan = make()
    terms, fake = gan.discriminator_step(load("ring8", "val").data[:64])
    d0 = params(gan.D)
    gan.generator_step(fake=fake)
    assert changed(d0, gan.D) == set()
    assert set(terms) == {"loss", "js_lower_bound", "d_real", "d_fake"}
    assert terms["js_lower_bound"] == pytest.approx(np.log(2) - terms["loss"] / 2, abs=1e-12)


def test_d_steps_per_generator_step():
    gan = make(d_steps=3)
    x = load("ring8", "val").data[:32]
    for _ in range(7):
        terms = gan.train_step((x, None))
        assert np.isfinite(terms["loss_g"])
    assert gan.opt_d.step_count == 7 and gan.opt_g.step_count == 2


def test_linear_learning_rate_decay_reaches_zero_at_the_last_step():
    gan = make(lr_decay="linear", lr_g=2e-3)
    gan.config.update(epochs=1)
    gan.total_steps = 4
    x = load("ring8", "val").data[:16]
    seen = []
    for _ in range(4):
        gan.train_step((x, None))
        seen.append((gan.opt_g.lr, gan.opt_d.lr))
    assert np.allclose(seen, [(2e-3 * f, 1e-3 * f) for f in (1, 0.75, 0.5, 0.25)], rtol=1e-12)
    assert make().opts["lr_decay"] == "none"
    # the schedule is a function of the saved step count: a copy restored mid-way continues identically
    from scratchgen.random import get_state, set_state
    a, b = make(lr_decay="linear", seed=5), make(lr_decay="linear", seed=5)
    a.total_steps = b.total_steps = 6
    for gan in (a, b):
        manual_seed(11)
        for _ in range(3):
            gan.train_step((x, None))
    c = make(lr_decay="linear", seed=9)
    c.total_steps = 6
    c.load_state_dict(b.state_dict())
    state = get_state()
    for gan in (a, c):
        set_state(state)
        for _ in range(3):
            gan.train_step((x, None))
    assert all(np.array_equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_gan_loss_option_selects_the_objective():
    assert make(gan_loss="minimax").g_loss is objectives.generator_loss_saturating
    assert make(gan_loss="non-saturating").g_loss is objectives.generator_loss_nonsaturating


def test_option_errors_say_what_fits():
    with pytest.raises(ValueError, match="--arch toy for 2-D points"):
        make("digits8", arch="toy")
    with pytest.raises(ValueError, match="--arch mlp does not fit ring8"):
        make("ring8", arch="mlp")
    with pytest.raises(ValueError, match="divisible by 4"):
        from scratchgen.models.gan import build
        build("dcgan", (1, 10, 10), {"latent": 2, "g_channels": 2, "d_channels": 2}, "01")


def test_dcgan_shapes_for_28x28():
    from scratchgen.models.gan import build
    from scratchgen.autograd import Tensor, no_grad
    g, d = build("dcgan", (1, 28, 28), {"latent": 5, "g_channels": 4, "d_channels": 3}, "01")
    with no_grad():
        x = g(Tensor(np.zeros((2, 5), np.float32)))
        assert x.shape == (2, 1, 28, 28) and d(x).shape == (2, 1)
    assert 0 <= x.data.min() and x.data.max() <= 1


def test_smoke_training_on_the_ring_moves_samples_towards_it(tmp_path):
    """Two short epochs on a small draw of the ring: the run folder is complete, and the mean
    distance from a sample to its nearest mode has dropped well below the untrained generator's."""
    gan = make(g_hidden=[64, 64], d_hidden=[64, 64], latent=8)
    mixture = gan.mixture
    before = mixture.nearest_mode(gan.sample(1000))[1].mean()
    full = load("ring8", "train")
    train = ArrayDataset(full.data[:2048], full.targets[:2048], name="ring8", split="train", scale="raw")
    val = load("ring8", "val")
    run = RunDir(tmp_path / "run")
    config = dict(gan.config, model="gan", epochs=3, batch_size=64, seed=0)
    run.write_config(config)
    result = Trainer(gan, run, config, train, val, resume_command="-", log_every=20, plot_every=1e9,
                     out=lambda msg: None).fit()
    after = mixture.nearest_mode(gan.sample(1000))[1].mean()
    assert result["step"] == 3 * 32
    assert after < 0.5 * before, (before, after)
    header = run.metrics_path.read_text().splitlines()[0].split(",")
    for term in gan.loss_terms:
        assert f"train_{term}" in header and f"val_{term}" in header
    assert (run.figures / "samples.png").is_file() and run.latest.is_file()
    ev = gan.evaluate(val)
    assert ev["js_lower_bound"] <= np.log(2) and ev["js_lower_bound_se"] > 0
    assert 0 <= ev["modes_covered"] <= 8 and 0 <= ev["high_quality_fraction"] <= 1


def test_cli_digits8_smoke_then_sample_and_eval_from_the_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # the evaluation classifier is cached here
    out = tmp_path / "gan"
    assert cli.main(["train", "gan", "--preset", "tiny", "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "Training GAN (mlp, non-saturating generator loss" in text and "epoch 2/2" in text
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["gan_loss"] == "non-saturating" and config["options"]["beta1"] == 0.5
    for name in ("samples.png", "interpolations.png", "loss.png"):
        assert (out / "figures" / name).is_file()

    # sampling in a fresh process gives exactly what the rebuilt experiment gives in this one
    npy = tmp_path / "x.npy"
    subprocess.run([sys.executable, "-m", "scratchgen", "sample", str(out), "--n", "20", "--out", str(npy),
                    "--seed", "3"], cwd=REPO, check=True, capture_output=True)
    x = np.load(npy)
    assert x.shape == (20, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    _, _, experiment, _ = load_run(out)
    manual_seed(3)
    assert np.array_equal(experiment.sample(20), x)

    # the image metrics: a digits8 classifier is trained once, cached, and labels 10,000 samples
    assert cli.main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert sum(report["class_histogram"]) == 10000 and 0 <= report["classes_covered"] <= 10
    assert 0 <= report["kl_to_uniform"] <= np.log(10) + 1e-9
    assert report["classifier_test_accuracy"] > 0.8 and report["frechet_distance"] > 0
    assert np.isfinite(report["parzen_log_likelihood"]) and report["parzen_se"] > 0
    assert report["js_lower_bound"] <= np.log(2) and report["seconds_per_iteration"] > 0
    assert list((tmp_path / "cache" / "scratchgen" / "classifiers").glob("digits8-*.npz"))


def test_cli_eval_on_toy_data_reports_the_stable_keys(tmp_path, capsys):
    out = tmp_path / "ring"
    assert cli.main(["train", "gan", "--data", "ring8", "--epochs", "1", "--batch-size", "512", "--latent", "4",
                     "--g-hidden", "16", "--d-hidden", "16", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("modes_covered", "high_quality_fraction", "mode_counts", "js_lower_bound", "test_js_lower_bound"):
        assert key in report, key
    assert report["seconds_per_iteration"] > 0
    assert sum(report["mode_counts"]) == round(2500 * report["high_quality_fraction"])
    assert cli.main(["sample", str(out), "--n", "7", "--out", str(tmp_path / "p.npy")]) == 0
    assert np.load(tmp_path / "p.npy").shape == (7, 2)
    from scratchgen.labs import mode_collapse
    assert mode_collapse.main([str(out), str(out), "--out", str(tmp_path / "side.png"), "--n", "300"]) == 0
    assert (tmp_path / "side.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_gives_the_uninterrupted_runs_weights_bit_for_bit(tmp_path, capsys):
    """Two optimizers, the fixed z batch and the D-step count all live in the checkpoint."""
    args = ["--preset", "tiny", "--d-steps", "2", *FAST]
    assert cli.main(["train", "gan", *args, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "gan", *args, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "gan", "--out", str(tmp_path / "b"), "--resume", "--epochs", "2"]) == 0
    capsys.readouterr()
    a, b = (np.load(tmp_path / r / "checkpoints" / "latest.npz") for r in "ab")
    weights = [k for k in a.files if k.startswith("state/")]
    assert any("opt_g" in k for k in weights) and any("fixed_z" in k for k in weights)
    for k in weights:
        assert np.array_equal(a[k], b[k]), k


def test_packing_groups_consecutive_examples_and_keeps_the_game_intact():
    from scratchgen.models.gan import pack
    x = np.arange(7 * 2).reshape(7, 2)
    assert pack(x, 3).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]   # the 7th example is dropped
    images = np.arange(4 * 1 * 2 * 2).reshape(4, 1, 2, 2)
    assert np.array_equal(pack(images, 2)[1], images[2:4, 0])                  # examples become channels
    with pytest.raises(ValueError, match="--batch-size >= 4"):
        pack(x[:3], 4)
    for data, arch in (("ring8", "toy"), ("digits8", "dcgan")):
        gan = make(data, arch=arch, pack=4)
        g0, d0 = params(gan.G), params(gan.D)
        terms, fake = gan.discriminator_step(load(data, "val").data[:32])
        assert changed(g0, gan.G) == set() and changed(d0, gan.D) == set(d0)
        assert len(gan.logits(fake.data)) == 8                                  # one logit per pack
