"""The run folder: one directory per training run, holding everything the run made.

::

    runs/vae-digits8-seed0/
        config.json          the resolved configuration (model, data, options, seed, ...)
        metrics.csv          one row per logged step interval and per epoch (see metrics.py)
        checkpoints/
            latest.npz       written at the end of every epoch and on Ctrl-C
            best.npz         the epoch with the lowest validation loss so far
        figures/             PNGs refreshed as training goes (samples, reconstructions, loss)

A folder counts as a run when it holds ``config.json``. A new run never writes into a folder
that already holds one, unless the user asked to continue it (``--resume``) or to replace it
(``--overwrite``), so a typo in ``--out`` cannot destroy an earlier result.
"""
import json
import os
import shutil
from pathlib import Path

CONFIG_FILE = "config.json"

# Settings that may change between a run and its continuation: they do not change the numbers.
NOT_IDENTITY = ("epochs", "data_dir", "command", "scratchgen_version")


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (it holds another run, or no run to resume)."""


def default_run_dir(model, data, seed):
    return Path("runs") / f"{model}-{data}-seed{seed}"


def identity(config):
    """The part of a configuration that decides the numbers a run produces."""
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def config_diff(old, new):
    """``["key: old -> new", ...]`` over the identity keys (model options flattened)."""
    def flat(cfg):
        out = {}
        for k, v in identity(cfg).items():
            if isinstance(v, dict):
                out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                out[k] = v
        return out
    a, b = flat(old), flat(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class RunDir:
    """Paths inside a run folder, and reading/writing its configuration."""

    def __init__(self, path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / CONFIG_FILE)
    metrics_path = property(lambda self: self.path / "metrics.csv")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    latest = property(lambda self: self.checkpoint_dir / "latest.npz")
    best = property(lambda self: self.checkpoint_dir / "best.npz")
    figures = property(lambda self: self.path / "figures")

    def __str__(self):
        return str(self.path)

    def is_run(self):
        return self.config_path.is_file()

    def read_config(self):
        if not self.is_run():
            raise RunFolderError(f"{self.path} is not a scratchgen run folder: it has no {CONFIG_FILE}. Pass "
                                 f"the folder that `scratchgen train` printed (runs/<model>-<data>-seed<S>).")
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as e:
            raise RunFolderError(f"{self.config_path} is not valid JSON ({e}); fix it, or delete the "
                                 f"run folder") from e

    def write_config(self, config):
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_name(f".{CONFIG_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.config_path)

    def clear(self):
        """Delete what a run writes (and only that), for ``--overwrite``."""
        for p in (self.config_path, self.metrics_path):
            p.unlink(missing_ok=True)
        for d in (self.checkpoint_dir, self.figures):
            if d.exists():
                shutil.rmtree(d)

    def check_new(self, config, resume_hint):
        """Refuse to start a new run in a folder that already holds one (the message says what to do)."""
        if not self.is_run():
            return
        old = self.read_config()
        diff = config_diff(old, config)
        what = ("a different run (" + "; ".join(diff) + ")") if diff else "a run with the same settings"
        raise RunFolderError(
            f"{self.path} already holds {what}. Nothing was changed.\n"
            f"  continue it:          {resume_hint}\n"
            f"  replace it:           add --overwrite (deletes its checkpoints, metrics and figures)\n"
            f"  or keep both:         choose another folder with --out")
