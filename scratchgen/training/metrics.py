"""The metrics file: a CSV with one row per logged step interval and one per epoch.

Columns::

    kind, epoch, step, seconds, train_<term>..., val_<term>...

``kind`` is ``step`` (the mean training losses over the last ``--log-every`` steps) or
``epoch`` (the mean over the whole epoch, and the validation losses). ``epoch`` counts from 1;
``step`` is the number of optimisation steps done so far; ``seconds`` is the wall time of the
interval. The terms are the experiment's ``loss_terms`` (for a VAE: ``loss``, ``recon``, ``kl``).
A value that does not apply to a row (validation in a step row) is left empty.

Rows are appended as training goes; when a resumed run drops the rows written after its checkpoint,
the file is rewritten atomically (:func:`scratchgen.files.atomic_write`), so a crash in that window
never loses the history. A row half-written by a killed process is dropped before the next append,
so it never glues onto the next row. The readers below skip cells that are not numbers: a damaged
metrics file costs its own statistics, never the evaluation of a run's weights.
"""
import csv
import math
from pathlib import Path
from statistics import median

from ..files import atomic_write

FIXED = ("kind", "epoch", "step", "seconds")


class MetricsError(ValueError):
    """``metrics.csv`` cannot be read or continued; the message names the file, line and column."""


def columns(train_terms, val_terms):
    return list(FIXED) + [f"train_{t}" for t in train_terms] + [f"val_{t}" for t in val_terms]


class MetricsLog:
    """Append rows to ``metrics.csv``; the header is written with the first row."""

    def __init__(self, path, train_terms, val_terms):
        self.path = Path(path)
        self.columns = columns(train_terms, val_terms)
        if self.path.exists() and self.path.stat().st_size:
            header = _header(self.path)
            if header != self.columns:
                raise MetricsError(f"{self.path} has columns {header}, expected {self.columns}; "
                                   f"it belongs to another kind of run")

    def append(self, kind, epoch, step, seconds, train=None, val=None):
        row = {"kind": kind, "epoch": epoch, "step": step, "seconds": f"{seconds:.4f}"}
        row.update({f"train_{k}": _fmt(v) for k, v in (train or {}).items()})
        row.update({f"val_{k}": _fmt(v) for k, v in (val or {}).items()})
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def truncate_after(self, step):
        """Keep the rows logged up to ``step`` (a resumed run re-logs the later ones, so none appear
        twice) and drop a last row cut short by a crash; the file is replaced atomically."""
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        complete = raw[:raw.rfind(b"\n") + 1]  # a crash mid-append leaves a line without its newline
        rows = _parse(complete, self.path)
        keep = []
        for line, r in enumerate(rows, start=2):
            try:
                if int(r["step"]) <= step:
                    keep.append(r)
            except (TypeError, ValueError):
                raise MetricsError(f"{self.path}, line {line}: column step is {r['step']!r}, not a whole "
                                   f"number. Fix or delete that line, then resume again.") from None
        if len(keep) == len(rows) and len(complete) == len(raw):
            return
        with atomic_write(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)


def _decode(raw, path):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetricsError(f"{path} is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                           f"it was damaged or edited with another encoding") from None


def _parse(raw, path):
    return list(csv.DictReader(_decode(raw, path).splitlines()))


def _header(path):
    lines = _decode(Path(path).read_bytes(), path).splitlines()
    return next(csv.reader(lines[:1]), None)


def _fmt(v):
    # repr keeps every bit of a float64, so a resumed run's rows can be compared exactly
    return repr(float(v))


def read_metrics(path):
    """The rows of a metrics file as dicts of strings (empty list if there is no file).

    MetricsError (naming the file) if it is not UTF-8 text.
    """
    path = Path(path)
    if not path.exists():
        return []
    return _parse(path.read_bytes(), path)


def number(text, kind=float):
    """``kind(text)``, or None for an empty or garbled cell."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        return None
    return value if kind is int or math.isfinite(value) else None


def column(rows, name, kind=None):
    """``(steps, values)`` of one column over the rows of one kind, skipping empty or garbled cells."""
    steps, values = [], []
    for r in rows:
        if kind is None or r.get("kind") == kind:
            step, value = number(r.get("step"), int), number(r.get(name))
            if step is not None and value is not None:
                steps.append(step)
                values.append(value)
    return steps, values


def seconds_per_epoch(rows):
    """Median training time of an epoch (the median ignores the first epoch's JIT compilation)."""
    _, secs = column(rows, "seconds", "epoch")
    return median(secs) if secs else None


def seconds_per_iteration(rows):
    """Median training time of one step (one ``train_step`` call: for a GAN one discriminator step and,
    every ``--d-steps``, a generator step), from the step rows (time since the previous row over the
    steps since it), or from the epoch rows if there are fewer than three step rows.

    NOTE: an interval cut by a resume covers fewer steps in its time than its step count says (and an
    epoch row of a resumed epoch likewise): with many step rows, the median is not moved by them."""
    steps, secs = column(rows, "seconds", "step")
    if len(steps) < 3:
        steps, secs = column(rows, "seconds", "epoch")
    per = [s / (b - a) for s, a, b in zip(secs, [0] + steps, steps) if b > a]
    return median(per) if per else None


def is_finite_dict(d):
    return all(math.isfinite(v) for v in d.values())
