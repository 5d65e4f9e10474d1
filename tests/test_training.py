"""The training loop on the bundled 8x8 digits: exact resume, Ctrl-C, NaN/inf, metrics, figures.

Every run is a tiny VAE (latent 2, one hidden layer of 16), so each trains in about a second.
"""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import scratchgen
from scratchgen import cli
from scratchgen.models.vae import VAE
from scratchgen.training import isolated_rng, load_checkpoint
from scratchgen.training.config import resolve_config
from scratchgen.training.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
TINY = ["--latent", "2", "--hidden", "16", "--batch-size", "64", "--plot-every", "1000", "--log-every", "7"]


def train(capsys, out, *args):
    rc = cli.main(["train", "vae", "--out", str(out), *TINY, *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def rows_without_time(run):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(Path(run) / "metrics.csv")]


def assert_same_checkpoint(a, b):
    a, b = arrays(a), arrays(b)
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differ, f"arrays differ: {differ}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 4-epoch run with dynamic binarization (a fresh Bernoulli draw per epoch)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(["train", "vae", "--out", str(out), *TINY, "--epochs", "4", "--binarize", "dynamic"]) == 0
    return out


def test_two_plus_two_epochs_equal_four_bit_for_bit(reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, out, "--epochs", "2", "--binarize", "dynamic")[0] == 0
    first = arrays(out / "checkpoints" / "latest.npz")
    rc, text, _ = train(capsys, out, "--resume", "--epochs", "4")
    assert rc == 0 and "Resuming" in text
    assert not all(np.array_equal(first[k], v) for k, v in arrays(out / "checkpoints" / "latest.npz").items()
                   if k.startswith("state/model")), "the resumed run must have trained"
    # weights, Adam moments and step counts, RNG state, position: all identical
    assert_same_checkpoint(reference / "checkpoints" / "latest.npz", out / "checkpoints" / "latest.npz")
    assert_same_checkpoint(reference / "checkpoints" / "best.npz", out / "checkpoints" / "best.npz")
    assert rows_without_time(out) == rows_without_time(reference)
    assert json.loads((out / "config.json").read_text())["epochs"] == 4


def test_ctrl_c_mid_epoch_saves_and_the_resume_command_continues_exactly(reference, tmp_path, capsys,
                                                                         monkeypatch):
    out = tmp_path / "run"
    real_step = VAE.train_step
    calls = []

    def step_then_ctrl_c(self, batch):
        calls.append(1)
        if len(calls) == 30:  # in epoch 2 (21 batches per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    monkeypatch.setattr(VAE, "train_step", step_then_ctrl_c)
    # the handler the process had: Python's default, or SIG_IGN when a shell started pytest in the background
    before = signal.getsignal(signal.SIGINT)
    rc, text, _ = train(capsys, out, "--epochs", "4", "--binarize", "dynamic")
    assert rc == cli.EXIT_INTERRUPTED
    expected = f"scratchgen train vae --out {shlex.quote(str(out))} --resume"
    assert f"Checkpoint saved to {out / 'checkpoints' / 'latest.npz'}" in text
    assert expected in text.splitlines()[-1]
    _, meta = load_checkpoint(out / "checkpoints" / "latest.npz")
    assert (meta["step"], meta["epoch"], meta["batch"]) == (30, 1, 9)
    assert signal.getsignal(signal.SIGINT) is before  # handler put back

    monkeypatch.setattr(VAE, "train_step", real_step)
    rc = cli.main(shlex.split(expected)[1:])  # exactly what the message told the user to run
    capsys.readouterr()
    assert rc == 0
    assert_same_checkpoint(reference / "checkpoints" / "latest.npz", out / "checkpoints" / "latest.npz")
    assert rows_without_time(out) == rows_without_time(reference)


def test_sigint_to_a_real_training_process(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "scratchgen", "train", "vae", "--out", str(out), *TINY,
                             "--epochs", "100000"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:  # wait until an epoch has finished: a checkpoint exists
            lines.append(line)
            if line.startswith("epoch 2/"):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate()
    finally:
        watchdog.cancel()
    text = "".join(lines) + rest
    assert proc.returncode == cli.EXIT_INTERRUPTED, (text, err)
    assert "Ctrl-C: stopping after this step" in err
    assert "img/s" not in err and "\r" not in err  # no progress bar when the output is not a terminal
    assert f"Resume with:\n  scratchgen train vae --out {shlex.quote(str(out))} --resume" in text
    state, meta = load_checkpoint(out / "checkpoints" / "latest.npz")
    assert meta["step"] >= 42 and f"Interrupted at step {meta['step']}:" in text
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def poison_at(monkeypatch, step, return_nan):
    """Make VAE.train_step break at the given call: weights become NaN (and optionally the loss too)."""
    real_step = VAE.train_step
    calls = []

    def broken(self, batch):
        calls.append(1)
        if len(calls) < step:
            return real_step(self, batch)
        self.net.decoder.net[0][0].weight.data[:] = np.nan
        if return_nan:
            return {"loss": float("nan"), "recon": float("nan"), "kl": 0.25}
        return real_step(self, batch)

    monkeypatch.setattr(VAE, "train_step", broken)


@pytest.mark.parametrize("return_nan", [True, False], ids=["nan-loss", "nan-weights-raise"])
def test_nan_stops_training_and_never_touches_good_checkpoints(tmp_path, capsys, monkeypatch, return_nan):
    out = tmp_path / "run"
    assert train(capsys, out, "--epochs", "1")[0] == 0  # 21 steps, checkpoints written
    ckpts = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in ckpts.iterdir()}
    assert set(before) == {"latest.npz", "best.npz"}

    poison_at(monkeypatch, step=5, return_nan=return_nan)  # the 5th step after resuming: step 26
    rc, text, err = train(capsys, out, "--resume", "--epochs", "3")
    assert rc == 1
    assert "Training stopped at step 26 (epoch 2, batch 5 of 21)" in err
    if return_nan:
        assert "the loss is not finite: loss=nan, recon=nan, kl=0.25" in err
    else:
        assert "weights hold NaN or infinity (model.decoder.net.0.0.weight" in err
    assert f"{ckpts / 'latest.npz'} (step 21), was not touched" in err
    assert {p.name: p.read_bytes() for p in ckpts.iterdir()} == before  # byte-identical, no temp files
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv") if r["kind"] == "epoch"] == ["1"]


def test_resume_drops_metric_rows_written_after_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, out, "--epochs", "1")[0] == 0
    expected = rows_without_time(out)
    with open(out / "metrics.csv", "a", newline="") as f:  # as if a crash came after a log row
        csv.writer(f).writerow(["step", 2, 999, 0.1, 1.0, 1.0, 1.0, "", "", ""])
    assert train(capsys, out, "--resume", "--epochs", "2")[0] == 0
    rows = rows_without_time(out)
    assert rows[:len(expected)] == expected and all(r["step"] != "999" for r in rows)


def test_the_trainer_hands_its_epoch_to_the_learning_rate_schedule_also_on_resume(tmp_path, capsys):
    # Burda's schedule: stage 0 is epoch 0, stage 1 epochs 1-3, stage 2 epochs 4-12
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(capsys, straight, "--epochs", "5", "--lr-schedule", "burda")[0] == 0
    assert train(capsys, resumed, "--epochs", "1", "--lr-schedule", "burda")[0] == 0

    def lr(run):
        return float(arrays(run / "checkpoints" / "latest.npz")["state/optimizer.lr"])
    assert lr(resumed) == 3e-3
    assert train(capsys, resumed, "--resume", "--epochs", "5")[0] == 0
    assert lr(resumed) == pytest.approx(3e-3 * 10 ** (-2 / 7), rel=1e-12)
    assert_same_checkpoint(straight / "checkpoints" / "latest.npz", resumed / "checkpoints" / "latest.npz")


def test_metrics_file_has_step_and_epoch_rows_with_every_column(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, out, "--epochs", "2")[0] == 0
    with open(out / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["kind", "epoch", "step", "seconds", "train_loss", "train_recon", "train_kl",
                      "val_loss", "val_recon", "val_kl",
                      "val_elbo", "val_active_units", "val_kl_0", "val_kl_1"]  # the VAE's val_terms (latent 2)
    rows = read_metrics(out / "metrics.csv")
    epochs = [r for r in rows if r["kind"] == "epoch"]
    steps = [r for r in rows if r["kind"] == "step"]
    assert [(r["epoch"], r["step"]) for r in epochs] == [("1", "21"), ("2", "42")]
    assert [int(r["step"]) for r in steps] == list(range(7, 43, 7))
    assert all(r["val_loss"] == "" for r in steps) and all(r["val_loss"] for r in epochs)
    for r in epochs:  # loss = recon + kl for the validation ELBO
        assert float(r["val_loss"]) == pytest.approx(float(r["val_recon"]) + float(r["val_kl"]), rel=1e-9)
    assert float(epochs[1]["train_loss"]) < float(epochs[0]["train_loss"])


def test_validation_does_not_disturb_the_training_random_stream():
    scratchgen.manual_seed(5)
    expected = scratchgen.get_rng().standard_normal(3)
    scratchgen.manual_seed(5)
    with isolated_rng(123):
        inside = scratchgen.get_rng().standard_normal(3)
    assert np.array_equal(scratchgen.get_rng().standard_normal(3), expected)
    with isolated_rng(123):
        assert np.array_equal(scratchgen.get_rng().standard_normal(3), inside)


def test_progress_bar_shows_running_loss_and_images_per_second(tmp_path, capsys, monkeypatch):
    """The bar is on only for a terminal; forced on here, it reports the loss and the rate."""
    from scratchgen.data import DATASETS, load
    from scratchgen.training import RunDir, Trainer

    import functools
    import tqdm

    # redraw on every update, however fast. NOTE: tqdm reads TQDM_* environment variables once, at
    # import, so setting one here would depend on whether an earlier test imported tqdm.
    monkeypatch.setattr(tqdm, "tqdm", functools.partial(tqdm.tqdm, mininterval=0, miniters=1))
    config = resolve_config(VAE, {"latent": 2, "hidden": [16], "epochs": 1, "batch_size": 64})
    scratchgen.manual_seed(0)
    experiment = VAE(config, DATASETS["digits8"])
    run = RunDir(tmp_path / "run")
    run.write_config(config)
    trainer = Trainer(experiment, run, config, load("digits8", "train"), load("digits8", "val"),
                      resume_command="(not used)", progress=True)
    assert trainer.fit()["step"] == 21
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "img/s" in err and "loss=" in err
    assert "/1297 [" in err  # counts images of the training split


def test_a_term_left_out_of_some_steps_is_averaged_over_the_steps_that_reported_it():
    from scratchgen.training.trainer import Means
    m = Means()
    m.add({"loss": 1.0}, 10)
    m.add({"loss": 3.0, "prior_ce": 2.0}, 30)
    assert m.means() == {"loss": 2.5, "prior_ce": 2.0}
    restored = Means(json.loads(json.dumps(m.state())))  # as a checkpoint stores it
    assert restored.means() == m.means()
    old = Means({"sums": {"loss": 40.0}, "count": 20})  # a checkpoint from before per-term counts
    assert old.means() == {"loss": 2.0}


def test_seconds_per_iteration_is_not_fooled_by_an_interval_cut_short_by_a_resume():
    from scratchgen.training.metrics import seconds_per_iteration
    rows = [{"kind": "step", "step": str(s), "seconds": "5.0"} for s in range(50, 401, 50)]  # 0.1 s a step
    rows[3]["seconds"] = "1.0"  # a resume in the middle of that interval: its time covers a few steps only
    rows += [{"kind": "epoch", "step": "200", "seconds": "20.0"}, {"kind": "epoch", "step": "400", "seconds": "3.0"}]
    assert seconds_per_iteration(rows) == pytest.approx(0.1)
    assert seconds_per_iteration(rows[-2:]) == pytest.approx((0.1 + 0.015) / 2)  # few step rows: from epochs
