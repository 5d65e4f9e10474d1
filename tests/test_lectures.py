"""The lectures are tested like code.

1. Every ```python block of a lecture runs. The blocks of one file run in order in one fresh
   namespace (a block may use names defined by an earlier block of the same file); each file is
   one test case. Blocks fenced ```text, ```python no-run (or any other language) are skipped.
2. Every pointer a lecture makes still points at something: each dotted name
   ``scratchgen.module.name`` imports, each ``tests/test_x.py::test_name`` is defined in that
   file, each repository path (``scratchgen/...py``, ``tests/...py``) exists, and each relative
   Markdown link resolves. So renaming a function without updating the lectures fails here.
3. Nothing committed points outside the repository: a student who clones it has only the clone.
   Lectures, README.md, scratchgen/ and tests/ are searched for paths that leave the checkout
   (``../`` climbing out of it, absolute paths into a machine's folders, the developers' shared
   folder); only ``.ci/run`` may look beside the checkout.

The conventions are documented in ``lectures/README.md``.
"""
import importlib
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURES = ROOT / "lectures"
FILES = sorted(LECTURES.glob("*.md"))

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
DOTTED = re.compile(r"\bscratchgen(?:\.[A-Za-z_]\w*)+")
TEST_ID = re.compile(r"\btests/(test_\w+\.py)::([A-Za-z_]\w*)(?:::([A-Za-z_]\w*))?")
REPO_PATH = re.compile(r"(?<![\w/.])((?:scratchgen|tests|lectures)/[\w/.-]*\w\.(?:py|md|png))\b")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def code_blocks(path):
    """(first line number, source) of every block fenced exactly ```python in ``path``."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        info = m.group(1).strip().split()
        if info == ["python"]:
            line = text.count("\n", 0, m.start(2)) + 1
            blocks.append((line, m.group(2)))
    return blocks


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_lecture_code_blocks_run(path):
    blocks = code_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no ```python blocks")
    import scratchgen
    scratchgen.manual_seed(0)
    namespace = {"__name__": f"lecture_{path.stem.replace('-', '_')}"}
    for line, source in blocks:
        # Compiling under the lecture's name makes a traceback point at the lecture and line.
        code = compile("\n" * (line - 1) + source, str(path), "exec")
        try:
            exec(code, namespace)
        except Exception as e:  # re-raise naming the block, keeping the traceback
            raise AssertionError(f"{path.name}: the python block starting at line {line} "
                                 f"raised {type(e).__name__}: {e}") from e


def _resolve(dotted):
    """Import the longest importable module prefix of ``dotted`` and getattr the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError names the missing piece
        return obj
    raise ModuleNotFoundError(dotted)


def _all_text():
    return {p: p.read_text(encoding="utf-8") for p in FILES}


def test_lecture_pointers_resolve():
    assert FILES, f"no lectures found in {LECTURES}"
    problems = []
    for path, text in _all_text().items():
        for name in sorted(set(DOTTED.findall(text))):
            try:
                _resolve(name)
            except (ImportError, AttributeError) as e:
                problems.append(f"{path.name}: `{name}` does not resolve ({type(e).__name__}: {e})")
        for file, first, second in sorted(set(TEST_ID.findall(text))):
            test_file = ROOT / "tests" / file
            if not test_file.exists():
                problems.append(f"{path.name}: tests/{file} does not exist")
                continue
            source = test_file.read_text(encoding="utf-8")
            for name in filter(None, (first, second)):
                if not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b", source, re.M):
                    problems.append(f"{path.name}: tests/{file}::{name} is not defined")
        for rel in sorted(set(REPO_PATH.findall(text))):
            if not (ROOT / rel).exists():
                problems.append(f"{path.name}: path {rel} does not exist")
        for target in sorted(set(LINK.findall(text))):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            if not (path.parent / target).exists():
                problems.append(f"{path.name}: link target {target} does not exist")
    assert not problems, "stale pointers in the lectures:\n" + "\n".join(problems)


# --- 3. The repository stands alone ------------------------------------------------------------
# Where to look: every committed text a student reads or runs, except .ci/run (CI may use data
# placed beside the checkout).
STANDALONE_GLOBS = ("README.md", "setup.cfg", "lectures/**/*.md", "lectures/**/*.py",
                    "scratchgen/**/*.py", "scratchgen/**/*.md", "tests/**/*.py", "data/**/*.py",
                    "data/**/*.md")
# A run of ../ (with what follows it); it must stay inside the repository and name something.
CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+[\w.$/-]*)")
# An absolute path into a machine's folders, or a home-relative one.
ABSOLUTE = re.compile(r"(?<![\w.:/~$-])((?:/(?:work|home|Users|mnt|media|tmp|var|opt|srv|root|data|scratch)"
                      r"|~)/[\w.$/-]+)")
# The developers' shared folder, however it is reached.
SHARED = re.compile(r"\bshared/(?:seed|notes|data)\b")
# Home-relative paths the package itself creates (documented defaults), so they are not pointers.
OWN_FOLDERS = ("~/.cache/scratchgen",)


def paths_leaving(path, text, root=ROOT):
    """Every path in ``text`` (the contents of ``path``) that leaves the repository at ``root``."""
    found = []
    for m in CLIMB.finditer(text):
        target = (path.parent / m.group(1)).resolve()
        if not (target == root or root in target.parents) or not target.exists():
            found.append(m.group(1))
    for m in ABSOLUTE.finditer(text):
        if not m.group(1).startswith(OWN_FOLDERS):
            found.append(m.group(1))
    found += [m.group(0) for m in SHARED.finditer(text)]
    return sorted(set(found))


def _standalone_files(root=ROOT):
    files = {f for pattern in STANDALONE_GLOBS for f in root.glob(pattern) if f.is_file()}
    return sorted(f for f in files if "__pycache__" not in f.parts)


def test_nothing_committed_points_outside_the_repository():
    files = _standalone_files()
    assert len(files) > 50, f"only {len(files)} files searched; the globs are wrong"
    problems = []
    for f in files:
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for p in paths_leaving(f, line):
                problems.append(f"{f.relative_to(ROOT)}:{lineno}: {p}")
    assert not problems, (
        "these lines point outside the repository, which a student who clones it does not have. "
        "Cite the source note by its title, and name data through SCRATCHGEN_DATA or "
        "`scratchgen data fetch`:\n" + "\n".join(problems))


def test_the_outside_pointer_check_catches_each_kind_of_path(tmp_path):
    # The bad examples are assembled at run time, so that this file passes its own check.
    up, shared, home, tilde = "..", "shared", "/" + "home", "~"
    (tmp_path / "lectures").mkdir()
    (tmp_path / "README.md").write_text("x")
    lecture = tmp_path / "lectures" / "01.md"
    assert paths_leaving(lecture, "see [the index](../README.md) and (README.md)", tmp_path) == []
    assert paths_leaving(lecture, f"the note (`{up}/{up}/{shared}/seed/x.txt`)", tmp_path) == \
        [f"{up}/{up}/{shared}/seed/x.txt", f"{shared}/seed"]
    assert paths_leaving(lecture, f"--data-dir {up}/{shared}/data", tmp_path) == \
        [f"{up}/{shared}/data", f"{shared}/data"]     # inside the checkout, but nothing is there
    assert paths_leaving(lecture, f"--data-dir {up}/{up}/elsewhere", tmp_path) == [f"{up}/{up}/elsewhere"]
    assert paths_leaving(lecture, f"export SCRATCHGEN_DATA=/work/{shared}/data", tmp_path) == \
        [f"/work/{shared}/data", f"{shared}/data"]
    assert paths_leaving(lecture, f"open {home}/me/notes.md or {tilde}/notes.md", tmp_path) == \
        [f"{home}/me/notes.md", f"{tilde}/notes.md"]
    assert paths_leaving(lecture, "cached in ~/.cache/scratchgen/mnist; a/b = 2; "
                                  "http://host/tmp/x; 1/work", tmp_path) == []


FIGURE_ROW = re.compile(r"^\| `([\w.-]+\.png)` \|[^|]*\| ([^|]*`(?:scratchgen|python) [^`]+`[^|]*|the same run[^|]*)\|",
                        re.M)


def test_every_figure_names_the_command_that_redraws_it():
    readme = (LECTURES / "README.md").read_text(encoding="utf-8")
    rows = dict(FIGURE_ROW.findall(readme))
    figures = sorted(p.name for p in (LECTURES / "figures").glob("*.png"))
    assert figures, "no figures found"
    missing = [f for f in figures if f not in rows]
    assert not missing, (f"lectures/README.md's figure table has no row (figure | chapter | command | file) for "
                         f"{missing}; name the command that redraws each one")
    stale = [f for f in rows if f not in figures]
    assert not stale, f"lectures/README.md's figure table lists figures that do not exist: {stale}"


def test_lectures_never_refer_to_the_project_s_issues():
    """A reader has never seen the project's issue tracker: state the number and where it comes from."""
    pattern = re.compile(r"\b(?:the|this|that) issue\b|\bissue #?\d+", re.I)
    found = [f"{p.name}:{n}: {line.strip()}" for p, text in _all_text().items()
             for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not found, "lectures that point at the project's issues:\n" + "\n".join(found)


def test_readme_indexes_every_chapter():
    readme = (LECTURES / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(readme))
    missing = [p.name for p in FILES if p.name != "README.md" and p.name not in linked]
    assert not missing, f"lectures/README.md does not link to {missing}; add them to the index"


# The checks above must themselves be able to fail: feed them known-bad input.
def test_pointer_checks_catch_rot(tmp_path):
    with pytest.raises(AttributeError):
        _resolve("scratchgen.autograd.no_such_function")
    with pytest.raises(ModuleNotFoundError):
        _resolve("scratchgen_missing.module")
    assert _resolve("scratchgen.autograd.Tensor.backward") is not None
    assert TEST_ID.findall("see `tests/test_a.py::test_b` and tests/test_c.py::TestD::test_e") == \
        [("test_a.py", "test_b", ""), ("test_c.py", "TestD", "test_e")]
    md = tmp_path / "x.md"
    md.write_text("```python\na = 1\n```\n\n```python no-run\nraise SystemExit\n```\n"
                  "```text\nnot code\n```\n```python\nb = a + 1\n```\n")
    blocks = code_blocks(md)
    assert [line for line, _ in blocks] == [2, 12]
    ns = {}
    for _, src in blocks:
        exec(src, ns)
    assert ns["b"] == 2 and np.isscalar(ns["b"])
