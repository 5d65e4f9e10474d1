"""The `scratchgen` command end to end on the bundled 8x8 digits, and its error messages.

Most tests call ``scratchgen.cli.main`` in-process (fast); two run the real entry points in a
fresh process (``python -m scratchgen`` and the installed ``scratchgen`` console script).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from scratchgen import cli, models
from scratchgen.data import DATASETS

REPO = Path(__file__).resolve().parent.parent
TINY = ["--latent", "2", "--hidden", "16", "--batch-size", "64", "--plot-every", "1000", "--log-every", "10"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_png(path):
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, f"{path} is blank"


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def fresh_process_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny VAE trained for 2 epochs (then shared by the read-only tests below)."""
    out = tmp_path_factory.mktemp("cli") / "vae-run"
    assert cli.main(["train", "vae", "--epochs", "2", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc, text, err = run(capsys, "train", "vae", "--epochs", "2", "--out", out, *TINY)
    assert rc == 0, err
    assert text.startswith("Training VAE (mlp, latent 2)") and "epoch 2/2" in text
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["data"], config["epochs"], config["seed"]) == ("vae", "digits8", 2, 0)
    assert config["options"]["hidden"] == [16] and config["options"]["latent"] == 2
    assert config["command"].startswith("scratchgen train vae --epochs 2")
    for name in ("samples.png", "reconstructions.png", "loss.png"):
        assert_png(out / "figures" / name)
        assert f"{out / 'figures' / name}" in text  # the command says where its figures went
    assert (out / "checkpoints" / "latest.npz").is_file() and (out / "checkpoints" / "best.npz").is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header == ("kind,epoch,step,seconds,train_loss,train_recon,train_kl,val_loss,val_recon,val_kl,"
                      "val_elbo,val_active_units,val_kl_0,val_kl_1")  # the VAE's val_terms (latent 2)
    assert f"scratchgen eval {out}" in text

    rc, text, err = run(capsys, "train", "vae", "--out", out, "--resume", "--epochs", "3")
    assert rc == 0, err
    assert "epoch 3/3" in text and "epoch 2/3" not in text
    assert json.loads((out / "config.json").read_text())["epochs"] == 3

    before = snapshot(out)
    rc, text, _ = run(capsys, "train", "vae", "--out", out, "--resume")
    assert rc == 0 and "already trained all 3 epochs" in text and "--resume --epochs 6" in text
    rc, _, err = run(capsys, "train", "vae", "--out", out, "--resume", "--epochs", "1")
    assert rc == 1 and "must be at least 3" in err
    assert snapshot(out) == before


def test_default_output_folder_is_named_after_model_data_and_seed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, text, err = run(capsys, "train", "autoencoder", "--epochs", "1", "--seed", "3", *TINY[:6])
    assert rc == 0, err
    assert (tmp_path / "runs" / "autoencoder-digits8-seed3" / "checkpoints" / "latest.npz").is_file()
    assert_png(tmp_path / "runs" / "autoencoder-digits8-seed3" / "figures" / "samples.png")


def test_sample_to_npy_and_png(trained, tmp_path, capsys):
    rc, text, err = run(capsys, "sample", trained, "--n", 10, "--out", tmp_path / "s.npy", "--seed", 1)
    assert rc == 0, err
    samples = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert samples.shape == (10, 1, 8, 8) and samples.dtype == np.float32
    assert 0 <= samples.min() and samples.max() <= 1 and samples.std() > 0
    assert "wrote 10 samples of shape (1, 8, 8)" in text
    # same seed, same samples; another seed, others
    run(capsys, "sample", trained, "--n", 10, "--out", tmp_path / "t.npy", "--seed", 1)
    run(capsys, "sample", trained, "--n", 10, "--out", tmp_path / "u.npy", "--seed", 2)
    assert np.array_equal(np.load(tmp_path / "t.npy"), samples)
    assert not np.array_equal(np.load(tmp_path / "u.npy"), samples)

    rc, _, err = run(capsys, "sample", trained, "--n", 16, "--out", tmp_path / "grid.png")
    assert rc == 0, err
    assert_png(tmp_path / "grid.png")


def test_sample_rejects_a_label_for_an_unconditional_model_and_bad_suffixes(trained, tmp_path, capsys):
    rc, _, err = run(capsys, "sample", trained, "--label", 3, "--out", tmp_path / "x.png")
    assert rc == 1 and "'vae' is unconditional" in err
    rc, _, err = run(capsys, "sample", trained, "--out", tmp_path / "x.jpg")
    assert rc == 1 and ".npy (raw array) or .png" in err
    assert not list(tmp_path.iterdir())


def test_eval_json_is_one_parsable_object_with_stable_keys(trained, capsys):
    rc, text, err = run(capsys, "eval", trained, "--json")
    assert rc == 0, err
    report = json.loads(text)
    assert {"test_loss", "test_elbo", "test_recon", "test_kl", "seconds_per_epoch"} <= set(report)
    assert (report["split"], report["epoch"], report["step"]) == ("test", 2, 42)
    assert report["test_loss"] == pytest.approx(report["test_recon"] + report["test_kl"], rel=1e-9)
    assert report["test_elbo"] == -report["test_loss"] > -100
    assert report["seconds_per_epoch"] > 0
    # evaluation is deterministic (its noise has its own seed)
    assert json.loads(run(capsys, "eval", trained, "--json")[1]) == report
    rc, text, _ = run(capsys, "eval", trained, "--split", "val")
    assert rc == 0 and "val_loss" in text and "val split (250 examples)" in text


def test_eval_refuses_too_few_quality_samples_with_a_reason(trained, capsys):
    rc, _, err = run(capsys, "eval", trained, "--quality-samples", 3)
    assert rc == 1 and "--quality-samples must be at least 10" in err and "nearest-neighbour" in err


def test_fresh_processes_use_the_saved_checkpoint(trained, tmp_path):
    """`python -m scratchgen` in a new process samples exactly what the in-process call samples."""
    out = tmp_path / "fresh.npy"
    proc = subprocess.run([sys.executable, "-m", "scratchgen", "sample", str(trained), "--n", "5",
                           "--out", str(out), "--seed", "4"], capture_output=True, text=True,
                          env=fresh_process_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert cli.main(["sample", str(trained), "--n", "5", "--out", str(tmp_path / "here.npy"), "--seed", "4"]) == 0
    assert np.array_equal(np.load(out), np.load(tmp_path / "here.npy"))


def test_console_script_help_has_examples():
    exe = shutil.which("scratchgen") or str(Path(sys.executable).with_name("scratchgen"))
    if not Path(exe).exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    proc = subprocess.run([exe, "train", "vae", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout and "--preset" in proc.stdout and "pytorch-examples" in proc.stdout


HELP_IMPORTS = """
import sys
from scratchgen import cli
try:
    cli.main(sys.argv[1:])
except SystemExit as e:
    assert e.code == 0, e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib", "tqdm", "scratchgen.bench"})
cycle = [m for m in ("scratchgen.bench", "scratchgen.bench_steps") if m in sys.modules]
print(heavy + cycle)
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "vae", "--help"]])
def test_help_does_not_import_matplotlib(argv):
    """`scratchgen --help` builds every model's options but draws nothing: matplotlib (~0.4 s) stays out."""
    proc = subprocess.run([sys.executable, "-c", HELP_IMPORTS, *argv], capture_output=True, text=True,
                          env=fresh_process_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-300:]


def test_run_configuration_lives_in_training_not_in_the_command():
    """The benchmark and the labs build runs through scratchgen.training.config; none imports the CLI."""
    for path in [*(REPO / "scratchgen").rglob("*.py"), *(REPO / "lectures").glob("*.md")]:
        if path.name in ("cli.py", "__main__.py"):
            continue
        text = path.read_text()
        assert "from scratchgen import cli" not in text and "from ..cli" not in text \
            and "from . import cli" not in text and "scratchgen.cli import" not in text, path


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["sample", "--help"], ["eval", "--help"],
                                  ["data", "--help"], ["train", "autoencoder", "--help"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: scratchgen" in text
    if argv[0] != "data":
        assert "examples:" in text


@pytest.mark.parametrize("argv, valid", [
    (["train", "vea"], lambda: models.names()),
    (["train", "vae", "--data", "mnits"], lambda: sorted(DATASETS)),
    (["train", "vae", "--preset", "nope"], lambda: sorted(models.get("vae").presets)),
], ids=["model", "data", "preset"])
def test_unknown_names_list_the_valid_ones(capsys, argv, valid):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    listed = ", ".join(repr(name) for name in valid())
    assert "invalid choice" in err and f"(choose from {listed})" in err
    assert {"vae", "digits8", "pytorch-examples"} & set(valid())


def test_data_list_delegates_to_the_data_package(capsys):
    rc, text, _ = run(capsys, "data", "list")
    assert rc == 0 and "digits8" in text and "mnist" in text


def test_missing_data_file_says_where_it_looked_and_how_to_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "vae", "--data", "mnist", "--data-dir", tmp_path / "nowhere", "--out", out)
    assert rc == 1
    assert "Looked in" in err
    assert str(tmp_path / "nowhere" / "mnist" / "train-images-idx3-ubyte.gz") in err
    assert str(tmp_path / "cache" / "scratchgen" / "mnist") in err
    assert "scratchgen data fetch mnist" in err
    assert not out.exists()  # nothing half-made


def test_refuses_a_folder_that_holds_a_different_run(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = snapshot(out)
    rc, _, err = run(capsys, "train", "vae", "--out", out, *TINY, "--latent", "3", "--epochs", "2")
    assert rc == 1
    assert "already holds a different run (options.latent: 2 -> 3)" in err
    assert "--resume" in err and "--overwrite" in err and "Nothing was changed" in err
    assert snapshot(out) == before
    # the same settings again: also refused (it would overwrite the checkpoints), pointing to --resume
    rc, _, err = run(capsys, "train", "vae", "--out", out, *TINY, "--epochs", "2")
    assert rc == 1 and "already holds a run with the same settings" in err
    assert f"scratchgen train vae --out {out} --resume" in err
    assert snapshot(out) == before
    # changing an architecture option while resuming is refused too
    rc, _, err = run(capsys, "train", "vae", "--out", out, "--resume", "--latent", "3")
    assert rc == 1 and "cannot change these settings when resuming" in err and "--latent 2 -> 3" in err
    assert snapshot(out) == before
    # --overwrite replaces it
    rc, _, err = run(capsys, "train", "vae", "--out", out, *TINY, "--latent", "3", "--epochs", "1", "--overwrite")
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["options"]["latent"] == 3


def test_resume_needs_a_run_and_a_checkpoint(tmp_path, capsys):
    rc, _, err = run(capsys, "train", "vae", "--out", tmp_path / "empty", "--resume")
    assert rc == 1 and "nothing to resume" in err
    rc, _, err = run(capsys, "train", "vae", "--out", tmp_path / "x", "--resume", "--overwrite")
    assert rc == 1 and "contradict" in err


def test_checkpoint_from_a_different_architecture_names_the_parameters(trained, tmp_path, capsys):
    other = tmp_path / "other"
    assert cli.main(["train", "vae", "--epochs", "1", "--out", str(other), *TINY[:2], "--hidden", "8",
                     *TINY[4:]]) == 0
    capsys.readouterr()
    shutil.copy(trained / "checkpoints" / "latest.npz", other / "checkpoints" / "latest.npz")
    before = snapshot(other)
    rc, _, err = run(capsys, "sample", other, "--out", tmp_path / "s.npy")
    assert rc == 1
    assert "was saved from a different architecture" in err
    assert "model.encoder.body.1.0.weight: checkpoint (16, 64) vs model (8, 64)" in err
    assert "model.decoder.net.0.2.weight: checkpoint (64, 16) vs model (64, 8)" in err
    assert not (tmp_path / "s.npy").exists() and snapshot(other) == before
    rc, _, err = run(capsys, "train", "vae", "--out", other, "--resume", "--epochs", "2")
    assert rc == 1 and "model.encoder.mu.weight: checkpoint (2, 16) vs model (2, 8)" in err
    assert snapshot(other) == before


def test_sample_and_eval_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    rc, _, err = run(capsys, "eval", tmp_path)
    assert rc == 1 and "not a scratchgen run folder" in err


def test_bench_and_gradcheck_delegate(monkeypatch, capsys):
    import importlib
    import types

    gradcheck_module = importlib.import_module("scratchgen.finite_differences")
    calls = []
    fake_bench = types.ModuleType("scratchgen.bench")
    fake_bench.main = lambda argv: calls.append(("bench", argv)) or 0
    monkeypatch.setitem(sys.modules, "scratchgen.bench", fake_bench)
    monkeypatch.setattr(gradcheck_module, "demo", lambda: calls.append(("gradcheck",)))
    assert cli.main(["bench", "--quick"]) == 0
    assert cli.main(["gradcheck"]) == 0
    assert calls == [("bench", ["--quick"]), ("gradcheck",)]


def test_image_grid_places_every_image():
    from scratchgen.training.plots import image_grid
    images = np.arange(5 * 2 * 3, dtype=float).reshape(5, 1, 2, 3)
    grid = image_grid(images, nrow=3, pad=1, fill=-1)
    assert grid.shape == (2 * (2 + 1) + 1, 3 * (3 + 1) + 1)
    assert np.array_equal(grid[1:3, 1:4], images[0, 0])
    assert np.array_equal(grid[4:6, 5:8], images[4, 0])  # row 1, column 1
    assert (grid[4:6, 9:12] == -1).all()                 # the empty sixth cell
