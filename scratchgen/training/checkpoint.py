"""Checkpoints: one ``.npz`` file holding everything needed to continue a run exactly.

A checkpoint stores

* ``state/<key>``: the experiment's ``state_dict()`` — model parameters and buffers, optimizer
  moments and step counts — one array per key;
* ``meta``: a JSON string with the step, the epoch, the position inside the epoch, the global
  RNG state (:func:`scratchgen.random.get_state`), the best validation value so far and the
  running sums of the current epoch's losses.

Only arrays of numbers and one string are stored, and :func:`load_checkpoint` never unpickles,
so opening a checkpoint can never execute code. Nothing read from the file is trusted before it
is checked: every array's declared shape and dtype are read from its header and compared with the
model (and with the bytes the file really holds) *before* any array is read into memory
(:func:`scratchgen.npz.read_npz`), so a small crafted file cannot ask for gigabytes; every field of
``meta`` is checked for its type and range.

Writes are atomic (:func:`scratchgen.files.atomic_write`): the file is written to a temporary
name in the same folder and renamed over the old one only when it is complete, so a crash (or
Ctrl-C, or a full disk) while writing leaves the previous checkpoint as it was.
"""
import json
import math
import re
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..npz import READ_ERRORS, NpzError, read_npz

FORMAT_VERSION = 1
_LAZY_STATE = re.compile(r"(^|\.)state\.\d+\.")
# meta fields: what each must be. "count" = a non-negative integer (not a bool)
META_FIELDS = {"step": "count", "epoch": "count", "batch": "count", "best": "number or null",
               "best_epoch": "count or null", "rng": "text", "epoch_means": "running means",
               "interval_means": "running means", "model": "text", "data": "text", "format": "count"}
# the fields a training run needs to continue, and those scratchgen eval/sample read
RESUME_FIELDS = ("step", "epoch", "batch", "best", "best_epoch", "rng", "epoch_means", "interval_means")
RUN_FIELDS = ("step", "epoch")


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
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_checkpoint(path, expected=None, required=()):
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(state, meta)``.

    ``expected`` (a model's ``state_dict()``) is compared with the arrays' headers before their
    data is read (:func:`check_compatible`). ``required`` names the ``meta`` fields that must be
    present (:data:`RESUME_FIELDS` to continue training, :data:`RUN_FIELDS` to sample or evaluate). Any problem is a :class:`CheckpointError`
    naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    def check(headers):  # before any array is read into memory
        if "meta" not in headers:
            raise NpzError("it has no meta entry")
        if expected is not None:
            check_compatible(expected, {k.removeprefix("state/"): h for k, h in headers.items()
                                        if k.startswith("state/")}, path)

    try:
        arrays = read_npz(path, text=("meta",), check=check)
    except CheckpointError:
        raise
    except NpzError as e:
        raise _unreadable(path, str(e)) from e
    except READ_ERRORS as e:
        raise _unreadable(path, f"{type(e).__name__}: {e}") from e
    meta = _read_meta(arrays.pop("meta"), path, required)
    return {k.removeprefix("state/"): v for k, v in arrays.items() if k.startswith("state/")}, meta


def _unreadable(path, reason):
    return CheckpointError(f"{path} is not a readable scratchgen checkpoint ({reason}). If it was cut "
                           f"short, use the other checkpoint in the same folder (latest.npz or best.npz).")


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid(kind, v):
    if kind.endswith(" or null") and v is None:
        return True
    kind = kind.removesuffix(" or null")
    if kind == "count":
        return _is_count(v)
    if kind == "number":
        return _is_number(v)
    if kind == "text":
        return isinstance(v, str)
    # running means: {"sums": {term: number}, "count": number[, "counts": {term: number}]}
    # ("counts", one per term, since 2026-12; older checkpoints counted every term at every step)
    return (isinstance(v, dict) and set(v) in ({"sums", "count"}, {"sums", "count", "counts"})
            and _is_number(v["count"]) and v["count"] >= 0
            and _is_term_map(v["sums"]) and _is_term_map(v.get("counts", {}))
            and set(v.get("counts", v["sums"])) == set(v["sums"]))


def _is_term_map(m):
    return isinstance(m, dict) and all(isinstance(k, str) and _is_number(x) for k, x in m.items())


def _read_meta(array, path, required):
    try:
        meta = json.loads(str(array))
    except json.JSONDecodeError as e:
        raise _unreadable(path, f"its meta is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its meta is a JSON {type(meta).__name__}, expected an object")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this version of "
                              f"scratchgen reads format {FORMAT_VERSION}")
    missing = [k for k in required if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: its meta lacks the field(s) {', '.join(missing)}; the file was "
                              f"not written by scratchgen's trainer, or was edited")
    for key, kind in META_FIELDS.items():
        if key in meta and not _valid(kind, meta[key]):
            raise CheckpointError(f"{path}: meta field {key!r} is {meta[key]!r}; expected a {kind}")
    return meta


def check_compatible(expected, found, path):
    """Raise :class:`CheckpointError` unless ``found`` has exactly the keys and shapes of ``expected``.

    Both are ``state_dict()``-style dicts (the values of ``found`` may be array headers: anything
    with a ``shape``). The message names every parameter whose shape
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
