"""The training loop: batches in, checkpoints, metrics and figures out — and nothing ever lost.

One loop serves every model family (see :mod:`scratchgen.training.experiment`)::

    for epoch in epochs:
        experiment.start_epoch(epoch)                              # e.g. the epoch's learning rate
        for batch in loader.iter_epoch(epoch, start=batch_done):   # seeded by (seed, epoch)
            terms = experiment.train_step(batch)                    # {"loss": ..., ...}
            stop if a term is NaN or infinite                      # before anything is saved
            log a metrics row every --log-every steps
            on Ctrl-C: save latest.npz here and stop
        validate, log the epoch row, save latest.npz (and best.npz), refresh figures

Why ``--resume`` gives bit-for-bit the numbers of an uninterrupted run: a checkpoint holds
the weights, the optimizer state, the global RNG state and the position (epoch, batch); the
data order and the dynamic binarization are pure functions of (seed, epoch, batch)
(:class:`~scratchgen.data.DataLoader`); and validation and figures draw their randomness from
a generator of their own (:func:`isolated_rng`), so how often they run never shifts the
training stream.
"""
import contextlib
import io
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from .. import random as sg_random
from ..data import DataLoader
from ..files import describe_os_error
from . import plots
from .checkpoint import RESUME_FIELDS, CheckpointError, load_checkpoint, save_checkpoint
from .metrics import MetricsLog


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or infinity; the message names the step and the loss terms."""


class TrainingStoppedError(RuntimeError):
    """The operating system refused a write (disk full, read-only, ...); what was saved is intact."""


class TrainingInterrupted(Exception):
    """Ctrl-C: a checkpoint was saved; the message says how to resume."""


@contextlib.contextmanager
def isolated_rng(seed):
    """Run a block with scratchgen's global generator freshly seeded, then put the old one back."""
    saved = sg_random.get_state()
    sg_random.manual_seed(seed)
    try:
        yield
    finally:
        sg_random.set_state(saved)


class StopRequest:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after the current step (and save);
    a second one raises KeyboardInterrupt at once (still safe: checkpoint writes are atomic)."""

    def __init__(self):
        self.requested, self._previous = False, None

    def __call__(self, signum=None, frame=None):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # NOTE: print() inside a signal handler can collide with a print() it interrupted
        # ("reentrant call"); os.write on the raw descriptor cannot.
        try:
            os.write(sys.stderr.fileno(), b"\nCtrl-C: stopping after this step and saving a checkpoint "
                                          b"(press again to quit at once)\n")
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Means:
    """Running means of loss terms, weighted by batch size; saved in checkpoints.

    Each term has its own count: a step may leave a term out (the VQ-VAE's autoencoder phase does not
    measure the prior it is not training), and that term's mean is over the steps that reported it."""

    def __init__(self, state=None):
        state = state or {}
        self.sums, self.count = dict(state.get("sums", {})), state.get("count", 0)
        # a checkpoint from before per-term counts: every term was reported at every step
        self.counts = dict(state.get("counts", {k: self.count for k in self.sums}))

    def add(self, terms, n):
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
            self.counts[k] = self.counts.get(k, 0) + n
        self.count += n

    def means(self):
        return {k: s / self.counts[k] for k, s in self.sums.items() if self.counts[k]}

    def state(self):
        return {"sums": self.sums, "count": self.count, "counts": self.counts}


def _fmt_terms(terms):
    return ", ".join(f"{k}={v:.6g}" for k, v in terms.items())


def _nonfinite_keys(state):
    return [k for k, v in state.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]


def _is_finite(terms):
    return all(math.isfinite(float(v)) for v in terms.values())


class Trainer:
    """Train ``experiment`` on ``train_set`` (validating on ``val_set``) into the run folder ``run``.

    ``config`` supplies epochs, batch_size and seed; ``resume_command`` is the exact command
    printed when training stops early. ``log_every`` is the step interval of metric rows,
    ``plot_every`` the minimum number of seconds between figure refreshes (figures are always
    drawn after the first and the last epoch). ``progress`` None shows bars only on a terminal.
    """

    def __init__(self, experiment, run, config, train_set, val_set, *, resume_command,
                 log_every=50, plot_every=20.0, progress=None, out=None):
        self.exp, self.run, self.config = experiment, run, config
        self.train_set, self.val_set = train_set, val_set
        self.resume_command = resume_command
        self.log_every, self.plot_every = max(1, int(log_every)), float(plot_every)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.out = out or (lambda msg: print(msg, flush=True))
        self.loader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, seed=config["seed"])
        self.metrics = MetricsLog(run.metrics_path, experiment.loss_terms,
                                  (*experiment.loss_terms, *experiment.val_terms))
        # position: `epoch` is the epoch in progress (0-based), `batch` the batches done in it
        self.step = self.epoch = self.batch = 0
        self.best, self.best_epoch = None, None
        self.epoch_means, self.interval_means = Means(), Means()
        self.last_saved = None  # (path, step, epoch) of the newest good checkpoint
        self._last_plot, self._plotted_epoch = -math.inf, None
        self.figure_paths = []

    # ------------------------------------------------------------------ checkpoints
    def _meta(self):
        return dict(step=self.step, epoch=self.epoch, batch=self.batch, best=self.best,
                    best_epoch=self.best_epoch, rng=sg_random.get_state(),
                    epoch_means=self.epoch_means.state(), interval_means=self.interval_means.state(),
                    model=self.config["model"], data=self.config["data"])

    def save(self, best=False):
        state = self.exp.state_dict()
        bad = _nonfinite_keys(state)
        if bad:
            raise NonFiniteLossError(self._nonfinite_message(
                f"the weights hold NaN or infinity ({', '.join(bad)})"))
        meta = self._meta()
        save_checkpoint(self.run.latest, state, meta)
        if best:
            save_checkpoint(self.run.best, state, meta)
        self.last_saved = (self.run.latest, self.step, self.epoch)

    def restore(self):
        """Continue from ``latest.npz``: weights, optimizer, RNG, position and running means."""
        state, meta = load_checkpoint(self.run.latest, expected=self.exp.state_dict(), required=RESUME_FIELDS)
        try:
            sg_random.set_state(meta["rng"])
        except ValueError as e:
            raise CheckpointError(f"{self.run.latest}: meta field 'rng': {e}") from None
        self.exp.load_state_dict(state)
        self.step, self.epoch, self.batch = meta["step"], meta["epoch"], meta["batch"]
        self.best, self.best_epoch = meta["best"], meta["best_epoch"]
        self.epoch_means, self.interval_means = Means(meta["epoch_means"]), Means(meta["interval_means"])
        self.metrics.truncate_after(self.step)  # rows written after the checkpoint get re-logged
        self.last_saved = (self.run.latest, self.step, self.epoch)

    # ------------------------------------------------------------------ messages
    def _where(self):
        return f"step {self.step} (epoch {self.epoch + 1}, batch {self.batch} of {len(self.loader)})"

    def _kept(self, after):
        if self.last_saved:
            path, step, epoch = self.last_saved
            return f"The last good checkpoint, {path} (step {step}), was not touched; nothing was saved {after}."
        return f"No checkpoint had been written yet, and none was written {after}."

    def _nonfinite_message(self, what):
        return (f"Training stopped at {self._where()}: {what}.\n{self._kept('with the bad values')}\n"
                f"Try a smaller learning rate (--lr), or a different --seed.")

    def _os_error_message(self, e):
        resume = (f"When it is fixed, continue with:\n  {self.resume_command}" if self.last_saved
                  else "When it is fixed, run the command again with --overwrite.")
        return (f"Training stopped at {self._where()}: {describe_os_error(e)}\n"
                f"{self._kept('after it')}\n{resume}")

    # ------------------------------------------------------------------ the loop
    def fit(self, resume=False):
        if resume:
            self.restore()
        epochs = self.config["epochs"]
        start = time.perf_counter()
        try:
            with StopRequest() as stop:
                while self.epoch < epochs:
                    self._train_epoch(stop)
                    self._end_epoch(epochs)
                    if stop.requested and self.epoch < epochs:
                        self._interrupted()
            if self._plotted_epoch != self.epoch:
                self._refresh_figures(force=True)
        except OSError as e:  # a full disk, a folder made read-only, ...: every write is atomic, so
            raise TrainingStoppedError(self._os_error_message(e)) from e  # what was saved is whole
        return dict(step=self.step, epochs=self.epoch, best=self.best, best_epoch=self.best_epoch,
                    seconds=time.perf_counter() - start, figures=self.figure_paths)

    def _train_epoch(self, stop):
        n_batches, bs = len(self.loader), self.loader.batch_size
        first = self.exp.loss_terms[0]  # shown on the progress bar
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=len(self.train_set), initial=min(self.batch * bs, len(self.train_set)),
                       unit="img" if np.ndim(self.train_set.data) == 4 else "ex", desc=f"epoch {self.epoch + 1}/{self.config['epochs']}",
                       leave=False, file=sys.stderr, dynamic_ncols=True)
        t0 = interval_t0 = time.perf_counter()
        self.exp.start_epoch(self.epoch)  # also on resuming mid-epoch: the schedule is the epoch's
        try:
            for batch in self.loader.iter_epoch(self.epoch, start=self.batch):
                self.step += 1
                self.batch += 1
                terms = self._train_step(batch)
                n = len(batch[0])
                self.epoch_means.add(terms, n)
                self.interval_means.add(terms, n)
                if self.step % self.log_every == 0:
                    now = time.perf_counter()
                    self.metrics.append("step", self.epoch + 1, self.step, now - interval_t0,
                                        train=self.interval_means.means())
                    self.interval_means, interval_t0 = Means(), now
                if bar is not None:
                    bar.update(n)
                    bar.set_postfix({first: f"{self.epoch_means.means()[first]:.4g}"}, refresh=False)
                if stop.requested and self.batch < n_batches:
                    self.save()
                    self._interrupted()
        finally:
            if bar is not None:
                bar.close()
        self.epoch_seconds = time.perf_counter() - t0

    def _guarded(self, fn, *args):
        """Call ``fn``; if it fails because the weights went NaN/inf, say that instead."""
        try:
            return dict(fn(*args))
        except (ValueError, ArithmeticError) as e:  # e.g. a distribution refusing NaN parameters
            bad = _nonfinite_keys(self.exp.state_dict())
            if bad:
                raise NonFiniteLossError(self._nonfinite_message(
                    f"the weights hold NaN or infinity ({', '.join(bad)}), so {e}")) from e
            raise

    def _train_step(self, batch):
        terms = {k: float(v) for k, v in self._guarded(self.exp.train_step, batch).items()}
        if not _is_finite(terms):
            raise NonFiniteLossError(self._nonfinite_message(f"the loss is not finite: {_fmt_terms(terms)}"))
        return terms

    def _end_epoch(self, epochs):
        with isolated_rng(self.config["seed"]):
            result = self._guarded(self.exp.evaluate, self.val_set)
        val = {k: float(result[k]) for k in (*self.exp.loss_terms, *self.exp.val_terms) if k in result}
        if not _is_finite(val):
            raise NonFiniteLossError(self._nonfinite_message(
                f"the validation loss is not finite: {_fmt_terms(val)}"))
        train = self.epoch_means.means()
        self.metrics.append("epoch", self.epoch + 1, self.step, self.epoch_seconds, train=train, val=val)
        monitor = float(result[self.exp.monitor]) if self.exp.monitor else None
        improved = monitor is None or self.best is None or monitor < self.best
        if improved:
            self.best, self.best_epoch = monitor, self.epoch + 1
        self.out(f"epoch {self.epoch + 1}/{epochs}  train {_summary(train, self.exp.loss_terms)}  "
                 f"val {_summary(val, self.exp.loss_terms)}  {self.epoch_seconds:.2f} s"
                 + ("  *best" if improved and self.exp.monitor else ""))
        self.epoch, self.batch = self.epoch + 1, 0
        self.epoch_means = Means()
        self.save(best=improved)
        self._refresh_figures(force=self.epoch == 1)

    def _refresh_figures(self, force=False):
        if not force and time.perf_counter() - self._last_plot < self.plot_every:
            return []
        with isolated_rng(self.config["seed"]):
            paths = list(self.exp.figures(self.run, self.val_set))
        if self.run.metrics_path.exists():
            paths.append(plots.save_loss_curves(self.run.metrics_path, self.run.figures / "loss.png",
                                                self.exp.loss_terms, title=f"{self.config['model']} on "
                                                f"{self.config['data']}"))
        self._last_plot, self._plotted_epoch = time.perf_counter(), self.epoch
        self.figure_paths = paths
        return paths

    def _interrupted(self):
        path, step, epoch = self.last_saved
        partial = f" and {self.batch} batches of the next" if self.batch else ""
        raise TrainingInterrupted(
            f"Interrupted at step {step}: {epoch} of {self.config['epochs']} epochs done{partial}. "
            f"Checkpoint saved to {path}.\nResume with:\n  {self.resume_command}")


def _summary(terms, names):
    return " ".join(f"{k} {terms[k]:.4f}" for k in names if k in terms)
