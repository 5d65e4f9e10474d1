"""``python -m scratchgen.data fetch NAME`` / ``list``: the same as ``scratchgen data ...``.

The top-level CLI can delegate its ``data`` sub-command here: ``main(argv)`` with the
arguments after ``data``.
"""
import argparse
import sys

from ..files import describe_os_error
from .datasets import list_datasets
from .download import SOURCES, DownloadError, fetch
from .paths import default_cache_dir, search_dirs


def build_parser(prog="scratchgen data"):
    parser = argparse.ArgumentParser(prog=prog, description="Download and list scratchgen datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a dataset into the cache and verify its checksums")
    f.add_argument("name", choices=sorted(SOURCES))
    f.add_argument("--cache-dir", default=None, help=f"where to store it (default {default_cache_dir()})")
    f.add_argument("--force", action="store_true", help="download again even if the cached files are good")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list the datasets and where files are looked for")
    return parser


def main(argv=None, prog="scratchgen data"):
    args = build_parser(prog).parse_args(argv)
    if args.command == "fetch":
        try:
            folder = fetch(args.name, cache_dir=args.cache_dir, progress=not args.quiet, force=args.force)
        except DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except OSError as e:  # e.g. --cache-dir on a read-only disk: a sentence, not a traceback
            print(f"error: {describe_os_error(e)}", file=sys.stderr)
            return 1
        print(f"{args.name}: all files verified in {folder}")
        return 0
    for info in list_datasets():
        splits = ", ".join(f"{k} {v}" for k, v in info.splits.items())
        print(f"{info.name:16s} {info.description}\n{'':16s} shape {info.shape}; {splits}\n{'':16s} {info.source}")
    print("downloaded files are looked for in: " + ", ".join(map(str, search_dirs())))
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m scratchgen.data"))
