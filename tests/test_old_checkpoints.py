"""Run folders written by an earlier version of scratchgen still load, evaluate, sample and train on.

``tests/fixtures/old_runs/`` holds nine tiny runs (one epoch on digits8, one per family and
architecture) trained with the code of commit bf26f59, before the forward passes moved into the
networks (issue 14). ``expected.json`` beside them holds what that code measured on them: the
validation metrics on the test split, a few statistics of 16 samples, and the terms of one more
training step. These numbers are recorded outputs of the old code — the point of the test — so
never regenerate them to make a change pass: a change that alters them broke old checkpoints or
the models' behaviour. (How the runs were made: ``tests/fixtures/old_runs/README.md``.)

Tolerance: the numbers are float32 computations, and the kernels may change their order of
summation, so equal means ``rtol=1e-4``; a renamed key, a reshaped layer or a changed order of
random draws moves them by far more. Counts (active units, codes used) must match exactly.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from scratchgen import models
from scratchgen.data import DATASETS, load
from scratchgen.evaluation import vae_metrics
from scratchgen.random import manual_seed
from scratchgen.training import RunDir, check_compatible, isolated_rng, load_checkpoint

OLD_RUNS = Path(__file__).parent / "fixtures" / "old_runs"
EXPECTED = json.loads((OLD_RUNS / "expected.json").read_text())


def rebuild(run_dir):
    """The experiment of an old run folder, built from its config.json, with latest.npz loaded."""
    run = RunDir(run_dir)
    config = run.read_config()
    manual_seed(config["seed"])
    experiment = models.get(config["model"])(config, DATASETS[config["data"]])
    state, meta = load_checkpoint(run.latest)
    check_compatible(experiment.state_dict(), state, run.latest)
    experiment.load_state_dict(state)
    return config, experiment, meta


def measure(run_dir):
    """What the test compares: test-split metrics, 16 samples' statistics, one more training step."""
    config, experiment, meta = rebuild(run_dir)
    test = load(config["data"], "test", scale=config["scale"], binarize=config["binarize"], seed=config["seed"])
    with isolated_rng(config["seed"]):
        metrics = experiment.evaluate(test)
    with isolated_rng(123):
        samples = np.asarray(experiment.sample(16), dtype=np.float64)
    iwae = {}
    if "iwae_k" in experiment.opts:  # the VAE and the CVAE: the importance-weighted bound too
        x, y = test[:50]
        with isolated_rng(5):
            iwae = {"nll_iwae_k20": float(vae_metrics.iwae_nll(experiment, x, y, k=20).mean())}
    with isolated_rng(7):
        step = experiment.train_step(test[:config["batch_size"]])
    plain = {k: (np.asarray(v).tolist() if isinstance(v, (np.ndarray, np.generic)) else v)
             for k, v in metrics.items()}
    return {"epoch": meta["epoch"], "step": meta["step"], "evaluate": plain, **iwae,
            "samples": {"shape": list(samples.shape), "mean": samples.mean(), "std": samples.std(),
                        "first": samples.reshape(16, -1)[:, 0].tolist()},
            "train_step": {k: float(v) for k, v in step.items()}}


def assert_same(found, expected, where):
    if isinstance(expected, dict):
        assert set(expected) <= set(found), f"{where}: keys {sorted(set(expected) - set(found))} are gone"
        for k, v in expected.items():
            assert_same(found[k], v, f"{where}.{k}")
    elif isinstance(expected, (int, str)) or expected is None:
        assert found == expected, f"{where}: {found!r} != {expected!r}"
    else:
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-6, err_msg=where)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_run_folder_from_before_issue_14_loads_and_gives_the_numbers_it_gave_then(name):
    assert_same(measure(OLD_RUNS / name), EXPECTED[name], name)


def test_every_stored_old_run_has_expected_numbers():
    folders = sorted(p.name for p in OLD_RUNS.iterdir() if (p / "config.json").is_file())
    assert folders == sorted(EXPECTED)
