"""The student's folder: the stub files ``start`` writes, loading a solution, and hint progress.

A stub keeps the library function's signature and docstring and replaces its body by a
``NotImplementedError`` that points at the lecture section. Progress (how many hints of each
exercise were shown) lives in ``PROGRESS_FILE`` inside the same folder, written atomically.
"""
import importlib
import importlib.util
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

from ..files import atomic_write

DEFAULT_FOLDER = "exercises"
PROGRESS_FILE = ".scratchgen-progress.json"

# the checkout that holds lectures/ and tests/ beside the package (absent from an installed wheel)
ROOT = Path(__file__).resolve().parent.parent.parent


def resolve(target):
    """(owner, attribute name, the function) for ``"module:qual.name"``: the object that holds
    the function (a module or a class), and the plain function found there."""
    module_name, qualname = target.split(":")
    owner = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    function = inspect.getattr_static(owner, attr)
    if not inspect.isfunction(function):
        raise TypeError(f"{target} is a {type(function).__name__}, not a plain function")
    return owner, attr, function


def lecture_reference(exercise, lectures=None):
    """(lecture file, section) where the exercise is explained, e.g. ("lectures/04-elbo.md", "§4.7").

    The file is found by its name after the chapter number and the section by its title, so
    renumbering chapters or sections changes nothing here. Without the lectures folder (an
    installed package) the title stands in for the number.
    """
    folder = Path(lectures) if lectures else ROOT / "lectures"
    files = sorted(folder.glob(f"[0-9][0-9]-{exercise.lecture}.md"))
    if not files:
        return f"the lecture on {exercise.lecture}", f"the section \"{exercise.section}\""
    heading = re.search(rf"^## (\d+\.\d+) {re.escape(exercise.section)}", files[0].read_text(encoding="utf-8"), re.M)
    section = f"§{heading.group(1)}" if heading else f"the section \"{exercise.section}\""
    return f"lectures/{files[0].name}", section


def stub_source(exercise):
    """The text of the file ``start`` writes: header, imports, signature, docstring, and a body
    that raises NotImplementedError pointing at the lecture."""
    _, name, function = resolve(exercise.target)
    signature = inspect.signature(function)
    # the docstring goes between triple quotes: keep its backslashes and quotes literal
    doc = (inspect.getdoc(function) or "").replace("\\", "\\\\").replace('"""', "'''")
    lecture = ", ".join(lecture_reference(exercise))
    header = [f"Exercise {exercise.name}: {exercise.summary}.", "",
              f"Read {lecture}, then replace the body of {name} below. Check it with",
              "",
              f"    scratchgen exercise check {exercise.name}",
              "",
              f"which runs the library's own tests for {exercise.module}.{exercise.qualname}",
              "with your function in its place (for that run only; nothing installed is changed).",
              f"Stuck? `scratchgen exercise hint {exercise.name}` shows one hint at a time."]
    if exercise.note:
        header += ["", *exercise.note.splitlines()]
    imports = list(exercise.imports)
    if exercise.helpers:
        imports.append(f"from {exercise.module} import {', '.join(exercise.helpers)}  # noqa: F401")
    message = f"{name} is not written yet: read {lecture}, then write it here"
    body = textwrap.indent(f'"""{doc}\n"""' if doc else '""""""', "    ")
    return ('"""' + "\n".join(header) + '\n"""\n'
            + "\n".join(imports) + ("\n" if imports else "")
            + f"\n\ndef {name}{signature}:\n{body}\n"
            + f"    raise NotImplementedError({message!r})\n")


def write_stub(exercise, folder, overwrite=False):
    """Write the stub into ``folder``; refuse to overwrite the student's work unless asked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / exercise.file_name
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists — it may hold your work, so it was left alone. "
                              f"Check it with `scratchgen exercise check {exercise.name}`, or add --force "
                              f"to replace it by a fresh stub.")
    _write_atomically(path, stub_source(exercise))
    return path


def load_solution(exercise, path):
    """The student's function, defined in the file at ``path`` (loaded as a fresh module)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; `scratchgen exercise start {exercise.name}` writes it")
    spec = importlib.util.spec_from_file_location(f"student_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    function = getattr(module, exercise.function_name, None)
    if not callable(function):
        raise AttributeError(f"{path} defines no function {exercise.function_name}(); keep the name "
                             f"and signature the stub gave it")
    return function


# ------------------------------------------------------------------ hint progress
def hints_shown(folder, name):
    return _read_progress(folder).get("hints", {}).get(name, 0)


def next_hint(exercise, folder):
    """(number, total, text) of the next hint, remembering it was shown; after the last hint
    the last one again."""
    progress = _read_progress(folder)
    shown = progress.setdefault("hints", {}).get(exercise.name, 0)
    number = min(shown + 1, len(exercise.hints))
    progress["hints"][exercise.name] = number
    _write_atomically(Path(folder) / PROGRESS_FILE, json.dumps(progress, indent=1, sort_keys=True) + "\n")
    return number, len(exercise.hints), exercise.hints[number - 1]


def record_check(folder, name, passed):
    """Remember the last check's verdict, for `scratchgen exercise list`."""
    progress = _read_progress(folder)
    progress.setdefault("checked", {})[name] = "passed" if passed else "failed"
    _write_atomically(Path(folder) / PROGRESS_FILE, json.dumps(progress, indent=1, sort_keys=True) + "\n")


def status(folder, name):
    """"passed" or "failed" (the last check), or None if never checked."""
    return _read_progress(folder).get("checked", {}).get(name)


def _read_progress(folder):
    path = Path(folder) / PROGRESS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        print(f"note: {path} could not be read as progress; starting the hint count again",
              file=sys.stderr)
        return {}
    return data


def _write_atomically(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
