"""The conditional VAE on the bundled 8x8 digits: the conditional prior and its closed-form KL, labels
repeated for stacked samples, the empirical p(y), training, the Bayes-rule classifier, and
conditional sampling from a checkpoint in a fresh process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli
from scratchgen.data import DATASETS, DataLoader, load
from scratchgen.evaluation import bayes_classifier
from scratchgen.models.cvae import CVAE, one_hot
from scratchgen.random import manual_seed
from scratchgen.autograd import Tensor, no_grad
from scratchgen.training.config import load_run, resolve_config

REPO = Path(__file__).resolve().parent.parent


def make(**given):
    config = resolve_config(CVAE, {"latent": 3, "hidden": [32], **given})
    manual_seed(config["seed"])
    return CVAE(config, DATASETS["digits8"])


@pytest.fixture(scope="module")
def trained():
    """A small CVAE trained for 8 epochs on digits8, with its validation ELBO before and after."""
    model = make(latent=4, hidden=[64], batch_size=32)
    val = load("digits8", "val")
    manual_seed(1)
    before = model.evaluate(val)
    loader = DataLoader(load("digits8", "train"), batch_size=32, shuffle=True, seed=0)
    for epoch in range(8):
        for batch in loader.iter_epoch(epoch):
            model.train_step(batch)
    manual_seed(1)
    return model, before, model.evaluate(val)


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="0..2"):
        one_hot(np.array([3]), 3)
    with pytest.raises(ValueError, match="integer"):
        one_hot(np.array([0.5]), 3)


def test_kl_is_between_the_posterior_and_the_learned_class_prior():
    """KL(q(z|x,y) ‖ N(m_y, e^{s_y})) = ½ Σ_j [s_yj − log σ²_j + (σ²_j + (μ_j − m_yj)²) e^{−s_yj} − 1]."""
    model = make()
    rng = np.random.default_rng(0)
    model.net.prior.mean.data[:] = rng.normal(size=(10, 3))
    model.net.prior.log_var.data[:] = rng.normal(size=(10, 3)) * 0.5
    x, y = load("digits8", "val")[:12]
    with no_grad():
        r = model.elbo(x, y)
        q = model.net.posterior(Tensor(x), y)
        mu, lv = (t.data.astype(np.float64) for t in (q.loc, q.log_var))
    m = model.net.prior.mean.data[y].astype(np.float64)
    s = model.net.prior.log_var.data[y].astype(np.float64)
    expected = 0.5 * (s - lv + (np.exp(lv) + (mu - m) ** 2) / np.exp(s) - 1.0)
    np.testing.assert_allclose(r.kl_per_dim.data, expected, rtol=1e-4, atol=1e-5)


def test_stacked_samples_are_decoded_with_their_own_labels():
    """The ELBO stacks S samples of N images as S·N decoder rows; row r must get label y[r mod N]."""
    model = make()
    x, y = load("digits8", "val")[:5]
    z = np.random.default_rng(0).normal(size=(3 * 5, 3)).astype(np.float32)
    with no_grad():
        stacked = model.net.decode(Tensor(z), y).logits.data
        one_by_one = np.concatenate([model.net.decode(Tensor(z[5 * s:5 * s + 5]), y).logits.data
                                     for s in range(3)])
    # NOTE: float32 products of 15 and of 5 rows may sum in different orders (the kernels tile rows
    # by fours), so equal means rtol 1e-5; a row decoded with another image's label is far off
    np.testing.assert_allclose(stacked, one_by_one, rtol=1e-5, atol=1e-6)
    with no_grad():
        wrong = model.net.decode(Tensor(z), np.roll(np.tile(y, 3), 1)).logits.data
    assert np.abs(wrong - stacked).max() > 100 * (1e-6 + 1e-5 * np.abs(stacked).max())
    with no_grad():
        assert model.elbo(x, y).elbo.shape == (5,)


def test_labels_are_required():
    model = make()
    x, _ = load("digits8", "val")[:4]
    with pytest.raises(ValueError, match="needs the label"):
        model.train_step((x, None))


def test_training_raises_the_elbo_and_moves_the_prior(trained):
    model, before, after = trained
    assert after["elbo"] > before["elbo"] + 5.0
    assert np.abs(model.net.prior.mean.data).max() > 1e-3  # the conditional prior is learned


def test_class_prior_is_the_label_frequency_seen_in_training(trained):
    model, _, _ = trained
    y = load("digits8", "train").targets
    expected = np.bincount(y, minlength=10) / len(y)
    np.testing.assert_allclose(np.exp(model.log_class_prior()), expected, rtol=1e-6)


def test_conditional_samples_have_the_requested_class(trained):
    """The digits8 evaluation classifier, trained here on the spot, labels the samples of each class."""
    from scratchgen.evaluation.classifier import train_classifier
    model, _, _ = trained
    clf = train_classifier(load("digits8", "train"), load("digits8", "test"), hidden=(64,), epochs=15, seed=0)
    assert clf.test_accuracy > 0.9
    manual_seed(0)
    result = bayes_classifier.conditional_accuracy(model, 50, classifier=clf)
    assert result["conditional_accuracy"] > 0.6, result  # chance is 0.1
    assert model.sample(7, label=3).shape == (7, 1, 8, 8)


def test_bayes_rule_classifier_beats_chance_by_far(trained):
    model, _, _ = trained
    x, y = load("digits8", "val")[:120]
    manual_seed(0)
    result = bayes_classifier.evaluate_cvae(model, x, y, k=10)
    assert result["accuracy"] > 0.7, result["accuracy"]  # chance is 0.1
    assert result["confusion"].sum() == 120 and np.trace(result["confusion"]) == (result["predictions"] == y).sum()
    np.testing.assert_allclose(np.exp(result["log_posterior"]).sum(1), 1.0, rtol=1e-9)


def test_conditional_sampling_from_a_checkpoint_in_a_fresh_process(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli.main(["train", "cvae", "--epochs", "1", "--out", str(out), "--latent", "2", "--hidden", "16",
                     "--batch-size", "64", "--plot-every", "1000"]) == 0
    x, y = load("digits8", "val")[:6]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    script = f"""
import numpy as np
from scratchgen.training.config import load_run
from scratchgen.random import manual_seed
run, config, model, meta = load_run({str(out)!r})
manual_seed(3)
np.save({str(tmp_path / 's.npy')!r}, model.sample(4, label=7))
np.save({str(tmp_path / 'r.npy')!r}, model.reconstruct(np.load({str(tmp_path / 'x.npy')!r}),
                                                         np.load({str(tmp_path / 'y.npy')!r})))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run, config, model, meta = load_run(out)
    manual_seed(3)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), model.sample(4, label=7))
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), model.reconstruct(x, y))
    assert cli.main(["sample", str(out), "--label", "7", "--n", "4", "--out", str(tmp_path / "sevens.png")]) == 0
    assert {"class_grid.png", "confusion.png", "reconstructions.png"} <= {p.name for p in (out / "figures").iterdir()}
    # `scratchgen eval --json` prints one JSON object with the stable keys, even when it has to train (and
    # cache) the classifiers it compares with first: their progress goes to stderr
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--json", "--set", "iwae_k=5", "--set", "iwae_examples=10", "--set", "bayes_k=2",
                     "--set", "bayes_examples=20", "--set", "conditional_samples=10"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("test_loss", "test_elbo", "nll_iwae", "bayes_accuracy", "conditional_accuracy",
                "discriminative_accuracy", "seconds_per_epoch"):
        assert key in report, key
    assert report["bayes_examples"] == 20 and 0 <= report["bayes_accuracy"] <= 1


def test_mnist_preset():
    c = resolve_config(CVAE, {"preset": "mnist"})
    assert (c["data"], c["epochs"], c["batch_size"], c["lr"], c["binarize"]) == ("mnist", 40, 128, 1e-3, None)
    assert (c["options"]["hidden"], c["options"]["latent"], c["options"]["bayes_k"]) == ([400], 8, 100)


# ---- conditioned on attributes too: y = (one-hot class, standardised thickness and slant)
ATTRIBUTE_RUN = ["--latent", "2", "--hidden", "16", "--batch-size", "32", "--plot-every", "1000",
                 "--attributes", "thickness,slant"]


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    """A CVAE with attributes trained 2 epochs on digits8, and the same run trained 1 epoch then resumed."""
    root = tmp_path_factory.mktemp("attributes")
    assert cli.main(["train", "cvae", "--epochs", "2", "--out", str(root / "run"), *ATTRIBUTE_RUN]) == 0
    assert cli.main(["train", "cvae", "--epochs", "1", "--out", str(root / "split"), *ATTRIBUTE_RUN]) == 0
    assert cli.main(["train", "cvae", "--epochs", "2", "--out", str(root / "split"), "--resume"]) == 0
    return root


def test_a_run_with_attributes_keeps_their_standardisation_and_resumes_bit_for_bit(attribute_run):
    a, b = (np.load(attribute_run / name / "checkpoints" / "latest.npz") for name in ("run", "split"))
    assert sorted(a.files) == sorted(b.files)
    assert [k for k in a.files if not np.array_equal(a[k], b[k])] == []
    _, _, model, _ = load_run(attribute_run / "run")
    assert model.net.attributes == ("thickness", "slant")
    # the training split's mean and standard deviation, measured once before the first step
    from scratchgen.data import attributes as A
    x = np.asarray(load("digits8", "train").data)
    m = A.measure(x)
    np.testing.assert_allclose(model.net.attribute_mean, [np.mean(m["thickness"]), np.mean(m["slant"])], rtol=1e-6)
    np.testing.assert_allclose(model.net.attribute_std, [np.std(m["thickness"]), np.std(m["slant"])], rtol=1e-6)


def test_asking_for_thick_strokes_draws_thicker_strokes_than_asking_for_thin_ones(attribute_run):
    from scratchgen.data import attributes as A
    _, _, model, _ = load_run(attribute_run / "run")
    manual_seed(0)
    thick, thin = (A.measure(model.sample(200, label=7, attributes={"thickness": v}))["thickness"]
                   for v in (2.0, -2.0))
    thick, thin = thick[np.isfinite(thick)], thin[np.isfinite(thin)]
    se = np.sqrt(thick.var(ddof=1) / len(thick) + thin.var(ddof=1) / len(thin))
    assert thick.mean() - thin.mean() > 5 * se, (thick.mean(), thin.mean(), se)


def test_sample_and_eval_take_the_attributes_of_a_run_trained_with_them(attribute_run, tmp_path, capsys,
                                                                       monkeypatch):
    run = str(attribute_run / "run")
    assert cli.main(["sample", run, "--label", "7", "--attribute", "thickness=+2", "--attribute", "slant=-1",
                     "--n", "16", "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").is_file()
    assert cli.main(["sample", run, "--attribute", "glasses=1", "--out", str(tmp_path / "g.png")]) == 1
    assert "glasses" in capsys.readouterr().err and not (tmp_path / "g.png").exists()
    assert cli.main(["sample", run, "--attribute", "width=1", "--out", str(tmp_path / "w.png")]) == 1
    assert "trained with the attributes thickness, slant" in capsys.readouterr().err
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["eval", run, "--json", "--set", "iwae_k=2", "--set", "iwae_examples=10", "--set", "bayes_k=2",
                     "--set", "bayes_examples=10", "--set", "conditional_samples=5",
                     "--set", "attribute_samples=10"]) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("thickness", "slant"):
        assert 0.5 < report[f"{name}_correlation"] <= 1 and report[f"{name}_mae"] >= 0


def test_sample_refuses_attributes_for_a_run_trained_without_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "cvae", "--epochs", "1", "--out", str(out), "--latent", "2", "--hidden", "16",
                     "--batch-size", "64", "--plot-every", "1000"]) == 0
    capsys.readouterr()
    assert cli.main(["sample", str(out), "--label", "7", "--attribute", "thickness=+2",
                     "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "trained without attributes" in err and "--attributes thickness,slant" in err
    assert not (tmp_path / "x.png").exists()


def test_unknown_attribute_names_are_refused_before_any_folder_is_made(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "cvae", "--out", str(out), "--attributes", "thickness,glasses"]) == 1
    err = capsys.readouterr().err
    assert "--attributes" in err and "glasses" in err and "nothing was created" in err
    assert not out.exists()
