"""Reading ``.npz`` files without trusting them: checkpoints and the bundled digits.

``np.load`` would allocate whatever an array's header declares before reading a byte of its data,
so a 1 kB file claiming a (100000, 100000) array asks for 40 GB. :func:`read_npz` reads every
header first and refuses, before any array is read into memory:

* a member that is not a ``.npy`` array, or is compressed (scratchgen writes checkpoints stored, so
  the bytes an array declares can be compared with the bytes the file really holds; a caller whose
  ``check`` fixes every shape may pass ``compressed=True``, as the bundled digits do);
* a declared size that differs from the member's size, or a member that runs past the file's end;
* an object dtype (that would need pickle) or a dtype kind the caller does not accept;
* anything the caller's ``check(headers)`` refuses (a checkpoint compares shapes with the model).
"""
import math
import os
import zipfile

import numpy as np

NUMBERS = "biuf"  # bool, signed and unsigned integers, floats
_READ_HEADER = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# what can go wrong inside a file that is not what it claims; readers turn these into their own errors
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
               NotImplementedError)


class NpzError(ValueError):
    """An ``.npz`` member is not what it must be (the message says which and why)."""


class Header:
    """One array's declared ``shape`` and ``dtype``, from its ``.npy`` header."""

    def __init__(self, info, shape, dtype):
        self.info, self.shape, self.dtype = info, tuple(shape), dtype


def read_npz(path, kinds=NUMBERS, text=(), check=None, compressed=False):
    """``{name: ndarray}`` of an ``.npz`` file, every header checked before any data is read.

    ``kinds``: the dtype kinds accepted; ``text``: names of members that are one string instead;
    ``check(headers)`` (``{name: Header}``) may raise to refuse the file before its data is read.
    Raises :class:`NpzError` or one of :data:`READ_ERRORS`.
    """
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        headers = {}
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            headers[name] = _header(zf, info, size, "U" if name in text else kinds, compressed)
            if name in text and headers[name].shape != ():
                raise NpzError(f"{name} has shape {headers[name].shape}; expected one string")
        if check is not None:
            check(headers)
        return {name: _read(zf, h) for name, h in headers.items()}


def _header(zf, info, file_size, kinds, compressed):
    name = info.filename
    if not name.endswith(".npy"):
        raise NpzError(f"it holds {name!r}, which is not an array")
    stored = info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size
    if not (stored or compressed):
        raise NpzError(f"{name} is compressed; scratchgen writes these files uncompressed, and does not "
                       f"inflate data whose size it cannot check")
    if info.header_offset + info.compress_size > file_size:
        raise NpzError(f"{name} runs past the end of the file ({file_size} bytes): it was cut short")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _READ_HEADER:
            raise NpzError(f"{name} has .npy format version {version}; expected 1.0 or 2.0")
        shape, _, dtype = _READ_HEADER[version](f)
        offset = f.tell()
    if dtype.hasobject or dtype.kind not in kinds:
        raise NpzError(f"{name} has dtype {dtype}; expected {'text' if kinds == 'U' else 'numbers'}")
    declared = math.prod(shape) * dtype.itemsize
    if offset + declared != info.file_size:
        raise NpzError(f"{name} declares shape {tuple(shape)} of {dtype} ({declared} bytes) but holds "
                       f"{info.file_size - offset} bytes")
    return Header(info, shape, dtype)


def _read(zf, header):
    with zf.open(header.info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)
