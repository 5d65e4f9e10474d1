"""The experiment protocol: what a model family must provide to be trained by ``scratchgen``.

The trainer knows nothing about VAEs or GANs. It feeds batches to an :class:`Experiment`
and reads back plain numbers, so every family — one network and one optimizer (a VAE), or
two networks with two optimizers and several discriminator steps per generator step (a
GAN) — fits the same loop, the same checkpoints and the same command line.

A family is a subclass registered by name in :mod:`scratchgen.models`::

    @register
    class VAE(Experiment):
        name = "vae"                                   # scratchgen train vae
        help = "variational autoencoder (Kingma & Welling, 2014)"
        defaults = dict(data="digits8", epochs=20, batch_size=16, lr=3e-3)
        options = (Option("latent", int, 8, "size of z"), ...)            # --latent N
        presets = {"pytorch-examples": dict(data="mnist", batch_size=128, latent=20, ...)}
        loss_terms = ("loss", "recon", "kl")           # train_step's keys, logged per step/epoch
        monitor = "loss"                               # validation key that picks best.npz

        def __init__(self, config, info): ...          # build networks and optimizers
        def start_epoch(self, epoch): ...              # optional: e.g. the epoch's learning rate
        def train_step(self, batch): ...               # -> {"loss": ..., "recon": ..., "kl": ...}
        def evaluate(self, data): ...                  # -> {"loss": ..., "elbo": ...} (stable keys)
        def report(self, data, split): ...             # what `scratchgen eval` prints (optional)
        def sample(self, n, label=None): ...           # -> ndarray (n, *info.shape)
        def checkpointed(self): ...                    # {"model": net, "optimizer": opt}: all that resumes
        def figures(self, run, data): ...              # -> [paths of the PNGs written]

Conventions the trainer relies on:

* ``config`` is the resolved configuration (``config["lr"]``, ``config["scale"]``,
  ``config["options"]["latent"]``, ...), ``info`` the dataset's
  :class:`~scratchgen.data.DatasetInfo` (shape of one example, number of classes).
* A batch is ``(x, y)``: ``x`` a float32 array of shape (B, *info.shape) in the data's scale
  (``config["scale"]``: [0, 1] or [-1, 1]), ``y`` integer labels or None.
* The trainer calls ``start_epoch(epoch)`` (0-based) before the first ``train_step`` of every
  epoch, and again with that epoch when a run resumes inside it: what depends on the epoch (a
  learning-rate schedule) is set there, from the trainer's count, not recomputed from steps.
  Code that calls ``train_step`` in a loop of its own calls it too.
* ``train_step`` returns floats for every name in :attr:`loss_terms`; ``evaluate`` returns at
  least those and :attr:`monitor` (lower is better; None keeps ``best.npz`` = the latest), and
  the names in :attr:`val_terms` if any (extra validation columns, e.g. a VAE's active units).
* All randomness comes from :func:`scratchgen.random.get_rng`; the trainer saves and restores
  that generator, which is what makes ``--resume`` exact. Anything else that changes during
  training (a step counter for a schedule, a GAN's count of discriminator steps) must be in
  ``state_dict()``.
* ``state_dict()`` is flat ``{name: ndarray}`` with a prefix per part (``model.``,
  ``optimizer.``; a GAN might use ``generator.``, ``discriminator.``, ``opt_g.``, ``opt_d.``).
* ``figures`` gets the :class:`~scratchgen.training.run.RunDir` (write into ``run.figures``)
  and the validation split.
"""
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Option:
    """A model option: ``--name`` on the command line, ``config["options"][name]`` in code.

    ``type`` is ``int``, ``float``, ``str``, :func:`int_list` (``--hidden 200,200``) or
    :func:`name_list` (``--attributes thickness,slant``). ``choices`` lists the valid strings (names); ``low``/``high`` bound a number. Without ``low``, an
    int option whose default is positive must be at least 1, any other number at least 0.
    """
    name: str
    type: object
    default: object
    help: str
    choices: tuple = None
    low: float = None
    high: float = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def minimum(self):
        if self.low is not None or self.type not in (int, float):
            return self.low
        return 1 if self.type is int and isinstance(self.default, int) and self.default >= 1 else 0

    def problem(self, value):
        """Why ``value`` is not valid for this option (a phrase), or None if it is."""
        return value_problem(value, self.type, choices=self.choices, low=self.minimum, high=self.high,
                             nullable=self.default is None)


def value_problem(value, kind, choices=None, low=None, high=None, nullable=False):
    """Why ``value`` is not a valid ``kind`` (int, float, str or int_list) in range, or None.

    Values come from the command line (already converted) or from ``config.json`` (any JSON type),
    so the type is checked too: a bool is not a number, and a float must be finite.
    """
    if value is None:
        return None if nullable else "a value is required, got null"
    if kind is int_list:
        ok = isinstance(value, (list, tuple)) and value and all(type(v) is int and v >= 1 for v in value)
        return None if ok else f"expected a list of positive whole numbers like [200, 200], got {value!r}"
    if kind is name_list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)
        if not ok or (choices is not None and not set(value) <= set(choices)):
            return (f"expected distinct names separated by commas, from {', '.join(choices or ())}; "
                    f"got {','.join(map(str, value)) if isinstance(value, list) else value!r}")
        return None
    if kind is str:
        if not isinstance(value, str):
            return f"expected text, got {value!r}"
    elif kind is int:
        if type(value) is not int:
            return f"expected a whole number, got {value!r}"
    elif kind is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
    if choices is not None and value not in choices:
        return f"expected one of {', '.join(map(str, choices))}; got {value!r}"
    if low is not None and value < low:
        return f"must be at least {low}, got {value!r}"
    if high is not None and value > high:
        return f"must be at most {high}, got {value!r}"
    return None


def name_list(text):
    """``"thickness,slant"`` -> ``["thickness", "slant"]`` (an empty text: no names)."""
    return [w.strip() for w in text.split(",") if w.strip()]


def int_list(text):
    """``"400"`` -> ``[400]``, ``"200,200"`` -> ``[200, 200]`` (for hidden-layer sizes)."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers like 200,200; got {text!r}") from None
    if not values or min(values) <= 0:
        raise ValueError(f"expected positive comma-separated integers like 200,200; got {text!r}")
    return values


int_list.__name__ = "int_list"  # argparse shows it in "invalid int_list value"


class Experiment:
    """Base class of a model family. Subclasses fill in the class attributes and methods."""

    name = ""                 # registry key: `scratchgen train <name>`
    help = ""                 # one line in `scratchgen train --help`
    conditional = False       # does sample(label=...) work?
    defaults = {}             # training settings: data, epochs, batch_size, lr, scale, binarize
    options = ()              # tuple of Option
    presets = {}              # preset name -> dict of settings/options (and "help")
    loss_terms = ("loss",)    # keys of train_step's result, logged to metrics.csv
    val_terms = ()            # further keys of evaluate's result logged per epoch (val_<key>)
    eval_options = ()         # options `scratchgen eval --set NAME=VALUE` may change (evaluation only)
    sample_options = ()       # options `scratchgen sample --set NAME=VALUE` may change (sampling only)
    monitor = "loss"          # key of evaluate's result that selects best.npz (lower is better), or None
    quality_samples = None    # samples for image sample quality (None: 10,000); `eval --quality-samples N`

    def __init__(self, config, info):
        self.config, self.info = config, info
        # NOTE: `self.opts` is the options dict every family reads; checkpoints rely on nothing but
        # checkpointed() (by default `self.net` and `self.optimizer`)
        # options missing from the configuration (a run made before the option existed) get their
        # defaults here, once for every family; a value that makes no sense is refused here too
        self.opts = {**{o.name: o.default for o in self.options}, **config.get("options", {})}
        for o in self.options:
            if why := o.problem(self.opts[o.name]):
                raise ValueError(f"{self.name} option {o.flag}: {why}")

    # ---- training and evaluation
    def start_epoch(self, epoch):
        """Called before the first step of (0-based) ``epoch`` and on resuming inside it: set what
        depends on the epoch, e.g. the learning rate. Default: nothing depends on it."""

    def train_step(self, batch):
        """One optimisation step (or one round of steps) on ``batch = (x, y)``; returns floats."""
        raise NotImplementedError

    def evaluate(self, data):
        """Metrics over a whole split (an ``ArrayDataset``); keys are stable across versions."""
        raise NotImplementedError

    def report(self, data, split):
        """What ``scratchgen eval`` prints: by default ``evaluate``'s keys prefixed with the split
        (``test_loss``, ``test_elbo``, ...). Override to add split-independent keys (``nll_iwae``)."""
        return {f"{split}_{k}": v for k, v in self.evaluate(data).items()}

    def sample(self, n, label=None):
        """``n`` new examples as an ndarray of shape (n, *info.shape) in the data's scale."""
        raise NotImplementedError

    # ---- state
    def checkpointed(self):
        """``{prefix: object with state_dict()/load_state_dict()}``: the networks AND optimizers a
        checkpoint must hold for training to resume exactly. Default: ``self.net`` and ``self.optimizer``."""
        return {"model": self.net, "optimizer": self.optimizer}

    def state_dict(self):
        """One flat ``{"<prefix>.<name>": ndarray}`` of everything in :meth:`checkpointed`."""
        return {k: v for prefix, obj in self.checkpointed().items()
                for k, v in prefixed(prefix, obj.state_dict()).items()}

    def load_state_dict(self, state):
        for prefix, obj in self.checkpointed().items():
            obj.load_state_dict(unprefixed(prefix, state))

    # ---- pictures
    def figures(self, run, data):
        """Write PNGs into ``run.figures`` (``data``: the validation split); return their paths."""
        return []

    def describe(self):
        """One line printed when training starts (e.g. the parameter count)."""
        return self.name

    # ---- helpers for subclasses
    @property
    def steps_per_epoch(self):
        """Optimisation steps in one epoch of this run's training split (at least 1)."""
        n = self.info.splits.get(self.config.get("train_split", "train"), 1)
        return max(1, math.ceil(n / self.config.get("batch_size", 1)))

    def require_images(self):
        """Refuse (ValueError) data whose examples are not images (C, H, W), e.g. 2-D points."""
        if len(self.info.shape) != 3:
            raise ValueError(f"{self.name} expects image data (C, H, W); {self.info.name} has examples of "
                             f"shape {self.info.shape}")

    @staticmethod
    def batches(data, batch_size=500):
        """Consecutive ``(x, y)`` chunks of a split, in order (for evaluation)."""
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size]

    def check_label(self, label):
        """Validate ``sample(label=...)``; returns the label as an int (or None)."""
        if label is None:
            return None
        if not self.conditional:
            raise ValueError(f"model {self.name!r} is unconditional; --label applies only to "
                             f"conditional models")
        k = self.info.num_classes
        if not isinstance(label, (int, np.integer)) or not 0 <= label < k:
            raise ValueError(f"label must be an integer class in 0..{k - 1}, got {label!r}")
        return int(label)


def prefixed(prefix, state):
    """``{"w": a}`` -> ``{"<prefix>.w": a}`` (to combine a model's and an optimizer's state)."""
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix, state):
    """The entries of ``state`` under ``<prefix>.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
