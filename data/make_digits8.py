"""Regenerate data/digits8.npz from scikit-learn's copy of the UCI 8x8 digits.

Run from anywhere:  python data/make_digits8.py
scikit-learn is needed here only; scratchgen itself never imports it.

The archive is written by hand (fixed zip timestamps, fixed member order) so that the same
arrays give the same bytes. NOTE: the compressed bytes still depend on the zlib build, so
the check that always holds is the *content* digest printed below (see data/README.md).
"""
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "digits8.npz"


def content_sha256(images, labels):
    """SHA-256 of the uint8 image bytes followed by the uint8 label bytes (C order)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def write_npz(path, arrays):
    """Like np.savez_compressed, but reproducible: every member gets the same 1980 timestamp."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images, bunch.target
    if images.shape != (1797, 8, 8) or not np.array_equal(images, np.round(images)):
        sys.exit(f"unexpected sklearn digits: shape {images.shape}; expected integer pixels (1797, 8, 8)")
    if images.min() < 0 or images.max() > 16 or set(np.unique(labels)) != set(range(10)):
        sys.exit("unexpected sklearn digits: pixels must be 0..16 and labels 0..9")
    images, labels = images.astype(np.uint8), labels.astype(np.uint8)

    write_npz(OUT, {"images": images, "labels": labels})
    file_sha = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(f"file sha256    {file_sha}")
    print(f"content sha256 {content_sha256(images, labels)}")
    print("label counts   " + " ".join(str(c) for c in np.bincount(labels, minlength=10)))


if __name__ == "__main__":
    main()
