"""The run folder: one directory per training run, holding everything the run made.

::

    runs/vae-digits8-seed0/
        config.json          the resolved configuration (model, data, options, seed, ...)
        metrics.csv          one row per logged step interval and per epoch (see metrics.py)
        checkpoints/
            latest.npz       written at the end of every epoch and on Ctrl-C
            best.npz         the epoch with the lowest validation loss so far
        figures/             PNGs refreshed as training goes (samples, reconstructions, loss)
        .lock                the PID of the process training into the folder (see RunDir.locked)

A folder counts as a run when it holds ``config.json``. A new run never writes into a folder
that already holds one, unless the user asked to continue it (``--resume``) or to replace it
(``--overwrite``), so a typo in ``--out`` cannot destroy an earlier result. ``--overwrite``
deletes only the files scratchgen writes (:meth:`RunDir.clear`), and only in a folder whose
``config.json`` is a scratchgen run's.

One run folder, one writer: a training holds an exclusive lock on ``.lock`` (``fcntl.flock``)
for as long as it runs. The operating system releases it when the process ends, however it ends
(a SIGKILL included), so a lock is never stale; a second training into the same folder is refused
with the PID of the one that holds it.
"""
import contextlib
import json
import os
from pathlib import Path

from ..files import TEMP_NAME, atomic_write, remove_stale_temps

try:
    import fcntl
except ImportError:  # NOTE: Windows has no flock; there a run folder is not protected
    fcntl = None

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
CHECKPOINTS = ("latest.npz", "best.npz")

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

    lock_path = property(lambda self: self.path / LOCK_FILE)

    def read_config(self):
        """``config.json`` as a dict (RunFolderError if it is missing, not UTF-8 or not a JSON object).

        The values are not checked here: :func:`scratchgen.training.config.read_run_config` does that.
        """
        if not self.is_run():
            raise RunFolderError(f"{self.path} is not a scratchgen run folder: it has no {CONFIG_FILE}. Pass "
                                 f"the folder that `scratchgen train` printed (runs/<model>-<data>-seed<S>).")
        try:
            config = json.loads(self.config_path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RunFolderError(f"{self.config_path} is not UTF-8 text (byte {e.start}: "
                                 f"{e.object[e.start:e.start + 1]!r}); fix it, or delete the run folder") from e
        except json.JSONDecodeError as e:
            raise RunFolderError(f"{self.config_path} is not valid JSON ({e}); fix it, or delete the "
                                 f"run folder") from e
        if not isinstance(config, dict):
            raise RunFolderError(f"{self.config_path} holds a JSON {type(config).__name__}, not an object: "
                                 f"it is not a scratchgen run's configuration")
        return config

    def write_config(self, config):
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.config_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def written_files(self):
        """The files in the folder that scratchgen writes: what ``--overwrite`` may delete.

        ``config.json``, ``metrics.csv``, ``samples.png``, the two checkpoints, the PNGs in
        ``figures/`` and the temporary files of interrupted writes of any of them. Nothing else:
        a PDF in ``figures/`` or another framework's weights in ``checkpoints/`` stay.
        """
        names = [self.config_path, self.metrics_path, self.path / "samples.png",
                 *(self.checkpoint_dir / n for n in CHECKPOINTS)]
        found = [p for p in names if p.is_file()]
        if self.figures.is_dir():
            found += sorted(p for p in self.figures.iterdir() if p.suffix == ".png" and p.is_file())
        ours = {p.name for p in names}
        for folder in (self.path, self.checkpoint_dir, self.figures):
            if folder.is_dir():
                found += [p for p in folder.iterdir() if p.is_file() and (m := TEMP_NAME.match(p.name))
                          and (m["name"] in ours or (folder == self.figures and m["name"].endswith(".png")))]
        return found

    def clear(self):
        """Delete what a run writes (and only that), for ``--overwrite``; empty sub-folders go too."""
        for p in self.written_files():
            p.unlink(missing_ok=True)
        for d in (self.checkpoint_dir, self.figures):
            with contextlib.suppress(OSError):  # not empty: it holds someone else's files
                d.rmdir()

    def remove_stale_temps(self):
        """Delete temporary files that a killed process left in the folder (see scratchgen.files)."""
        return remove_stale_temps(self.path, self.checkpoint_dir, self.figures)

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's exclusive writer lock for the ``with`` block (creating the folder).

        RunFolderError names the PID of the process that holds it. The lock file stays (its
        content is the holder's PID); the lock itself dies with the process that took it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                raise RunFolderError(
                    f"{self.path} is in use: another scratchgen process (PID {holder}) is training into "
                    f"it, and a run folder has one writer at a time. Wait for it to finish (or stop it: "
                    f"kill {holder}), or choose another folder with --out.") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def check_scratchgen_run(self):
        """Refuse (RunFolderError) unless ``config.json`` is a scratchgen run's (for ``--overwrite``)."""
        config = self.read_config()
        if not (isinstance(config.get("model"), str) and isinstance(config.get("options"), dict)
                and "seed" in config and "data" in config):
            raise RunFolderError(
                f"{self.config_path} is not a scratchgen run's configuration (it lacks model, data, seed "
                f"or options), so --overwrite will not delete anything in {self.path}. Choose another "
                f"folder with --out.")

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
