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
