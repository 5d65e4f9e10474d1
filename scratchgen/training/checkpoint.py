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
model (and with the bytes the file really holds) *before* any array is read into memory, so a small
crafted file cannot ask for gigabytes; every field of ``meta`` is checked for its type and range.

Writes are atomic (:func:`scratchgen.files.atomic_write`): the file is written to a temporary
name in the same folder and renamed over the old one only when it is complete, so a crash (or
Ctrl-C, or a full disk) while writing leaves the previous checkpoint as it was.
"""
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic_write

FORMAT_VERSION = 1
_LAZY_STATE = re.compile(r"(^|\.)state\.\d+\.")
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats: all a state_dict holds
# meta fields: what each must be. "count" = a non-negative integer (not a bool)
META_FIELDS = {"step": "count", "epoch": "count", "batch": "count", "best": "number or null",
               "best_epoch": "count or null", "rng": "text", "epoch_means": "running means",
               "interval_means": "running means", "model": "text", "data": "text", "format": "count"}
# the fields a training run needs to continue (scratchgen eval/sample need only step and epoch)
RESUME_FIELDS = ("step", "epoch", "batch", "best", "best_epoch", "rng", "epoch_means", "interval_means")


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


def load_checkpoint(path, expected=None, required=("step", "epoch")):
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(state, meta)``.

    ``expected`` (a model's ``state_dict()``) is compared with the arrays' headers before their
    data is read (:func:`check_compatible`). ``required`` names the ``meta`` fields that must be
    present (:data:`RESUME_FIELDS` to continue training). Any problem is a :class:`CheckpointError`
    naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = {info.filename[:-len(".npy")]: _header(zf, info, path) for info in zf.infolist()}
            if "meta" not in headers:
                raise _unreadable(path, "it has no meta entry")
            meta = _read_meta(_read(zf, headers["meta"]), path, required)
            shapes = {k[len("state/"):]: h for k, h in headers.items() if k.startswith("state/")}
            if expected is not None:
                check_compatible(expected, shapes, path)
            state = {k: _read(zf, h) for k, h in shapes.items()}
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
            NotImplementedError) as e:
        raise _unreadable(path, f"{type(e).__name__}: {e}") from e
    return state, meta


def _unreadable(path, reason):
    return CheckpointError(f"{path} is not a readable scratchgen checkpoint ({reason}). If it was cut "
                           f"short, use the other checkpoint in the same folder (latest.npz or best.npz).")


class _Header:
    """One array's declared shape and dtype (from its .npy header) and where its bytes are."""

    def __init__(self, info, shape, dtype, offset):
        self.info, self.shape, self.dtype, self.offset = info, tuple(shape), dtype, offset


def _header(zf, info, path):
    name = info.filename
    if not name.endswith(".npy"):
        raise _unreadable(path, f"it holds {name!r}, which is not an array")
    if info.compress_type != zipfile.ZIP_STORED:
        raise _unreadable(path, f"{name} is compressed; scratchgen writes checkpoints uncompressed, and "
                                f"does not inflate data whose size it cannot check")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise _unreadable(path, f"{name} has .npy format version {version}; expected 1.0 or 2.0")
        shape, fortran, dtype = read[version](f)
        offset = f.tell()
    if dtype.hasobject or (dtype.kind not in _NUMERIC_KINDS and name != "meta.npy"):
        raise _unreadable(path, f"{name} has dtype {dtype}; a checkpoint holds numbers only")
    if name == "meta.npy" and (dtype.kind != "U" or shape != ()):
        raise _unreadable(path, f"meta has dtype {dtype} and shape {shape}; expected one string")
    declared = math.prod(shape) * dtype.itemsize
    if offset + declared != info.file_size:  # NOTE: stored entries: file_size is the bytes really there
        raise _unreadable(path, f"{name} declares shape {shape} of {dtype} ({declared} bytes) but holds "
                                f"{info.file_size - offset} bytes")
    return _Header(info, shape, dtype, offset)


def _read(zf, header):
    with zf.open(header.info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


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
    # running means: {"sums": {term: number}, "count": number}
    return (isinstance(v, dict) and set(v) == {"sums", "count"} and _is_number(v["count"])
            and v["count"] >= 0 and isinstance(v["sums"], dict)
            and all(isinstance(k, str) and _is_number(x) for k, x in v["sums"].items()))


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
