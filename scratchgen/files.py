"""Writing files so that nothing is ever lost, and saying in one sentence why a write failed.

Every file scratchgen writes (checkpoints, ``config.json``, ``metrics.csv`` when it is rewritten,
figures, samples, downloads) goes through :func:`atomic_write`::

    write  .latest.npz.tmp-<PID>      a temporary name in the same folder
    fsync  the temporary file         its bytes are on the disk, not only in the page cache
    rename .latest.npz.tmp-<PID> -> latest.npz      os.replace: atomic on one file system
    fsync  the folder                 the rename itself survives a power cut

so the real name only ever holds a complete file: a crash, a SIGKILL or a full disk in the middle
leaves the previous version as it was. What such a crash can leave behind is the temporary file;
:func:`remove_stale_temps` deletes those whose process (the PID in the name) is gone, and the next
run or fetch in that folder calls it.
"""
import contextlib
import errno
import os
import re
from pathlib import Path

# .<name>.tmp-<pid>[.<suffix>]: the name written by atomic_write (a download adds ".part")
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?P<suffix>\.\w+)?$")


def temp_path(path, suffix=""):
    """The temporary name :func:`atomic_write` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_write(path, mode="wb", suffix="", **open_kw):
    """``with atomic_write(path) as f: f.write(...)``: ``path`` gets all of it or none of it.

    ``mode`` is ``"wb"`` or ``"w"`` (then ``open_kw`` such as ``newline=""`` go to :func:`open`).
    On any exception (Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # NOTE: atomic on POSIX and Windows when both are on one file system
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(path.parent)


def fsync_folder(folder):
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid):
    """Does a process with this id exist (on this machine)?"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists but belongs to someone else (or the platform cannot tell): keep
    return True


def remove_stale_temps(*folders):
    """Delete temporary files left in ``folders`` by processes that died mid-write; returns them."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = TEMP_NAME.match(p.name)
            if m and p.is_file() and not pid_alive(int(m["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                removed.append(p)
    return removed


# What to do about the OS errors a student meets, by errno.
_ADVICE = {
    errno.ENOSPC: "the disk is full. Free some space (or choose a folder on another disk) and run the "
                  "command again",
    errno.EDQUOT: "the disk quota is used up. Free some space (or choose a folder on another disk) and run "
                  "the command again",
    errno.EROFS: "that file system is read-only. Choose a folder you can write to",
    errno.EACCES: "permission denied. Choose a folder you can write to, or fix its permissions",
    errno.EPERM: "the operation is not permitted there. Choose a folder you can write to",
    errno.ENOTDIR: "a part of that path is a file, not a folder. Check the path, or choose another one",
    errno.EISDIR: "that is a folder, not a file. Give a file name (for example samples.png)",
    errno.EEXIST: "something with that name already exists. Remove it or choose another name",
    errno.ENOENT: "there is no such file or folder. Check the path",
    errno.ENAMETOOLONG: "the name is too long. Choose a shorter path",
}


def describe_os_error(e):
    """One sentence about an :class:`OSError`: what failed on which path, and what to do."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    what = e.strerror or str(e) or type(e).__name__
    advice = _ADVICE.get(e.errno, "check the path and the disk, then run the command again")
    return f"{paths + ': ' if paths else ''}{what} — {advice}."
