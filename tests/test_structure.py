"""The package's shape: no name hides a module, and imports run one way through the layers.

The layers, from the bottom (README, "How the code is layered"): each module may import from its own
layer and the layers below it, never from a layer above.
"""
import ast
import importlib
import pkgutil
from pathlib import Path

import scratchgen

PACKAGE = Path(scratchgen.__file__).parent


def submodules(package):
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "__main__":
            yield info, importlib.import_module(f"{package.__name__}.{info.name}")


def test_no_function_or_class_hides_the_module_of_the_same_name():
    hidden, todo = [], [scratchgen]
    while todo:
        package = todo.pop()
        for info, module in submodules(package):
            if getattr(package, info.name) is not module:
                hidden.append(f"{module.__name__} is hidden by a {type(getattr(package, info.name)).__name__}")
            if info.ispkg:
                todo.append(module)
    assert not hidden, "; ".join(hidden)


# The layers, bottom first (README.md, "How the code is layered"). A module may import from its own
# layer and from layers below it. The trainer sits below the models on purpose: it knows nothing about
# VAEs or GANs, and every family plugs into it through the Experiment protocol.
LAYERS = [
    ("foundation: seeded randomness, safe files", ["scratchgen.random", "scratchgen.files", "scratchgen.npz"]),
    ("autograd engine", ["scratchgen.autograd"]),
    ("kernels", ["scratchgen.kernels"]),
    ("ops and nn", ["scratchgen.ops", "scratchgen.functional", "scratchgen.nn", "scratchgen.optim",
                    "scratchgen.finite_differences"]),
    ("distributions and objectives", ["scratchgen.distributions", "scratchgen.divergences", "scratchgen.bayes",
                                      "scratchgen.linear_gaussian", "scratchgen.objectives"]),
    ("data", ["scratchgen.data"]),
    ("trainer, run folder, evaluation", ["scratchgen.training.experiment", "scratchgen.training.checkpoint",
                                         "scratchgen.training.run", "scratchgen.training.metrics",
                                         "scratchgen.training.plots", "scratchgen.training.trainer",
                                         "scratchgen.training", "scratchgen.evaluation"]),
    ("models", ["scratchgen.models"]),
    ("command line, configuration, labs, exercises, benchmarks",
     ["scratchgen.training.config", "scratchgen.training.export", "scratchgen.cli", "scratchgen.__main__",
      "scratchgen.bench", "scratchgen.bench_steps", "scratchgen.bench_presets", "scratchgen.bench_epochs",
      "scratchgen.labs", "scratchgen.exercises"]),
]


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module):
    """Index of the layer whose longest listed prefix matches ``module`` (None: in no layer)."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    return None if best is None else best[0]


def imports_of(path):
    """Every scratchgen module ``path`` imports, anywhere in the file (function-level imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # `from . import nn` imports the module scratchgen.nn
                sub = f"{target}.{a.name}"
                found.add(sub if sub in MODULES else target)
    # the root package is the public facade (``import scratchgen`` to find the installed folder)
    return {m for m in found if m.startswith("scratchgen.")}


def all_modules():
    return MODULES


def test_every_module_belongs_to_a_layer():
    assert sorted(m for m in all_modules() if m != "scratchgen" and layer_of(m) is None) == []


def test_no_import_runs_back_up_the_layers():
    upward = []
    for name, path in sorted(all_modules().items()):
        if name == "scratchgen":
            continue
        for target in sorted(imports_of(path)):
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that run back up the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    modules = all_modules()
    graph = {name: {t for t in imports_of(path) if t in modules and t != name}
             for name, path in modules.items() if name != "scratchgen"}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_a_private_name_of_another():
    """A leading underscore means "this file only": shared helpers get a public name."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.name}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_one_vae_step_runs_through_the_files_lecture_6_lists():
    """Lecture 6 lists the files of one VAE step's mathematics (at most eight), then names the kernels,
    containers and helpers they lean on; a traced training step runs exactly there."""
    import re
    import sys

    from scratchgen.data import DATASETS, load
    from scratchgen.models.vae import VAE
    from scratchgen.random import manual_seed
    from scratchgen.training.config import resolve_config

    text = (PACKAGE.parent / "lectures" / "06-vae.md").read_text(encoding="utf-8")
    section = text[text.index("### One step, file by file"):text.index("## 6.5")]
    listed = re.findall(r"^\d+\. `(scratchgen/[^`]+)`", section, re.M)
    helpers = re.findall(r"`(scratchgen/[^`]+)`", section[section.index("The matrix products"):])
    assert 0 < len(listed) <= 8

    manual_seed(0)
    vae = VAE(resolve_config(VAE, {"latent": 2, "hidden": [8], "batch_size": 8}), DATASETS["digits8"])
    batch = load("digits8", "val")[:8]
    vae.train_step(batch)  # the first step compiles and creates Adam's moments
    ran = set()
    sys.setprofile(lambda frame, event, arg: ran.add(frame.f_code.co_filename) if event == "call" else None)
    try:
        vae.train_step(batch)
    finally:
        sys.setprofile(None)
    ran = {Path(f).resolve().relative_to(PACKAGE.parent).as_posix() for f in ran
           if Path(f).resolve().is_relative_to(PACKAGE)}
    elsewhere = sorted(f for f in ran if f not in listed and not any(f == h or f.startswith(h) for h in helpers))
    assert elsewhere == [], f"a VAE step runs through files lecture 6 does not name: {elsewhere}"
    assert set(listed) <= ran, f"lecture 6 lists files a VAE step never runs: {sorted(set(listed) - ran)}"
