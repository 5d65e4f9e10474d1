"""The training workflow: run folders, checkpoints, the loop, metrics and figures.

=================  ======================================================================
file               what it holds
=================  ======================================================================
``experiment.py``  the protocol every model family implements (``Experiment``, ``Option``)
``config.py``      the run configuration: settings, presets, checks, loading a run back
``trainer.py``     the loop: progress bar, Ctrl-C, NaN/inf detection, exact resume
``checkpoint.py``  ``.npz`` checkpoints without pickle, written atomically
``run.py``         the run folder and its ``config.json``; refusing to clobber another run
``metrics.py``     ``metrics.csv``: one row per step interval and per epoch
``plots.py``       PNG figures on matplotlib's headless Agg canvas
=================  ======================================================================

The command line (:mod:`scratchgen.cli`) puts these together; the model families live in
:mod:`scratchgen.models`.
"""
from .checkpoint import CheckpointError, check_compatible, load_checkpoint, save_checkpoint
from .experiment import Experiment, Option, int_list
from .run import RunDir, RunFolderError, default_run_dir
from .trainer import NonFiniteLossError, Trainer, TrainingInterrupted, TrainingStoppedError, isolated_rng

__all__ = ["CheckpointError", "check_compatible", "load_checkpoint", "save_checkpoint", "Experiment",
           "Option", "int_list", "RunDir", "RunFolderError", "default_run_dir", "NonFiniteLossError",
           "Trainer", "TrainingInterrupted", "TrainingStoppedError", "isolated_rng"]
