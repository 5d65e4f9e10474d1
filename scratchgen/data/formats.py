"""Readers for the two file formats behind MNIST-like data: IDX (binary) and .amat (text).

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a tiny header and one flat array:

    bytes 0-1   zero
    byte  2     element type (0x08 = unsigned byte, the only one MNIST uses)
    byte  3     number of dimensions d
    4*d bytes   the size of each dimension, 32-bit big-endian
    the rest    the array in row-major order

Read as one big-endian integer, bytes 0-3 are the "magic number": 2051 (0x00000803) for a
3-d uint8 image file, 2049 (0x00000801) for a 1-d uint8 label file.

.amat is Larochelle's text format for binarized MNIST: one image per line, 784 values
``0``/``1`` separated by single spaces.

Both may be gzipped; :func:`read_bytes` looks at the first two bytes, not at the file name.
Every check failure raises :class:`CorruptDataError`, naming the file and how to replace it.
"""
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: code for code, dt in IDX_DTYPES.items()}


class CorruptDataError(ValueError):
    """A data file exists but its bytes are not what the format promises."""


def _fix_hint(dataset):
    if dataset is None:
        return "Replace the file with a good copy."
    return (f"Delete it and fetch a fresh copy: `scratchgen data fetch {dataset}` "
            f"(or `python -m scratchgen.data fetch {dataset}`).")


def corrupt(path, reason, dataset=None):
    """Build the error every reader raises: which file, what is wrong, what to do."""
    return CorruptDataError(f"{path} is corrupt: {reason}. {_fix_hint(dataset)}")


# NOTE: the largest file scratchgen reads unpacks to ~80 MB (binarized MNIST's training .amat);
# a gzip stream that would unpack to more is refused, so a small file cannot ask for gigabytes.
MAX_UNPACKED_BYTES = 256 * 2 ** 20


def read_bytes(path, dataset=None, limit=MAX_UNPACKED_BYTES):
    """The file's contents, gunzipped if it starts with the gzip magic bytes (at most ``limit`` bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    parts, rest = [], raw
    try:
        while rest:  # a gzip file may hold several members, one after the other
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            parts.append(member.decompress(rest, limit + 1 - sum(map(len, parts))))
            if sum(map(len, parts)) > limit:
                raise corrupt(path, f"it would unpack to more than {limit} bytes; no dataset scratchgen reads "
                                    f"is that large", dataset)
            if not member.eof:  # the deflate stream stops early: a truncated download
                raise corrupt(path, f"the gzip stream is truncated ({len(raw)} bytes on disk)", dataset)
            rest = member.unused_data
    except zlib.error as e:  # a bad header or CRC
        raise corrupt(path, f"gzip could not decompress it ({e})", dataset) from e
    return b"".join(parts)


def parse_idx(raw, path="<bytes>", expected_magic=None, expected_shape=None, dataset=None):
    """Decode IDX bytes into a NumPy array (native byte order, writable).

    ``expected_magic`` (e.g. 2051) pins element type and rank; ``expected_shape`` may use
    ``None`` for a free dimension, e.g. ``(None, 28, 28)``.
    """
    if len(raw) < 4:
        raise corrupt(path, f"it has {len(raw)} bytes, fewer than the 4-byte IDX magic number", dataset)
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise corrupt(path, f"IDX magic number is {magic} (0x{magic:08x}); expected {expected_magic} "
                            f"(0x{expected_magic:08x})", dataset)
    if zero != 0 or code not in IDX_DTYPES:
        raise corrupt(path, f"bytes 0-3 are 0x{magic:08x}, not an IDX magic number "
                            f"(0x0000, a type code in {sorted(hex(c) for c in IDX_DTYPES)}, ndim)", dataset)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(path, f"the header needs {header} bytes for {ndim} dimensions; the file has {len(raw)}",
                      dataset)
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if expected_shape is not None and (
            len(shape) != len(expected_shape)
            or any(e is not None and e != s for e, s in zip(expected_shape, shape))):
        want = tuple("any" if e is None else e for e in expected_shape)
        raise corrupt(path, f"IDX dimensions are {shape}; expected {want}", dataset)
    dtype = IDX_DTYPES[code]
    expected_len = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected_len:
        raise corrupt(path, f"it has {len(raw)} bytes; header {header} + {'x'.join(map(str, shape))} "
                            f"x {dtype.itemsize}-byte elements = {expected_len}", dataset)
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))  # a copy: writable, native byte order


def read_idx(path, expected_magic=None, expected_shape=None, dataset=None):
    """Read an IDX file (gzipped or raw). See :func:`parse_idx` for the checks."""
    return parse_idx(read_bytes(path, dataset), path, expected_magic, expected_shape, dataset)


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file; gzip it when ``compress`` is true or the name ends in .gz."""
    array = np.asarray(array)
    code = IDX_CODES.get(array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype)
    if code is None:
        raise ValueError(f"IDX stores uint8, int8, int16, int32, float32 or float64; got {array.dtype}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if compress or (compress is None and path.suffix == ".gz"):
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
    return path


def parse_amat(raw, path="<bytes>", columns=784, dataset=None):
    """Decode .amat text of 0/1 values into a uint8 array of shape (rows, columns).

    Fast path: when every line is exactly ``columns`` single digits joined by single spaces,
    the digits sit at the even byte offsets, so one strided view decodes the whole file.
    Anything else falls back to a general whitespace split.
    """
    line = 2 * columns  # "d d d ... d\n"
    if raw and len(raw) % line == 0:
        grid = np.frombuffer(raw, np.uint8).reshape(-1, line)
        digits, seps = grid[:, 0::2], grid[:, 1::2]
        if (seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all() \
                and ((digits == ord("0")) | (digits == ord("1"))).all():
            return digits - np.uint8(ord("0"))
    try:
        values = np.array(raw.split(), dtype=np.float64)
    except ValueError as e:
        raise corrupt(path, f"it holds text that is not a number ({e})", dataset) from e
    if values.size == 0 or values.size % columns:
        raise corrupt(path, f"it holds {values.size} values, not a whole number of {columns}-pixel rows",
                      dataset)
    # a row one value short next to a row one value long would otherwise shift every pixel after it
    for number, line in enumerate((line for line in raw.splitlines() if line.strip()), start=1):
        if len(line.split()) != columns:
            raise corrupt(path, f"row {number} holds {len(line.split())} values; every row holds {columns}",
                          dataset)
    if not np.isin(values, (0.0, 1.0)).all():
        bad = values[~np.isin(values, (0.0, 1.0))][:3]
        raise corrupt(path, f"binarized pixels must be 0 or 1; found {bad.tolist()}", dataset)
    return values.astype(np.uint8).reshape(-1, columns)


def read_amat(path, columns=784, expected_rows=None, dataset=None):
    """Read a (gzipped or raw) .amat file into uint8 (rows, columns); optionally check the row count."""
    arr = parse_amat(read_bytes(path, dataset), path, columns, dataset)
    if expected_rows is not None and arr.shape[0] != expected_rows:
        raise corrupt(path, f"it has {arr.shape[0]} rows; expected {expected_rows}", dataset)
    return arr
