"""The ``scratchgen`` command (also ``python -m scratchgen``).

::

    scratchgen train MODEL [options]     train a model into a run folder
    scratchgen sample RUN_DIR [options]  draw samples from a trained run (.npy or .png)
    scratchgen eval RUN_DIR [--json]     the model's metrics on the test split
    scratchgen data fetch NAME | list    download / list datasets
    scratchgen bench                     time the compute kernels
    scratchgen gradcheck                 check gradients of a few ops numerically
    scratchgen exercise list | start NAME | check NAME | hint NAME   graded exercises

The command only parses arguments and calls: the run configuration (settings, presets, loading a
run back) lives in :mod:`scratchgen.training.config`, the training loop in
:mod:`scratchgen.training`.
"""
import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from .training.config import RESUMABLE, TRAIN_SETTINGS, load_run, resolve_config, setting
from .training.experiment import int_list, name_list

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130

EXAMPLES = """\
examples:
  scratchgen train vae --epochs 20                        a VAE on the bundled 8x8 digits (offline)
  scratchgen train vae --out runs/my-vae --resume         continue a run from its latest checkpoint
  scratchgen train vae --preset pytorch-examples          the pytorch/examples VAE on MNIST
  scratchgen sample runs/vae-digits8-seed0 --n 64 --out samples.png
  scratchgen sample runs/vae-digits8-seed0 --n 1000 --out samples.npy
  scratchgen eval runs/vae-digits8-seed0 --json
  scratchgen data fetch mnist                             download and verify MNIST (once)
  scratchgen exercise start js-divergence                 an exercise: write a library function, then
  scratchgen exercise check js-divergence                 grade it with the library's own tests

Run `scratchgen COMMAND --help` (or `scratchgen train MODEL --help`) for the options of each.
"""


class CLIError(Exception):
    """A problem with what was asked for; printed as one message, without a traceback."""


# ---------------------------------------------------------------------------- the parser
def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


_METAVARS = {int: "N", float: "X", str: "NAME", int_list: "SIZES", name_list: "NAMES"}


def _add_model_parser(models_sub, family, data_names):
    settings = {**TRAIN_SETTINGS, **family.defaults}
    presets = "".join(f"  {name:20s} {p.get('help', '')}\n" for name, p in family.presets.items())
    epilog = (f"presets (--preset NAME; options given on the command line override them):\n{presets}\n"
              if presets else "") + (
        "examples:\n"
        f"  scratchgen train {family.name} --epochs 5\n"
        f"  scratchgen train {family.name} --out runs/{family.name}-test --overwrite\n"
        f"  scratchgen train {family.name} --out runs/{family.name}-test --resume --epochs 10\n")
    p = models_sub.add_parser(family.name, help=family.help, description=family.help, epilog=epilog,
                              formatter_class=_formatter, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("training")
    g.add_argument("--data", choices=data_names, help=f"dataset (default: {settings['data']})")
    g.add_argument("--data-dir", metavar="DIR",
                   help="folder holding downloaded datasets (then $SCRATCHGEN_DATA, then the cache)")
    g.add_argument("--epochs", type=int, metavar="N", help=f"epochs in total (default: {settings['epochs']})")
    g.add_argument("--batch-size", type=int, metavar="B", help=f"default: {settings['batch_size']}")
    g.add_argument("--lr", type=float, metavar="LR", help=f"learning rate (default: {settings['lr']})")
    g.add_argument("--seed", type=int, metavar="S", help=f"random seed (default: {settings['seed']})")
    g.add_argument("--scale", choices=("01", "pm1"),
                   help=f"pixel range [0,1] or [-1,1] (default: {settings['scale']})")
    g.add_argument("--binarize", choices=("none", "threshold", "fixed", "dynamic"),
                   help="binarize pixels: dynamic = a fresh Bernoulli draw every epoch "
                        f"(default: {settings['binarize'] or 'none'})")
    g.add_argument("--train-split", choices=("train", "trainval"),
                   help="train on the train split (validating on val), or on train+val, validating on "
                        f"test, as recipes that use every training image do (default: {settings['train_split']})")
    if family.presets:
        g.add_argument("--preset", choices=sorted(family.presets), help="named settings (listed below)")
    g = p.add_argument_group("run folder")
    g.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-<data>-seed<S>)")
    g.add_argument("--resume", action="store_true", help="continue from the folder's latest checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in the folder")
    g.add_argument("--log-every", type=int, metavar="N",
                   help=f"steps per metrics row (default: {settings['log_every']})")
    g.add_argument("--plot-every", type=float, metavar="SEC",
                   help=f"least seconds between figure refreshes (default: {settings['plot_every']})")
    g = p.add_argument_group(f"{family.name} options")
    for o in family.options:
        default = ",".join(map(str, o.default)) if isinstance(o.default, list) else o.default
        listed = o.choices and o.type is not name_list   # a list's names are checked with the config
        g.add_argument(o.flag, dest=o.name, type=o.type, choices=o.choices if listed else None,
                       metavar=None if listed else _METAVARS.get(o.type, "X"),
                       help=f"{o.help} (default: {default})")
    p.set_defaults(func=cmd_train, family=family)


def build_parser():
    from . import models
    from .data import DATASETS

    parser = argparse.ArgumentParser(
        prog="scratchgen", formatter_class=_formatter, epilog=EXAMPLES,
        description="Deep generative models from scratch in NumPy and Numba: train, sample, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model into a run folder", formatter_class=_formatter,
                           description="Train a model. Pick one of the models below; "
                                       "`scratchgen train MODEL --help` lists its options and presets.",
                           epilog="examples:\n  scratchgen train vae --epochs 20\n"
                                  "  scratchgen train autoencoder --data digits8 --epochs 5\n")
    models_sub = train.add_subparsers(dest="model", required=True, title="models")
    for name in models.names():
        _add_model_parser(models_sub, models.get(name), sorted(DATASETS))

    s = sub.add_parser("sample", help="draw samples from a trained run", formatter_class=_formatter,
                       description="Draw new examples from a trained model. A .npy file gets the raw array "
                                   "(N, ...) in the data's own scale; a .png file a picture.",
                       epilog="examples:\n  scratchgen sample runs/vae-digits8-seed0 --n 64 --out samples.png\n"
                              "  scratchgen sample runs/vae-digits8-seed0 --n 1000 --out samples.npy --seed 1\n"
                              "  scratchgen sample RUN_DIR --label 3 --out threes.png      (conditional models)\n"
                              "  scratchgen sample RUN_DIR --label 7 --attribute thickness=+2 --attribute slant=-1 "
                              "--out x.png\n"
                              "  scratchgen sample RUN_DIR --set temperature=1 --out s.png   (vqvae, vqvae2: the "
                              "prior's own distribution)\n")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--n", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument("--out", metavar="FILE", help="a .npy or .png file (default: RUN_DIR/samples.png)")
    s.add_argument("--label", type=int, help="class to condition on (conditional models only)")
    s.add_argument("--attribute", action="append", metavar="NAME=VALUE",
                   help="an attribute in training standard deviations, e.g. thickness=+2 (repeatable; "
                        "a cvae run trained with --attributes)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--checkpoint", choices=("latest", "best"), default="latest", help="default: latest")
    s.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change a sampling setting of the model, e.g. --set temperature=1 for vqvae and vqvae2 "
                        "(repeatable; an unknown NAME lists the valid ones)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="evaluate a trained run on the test split", formatter_class=_formatter,
                       description="The model's metrics on a data split (default: test).",
                       epilog="examples:\n  scratchgen eval runs/vae-digits8-seed0\n"
                              "  scratchgen eval runs/vae-digits8-seed0 --json --checkpoint best\n")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--json", action="store_true", help="print one JSON object (machine-readable)")
    e.add_argument("--split", default="test", help="test (default), val or train")
    e.add_argument("--checkpoint", choices=("latest", "best"), default="latest", help="default: latest")
    e.add_argument("--data-dir", metavar="DIR", help="where the dataset files are (default: as in training)")
    e.add_argument("--seed", type=int, help="seed of the evaluation noise (default: the run's seed)")
    e.add_argument("--quality-samples", type=int, metavar="N",
                   help="samples drawn for the sample-quality numbers of image models (default 10000); compare "
                        "Fréchet distances and precision/recall only at the same N")
    e.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change an evaluation setting of the model, e.g. --set iwae_k=5000 (repeatable; "
                        "an unknown NAME lists the valid ones)")
    e.set_defaults(func=cmd_eval)

    # delegated commands: main() hands their arguments over before this parser sees them
    sub.add_parser("data", help="download (`data fetch NAME`) or list (`data list`) datasets", add_help=False)
    sub.add_parser("bench", help="time the compute kernels against NumPy", add_help=False)
    sub.add_parser("exercise", help="graded exercises: `exercise list`, then start, check or hint NAME",
                   add_help=False)
    g = sub.add_parser("gradcheck", help="check the gradients of a few ops against finite differences",
                       description="Central-difference gradient checks of a handful of ops, as a table.")
    g.set_defaults(func=cmd_gradcheck)

    x = sub.add_parser("export", help="write a run's network for PyTorch's load_state_dict",
                       formatter_class=_formatter,
                       description="Write the trained network as an .npz of arrays named as in its state_dict; "
                                   "PyTorch loads it into the matching torch.nn network (see below).",
                       epilog="load it in PyTorch (no pickle on either side):\n"
                              "  state = {k: torch.from_numpy(v) for k, v in np.load(FILE).items()}\n"
                              "  net.load_state_dict(state)\n\nexample:\n"
                              "  scratchgen export runs/vae-digits8-seed0 --to torch-state-dict\n")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("--to", choices=("torch-state-dict",), default="torch-state-dict", help="format (default: "
                   "torch-state-dict)")
    x.add_argument("--out", metavar="FILE", help="an .npz file (default: RUN_DIR/torch_state_dict.npz)")
    x.add_argument("--checkpoint", choices=("latest", "best"), default="latest", help="default: latest")
    x.set_defaults(func=cmd_export)
    return parser


# ---------------------------------------------------------------------------- helpers
def _given(args):
    skip = ("command", "model", "func", "family")
    return {k: v for k, v in vars(args).items() if k not in skip}


def _fmt_cmd(parts):
    return " ".join(shlex.quote(str(p)) for p in parts)


# ---------------------------------------------------------------------------- train
def cmd_train(args, argv):
    """``scratchgen train MODEL``: check everything, then take the folder's lock, then train."""
    from .training import Trainer

    family, given = args.family, _given(args)
    resume = bool(given.get("resume"))
    run, config = run_configuration(family, given, argv)       # 1. resume or new config (nothing written)
    train_set, val_set = load_splits(config)                    # 2. the data (a missing file stops here)
    experiment = build_experiment(family, config, run, resume)  # the model; a resumed checkpoint must fit
    if experiment is None:
        return 0
    created = not run.path.exists()
    with run.locked():                                          # one writer per run folder from here on
        try:
            prepare_folder(run, config, given, family)
        except BaseException:
            if created:  # nothing of ours is in it yet: leave no half-made folder behind
                run.lock_path.unlink(missing_ok=True)
                run.path.rmdir()
            raise
        print(f"{'Resuming' if resume else 'Training'} {experiment.describe()} on {config['data']} "
              f"({len(train_set)} train / {len(val_set)} validation examples): {config['epochs']} epochs, "
              f"batch {config['batch_size']}, lr {config['lr']}, seed {config['seed']} -> {run.path}", flush=True)
        trainer = Trainer(experiment, run, config, train_set, val_set, resume_command=_resume_command(run, family),
                          log_every=config["log_every"], plot_every=config["plot_every"])
        result = trainer.fit(resume=resume)
    print_summary(run, family, result)                          # 3. what was made, and what to do next
    return 0


def _resume_command(run, family):
    return _fmt_cmd(["scratchgen", "train", family.name, "--out", run.path, "--resume"])


def run_configuration(family, given, argv):
    """``(run, config)``: a new run's configuration, or the saved one of the run to resume.

    Every option is checked and the folder is inspected, but nothing is created or written: a
    refused command leaves no trace.
    """
    from . import __version__
    from .training import RunDir, default_run_dir
    from .training.config import check_config, read_run_config

    if given.get("resume") and given.get("overwrite"):
        raise CLIError("--resume and --overwrite contradict each other: pick one")
    config = resolve_config(family, given)
    check_config(config, family)
    run = RunDir(given.get("out") or default_run_dir(family.name, config["data"], config["seed"]))
    if run.path.exists() and not run.path.is_dir():
        raise CLIError(f"--out {run.path} is a file, not a folder: a run folder holds several files. "
                       f"Choose another --out.")
    if not given.get("resume"):
        if given.get("overwrite"):
            if run.is_run():
                run.check_scratchgen_run()
        else:
            run.check_new(config, _resume_command(run, family))
        return run, {**config, "command": _fmt_cmd(["scratchgen", *argv]), "scratchgen_version": __version__}

    if not run.is_run():
        raise CLIError(f"nothing to resume in {run.path}: it holds no run (no config.json). "
                       f"Start a new run without --resume.")
    saved, _ = read_run_config(run)
    if saved["model"] != family.name:
        raise CLIError(f"{run.path} holds a {saved['model']!r} run, not {family.name!r}: resume it with "
                       f"`scratchgen train {saved['model']} --out {run.path} --resume`")
    changed = [f"--{k.replace('_', '-')} {setting(saved, k)!r} -> {setting(config, k)!r}"
               for k in given if k not in ("out", "resume", "overwrite") + RESUMABLE
               and setting(saved, k) != setting(config, k)]
    if changed:
        raise CLIError(f"cannot change these settings when resuming {run.path}: {'; '.join(changed)}.\n"
                       f"Only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE)} may change. "
                       f"Start a new run with another --out to try different settings.")
    if not run.latest.is_file():
        raise CLIError(f"{run.path} has no checkpoint to resume from (it stopped before its first "
                       f"checkpoint). Start it again with --overwrite.")
    return run, {**saved, **{k: config[k] for k in given if k in RESUMABLE}}


def load_splits(config):
    """``(train_set, val_set)`` of a run's configuration."""
    from .data import load

    kw = dict(data_dir=config["data_dir"], scale=config["scale"], binarize=config["binarize"],
              seed=config["seed"])
    # NOTE: trainval holds the val split, so a run trained on it validates on test (and its best.npz
    # is then chosen on test: report latest.npz for such a run)
    train_split = config.get("train_split", "train")
    return (load(config["data"], train_split, **kw),
            load(config["data"], "test" if train_split == "trainval" else "val", **kw))


def build_experiment(family, config, run, resume):
    """The model of ``config``; on resume, its checkpoint is checked first (None: nothing left to train)."""
    from .data import DATASETS
    from .random import manual_seed
    from .training import load_checkpoint
    from .training.checkpoint import RESUME_FIELDS

    manual_seed(config["seed"])
    experiment = family(config, DATASETS[config["data"]])
    if resume:  # a checkpoint that does not fit must fail before config.json changes
        _, meta = load_checkpoint(run.latest, expected=experiment.state_dict(), required=RESUME_FIELDS)
        if meta["epoch"] > config["epochs"]:
            raise CLIError(f"{run.path} has already trained {meta['epoch']} epochs; --epochs counts "
                           f"all epochs, so it must be at least {meta['epoch']}")
        if meta["epoch"] == config["epochs"]:
            print(f"{run.path} has already trained all {meta['epoch']} epochs; to train longer, resume "
                  f"with a larger --epochs, e.g. {_resume_command(run, family)} --epochs {2 * meta['epoch']}")
            return None
    return experiment


def prepare_folder(run, config, given, family):
    """Under the folder's lock: check it again (another process may have got there first), clear
    it for --overwrite, delete temporary files a killed process left, and write ``config.json``."""
    if given.get("resume"):
        if not run.latest.is_file():
            raise CLIError(f"{run.latest} disappeared while the run was being prepared; nothing was changed")
    elif given.get("overwrite"):
        if run.is_run():
            run.check_scratchgen_run()
            run.clear()
    else:
        run.check_new(config, _resume_command(run, family))
    run.remove_stale_temps()
    run.write_config(config)


def print_summary(run, family, result):
    best = (f" Best validation {family.monitor} {result['best']:.4f} at epoch {result['best_epoch']}."
            if family.monitor and result["best"] is not None else "")
    from .kernels.compile_time import compile_note
    lines = [f"Done: {result['epochs']} epochs ({result['step']} steps) in {result['seconds']:.1f} s.{best}",
             compile_note(),
             f"Run folder: {run.path}"]
    for i, path in enumerate(result["figures"]):
        lines.append(f"  {'figures:' if i == 0 else '':12s} {path}")
    lines += [f"  {'checkpoints:':12s} {run.latest}, {run.best.name}",
              f"  {'metrics:':12s} {run.metrics_path}",
              f"Next: scratchgen sample {shlex.quote(str(run.path))} --n 64 --out samples.png",
              f"      scratchgen eval {shlex.quote(str(run.path))}"]
    print("\n".join(lines))


# ---------------------------------------------------------------------------- sample and eval
# A sample request may use this share of the memory the system reports as available.
SAMPLE_MEMORY_SHARE = 0.5
# bytes per output number while sampling: the float32 result plus room for the network's activations
SAMPLE_BYTES_PER_VALUE = 4 * 16
MAX_PNG_SAMPLES = 10_000


def available_memory():
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_sample_request(n, shape, suffix):
    """Refuse (CLIError) a request that would not fit in memory, saying how much it would need."""
    import math
    if suffix == ".png" and n > MAX_PNG_SAMPLES:
        raise CLIError(f"--n {n} is too many samples for one picture (at most {MAX_PNG_SAMPLES}); write "
                       f"them to a .npy file instead")
    needed = n * math.prod(shape) * SAMPLE_BYTES_PER_VALUE
    free = available_memory()
    if free is not None and needed > SAMPLE_MEMORY_SHARE * free:
        raise CLIError(f"--n {n} samples of shape {tuple(shape)} would need about {needed / 2**30:.1f} GiB of "
                       f"memory, and {free / 2**30:.1f} GiB are available. Ask for fewer (--n), and draw "
                       f"more in separate runs with different --seed values.")


def cmd_sample(args, argv):
    import numpy as np

    from .files import atomic_write
    from .random import manual_seed
    from .training import plots

    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    if args.out and Path(args.out).suffix not in (".npy", ".png"):
        raise CLIError(f"--out must end in .npy (raw array) or .png (picture), got {args.out}")
    attributes = _sample_attributes(args.attribute)
    run, config, experiment, meta = load_run(args.run_dir, args.checkpoint)
    experiment.opts.update(_overrides(experiment, experiment.sample_options, args.set, "sampling"))
    if attributes:
        trained = tuple(experiment.opts.get("attributes") or ())
        if not trained:
            raise CLIError(f"{run.path} was trained without attributes, so --attribute does not apply; train a "
                           f"run with them: scratchgen train cvae --attributes thickness,slant")
        if unknown := sorted(set(attributes) - set(trained)):
            raise CLIError(f"{run.path} was trained with the attributes {', '.join(trained)}; it cannot be "
                           f"asked for {', '.join(unknown)}")
    out = Path(args.out) if args.out else run.path / "samples.png"
    if out.is_dir():
        raise CLIError(f"--out {out} is a folder; give a file name ending in .npy or .png")
    check_sample_request(args.n, experiment.info.shape, out.suffix)
    manual_seed(args.seed)
    samples = experiment.sample(args.n, label=args.label, **({"attributes": attributes} if attributes else {}))
    if not np.isfinite(samples).all():
        raise CLIError(f"the model of {run.path} produced NaN or infinite samples; nothing was written. "
                       f"Try the other checkpoint (--checkpoint best or latest), or train again.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        with atomic_write(out, "wb") as f:
            np.save(f, samples)
    elif samples.ndim == 2:
        plots.save_points(samples, out, title=f"{config['model']} samples")
    else:
        lo = -1.0 if config.get("scale") == "pm1" else 0.0
        label = "" if args.label is None else f", label {args.label}"
        label += "".join(f", {k} {v:+g}σ" for k, v in attributes.items())
        plots.save_image_grid(samples, out, title=f"{config['model']} on {config['data']}{label} "
                              f"(epoch {meta['epoch']})", value_range=(lo, 1.0))
    print(f"wrote {args.n} samples of shape {samples.shape[1:]} to {out}")
    return 0


def _sample_attributes(items):
    """``--attribute NAME=VALUE`` items -> ``{name: value}`` (names of :mod:`scratchgen.data.attributes`)."""
    from .models.cvae import parse_attributes
    try:
        return parse_attributes(items)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _plain(value):
    """NumPy scalars and arrays as Python numbers and lists (for JSON)."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _overrides(experiment, names, items, what):
    """``--set`` items, ``["iwae_k=5000"]`` -> ``{"iwae_k": 5000}``, for the options in ``names`` only (the
    family's ``eval_options`` or ``sample_options``); ``what`` names the kind in the message."""
    options = {o.name: o for o in experiment.options if o.name in names}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in options:
            valid = ", ".join(sorted(options)) or f"none: {experiment.name} has no {what} setting to change"
            raise CLIError(f"--set expects NAME=VALUE with NAME one of: {valid}; got {item!r}")
        try:
            out[name] = options[name].type(value.strip())
        except ValueError:
            raise CLIError(f"--set {name}: expected a value of type {options[name].type.__name__}, "
                           f"got {value!r}") from None
        if why := options[name].problem(out[name]):
            raise CLIError(f"--set {name}: {why}")
    return out


def cmd_eval(args, argv):
    from .data import load
    from .training import isolated_rng
    from .training.metrics import MetricsError, read_metrics, seconds_per_epoch, seconds_per_iteration

    run, config, experiment, meta = load_run(args.run_dir, args.checkpoint)
    splits = experiment.info.splits
    if args.split not in splits:
        raise CLIError(f"unknown split {args.split!r} for {config['data']}; choose one of {', '.join(splits)}")
    data = load(config["data"], args.split, data_dir=args.data_dir or config.get("data_dir"),
                scale=config["scale"], binarize=config["binarize"], seed=config["seed"])
    experiment.opts.update(_overrides(experiment, experiment.eval_options, args.set, "evaluation"))
    if args.quality_samples is not None:
        if args.quality_samples < 10:
            raise CLIError(f"--quality-samples must be at least 10 (the k-nearest-neighbour balls of precision and "
                           f"recall need more points than k), got {args.quality_samples}")
        experiment.quality_samples = args.quality_samples
    try:  # eval needs the weights, not a perfect metrics file: a damaged one costs only the timings
        rows = read_metrics(run.metrics_path)
    except MetricsError as e:
        print(f"note: {e}; the timings are left out", file=sys.stderr)
        rows = []
    with isolated_rng(config["seed"] if args.seed is None else args.seed):
        metrics = experiment.report(data, args.split)
    report = {"model": config["model"], "data": config["data"], "split": args.split,
              "checkpoint": args.checkpoint, "epoch": meta["epoch"], "step": meta["step"],
              **{k: _plain(v) for k, v in metrics.items()}, "seconds_per_epoch": seconds_per_epoch(rows),
              "seconds_per_iteration": seconds_per_iteration(rows)}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{config['model']} on {config['data']}, {args.checkpoint} checkpoint (epoch {meta['epoch']}, "
          f"step {meta['step']}), {args.split} split ({len(data)} examples):")
    for k in [*metrics, "seconds_per_epoch", "seconds_per_iteration"]:
        v = report[k]
        print(f"  {k:24s} {format(v, '.4f') if isinstance(v, float) else v}")
    return 0


def cmd_gradcheck(args, argv):
    from .finite_differences import demo
    demo()
    return 0


def cmd_export(args, argv):
    from .training.export import LOAD_SNIPPET, export_run

    path, state = export_run(args.run_dir, args.out, args.checkpoint, args.to)
    print(f"wrote {len(state)} arrays ({sum(v.size for v in state.values()):,} numbers) to {path}\n"
          f"load them in PyTorch into the matching torch.nn network:\n{LOAD_SNIPPET.format(path=str(path))}")
    return 0


# ---------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run the command; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "data":
        from .data.__main__ import main as data_main
        return data_main(argv[1:], prog="scratchgen data")
    if argv and argv[0] == "bench":
        from .bench import main as bench_main
        return bench_main(argv[1:]) or 0
    if argv and argv[0] == "exercise":
        from .exercises.__main__ import main as exercise_main
        return exercise_main(argv[1:], prog="scratchgen exercise")

    from .data import CorruptDataError
    from .files import describe_os_error
    from .training import (CheckpointError, NonFiniteLossError, RunFolderError, TrainingInterrupted,
                           TrainingStoppedError)

    args = build_parser().parse_args(argv)
    try:
        return args.func(args, argv)
    except TrainingInterrupted as e:
        print(str(e), flush=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CLIError, RunFolderError, CheckpointError, NonFiniteLossError, TrainingStoppedError,
            CorruptDataError, ValueError, OSError, MemoryError) as e:
        if os.environ.get("SCRATCHGEN_DEBUG"):
            raise
        print(f"scratchgen: error: {error_message(e, describe_os_error)}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def error_message(e, describe_os_error):
    """The one paragraph printed for an error (every OS error and MemoryError included)."""
    if isinstance(e, OSError) and e.errno is not None:  # from the OS (ours carry their own message)
        return describe_os_error(e)
    if isinstance(e, MemoryError):
        return (f"not enough memory ({e or 'the allocation failed'}). Use smaller settings (--batch-size, "
                f"--n, --set iwae_k=...), or close other programs.")
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
