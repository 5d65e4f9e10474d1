"""Checkpoints: exact round trips, no pickle, atomic writes, and clear refusals."""
import json
import os

import numpy as np
import pytest

from scratchgen.training.checkpoint import (CheckpointError, check_compatible, load_checkpoint,
                                            save_checkpoint)


def example_state(seed=0):
    rng = np.random.default_rng(seed)
    return {"model.fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
            "model.fc.bias": rng.standard_normal(3),                      # float64 stays float64
            "optimizer.step": np.array(7, dtype=np.int64),
            "optimizer.betas": np.array([0.9, 0.999]),
            "optimizer.state.0.exp_avg": rng.standard_normal((3, 4)).astype(np.float32)}


META = {"step": 7, "epoch": 1, "batch": 3, "rng": '{"bit_generator": "PCG64"}', "best": None}


def test_round_trip_is_exact_and_loads_without_pickle(tmp_path):
    state = example_state()
    path = save_checkpoint(tmp_path / "ckpt" / "latest.npz", state, META)
    back, meta = load_checkpoint(path)
    assert set(back) == set(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    assert {k: meta[k] for k in META} == META
    with np.load(path, allow_pickle=False) as z:  # the file itself needs no pickle
        assert all(z[k].dtype != object for k in z.files)


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, example_state(0), META)
    save_checkpoint(path, example_state(1), dict(META, step=8))
    state, meta = load_checkpoint(path)
    assert meta["step"] == 8 and np.array_equal(state["model.fc.bias"], example_state(1)["model.fc.bias"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.npz"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_half_way_through_a_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, exc):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, example_state(0), META)
    before = path.read_bytes()

    real_write = np.lib.format.write_array
    written = []

    def write_then_crash(*args, **kwargs):
        if len(written) == 2:  # two arrays are already in the temporary file
            raise exc
        written.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_crash)
    with pytest.raises(type(exc)):
        save_checkpoint(path, example_state(1), dict(META, step=99))
    monkeypatch.undo()

    assert len(written) == 2, "the writer must really have crashed part way"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.npz"]
    assert load_checkpoint(path)[1]["step"] == META["step"]


def test_refuses_to_write_nan_or_inf_weights_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, example_state(0), META)
    before = path.read_bytes()
    for bad in (np.nan, np.inf):
        state = example_state(1)
        state["model.fc.weight"][1, 2] = bad
        with pytest.raises(ValueError, match="model.fc.weight holds NaN or infinite"):
            save_checkpoint(path, state, META)
    assert path.read_bytes() == before


def test_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        save_checkpoint(tmp_path / "x.npz", {"a": np.array([{"x": 1}], dtype=object)}, META)


def test_a_pickled_file_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array(json.dumps(dict(META, format=1))),
             **{"state/payload": np.array([object()], dtype=object)})
    with pytest.raises(CheckpointError, match="not a readable scratchgen checkpoint"):
        load_checkpoint(path)


def test_truncated_and_missing_files_give_clear_errors(tmp_path):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, example_state(0), META)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="latest.npz is not a readable scratchgen checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz")


def test_format_version_is_checked(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.array(json.dumps({"format": 0})))
    with pytest.raises(CheckpointError, match="format 0"):
        load_checkpoint(path)


def test_check_compatible_names_every_mismatched_parameter():
    model = {"model.enc.weight": np.zeros((16, 64)), "model.enc.bias": np.zeros(16),
             "model.dec.weight": np.zeros((64, 16)), "optimizer.step": np.zeros(())}
    ckpt = {"model.enc.weight": np.zeros((32, 64)), "model.enc.bias": np.zeros(32),
            "model.extra.weight": np.zeros(3), "optimizer.step": np.zeros(()),
            "optimizer.state.0.exp_avg": np.zeros((32, 64))}
    with pytest.raises(CheckpointError) as info:
        check_compatible(model, ckpt, "run/latest.npz")
    msg = str(info.value)
    assert "run/latest.npz was saved from a different architecture" in msg
    assert "model.enc.weight: checkpoint (32, 64) vs model (16, 64)" in msg
    assert "model.enc.bias: checkpoint (32,) vs model (16,)" in msg
    assert "missing from the checkpoint: model.dec.weight" in msg
    assert "not in the model: model.extra.weight" in msg
    assert "exp_avg" not in msg  # optimizer state appears after the first step: not a mismatch


def test_check_compatible_accepts_a_matching_checkpoint_with_optimizer_state():
    model = {"model.w": np.zeros((2, 3)), "optimizer.step": np.zeros(())}
    ckpt = dict(model, **{"optimizer.state.0.exp_avg": np.zeros((2, 3))})
    check_compatible(model, ckpt, "x.npz")  # no error


def test_temporary_name_is_in_the_same_folder(tmp_path, monkeypatch):
    """os.replace is only atomic within one filesystem: the temporary file must sit next to the target."""
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append((a, b)), real(a, b)))
    save_checkpoint(tmp_path / "sub" / "best.npz", example_state(), META)
    (src, dst), = seen
    assert os.path.dirname(src) == os.path.dirname(dst) == str(tmp_path / "sub")
