"""The metrics file: a CSV with one row per logged step interval and one per epoch.

Columns::

    kind, epoch, step, seconds, train_<term>..., val_<term>...

``kind`` is ``step`` (the mean training losses over the last ``--log-every`` steps) or
``epoch`` (the mean over the whole epoch, and the validation losses). ``epoch`` counts from 1;
``step`` is the number of optimisation steps done so far; ``seconds`` is the wall time of the
interval. The terms are the experiment's ``loss_terms`` (for a VAE: ``loss``, ``recon``, ``kl``).
A value that does not apply to a row (validation in a step row) is left empty.
"""
import csv
import math
from pathlib import Path

FIXED = ("kind", "epoch", "step", "seconds")


def columns(train_terms, val_terms):
    return list(FIXED) + [f"train_{t}" for t in train_terms] + [f"val_{t}" for t in val_terms]


class MetricsLog:
    """Append rows to ``metrics.csv``; the header is written with the first row."""

    def __init__(self, path, train_terms, val_terms):
        self.path = Path(path)
        self.columns = columns(train_terms, val_terms)
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header != self.columns:
                raise ValueError(f"{self.path} has columns {header}, expected {self.columns}; "
                                 f"it belongs to another kind of run")

    def append(self, kind, epoch, step, seconds, train=None, val=None):
        row = {"kind": kind, "epoch": epoch, "step": step, "seconds": f"{seconds:.4f}"}
        row.update({f"train_{k}": _fmt(v) for k, v in (train or {}).items()})
        row.update({f"val_{k}": _fmt(v) for k, v in (val or {}).items()})
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def truncate_after(self, step):
        """Drop rows logged after ``step`` (a resumed run re-logs them, so none appear twice)."""
        if not self.path.exists():
            return
        rows = read_metrics(self.path)
        keep = [r for r in rows if int(r["step"]) <= step]
        if len(keep) == len(rows):
            return
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(keep)


def _fmt(v):
    # repr keeps every bit of a float64, so a resumed run's rows can be compared exactly
    return repr(float(v))


def read_metrics(path):
    """The rows of a metrics file as dicts of strings (empty list if there is no file)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def column(rows, name, kind=None):
    """``(steps, values)`` of one column over the rows of one kind, skipping empty cells."""
    steps, values = [], []
    for r in rows:
        if (kind is None or r["kind"] == kind) and r.get(name) not in (None, ""):
            steps.append(int(r["step"]))
            values.append(float(r[name]))
    return steps, values


def is_finite_dict(d):
    return all(math.isfinite(v) for v in d.values())
