"""The run folder under faults and hostile files: nothing lost, nothing executed, no traceback.

Each section is one promise of README's "What is promised":

1. no code from files — a checkpoint, config.json or metrics.csv never decides what code runs, and a
   small file never decides how much memory is allocated;
2. one writer per run folder — an exclusive lock that the OS releases when the process dies;
3. ``--overwrite`` deletes only what scratchgen wrote;
4. atomic writes, and every OS error a sentence (exit code 1), never a traceback;
5. damaged or hand-edited files: a message naming the file and the field;
6. options that make no sense are refused before anything is created;
and exact resume after SIGKILLs at random points (the kills are seeded).

Every run is a tiny VAE on the bundled 8x8 digits (21 steps per epoch).
"""
import ast
import csv
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli, files
from scratchgen.training import RunDir, load_checkpoint
from scratchgen.training.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
TINY = ["--latent", "2", "--hidden", "16", "--batch-size", "64", "--plot-every", "1000", "--log-every", "7"]
DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max default (4194304): never a live process


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def train(capsys, out, *args):
    return run(capsys, "train", "vae", "--out", out, *TINY, *args)


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_arrays(a, b):
    a, b = arrays(a), arrays(b)
    assert sorted(a) == sorted(b)
    assert not [k for k in a if not np.array_equal(a[k], b[k])]


def rows_without_time(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(Path(run_dir) / "metrics.csv")]


def leftovers(folder):
    """Temporary files (of atomic writes) anywhere under ``folder``."""
    return [p for p in Path(folder).rglob("*") if files.TEMP_NAME.match(p.name)]


def assert_one_paragraph(rc, err):
    assert rc == 1, err
    assert err.startswith("scratchgen: error: ") and "Traceback" not in err, err


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run (dynamic binarization: a fresh Bernoulli draw per epoch)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(["train", "vae", "--out", str(out), *TINY, "--epochs", "3", "--binarize", "dynamic"]) == 0
    return out


@pytest.fixture
def trained(reference, tmp_path):
    """A private copy of the reference run, free to damage."""
    import shutil
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    return out


def rewrite_checkpoint(path, state=None, meta=None, compress=False):
    """Write a checkpoint by hand (bypassing save_checkpoint's own checks)."""
    old_state, old_meta = load_checkpoint(path)
    state = old_state if state is None else state
    meta = old_meta if meta is None else meta
    entries = {"state/" + k: v for k, v in state.items()}
    entries["meta"] = np.array(json.dumps(meta))
    (np.savez_compressed if compress else np.savez)(path, **entries)


# ------------------------------------------------------------------------------ 1. no code from files
def test_a_checkpoint_naming_another_bit_generator_runs_nothing(trained, capsys, monkeypatch):
    """`--resume` used to call getattr(np.random, <name from the file>)(): any function of numpy.random."""
    calls = []
    monkeypatch.setattr(np.random, "planted", lambda: calls.append("ran"), raising=False)
    latest = trained / "checkpoints" / "latest.npz"
    state, meta = load_checkpoint(latest)
    rng = json.loads(meta["rng"])
    rewrite_checkpoint(latest, meta=dict(meta, rng=json.dumps(dict(rng, bit_generator="planted"))))
    rc, _, err = train(capsys, trained, "--resume", "--epochs", "4", "--binarize", "dynamic")
    assert calls == [], "a name read from a checkpoint was called"
    assert_one_paragraph(rc, err)
    assert "latest.npz" in err and "'rng'" in err and "PCG64" in err


def test_declared_shapes_are_checked_before_any_array_is_read(trained, capsys, monkeypatch):
    """A small file must not be able to ask for gigabytes: headers are compared with the model first."""
    latest = trained / "checkpoints" / "latest.npz"
    state, meta = load_checkpoint(latest)
    key = next(k for k in state if k.endswith("weight"))
    entries = {"state/" + k: v for k, v in state.items()}
    entries["meta"] = np.array(json.dumps(meta))
    np.savez(latest, **entries)
    # rewrite one member's header to declare a (100000, 100000) float32 array: 40 GB
    with zipfile.ZipFile(latest) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    name = f"state/{key}.npy"
    header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members[name] = buf.getvalue() + members[name][len(buf.getvalue()):][:64]
    with zipfile.ZipFile(latest, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    read = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda f, *a, **k: read.append(1) or real(f, *a, **k))
    for argv in (["sample", trained, "--out", trained / "s.npy"], ["eval", trained]):
        rc, _, err = run(capsys, *argv)
        assert_one_paragraph(rc, err)
        assert "latest.npz" in err and key in err and "100000" in err
    assert read == [], "an array was read before its declared shape was checked"


def test_a_small_gzip_file_cannot_unpack_to_gigabytes(tmp_path):
    """Data files are gunzipped with a ceiling: a gzip bomb is refused before it fills memory."""
    import gzip

    from scratchgen.data.formats import CorruptDataError, MAX_UNPACKED_BYTES, read_bytes
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(bytes(5000)))
    assert read_bytes(bomb) == bytes(5000)
    with pytest.raises(CorruptDataError, match="would unpack to more than 4096 bytes"):
        read_bytes(bomb, limit=4096)
    assert MAX_UNPACKED_BYTES < 2 ** 30 and len(bomb.read_bytes()) < 100


def test_config_values_never_reach_a_registry_unchecked(trained, capsys):
    config_path = trained / "config.json"
    config = json.loads(config_path.read_text())
    for field, value, says in [("model", "__import__", "'model'"), ("data", "no-such-dataset", "'data'"),
                               ("batch_size", "64", "'batch_size'"), ("seed", -1, "'seed'"),
                               ("options", {"latent": 2, "hidden": [16], "evil": 1}, "options.evil"),
                               ("options", {"latent": 10 ** 100}, None)]:
        bad = dict(config, **{field: value})
        config_path.write_text(json.dumps(bad))
        rc, _, err = run(capsys, "eval", trained)
        assert_one_paragraph(rc, err)
        assert str(config_path) in err or "config.json" in err or says is None, err
        if says:
            assert says in err, err


# Every call that turns a value into code or into a name to look up, with why it is safe. A new one
# fails this test until it is reviewed and added here.
DYNAMIC_LOOKUPS = {
    ("nn/module.py", "getattr"): "table names from a constant tuple (_parameters, _buffers)",
    ("optim.py", "getattr"): "the class's own hyperparameter names, never a key from a file",
    ("optim.py", "setattr"): "the same names; the values from a checkpoint are converted to float",
    ("ops.py", "getattr"): "comparison operators from a constant tuple, attached to Tensor at import",
    ("ops.py", "setattr"): "the same constant tuple",
    ("exercises/workspace.py", "import_module"): "targets from the exercise catalogue (code), never from a file; "
                                                 "`exercise check` runs the student's own file on purpose",
    ("exercises/workspace.py", "getattr"): "the same catalogue targets and function names",
    ("exercises/grader.py", "setattr"): "puts the student's function in place of the catalogue's target",
    ("bench_presets.py", "getattr"): "a layer kind the parent benchmark process recorded from F.conv2d or "
                                     "F.conv_transpose2d and passed to its child: not read from a file",
}


def _dynamic_lookups(tree):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        builtin = f.id if isinstance(f, ast.Name) else None
        method = (getattr(f.value, "id", None), f.attr) if isinstance(f, ast.Attribute) else (None, None)
        if (builtin or method[1]) in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 \
                and not isinstance(node.args[1], ast.Constant):
            yield builtin or method[1], node.lineno
        elif builtin in ("eval", "exec", "compile", "__import__") or method[1] == "import_module" \
                or method in (("pickle", "load"), ("pickle", "loads"), ("marshal", "loads")):
            yield builtin or method[1], node.lineno
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                yield "allow_pickle", node.lineno


def test_no_module_looks_up_code_by_a_name_it_read():
    """getattr/import_module/eval/pickle on a non-constant name appear only where the table above says."""
    found = []
    for path in sorted((REPO / "scratchgen").rglob("*.py")):
        rel = path.relative_to(REPO / "scratchgen").as_posix()
        for what, line in _dynamic_lookups(ast.parse(path.read_text(), str(path))):
            if (rel, what) not in DYNAMIC_LOOKUPS:
                found.append(f"{rel}:{line}: {what}")
    assert not found, "review these (a value read from a file must never pick code):\n" + "\n".join(found)


def test_the_lookup_scan_catches_the_old_bit_generator_call():
    old = "import numpy as np\ndef set_state(state):\n    return getattr(np.random, state['bit_generator'])()\n"
    assert list(_dynamic_lookups(ast.parse(old))) == [("getattr", 3)]


# ------------------------------------------------------------------------------ 2. one writer per run
def test_a_second_writer_is_refused_with_the_pid_of_the_first_and_a_kill_leaves_no_stale_lock(tmp_path, capsys,
                                                                                             monkeypatch):
    from scratchgen.training import Trainer
    out = tmp_path / "run"
    real_fit, fits = Trainer.fit, []
    monkeypatch.setattr(Trainer, "fit", lambda self, resume=False: fits.append(resume) or 1 / 0)
    proc = subprocess.Popen([sys.executable, "-m", "scratchgen", "train", "vae", "--out", str(out), *TINY,
                             "--epochs", "100000"], cwd=tmp_path, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:  # epoch 1's checkpoint is written before epoch 2's line is printed
            if line.startswith("epoch 2/"):
                break
        before = (out / "metrics.csv").read_bytes()
        rc, _, err = train(capsys, out, "--epochs", "3")  # a new run: refused, the folder holds one
        assert_one_paragraph(rc, err)
        assert "already holds" in err
        for flag in ("--resume", "--overwrite"):
            rc, _, err = train(capsys, out, "--epochs", "100000", flag)
            assert_one_paragraph(rc, err)
            assert f"PID {proc.pid}" in err and "in use" in err, err
        assert fits == [], "a second writer started training"
        assert proc.poll() is None and (out / "metrics.csv").read_bytes().startswith(before)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.kill()
    monkeypatch.setattr(Trainer, "fit", real_fit)
    _, meta = load_checkpoint(out / "checkpoints" / "latest.npz")
    rc, text, err = train(capsys, out, "--resume", "--epochs", meta["epoch"] + 1)  # the OS released the lock
    assert rc == 0, err
    assert not leftovers(out)


def test_the_lock_is_held_for_the_whole_training(tmp_path, capsys):
    out = tmp_path / "run"
    with RunDir(out).locked():
        rc, _, err = train(capsys, out, "--epochs", "1")
    assert_one_paragraph(rc, err)
    assert f"PID {os.getpid()}" in err
    assert not (out / "config.json").exists()
    assert train(capsys, out, "--epochs", "1")[0] == 0  # released at the end of the block


# ------------------------------------------------------------------------------ 3. --overwrite
def test_overwrite_deletes_only_what_scratchgen_wrote(trained, capsys):
    keep = {trained / "figures" / "thesis.pdf": b"%PDF-1.4 my thesis",
            trained / "checkpoints" / "other-framework.pt": b"weights",
            trained / "notes.txt": b"mine"}
    for path, data in keep.items():
        path.write_bytes(data)
    rc, _, err = train(capsys, trained, "--epochs", "1", "--overwrite")
    assert rc == 0, err
    assert all(p.read_bytes() == data for p, data in keep.items())
    assert load_checkpoint(trained / "checkpoints" / "latest.npz")[1]["epoch"] == 1


def test_overwrite_refuses_a_folder_whose_config_is_not_a_scratchgen_run(tmp_path, capsys):
    folder = tmp_path / "paper"
    (folder / "figures").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"title": "my paper", "pages": 12}))
    (folder / "figures" / "plot.png").write_bytes(b"\x89PNG mine")
    before = snapshot(folder)
    rc, _, err = train(capsys, folder, "--epochs", "1", "--overwrite")
    assert_one_paragraph(rc, err)
    assert "not a scratchgen run" in err and "config.json" in err
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------ 4. atomic writes, OS errors
def test_a_crash_while_metrics_csv_is_rewritten_keeps_the_history(trained, capsys, monkeypatch):
    """On resume, rows after the checkpoint are dropped by rewriting the file: atomically."""
    metrics = trained / "metrics.csv"
    with open(metrics, "a") as f:  # rows a killed run wrote after its last checkpoint
        f.write("step,4,70,0.1,1.0,1.0,1.0,,,,,\n")
    before = metrics.read_bytes()

    def crash(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", crash)
    rc, _, err = train(capsys, trained, "--resume", "--epochs", "4", "--binarize", "dynamic")
    assert_one_paragraph(rc, err)
    assert "disk is full" in err
    assert metrics.read_bytes() == before
    assert not leftovers(trained)


def test_a_half_written_last_row_never_glues_onto_the_next(reference, trained, capsys, tmp_path):
    """A kill mid-append leaves a row without its newline; the resumed run drops it."""
    # the same run stopped after 2 epochs, then a torn row, then resumed to 3
    out = tmp_path / "torn"
    assert train(capsys, out, "--epochs", "2", "--binarize", "dynamic")[0] == 0
    with open(out / "metrics.csv", "a") as f:
        f.write("step,3,47,0.01,12.3")
    assert train(capsys, out, "--resume", "--epochs", "3", "--binarize", "dynamic")[0] == 0
    assert rows_without_time(out) == rows_without_time(reference)
    assert_same_arrays(reference / "checkpoints" / "latest.npz", out / "checkpoints" / "latest.npz")


def test_sample_on_a_full_disk_leaves_the_old_file_whole(trained, capsys, monkeypatch):
    out = trained / "samples.npy"
    assert run(capsys, "sample", trained, "--n", "5", "--out", out)[0] == 0
    before = out.read_bytes()
    real_save = np.save

    def save_half_then_fail(f, arr, *a, **k):
        f.write(b"\x93NUMPY half an array")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", save_half_then_fail)
    rc, _, err = run(capsys, "sample", trained, "--n", "50", "--out", out)
    monkeypatch.setattr(np, "save", real_save)
    assert_one_paragraph(rc, err)
    assert "disk is full" in err
    assert out.read_bytes() == before and not leftovers(trained)


def test_training_on_a_full_disk_stops_with_a_sentence_and_keeps_the_last_checkpoint(trained, capsys,
                                                                                   monkeypatch):
    from scratchgen.training import checkpoint
    real = checkpoint.np.savez
    state = {"n": 0}

    def savez_until_full(f, **arrays):
        state["n"] += 1
        if state["n"] == 3:  # after latest and best of epoch 4
            f.write(b"PK partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", savez_until_full)
    rc, text, err = train(capsys, trained, "--resume", "--epochs", "6", "--binarize", "dynamic")
    assert_one_paragraph(rc, err)
    assert "disk is full" in err and "was not touched" in err and "--resume" in err
    assert load_checkpoint(trained / "checkpoints" / "latest.npz")[1]["epoch"] == 4
    assert not leftovers(trained)


@pytest.mark.parametrize("case", ["out_is_a_file", "parent_is_a_file", "sample_out_is_a_folder",
                                  "sample_parent_is_a_file"])
def test_path_errors_are_sentences(trained, tmp_path, capsys, case):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = {"out_is_a_file": ["train", "vae", "--out", a_file, "--epochs", "1", *TINY],
            "parent_is_a_file": ["train", "vae", "--out", a_file / "run", "--epochs", "1", *TINY],
            "sample_out_is_a_folder": ["sample", trained, "--out", trained / "figures.png"],
            "sample_parent_is_a_file": ["sample", trained, "--out", a_file / "s.png"]}[case]
    (trained / "figures.png").mkdir()
    rc, _, err = run(capsys, *argv)
    assert_one_paragraph(rc, err)
    assert str(a_file) in err or "figures.png" in err
    assert a_file.read_text() == "x"


def test_stale_temporary_files_of_dead_processes_are_removed_by_the_next_run(trained, capsys):
    stale = [trained / f".config.json.tmp-{DEAD_PID}", trained / "checkpoints" / f".latest.npz.tmp-{DEAD_PID}",
             trained / "figures" / f".loss.png.tmp-{DEAD_PID}"]
    alive = trained / f".metrics.csv.tmp-{os.getppid()}"  # a live process: maybe still writing
    for p in [*stale, alive]:
        p.write_bytes(b"half")
    assert train(capsys, trained, "--resume", "--epochs", "4", "--binarize", "dynamic")[0] == 0
    assert not [p for p in stale if p.exists()] and alive.exists()


def test_fetch_removes_part_files_of_killed_downloads(tmp_path):
    from scratchgen.data import download
    folder = tmp_path / download.SOURCES["mnist"].folder
    folder.mkdir()
    part = folder / f".train-images-idx3-ubyte.gz.tmp-{DEAD_PID}.part"
    part.write_bytes(b"half a download")
    with pytest.raises(download.DownloadError):
        download.fetch("mnist", cache_dir=tmp_path, progress=False, mirrors=[])
    assert not part.exists()


# ------------------------------------------------------------------------------ 5. damaged files
def _damage_checkpoint(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[:len(data) * 2 // 3])
    elif how == "garbage":
        path.write_bytes(os.urandom(200))
    elif how == "compressed":
        rewrite_checkpoint(path, compress=True)
    else:
        state, meta = load_checkpoint(path)
        meta = {"missing_step": {k: v for k, v in meta.items() if k != "step"},
                "step_is_text": dict(meta, step="7"), "epoch_negative": dict(meta, epoch=-1),
                "means_wrong_type": dict(meta, epoch_means=[1, 2]),
                "rng_not_json": dict(meta, rng="{"), "meta_not_object": [1]}[how]
        rewrite_checkpoint(path, meta=meta)
    return {"missing_step": "step", "step_is_text": "'step'", "epoch_negative": "'epoch'",
            "means_wrong_type": "'epoch_means'", "rng_not_json": "rng", "meta_not_object": "meta"}.get(how, "")


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "compressed", "missing_step", "step_is_text",
                                 "epoch_negative", "means_wrong_type", "rng_not_json", "meta_not_object"])
def test_damaged_checkpoints_get_a_message_naming_the_file_and_field(trained, capsys, how):
    latest = trained / "checkpoints" / "latest.npz"
    field = _damage_checkpoint(latest, how)
    commands = [["train", "vae", "--out", trained, *TINY, "--resume", "--epochs", "4", "--binarize", "dynamic"]]
    if how not in ("rng_not_json", "means_wrong_type"):  # fields only a resumed training reads
        commands.append(["sample", trained, "--out", trained / "s.npy"])
    for argv in commands:
        rc, _, err = run(capsys, *argv)
        assert_one_paragraph(rc, err)
        assert str(latest) in err and field in err, err


def test_the_bundled_digits_damaged_get_a_message_naming_the_file(tmp_path, capsys):
    for damage in (b"", (REPO / "data" / "digits8.npz").read_bytes()[:3000]):
        (tmp_path / "digits8.npz").write_bytes(damage)
        rc, _, err = run(capsys, "train", "vae", "--data-dir", tmp_path, "--out", tmp_path / "run", *TINY)
        assert_one_paragraph(rc, err)
        assert str(tmp_path / "digits8.npz") in err and "corrupt" in err
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00", b"[1, 2]", b'{"model": "vae"}', b"{not json"])
def test_damaged_config_json_is_named(trained, capsys, content):
    (trained / "config.json").write_bytes(content)
    for argv in (["eval", trained], ["train", "vae", "--out", trained, "--resume", "--epochs", "4"]):
        rc, _, err = run(capsys, *argv)
        assert_one_paragraph(rc, err)
        assert "config.json" in err


def test_eval_does_not_need_a_perfect_metrics_file(trained, capsys):
    (trained / "metrics.csv").write_bytes(b"kind,epoch,step,seconds\nepoch,1,x,\xff\xfe\nepoch,2,4")
    rc, text, err = run(capsys, "eval", trained, "--json")
    assert rc == 0, err
    report = json.loads(text)
    assert report["seconds_per_epoch"] is None and np.isfinite(report["test_loss"])
    assert "metrics.csv" in err  # said why the timings are missing


def test_garbage_metrics_rows_stop_a_resume_with_the_line_named(trained, capsys):
    metrics = trained / "metrics.csv"
    lines = metrics.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[2], "seven", 1)
    metrics.write_text("\n".join(lines) + "\n")
    rc, _, err = train(capsys, trained, "--resume", "--epochs", "4", "--binarize", "dynamic")
    assert_one_paragraph(rc, err)
    assert "metrics.csv, line 3" in err and "step" in err


def test_a_garbled_metrics_cell_costs_only_its_point_in_the_figures(trained, capsys):
    metrics = trained / "metrics.csv"
    rows = list(csv.DictReader(metrics.read_text().splitlines()))
    epoch_row = next(r for r in rows if r["kind"] == "epoch")
    epoch_row["val_kl_0"], epoch_row["train_loss"] = "garbage", "1.2.3"
    with open(metrics, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc, _, err = train(capsys, trained, "--resume", "--epochs", "4", "--binarize", "dynamic")
    assert rc == 0, err
    assert (trained / "figures" / "latent_kl.png").exists()


# ------------------------------------------------------------------------------ 6. options
@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--epochs", "0"], ["--epochs", "-2"], ["--lr", "0"],
                                  ["--lr", "nan"], ["--log-every", "0"], ["--plot-every", "-1"],
                                  ["--latent", "0"], ["--beta", "-1"], ["--seed", "-1"], ["--free-bits", "inf"]])
def test_options_that_make_no_sense_are_refused_before_anything_is_created(tmp_path, capsys, argv):
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "vae", "--out", out, "--hidden", "16", *argv)
    assert_one_paragraph(rc, err)
    assert argv[0] in err and "nothing was created" in err
    assert not out.exists()


def test_every_family_default_and_preset_passes_the_checks():
    """The checks refuse nonsense, not the settings the project ships."""
    from scratchgen import models
    from scratchgen.training.config import check_config, resolve_config
    for name in models.names():
        family = models.get(name)
        for preset in [None, *family.presets]:
            check_config(resolve_config(family, {"preset": preset} if preset else {}), family)


def test_eval_set_values_are_checked(trained, capsys):
    rc, _, err = run(capsys, "eval", trained, "--set", "iwae_k=-5")
    assert_one_paragraph(rc, err)
    assert "iwae_k" in err and "-5" in err


def test_sample_refuses_weights_that_are_not_finite(trained, capsys):
    latest = trained / "checkpoints" / "latest.npz"
    state, _ = load_checkpoint(latest)
    key = next(k for k in state if k.startswith("model.") and state[k].dtype.kind == "f")
    state[key] = state[key].copy()
    state[key].flat[0] = np.nan
    rewrite_checkpoint(latest, state=state)
    rc, _, err = run(capsys, "sample", trained, "--out", trained / "nan.png")
    assert_one_paragraph(rc, err)
    assert key in err and str(latest) in err and not (trained / "nan.png").exists()


def test_sample_refuses_a_request_too_large_for_memory(trained, capsys):
    rc, _, err = run(capsys, "sample", trained, "--n", str(10 ** 12), "--out", trained / "many.npy")
    assert_one_paragraph(rc, err)
    assert "GiB" in err and "--n" in err and not (trained / "many.npy").exists()


# ------------------------------------------------------------------------------ real file systems (root only)
@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a tmpfs of that size mounted for the test (skipped where mounting is not allowed)."""
    mounted = []

    def mount(size):
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                               capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root in a mount namespace that allows it)")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_really_full_disk(reference, tmpfs, capsys):
    """96 kB fill up during training: one sentence, and every checkpoint left is whole."""
    out = tmpfs("96k") / "run"
    rc, _, err = train(capsys, out, "--epochs", "50")
    assert_one_paragraph(rc, err)
    assert "disk is full" in err
    for name in ("latest.npz", "best.npz"):
        if (out / "checkpoints" / name).exists():
            load_checkpoint(out / "checkpoints" / name)  # readable: nothing half-written
    assert not leftovers(out)


def test_a_read_only_folder(reference, tmpfs, capsys):
    import shutil
    mnt = tmpfs("4m")
    shutil.copytree(reference, mnt / "run")
    before = snapshot(mnt / "run")
    assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)]).returncode == 0
    for argv in (["train", "vae", "--out", mnt / "run", *TINY, "--resume", "--epochs", "4",
                  "--binarize", "dynamic"], ["sample", mnt / "run"]):
        rc, _, err = run(capsys, *argv)
        assert_one_paragraph(rc, err)
        assert "read-only" in err
    assert snapshot(mnt / "run") == before


# ------------------------------------------------------------------------------ kill -9, then --resume
def _start(out, *args):
    return subprocess.Popen([sys.executable, "-m", "scratchgen", "train", "vae", "--out", str(out), *TINY,
                             "--binarize", "dynamic", *args], env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _kill_at_a_random_point(proc, rng, anchors):
    """SIGKILL ``proc`` a random time (0-0.5 s) after it prints a line starting with one of ``anchors``
    (chosen at random); if it finishes first, so be it."""
    anchor = rng.choice(anchors)
    delay = rng.uniform(0.0, 0.5)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith(anchor):
                break
        timer = threading.Timer(delay, proc.send_signal, (signal.SIGKILL,))
        timer.start()
        proc.communicate()
        timer.cancel()
    finally:
        watchdog.cancel()
    return proc.returncode


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_in_training_and_in_a_resume_then_resume_is_exact(reference, tmp_path, capsys, seed):
    rng = random.Random(seed)
    out = tmp_path / "run"
    # the first run dies in epoch 1 or 2, in a checkpoint write or a figure; the resume anywhere
    _kill_at_a_random_point(_start(out, "--epochs", "3"), rng, ("Training", "epoch 1/", "epoch 2/"))
    if (out / "checkpoints" / "latest.npz").exists():
        _kill_at_a_random_point(_start(out, "--epochs", "3", "--resume"), rng, ("Resuming", "epoch"))
    how = "--resume" if (out / "checkpoints" / "latest.npz").exists() else "--overwrite"
    rc, _, err = train(capsys, out, "--epochs", "3", "--binarize", "dynamic", how)
    assert rc == 0, err
    for name in ("latest.npz", "best.npz"):
        assert_same_arrays(reference / "checkpoints" / name, out / "checkpoints" / name)
    assert rows_without_time(out) == rows_without_time(reference)
    assert not leftovers(out)
