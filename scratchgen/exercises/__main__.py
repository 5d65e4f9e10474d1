"""``scratchgen exercise list | start NAME | check NAME | hint NAME`` (also ``python -m scratchgen.exercises``)."""
import argparse
import os
import sys
from pathlib import Path

from . import catalogue, grader, workspace

EXAMPLES = """\
examples:
  scratchgen exercise list                      every exercise, with its chapter and status
  scratchgen exercise start js-divergence       write exercises/js_divergence.py (a stub to fill in)
  scratchgen exercise check js-divergence       grade it with the library's own tests
  scratchgen exercise hint js-divergence        one more hint (remembered in the folder)
  scratchgen exercise check --all               grade every exercise in the folder (a teacher's summary)

The folder is ./exercises unless --dir or SCRATCHGEN_EXERCISES names another.
"""


def build_parser(prog="scratchgen exercise"):
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Graded exercises: write a function of the library yourself, then check it with the "
                    "library's own tests.")
    parser.add_argument("action", choices=("list", "start", "check", "hint"))
    parser.add_argument("name", nargs="?", metavar="NAME", help="the exercise (see `list`)")
    parser.add_argument("--dir", metavar="DIR", help="your exercises folder (default: $SCRATCHGEN_EXERCISES "
                                                     f"or ./{workspace.DEFAULT_FOLDER})")
    parser.add_argument("--force", action="store_true", help="start: replace an existing file by a fresh stub")
    parser.add_argument("--all", action="store_true", help="check: every exercise that has a file in the folder")
    return parser


def main(argv=None, prog="scratchgen exercise"):
    parser = build_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    folder = Path(args.dir or os.environ.get("SCRATCHGEN_EXERCISES") or workspace.DEFAULT_FOLDER)
    if args.action == "list":
        return cmd_list(folder)
    if args.action == "check" and args.all:
        return cmd_check_all(folder)
    if not args.name:
        parser.error(f"`{args.action}` needs the NAME of an exercise; `{prog} list` shows them")
    try:
        exercise = catalogue.get(args.name)
        if args.action == "start":
            return cmd_start(exercise, folder, args.force)
        if args.action == "hint":
            return cmd_hint(exercise, folder)
        return cmd_check(exercise, folder)
    except (KeyError, OSError, RuntimeError) as e:   # OSError: missing file, existing file, full disk, no permission
        print(f"{prog}: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1


def cmd_list(folder):
    print(f"{'exercise':30s} {'lecture':44s} status")
    for e in catalogue.EXERCISES:
        path = folder / e.file_name
        status = workspace.status(folder, e.name) or ("started" if path.exists() else "")
        lecture, section = workspace.lecture_reference(e)
        print(f"{e.name:30s} {Path(lecture).stem + ' ' + section:44s} {status}")
        print(f"    {e.summary}")
    print(f"\nStart one with `scratchgen exercise start NAME` (files go to {folder}/).")
    return 0


def cmd_start(exercise, folder, force):
    path = workspace.write_stub(exercise, folder, overwrite=force)
    print(f"Wrote {path}: the signature and docstring of {exercise.module}.{exercise.qualname}, and a body to "
          f"write.\nRead {', '.join(workspace.lecture_reference(exercise))}; then run\n"
          f"    scratchgen exercise check {exercise.name}")
    return 0


def cmd_hint(exercise, folder):
    number, total, text = workspace.next_hint(exercise, folder)
    print(f"Hint {number} of {total} for {exercise.name}: {text}")
    if number == total:
        print("(That is the last hint; the lecture section and the failing property in `check` say the rest.)")
    return 0


def cmd_check(exercise, folder):
    path = folder / exercise.file_name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; write it with `scratchgen exercise start {exercise.name}`"
                                + (" (or point --dir at your folder)" if folder.name else ""))
    print(f"Checking {path} against the library's tests of {exercise.module}.{exercise.qualname} ...", flush=True)
    [result] = grader.grade([(exercise.name, path)])
    print(format_result(exercise, result))
    workspace.record_check(folder, exercise.name, passed(result))
    return 0 if passed(result) else 1


def cmd_check_all(folder):
    """Grade every exercise that has a file in ``folder``, in one grading process; one line each."""
    started = [e for e in catalogue.EXERCISES if (folder / e.file_name).exists()]
    if not started:
        raise FileNotFoundError(f"no exercise files in {folder}/; `scratchgen exercise start NAME` writes one")
    print(f"Checking {len(started)} exercise(s) in {folder}/ ...", flush=True)
    results = grader.grade([(e.name, folder / e.file_name) for e in started])
    done = 0
    for e, result in zip(started, results):
        ok = passed(result)
        done += ok
        workspace.record_check(folder, e.name, ok)
        held = sum(r["passed"] for r in result["results"])
        state = ("could not be loaded" if result["load_error"] else
                 f"{held} of {len(result['results'])} properties hold")
        print(f"  {'passed' if ok else 'FAILED':7s} {e.name:30s} {state}")
    print(f"\n{done} of {len(started)} passed; `scratchgen exercise check NAME` shows what failed and why.")
    return 0 if done == len(started) else 1


def passed(result):
    return result["load_error"] is None and result["results"] and all(r["passed"] for r in result["results"])


def property_name(nodeid):
    """``tests/test_x.py::test_kl_is_nonnegative[3]`` -> ``kl is nonnegative [3]``."""
    name = nodeid.split("::")[-1]
    base, _, params = name.partition("[")
    words = base[len("test_"):] if base.startswith("test_") else base
    return words.replace("_", " ") + (f" [{params}" if params else "")


def format_result(exercise, result):
    if result["load_error"]:
        return (f"Your file could not be loaded: {result['load_error']}\n"
                f"Fix it and run `scratchgen exercise check {exercise.name}` again.")
    lines, failed = [], [r for r in result["results"] if not r["passed"]]
    if failed and all("NotImplementedError" in r["message"] for r in failed):
        return (f"{exercise.function_name} is not written yet (it still raises NotImplementedError). Read "
                f"{', '.join(workspace.lecture_reference(exercise))}, write it, and check again.")
    for r in result["results"]:
        mark = "ok  " if r["passed"] else "FAIL"
        lines.append(f"  {mark} {property_name(r['test'])}    ({r['test']})")
        if not r["passed"]:
            lines += ["         " + ln for ln in r["message"].splitlines()]
    example = result.get("example")
    if example:
        lines += ["", f"  A worked example: {example['call']}",
                  f"    expected {example['expected']}", f"    got      {example['got']}"]
    held = len(result["results"]) - len(failed)
    verdict = (f"All {held} properties hold: {exercise.name} is done." if not failed else
               f"{held} of {len(result['results'])} properties hold. The FAIL lines name the property, the "
               f"statement that failed and the values it compared (for property tests, the inputs that "
               f"broke it). Fix your function and check again.")
    return "\n".join(lines + ["", verdict])


if __name__ == "__main__":
    sys.exit(main())
