"""Checkpoints: one ``.npz`` file holding everything needed to continue a run exactly.

A checkpoint stores

* ``state/<key>``: the experiment's ``state_dict()`` — model parameters and buffers, optimizer
  moments and step counts — one array per key;
* ``meta``: a JSON string with the step, the epoch, the position inside the epoch, the global
  RNG state (:func:`scratchgen.random.get_state`), the best validation value so far and the
  running sums of the current epoch's losses.

Only arrays of numbers and one string are stored, and :func:`load_checkpoint` reads with
``allow_pickle=False``, so opening a checkpoint can never execute code.

Writes are atomic: the file is written to a temporary name in the same folder and renamed over
the old one with :func:`os.replace` only when it is complete, so a crash (or Ctrl-C) while
writing leaves the previous checkpoint as it was.
"""
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
_LAZY_STATE = re.compile(r"(^|\.)state\.\d+\.")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path, state, meta):
    """Atomically write ``state`` (dict of arrays) and ``meta`` (JSON-able dict) to ``path``.

    Refuses (ValueError) to write floating-point arrays holding NaN or infinity: a checkpoint
    must never replace good weights with broken ones.
    """
    path = Path(path)
    arrays = {}
    for key, value in state.items():
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(f"checkpoint entry {key!r} is an object array; only numeric arrays are stored")
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise ValueError(f"refusing to write {path}: {key} holds NaN or infinite values")
        arrays["state/" + key] = value
    arrays["meta"] = np.array(json.dumps(dict(meta, format=FORMAT_VERSION)))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # NOTE: atomic on POSIX and Windows when both are on one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(state, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable scratchgen checkpoint ({type(e).__name__}: {e}). "
                              f"If it was cut short, use the other checkpoint in the same folder "
                              f"(latest.npz or best.npz).") from e
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version of "
                              f"scratchgen reads format {FORMAT_VERSION}")
    return state, meta


def check_compatible(expected, found, path):
    """Raise :class:`CheckpointError` unless ``found`` has exactly the keys and shapes of ``expected``.

    Both are ``state_dict()``-style dicts. The message names every parameter whose shape
    differs, and those missing or unexpected, so a student sees *which* layer changed.
    """
    differ = [f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(np.shape(v))}"
              for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(np.shape(v))]
    missing = sorted(set(expected) - set(found))
    # NOTE: an optimizer creates its per-parameter state ("optimizer.state.3.exp_avg") at its
    # first step, so a freshly built experiment lacks keys that a checkpoint rightly has.
    unexpected = sorted(k for k in set(found) - set(expected) if not _LAZY_STATE.search(k))
    if not (differ or missing or unexpected):
        return
    lines = [f"{path} was saved from a different architecture than the model built from this "
             f"run's configuration:"]
    if differ:
        lines.append("  shapes differ: " + "; ".join(differ))
    if missing:
        lines.append("  missing from the checkpoint: " + ", ".join(missing))
    if unexpected:
        lines.append("  not in the model: " + ", ".join(unexpected))
    lines.append("Load it with the options it was trained with (see config.json next to it).")
    raise CheckpointError("\n".join(lines))
