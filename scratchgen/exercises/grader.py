"""Grading: the library's own tests, run with the student's function in place of the library's.

``check`` starts a fresh Python process (so the substitution can never leak into anything else)::

    python -m scratchgen.exercises.grader REPORT.json NAME=FILE [NAME=FILE ...]

Each ``NAME=FILE`` is one *round*: the exercise's function is loaded from FILE (or, for
``NAME=library``, the library's own function is kept), put in place of the target, the
exercise's tests run, and the original is put back. In the process, pytest collects the tests
once; a plugin (:class:`Grader`) then runs the rounds itself. The substitution replaces the
target wherever the loaded code holds it — the attribute of its module or class, names bound by
``from module import name`` in library and test modules, and module-level tables (dicts) that
list it — and restores every one afterwards. The results go to REPORT.json; :func:`grade` reads
them back.

One process for several rounds keeps the cost of starting Python, NumPy, Numba and pytest to
once, which is what lets the test suite grade every exercise three times in a few seconds.
"""
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import catalogue, workspace

LIBRARY = "library"
ROOT = workspace.ROOT


def repository_tests():
    """The repository's tests/ folder, or an error a student can act on."""
    tests = ROOT / "tests"
    if not (tests / "conftest.py").exists():
        raise FileNotFoundError(
            f"`scratchgen exercise check` grades with the repository's own tests, and there is no tests/ "
            f"folder beside this installation ({ROOT}). Clone the scratchgen repository and install it "
            f"from there with `pip install -e '.[test]'`.")
    return tests


# ------------------------------------------------------------------ in the grading process
@contextmanager
def substituted(target, replacement):
    """Put ``replacement`` in place of the function named by ``target`` everywhere it is held."""
    owner, attr, original = workspace.resolve(target)
    undo = [(owner, attr, original)]
    setattr(owner, attr, replacement)
    for name, module in list(sys.modules.items()):
        if module is None or not _is_ours(name, module):
            continue
        for key, value in list(vars(module).items()):
            if value is original:
                undo.append((module, key, value))
                setattr(module, key, replacement)
            elif type(value) is dict:                       # a table of functions, or of tuples of them
                for k, v in list(value.items()):
                    swapped = _swapped(v, original, replacement)
                    if swapped is not v:
                        undo.append((value, k, v))
                        value[k] = swapped
            elif type(value) in (tuple, list) and _swapped(value, original, replacement) is not value:
                undo.append((module, key, value))
                setattr(module, key, _swapped(value, original, replacement))
            elif isinstance(value, type) and value.__module__ == name:   # Tensor.tanh = tanh
                for k, v in list(vars(value).items()):
                    if v is original and (value, k) != (owner, attr):
                        undo.append((value, k, v))
                        setattr(value, k, replacement)
    try:
        yield
    finally:
        for holder, key, value in reversed(undo):
            if isinstance(holder, dict):
                holder[key] = value
            else:
                setattr(holder, key, value)


def _swapped(value, original, replacement):
    """``value`` with ``original`` replaced (itself, or an element of a tuple or list); the same
    object when there is nothing to replace."""
    if value is original:
        return replacement
    if type(value) in (tuple, list) and any(v is original for v in value):
        return type(value)(replacement if v is original else v for v in value)
    return value


def _is_ours(name, module):
    if name == "scratchgen" or name.startswith("scratchgen."):
        return True
    path = getattr(module, "__file__", None) or ""
    return Path(path).parent == ROOT / "tests"


class Grader:
    """A pytest plugin that runs the collected tests once per round, each with its substitution."""

    def __init__(self, rounds):
        self.rounds = rounds          # [(exercise, solution path or LIBRARY)]
        self.report = []

    def pytest_collection(self, session):
        """Before the test modules are imported (their @settings inherit from the default then):
        one failure per property, without Hypothesis's explanation phase — the shortest report."""
        try:
            from hypothesis import Phase, settings
        except ImportError:
            return None
        settings.register_profile("scratchgen-grader", parent=settings.default, report_multiple_bugs=False,
                                  phases=tuple(p for p in Phase if p.name != "explain"))
        settings.load_profile("scratchgen-grader")
        return None

    def pytest_runtestloop(self, session):
        from _pytest.runner import runtestprotocol
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) while collecting the tests")
        for exercise, solution in self.rounds:
            entry = {"exercise": exercise.name, "solution": str(solution), "load_error": None, "results": []}
            self.report.append(entry)
            items = [item for item in session.items
                     if any(item.nodeid == t or item.nodeid.startswith(t + "[") for t in exercise.tests)]
            if solution == LIBRARY:
                function = workspace.resolve(exercise.target)[2]
            else:
                try:
                    function = workspace.load_solution(exercise, solution)
                except Exception as e:  # the student's file: any error is theirs to see
                    entry["load_error"] = f"{type(e).__name__}: {e}"
                    continue
            with substituted(exercise.target, function):
                for item in items:
                    reports = runtestprotocol(item, nextitem=None, log=False)
                    failed = [r for r in reports if r.failed]
                    entry["results"].append({
                        "test": item.nodeid, "passed": not failed,
                        "message": _message(failed[0]) if failed else ""})
            if any(not r["passed"] for r in entry["results"]) and exercise.example:
                entry["example"] = _example(exercise, function)
        return True


def _message(report, width=160):
    """The lines of a failure a student needs: the failing statement of the test, and pytest's E
    lines (the values compared, Hypothesis's failing inputs, the exception), each cut to ``width``."""
    lines = report.longreprtext.splitlines()
    first_e = next((i for i, ln in enumerate(lines) if ln.startswith("E ")), None)
    if first_e is None:
        return "\n".join(_cut(ln.rstrip(), width) for ln in lines[-15:])
    code = [ln.strip() for ln in lines[:first_e] if ln.strip() and set(ln.strip()) - set("^~ ")]
    details = [_cut(ln[1:].rstrip(), width) for ln in lines[first_e:] if ln.startswith("E ")]
    if len(details) > 24:
        details = details[:20] + ["    ..."] + details[-3:]
    return "\n".join(["> " + (code[-1] if code else "")] + details)


def _cut(line, width):
    return line if len(line) <= width else line[:width - 4] + " ..."


def _example(exercise, student):
    """The worked example: the library's result (expected) against the student's (got)."""
    library = workspace.resolve(exercise.target)[2]      # called after the substitution is undone
    out = {"call": f"{exercise.function_name}({', '.join(_show(a) for a in exercise.example())})"}
    for key, function in (("expected", library), ("got", student)):
        try:
            out[key] = _show(function(*exercise.example()))
        except Exception as e:  # the student's function may raise anything
            out[key] = f"{type(e).__name__}: {e}"
    return out


def _show(value):
    import numpy as np
    if hasattr(value, "data") and hasattr(value, "grad"):  # a Tensor
        value = value.data
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    text = np.array2string(np.asarray(value), precision=6, suppress_small=True, separator=", ", max_line_width=10**6)
    return " ".join(text.split())


def run_rounds(report_path, pairs):
    """Collect the tests of every round once, grade every round, write the report."""
    import pytest
    rounds = [(catalogue.get(name), solution if solution == LIBRARY else Path(solution).resolve())
              for name, solution in pairs]
    tests = sorted({t for exercise, _ in rounds for t in exercise.tests})
    grader = Grader(rounds)
    status = pytest.main(["-q", "-p", "no:cacheprovider", "--tb=short", "--no-header", "-o", "addopts=",
                          "--rootdir", str(ROOT), *tests], plugins=[grader])
    Path(report_path).write_text(json.dumps({"pytest_status": int(status), "rounds": grader.report}, indent=1),
                                 encoding="utf-8")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    report, pairs = argv[0], [a.split("=", 1) for a in argv[1:]]
    os.chdir(ROOT)
    return run_rounds(report, pairs)


# ------------------------------------------------------------------ in the student's process
def grade(pairs, timeout=600):
    """Grade ``[(exercise name, solution path or LIBRARY)]`` in a fresh process; the report's rounds."""
    repository_tests()
    with tempfile.TemporaryDirectory(prefix="scratchgen-check-") as tmp:
        report = Path(tmp) / "report.json"
        args = [sys.executable, "-m", "scratchgen.exercises.grader", str(report),
                *(f"{name}={solution if solution == LIBRARY else Path(solution).resolve()}"
                  for name, solution in pairs)]
        try:
            done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the tests did not finish within {timeout} s — does your function loop forever, "
                               f"or build something huge? Try it by hand on a small input first.") from None
        if not report.exists():
            raise RuntimeError("the grading process stopped before writing its report:\n"
                               + (done.stdout + done.stderr)[-3000:])
        rounds = json.loads(report.read_text(encoding="utf-8"))["rounds"]
    if len(rounds) != len(pairs):
        raise RuntimeError("the grading process could not run the tests:\n" + (done.stdout + done.stderr)[-3000:])
    return rounds


if __name__ == "__main__":
    sys.exit(main())
