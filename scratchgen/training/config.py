"""A run's configuration: the settings every run has, how they are resolved, and loading a run back.

Settings are resolved in this order, each overriding the one before: :data:`TRAIN_SETTINGS`, the
model family's ``defaults``, the ``--preset`` (if any), then the options given (on the command line,
or as a dict in code). The result is what a run saves as ``config.json``::

    {"model": "vae", "preset": null, "data": "digits8", "epochs": 20, "batch_size": 16, ...,
     "options": {"latent": 8, "hidden": [200], ...}, "data_dir": null}

:func:`resolve_config` builds it; :func:`check_config` refuses any value that makes no sense (before
a run folder is created); :func:`read_run_config` reads a run's ``config.json`` back and checks every
field of it (a hand-edited file gets a message naming the file and the field, never a traceback);
:func:`load_run` turns a run folder back into a trained experiment.
"""
import numpy as np

from .checkpoint import RUN_FIELDS, CheckpointError, load_checkpoint
from .experiment import value_problem
from .run import RunDir, RunFolderError

# Every setting a run has besides the model options. Families override them in `defaults`.
TRAIN_SETTINGS = dict(data="digits8", epochs=10, batch_size=64, lr=1e-3, seed=0, scale="01",
                      binarize=None, log_every=50, plot_every=20.0, train_split="train")
# Settings that may change when a run is resumed (they do not change the numbers).
RESUMABLE = ("epochs", "data_dir", "log_every", "plot_every")
# What each setting may be: keywords of experiment.value_problem ("data" choices: the datasets)
SETTING_RULES = dict(
    data=dict(kind=str), epochs=dict(kind=int, low=1), batch_size=dict(kind=int, low=1),
    lr=dict(kind=float, low=0), seed=dict(kind=int, low=0), scale=dict(kind=str, choices=("01", "pm1")),
    binarize=dict(kind=str, choices=("threshold", "fixed", "dynamic"), nullable=True),
    log_every=dict(kind=int, low=1), plot_every=dict(kind=float, low=0),
    train_split=dict(kind=str, choices=("train", "trainval")),
    data_dir=dict(kind=str, nullable=True), preset=dict(kind=str, nullable=True))
# config.json must hold these; the others get their defaults (older runs lack some of them)
REQUIRED = ("model", "data", "epochs", "batch_size", "lr", "seed", "scale", "options")


class ConfigError(ValueError):
    """A setting or option whose value makes no sense; the message names it and what it may be."""


def resolve_config(family, given):
    """Common settings <- family defaults <- preset <- ``given`` (a dict of settings and options)."""
    settings = {**TRAIN_SETTINGS, **family.defaults}
    options = {o.name: o.default for o in family.options}
    preset = given.get("preset")
    for layer in ([family.presets[preset]] if preset else []) + [given]:
        for key, value in layer.items():
            if key in settings:
                settings[key] = value
            elif key in options:
                options[key] = value
    if settings["binarize"] == "none":
        settings["binarize"] = None
    return dict(model=family.name, preset=preset, **settings, options=options,
                data_dir=given.get("data_dir"))


def config_problems(config, family):
    """``[(name, phrase)]`` for every setting and model option of ``config`` that is not valid."""
    from ..data import DATASETS

    problems = []
    for key, rule in SETTING_RULES.items():
        if key in config:
            rule = dict(rule, choices=sorted(DATASETS)) if key == "data" else rule
            if key == "preset":
                rule = dict(rule, choices=sorted(family.presets))
            why = value_problem(config[key], **rule)
            if why is None and key == "lr" and config[key] == 0:
                why = "must be greater than 0, got 0"
            if why:
                problems.append((key, why))
    options = config.get("options", {})
    known = {o.name: o for o in family.options}
    for name, value in options.items():
        if name not in known:
            problems.append((f"options.{name}", f"is not an option of {family.name}; its options are: "
                                                f"{', '.join(known) or 'none'}"))
        elif why := known[name].problem(value):
            problems.append((f"options.{name}", why))
    return problems


def check_config(config, family):
    """Refuse (ConfigError, naming each ``--option``) a configuration built from the command line."""
    problems = config_problems(config, family)
    if problems:
        flags = [f"--{name.removeprefix('options.').replace('_', '-')}: {why}" for name, why in problems]
        raise ConfigError("invalid option" + ("s" if len(flags) > 1 else "") + " (nothing was created):\n  "
                          + "\n  ".join(flags))


def read_run_config(run):
    """``(config, family)`` of a run folder, every field of its ``config.json`` checked.

    RunFolderError names the file and each field that is missing, of the wrong type or out of range.
    """
    from .. import models

    config = run.read_config()
    where = run.config_path
    model = config.get("model")
    if not isinstance(model, str) or model not in models.REGISTRY:
        raise RunFolderError(f"{where}: field 'model' is {model!r}; expected one of {', '.join(models.names())}. "
                             f"Fix it, or start a new run.")
    family = models.get(model)
    problems = [(k, "is missing") for k in REQUIRED if k not in config]
    if not isinstance(config.get("options", {}), dict):
        problems.append(("options", f"expected a JSON object of model options, got {config['options']!r}"))
    else:
        problems += config_problems(config, family)
    if problems:
        raise RunFolderError(f"{where} is not a valid {model} run configuration:\n  "
                             + "\n  ".join(f"field {k!r} {why}" for k, why in problems)
                             + "\nFix it by hand (the command that made the run is its 'command' field), or "
                               "start a new run.")
    return {**{k: v for k, v in TRAIN_SETTINGS.items() if k not in REQUIRED}, "data_dir": None,
            "preset": None, **config}, family


def setting(config, key):
    """The value of ``key`` in a resolved configuration, whether a model option or a common setting."""
    return config["options"].get(key) if key in config["options"] else config.get(key)


def load_run(run_dir, which="latest"):
    """Rebuild a run's experiment from ``config.json`` and load a checkpoint into it.

    ``which`` is ``"latest"`` or ``"best"``. Returns ``(run, config, experiment, meta)``; the data
    files are not needed.
    """
    from ..data import DATASETS
    from ..random import manual_seed

    run = RunDir(run_dir)
    config, family = read_run_config(run)
    manual_seed(config["seed"])
    experiment = family(config, DATASETS[config["data"]])
    path = run.latest if which == "latest" else run.best
    if not path.is_file():
        raise RunFolderError(f"{run.path} has no {path.name} yet (looked for {path}); train it first, or "
                             f"continue it with `scratchgen train {config['model']} --out {run.path} --resume`")
    state, meta = load_checkpoint(path, expected=experiment.state_dict(), required=RUN_FIELDS)
    bad = [k for k, v in state.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(bad[:5])}"
                              f"{', ...' if len(bad) > 5 else ''}): it cannot make samples or be evaluated. "
                              f"Use the other checkpoint (--checkpoint best or latest), or train again.")
    experiment.load_state_dict(state)
    return run, config, experiment, meta
