"""A run's configuration: the settings every run has, how they are resolved, and loading a run back.

Settings are resolved in this order, each overriding the one before: :data:`TRAIN_SETTINGS`, the
model family's ``defaults``, the ``--preset`` (if any), then the options given (on the command line,
or as a dict in code). The result is what a run saves as ``config.json``::

    {"model": "vae", "preset": null, "data": "digits8", "epochs": 20, "batch_size": 16, ...,
     "options": {"latent": 8, "hidden": [200], ...}, "data_dir": null}

:func:`resolve_config` builds it; :func:`load_run` turns a run folder back into a trained experiment.
"""
from .checkpoint import check_compatible, load_checkpoint
from .run import RunDir, RunFolderError

# Every setting a run has besides the model options. Families override them in `defaults`.
TRAIN_SETTINGS = dict(data="digits8", epochs=10, batch_size=64, lr=1e-3, seed=0, scale="01",
                      binarize=None, log_every=50, plot_every=20.0, train_split="train")
# Settings that may change when a run is resumed (they do not change the numbers).
RESUMABLE = ("epochs", "data_dir", "log_every", "plot_every")


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


def setting(config, key):
    """The value of ``key`` in a resolved configuration, whether a model option or a common setting."""
    return config["options"].get(key) if key in config["options"] else config.get(key)


def load_run(run_dir, which="latest"):
    """Rebuild a run's experiment from ``config.json`` and load a checkpoint into it.

    ``which`` is ``"latest"`` or ``"best"``. Returns ``(run, config, experiment, meta)``; the data
    files are not needed.
    """
    # NOTE: imported here, not at the top: the model families import this package (Experiment,
    # plots), so the registry is looked up only when a run is loaded.
    from .. import models
    from ..data import DATASETS
    from ..random import manual_seed

    run = RunDir(run_dir)
    config = run.read_config()
    family = models.get(config["model"])
    manual_seed(config["seed"])
    experiment = family(config, DATASETS[config["data"]])
    path = run.latest if which == "latest" else run.best
    if not path.is_file():
        raise RunFolderError(f"{run.path} has no {path.name} yet (looked for {path}); train it first, or "
                             f"continue it with `scratchgen train {config['model']} --out {run.path} --resume`")
    state, meta = load_checkpoint(path)
    check_compatible(experiment.state_dict(), state, path)
    experiment.load_state_dict(state)
    return run, config, experiment, meta
