"""Where data files live, and the one place that decides the search order.

Downloaded datasets (MNIST, Fashion-MNIST, binarized MNIST) are looked for, in order, in

1. the ``data_dir`` argument of the function you called,
2. the folder(s) in the ``SCRATCHGEN_DATA`` environment variable (``os.pathsep``-separated),
3. the cache folder: ``$XDG_CACHE_HOME/scratchgen``, else ``~/.cache/scratchgen``.

Each holds one sub-folder per dataset (``mnist/``, ``fashion-mnist/``, ``binarized-mnist/``)
with the original file names; a gzipped or an uncompressed copy are both accepted.

The small ``digits8.npz`` ships with the code: it sits in the repository's ``data/`` folder
(editable install) or in ``<prefix>/share/scratchgen/`` (installed through setup.cfg ``data_files``).
"""
import os
import site
import sys
from pathlib import Path

ENV_VAR = "SCRATCHGEN_DATA"
DIGITS8_FILE = "digits8.npz"


def default_cache_dir():
    """``$XDG_CACHE_HOME/scratchgen`` if that variable is set, else ``~/.cache/scratchgen``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scratchgen"


def search_dirs(data_dir=None):
    """The folders searched for downloaded datasets, in order (see the module docstring)."""
    dirs = [] if data_dir is None else [Path(data_dir)]
    dirs += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs.append(default_cache_dir())
    return dirs


def fetch_command(dataset):
    return f"`scratchgen data fetch {dataset}` (or `python -m scratchgen.data fetch {dataset}`)"


def _variants(filename):
    """A file may be stored gzipped or not: accept both names, the given one first."""
    return [filename, filename[:-3]] if filename.endswith(".gz") else [filename, filename + ".gz"]


def find_file(dataset, filename, data_dir=None, folder=None):
    """Path of ``<dir>/<folder>/<filename>`` (or its .gz twin) in the first search dir that has it."""
    folder = folder or dataset
    looked = []
    for d in search_dirs(data_dir):
        for name in _variants(filename):
            path = d / folder / name
            if path.is_file():
                return path
            looked.append(str(path))
    raise FileNotFoundError(
        f"{dataset}: cannot find {filename}. Looked in:\n  " + "\n  ".join(looked)
        + f"\nDownload it with {fetch_command(dataset)}, or point data_dir= or ${ENV_VAR} "
          f"at a folder that holds {folder}/{filename}.")


def digits8_candidates(data_dir=None):
    """Every place :func:`digits8_path` looks, in order."""
    import scratchgen
    places = [] if data_dir is None else [Path(data_dir) / DIGITS8_FILE]
    places += [Path(p) / DIGITS8_FILE for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    places.append(Path(scratchgen.__file__).resolve().parent.parent / "data" / DIGITS8_FILE)  # editable
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, site.getuserbase()]):  # data_files
        places.append(Path(prefix) / "share" / "scratchgen" / DIGITS8_FILE)
    return places


def digits8_path(data_dir=None):
    """Path of digits8.npz; FileNotFoundError naming every place looked at if it is nowhere."""
    places = digits8_candidates(data_dir)
    for path in places:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{DIGITS8_FILE} (the bundled 8x8 digits) is missing. Looked in:\n  "
        + "\n  ".join(map(str, places))
        + "\nIt ships in the repository's data/ folder: install with `pip install -e .` from a checkout, "
          "or regenerate it with `python data/make_digits8.py` (needs scikit-learn).")
