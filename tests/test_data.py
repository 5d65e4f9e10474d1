"""Tests of scratchgen.data: file parsers, file lookup, the downloader (against a local HTTP
server), the bundled digits, toy distributions, splits, binarization and the batch iterator.

Tests on the real MNIST files run when $SCRATCHGEN_DATA points at a folder holding them
(for example the cache folder that ``scratchgen data fetch mnist`` fills) and are skipped otherwise.
"""
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

import scratchgen
import scratchgen.data.paths as paths
from scratchgen.data import (DATASETS, SOURCES, ArrayDataset, ChecksumError, CorruptDataError, DataLoader,
                             DownloadError, GaussianMixture1D, bimodal_1d, fetch, find_file,
                             grid_of_gaussians, list_datasets, load, read_amat, read_idx, ring_of_gaussians,
                             swiss_roll, two_moons, write_idx)
from scratchgen.data.download import FileSpec, Source, download_one
from scratchgen.data.datasets import _digits8_indices
from scratchgen.data.formats import parse_amat

from strategies import idx_arrays, loader_settings


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """No $SCRATCHGEN_DATA and a cache folder inside tmp_path, so real files never leak in."""
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def digest(data):
    return hashlib.sha256(data).hexdigest()


# ---- IDX ---------------------------------------------------------------------------------------

@given(idx_arrays())
def test_idx_round_trip_every_dtype(tmp_path_factory, array):
    folder = tmp_path_factory.mktemp("idx")
    for name in ("a.idx", "a.idx.gz"):
        back = read_idx(write_idx(folder / name, array))
        assert back.shape == array.shape
        assert back.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back, array)


def test_idx_reads_mnist_like_files_gzipped_and_raw(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    write_idx(tmp_path / "img.gz", images)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", labels)
    raw = (tmp_path / "img").read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051 and len(raw) == 16 + 5 * 784
    assert int.from_bytes((tmp_path / "lab").read_bytes()[:4], "big") == 2049
    for name in ("img.gz", "img"):
        got = read_idx(tmp_path / name, expected_magic=2051, expected_shape=(None, 28, 28))
        np.testing.assert_array_equal(got, images)
        got[0, 0, 0] = 1  # a writable copy, not a view of the file's bytes
    np.testing.assert_array_equal(read_idx(tmp_path / "lab", 2049, (5,)), labels)


def test_idx_wrong_magic_names_both_numbers_and_the_file(tmp_path):
    path = write_idx(tmp_path / "labels.idx", np.zeros(5, np.uint8))
    with pytest.raises(CorruptDataError) as e:
        read_idx(path, expected_magic=2051, dataset="mnist")
    msg = str(e.value)
    assert "2049" in msg and "2051" in msg and str(path) in msg and "scratchgen data fetch mnist" in msg


def test_idx_rejects_a_non_idx_type_byte(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(CorruptDataError, match="not an IDX magic number"):
        read_idx(path)


def test_idx_wrong_dimensions(tmp_path):
    path = write_idx(tmp_path / "x.idx", np.zeros((3, 27, 28), np.uint8))
    with pytest.raises(CorruptDataError, match=r"\(3, 27, 28\).*expected \('any', 28, 28\)"):
        read_idx(path, 2051, (None, 28, 28))


@pytest.mark.parametrize("change", [-1, +1, -(16 + 2 * 784)])
def test_idx_length_must_equal_header_plus_data(tmp_path, change):
    path = write_idx(tmp_path / "x.idx", np.zeros((3, 28, 28), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:change] if change < 0 else raw + b"\0" * change)
    with pytest.raises(CorruptDataError, match=f"it has {len(raw) + change} bytes.*= {len(raw)}"):
        read_idx(path, 2051, (None, 28, 28))


def test_truncated_gzip_is_reported_with_the_fetch_command(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.arange(3 * 784, dtype=np.uint8).reshape(3, 28, 28))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptDataError) as e:
        read_idx(path, dataset="fashion-mnist")
    assert "truncated" in str(e.value) and str(path) in str(e.value)
    assert "scratchgen data fetch fashion-mnist" in str(e.value)


@pytest.mark.parametrize("where", ["deflate", "crc"])
def test_corrupt_gzip_is_reported(tmp_path, where):
    path = write_idx(tmp_path / "x.gz", np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    i = len(raw) // 2 if where == "deflate" else len(raw) - 6  # the CRC32 sits in bytes -8..-5
    raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match=str(path).replace("\\", "\\\\")):
        read_idx(path)


# ---- .amat ---------------------------------------------------------------------------------------

def amat_text(bits, sep=" ", end="\n"):
    return "".join(sep.join(map(str, row)) + end for row in bits).encode()


def test_amat_fast_path_matches_the_general_parser(tmp_path):
    bits = np.random.default_rng(2).integers(0, 2, (7, 784), dtype=np.uint8)
    text = amat_text(bits)
    np.testing.assert_array_equal(parse_amat(text), bits)
    np.testing.assert_array_equal(np.loadtxt(text.decode().splitlines(), dtype=np.uint8), bits)
    (tmp_path / "b.amat.gz").write_bytes(gzip.compress(text))
    np.testing.assert_array_equal(read_amat(tmp_path / "b.amat.gz", expected_rows=7), bits)
    # other spacing (CRLF, double spaces) takes the general path and gives the same pixels
    np.testing.assert_array_equal(parse_amat(amat_text(bits, sep="  ", end="\r\n")), bits)


def test_amat_errors(tmp_path):
    bits = np.zeros((2, 784), np.uint8)
    bits[1, 5] = 2
    with pytest.raises(CorruptDataError, match="must be 0 or 1; found \\[2.0\\]"):
        parse_amat(amat_text(bits))
    with pytest.raises(CorruptDataError, match="783 values"):
        parse_amat(amat_text(np.zeros((1, 783), np.uint8)))
    uneven = amat_text(np.zeros((1, 783), np.uint8)) + amat_text(np.zeros((1, 785), np.uint8))
    with pytest.raises(CorruptDataError, match="row 1 holds 783 values; every row holds 784"):
        parse_amat(uneven)  # 1568 values in all: a whole number of rows, but not row by row
    (tmp_path / "c.amat").write_bytes(amat_text(np.zeros((3, 784), np.uint8)))
    with pytest.raises(CorruptDataError, match="3 rows; expected 4"):
        read_amat(tmp_path / "c.amat", expected_rows=4)


# ---- where files are found ---------------------------------------------------------------------------

def test_find_file_search_order_and_gzip_twins(isolated_dirs, monkeypatch):
    tmp = isolated_dirs
    explicit, env, cache = tmp / "explicit", tmp / "env", tmp / "xdg" / "scratchgen"
    for d in (env, cache):
        (d / "mnist").mkdir(parents=True)
        (d / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    assert find_file("mnist", "t10k-labels-idx1-ubyte.gz") == cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    monkeypatch.setenv("SCRATCHGEN_DATA", str(env))
    assert find_file("mnist", "t10k-labels-idx1-ubyte.gz") == env / "mnist" / "t10k-labels-idx1-ubyte.gz"
    (explicit / "mnist").mkdir(parents=True)
    (explicit / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"x")  # an uncompressed copy counts
    assert find_file("mnist", "t10k-labels-idx1-ubyte.gz", data_dir=explicit) == \
        explicit / "mnist" / "t10k-labels-idx1-ubyte"


def test_missing_file_lists_every_place_and_the_fetch_command(isolated_dirs, monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_DATA", str(isolated_dirs / "env"))
    with pytest.raises(FileNotFoundError) as e:
        load("binarized-mnist", "test", data_dir=isolated_dirs / "mine")
    msg = str(e.value)
    for d in ("mine", "env", "xdg/scratchgen"):
        assert str(isolated_dirs / d / "binarized-mnist" / "binarized_mnist_test.amat") in msg
        assert str(isolated_dirs / d / "binarized-mnist" / "binarized_mnist_test.amat.gz") in msg
    assert msg.index("mine") < msg.index("env") < msg.index("xdg")
    assert "scratchgen data fetch binarized-mnist" in msg


def test_load_checks_the_expected_image_count(isolated_dirs):
    folder = isolated_dirs / "d" / "mnist"
    folder.mkdir(parents=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((9, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(CorruptDataError, match=r"\(9, 28, 28\); expected \(10000, 28, 28\)"):
        load("mnist", "test", data_dir=isolated_dirs / "d")


# ---- digits8 -----------------------------------------------------------------------------------------

def test_digits8_file_contents():
    ds = load("digits8", "all", scale="raw")
    assert ds.data.shape == (1797, 1, 8, 8) and ds.data.dtype == np.uint8 and ds.targets.dtype == np.int64
    assert ds.data.max() == 16 and ds.data.min() == 0
    # the counts stated in data/README.md
    assert np.bincount(ds.targets).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits8_splits_are_disjoint_fixed_and_cover_everything():
    everything = load("digits8", "all", scale="raw")
    rows = {split: _digits8_indices(split) for split in ("train", "val", "test", "trainval")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [1297, 250, 250]
    np.testing.assert_array_equal(np.sort(np.concatenate([rows["train"], rows["val"], rows["test"]])),
                                  np.arange(1797))
    np.testing.assert_array_equal(np.sort(np.concatenate([rows["train"], rows["val"]])), rows["trainval"])
    for split, idx in rows.items():
        ds = load("digits8", split, scale="raw")
        assert len(ds) == DATASETS["digits8"].splits[split]
        np.testing.assert_array_equal(ds.data, everything.data[idx])
        np.testing.assert_array_equal(ds.targets, everything.targets[idx])
    assert np.bincount(load("digits8", "val").targets, minlength=10).min() > 0
    np.testing.assert_array_equal(load("digits8", "val").data, load("digits8", "valid").data)


def test_scales_and_flatten():
    raw = load("digits8", "test", scale="raw").data.astype(np.float64)
    x01 = load("digits8", "test").data
    pm1 = load("digits8", "test", scale="pm1", dtype=np.float64).data
    assert x01.dtype == np.float32 and pm1.dtype == np.float64
    np.testing.assert_allclose(x01, raw / 16, rtol=1e-6)
    np.testing.assert_allclose(pm1, 2 * raw / 16 - 1, atol=1e-12)
    assert pm1.min() == -1 and pm1.max() == 1
    assert load("digits8", "test", flatten=True).data.shape == (250, 64)


def test_digits8_missing_lists_places(monkeypatch, isolated_dirs):
    monkeypatch.setattr(paths, "DIGITS8_FILE", "no-such-digits.npz")
    with pytest.raises(FileNotFoundError) as e:
        load("digits8")
    msg = str(e.value)
    repo_data = Path(scratchgen.__file__).resolve().parent.parent / "data" / "no-such-digits.npz"
    assert str(repo_data) in msg and os.path.join("share", "scratchgen", "no-such-digits.npz") in msg
    assert "make_digits8.py" in msg


def test_digits8_altered_copy_is_rejected(tmp_path):
    with np.load(paths.digits8_path()) as z:
        images, labels = z["images"].copy(), z["labels"]
    images[0, 0, 0] += 1
    np.savez_compressed(tmp_path / "digits8.npz", images=images, labels=labels)
    with pytest.raises(CorruptDataError, match="content sha256"):
        load("digits8", data_dir=tmp_path)


def test_registry_and_argument_errors():
    assert [i.name for i in list_datasets()] == sorted(DATASETS)
    for info in list_datasets():
        assert len(info.shape) == (1 if info.name in ("ring8", "grid25") else 3)
        assert info.source and info.description and info.license
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load("cifar")
    with pytest.raises(ValueError, match="splits .*'dev'"):
        load("digits8", "dev")
    with pytest.raises(ValueError, match="scale must be one of"):
        load("digits8", scale="255")
    with pytest.raises(ValueError, match="already binary"):
        load("binarized-mnist", binarize="dynamic")


def test_sources_cover_the_files_the_loaders_read():
    for name, source in SOURCES.items():
        assert name in DATASETS and source.mirrors
        for filename, spec in source.files.items():
            assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0 and spec.size > 0
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            assert f"{prefix}-{kind}-ubyte.gz" in SOURCES["mnist"].files
            assert f"{prefix}-{kind}-ubyte.gz" in SOURCES["fashion-mnist"].files
    assert {f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")} == set(SOURCES["binarized-mnist"].files)


# ---- the real files (only when $SCRATCHGEN_DATA holds them) -----------------------------------------

def _have(name, filename):
    if not os.environ.get("SCRATCHGEN_DATA"):
        return False
    try:
        find_file(name, filename)
        return True
    except FileNotFoundError:
        return False


needs_mnist = pytest.mark.skipif(not _have("mnist", "train-images-idx3-ubyte.gz"),
                                 reason="set SCRATCHGEN_DATA to a folder with mnist/ to run")
needs_binarized = pytest.mark.skipif(not _have("binarized-mnist", "binarized_mnist_valid.amat"),
                                     reason="set SCRATCHGEN_DATA to a folder with binarized-mnist/ to run")
needs_fashion = pytest.mark.skipif(not _have("fashion-mnist", "t10k-images-idx3-ubyte.gz"),
                                   reason="set SCRATCHGEN_DATA to a folder with fashion-mnist/ to run")


@needs_mnist
def test_real_mnist():
    full = load("mnist", "trainval", scale="raw")
    assert full.data.shape == (60000, 1, 28, 28) and full.data.max() == 255
    assert np.bincount(full.targets).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    val = load("mnist", "val", scale="raw")
    np.testing.assert_array_equal(val.targets, full.targets[50000:])  # val = the last 10k
    assert len(load("mnist", "train", scale="raw")) == 50000
    test = load("mnist", "test", scale="raw")
    assert test.data.shape == (10000, 1, 28, 28) and set(np.unique(test.targets)) == set(range(10))
    # the gz file's bytes are the published ones
    path = find_file("mnist", "t10k-labels-idx1-ubyte.gz")
    if path.suffix == ".gz":
        assert digest(path.read_bytes()) == SOURCES["mnist"].files["t10k-labels-idx1-ubyte.gz"].sha256


@needs_mnist
def test_real_mnist_fixed_binarization_is_seeded_and_unbiased():
    test_a = load("mnist", "test", binarize="fixed", seed=3, scale="raw")
    test_b = load("mnist", "test", binarize="fixed", seed=3, scale="raw")
    grey = load("mnist", "test").data
    np.testing.assert_array_equal(test_a.data, test_b.data)
    # E[bit] = grey level: compare the totals, tolerance 5 standard errors
    p = grey.astype(np.float64)
    assert abs(test_a.data.sum() - p.sum()) < 5 * np.sqrt((p * (1 - p)).sum())


@needs_binarized
def test_real_binarized_mnist():
    val = load("binarized-mnist", "val", scale="raw", flatten=True)
    assert val.data.shape == (10000, 784) and val.targets is None
    assert set(np.unique(val.data)) == {0, 1}
    assert 0.05 < val.data.mean() < 0.25  # ink covers about 13% of an MNIST image


@needs_fashion
def test_real_fashion_mnist():
    test = load("fashion-mnist", "test", scale="raw")
    assert test.data.shape == (10000, 1, 28, 28)
    assert np.bincount(test.targets).tolist() == [1000] * 10


# ---- the downloader against a local HTTP server ---------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes = {}   # path -> (body, mode); mode "ok", "hangup" (short body, full Content-Length)
    log = []

    def do_GET(self):  # noqa: N802
        self.log.append(self.path)
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, mode = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if mode == "ok" else body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.routes, _Handler.log = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def spec_of(body):
    return FileSpec(digest(body), len(body), hashlib.md5(body).hexdigest())


def test_fetch_keeps_only_the_good_file(server, tmp_path, monkeypatch):
    base, handler = server
    good, full, other = b"good bytes" * 100, b"the whole file" * 500, b"tampered" * 10
    handler.routes = {"/m/good.bin": (good, "ok"), "/m/cut.bin": (full[:1000], "ok"),
                      "/m/hangup.bin": (full, "hangup"), "/m/bad.bin": (other, "ok")}
    expected_bad = b"what was published" * 10
    monkeypatch.setitem(SOURCES, "toyset", Source("toyset", (base + "/m/",), {
        "good.bin": spec_of(good), "cut.bin": spec_of(full), "hangup.bin": spec_of(full),
        "bad.bin": spec_of(expected_bad)}))
    with pytest.raises(DownloadError) as e:
        fetch("toyset", cache_dir=tmp_path, progress=True)
    msg = str(e.value)
    assert sorted(p.name for p in (tmp_path / "toyset").iterdir()) == ["good.bin"]  # no .part leftovers
    assert (tmp_path / "toyset" / "good.bin").read_bytes() == good
    assert f"expected {len(expected_bad)} bytes with sha256 {digest(expected_bad)}" in msg
    assert f"got {len(other)} bytes with sha256 {digest(other)}" in msg
    assert f"expected {len(full)} bytes with sha256 {digest(full)}" in msg
    assert f"got 1000 bytes with sha256 {digest(full[:1000])}" in msg
    assert f"hangup.bin: ConnectionError: the server announced {len(full)} bytes but closed the connection " \
           f"after {len(full) // 2}" in msg


def test_fetch_tries_mirrors_in_order_and_skips_verified_files(server, tmp_path, monkeypatch):
    base, handler = server
    body = bytes(range(256)) * 40
    handler.routes = {"/b/f.bin": (body, "ok"), "/a/f.bin": (b"wrong", "ok")}
    monkeypatch.setitem(SOURCES, "toyset", Source("toyset", ("http://unused.invalid/",), {"f.bin": spec_of(body)}))
    mirrors = [base + "/missing/", base + "/a/", base + "/b/"]
    folder = fetch("toyset", cache_dir=tmp_path, progress=False, mirrors=mirrors)
    assert (folder / "f.bin").read_bytes() == body
    assert handler.log == ["/missing/f.bin", "/a/f.bin", "/b/f.bin"]
    fetch("toyset", cache_dir=tmp_path, progress=False, mirrors=mirrors)
    assert len(handler.log) == 3  # already there and verified: no request


def test_a_bad_cached_file_is_replaced_or_deleted(server, tmp_path, monkeypatch):
    base, handler = server
    body = b"fresh" * 99
    monkeypatch.setitem(SOURCES, "toyset", Source("toyset", (base + "/x/",), {"f.bin": spec_of(body)}))
    dest = tmp_path / "toyset" / "f.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    with pytest.raises(DownloadError, match="404"):
        fetch("toyset", cache_dir=tmp_path, progress=False)  # nothing served yet
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    dest.write_bytes(b"stale")
    handler.routes = {"/x/f.bin": (body, "ok")}
    fetch("toyset", cache_dir=tmp_path, progress=False)
    assert dest.read_bytes() == body


def test_download_one_raises_checksum_error_and_leaves_no_temp(server, tmp_path):
    base, handler = server
    handler.routes = {"/f": (b"abc", "ok")}
    with pytest.raises(ChecksumError, match="expected 3 bytes with sha256 0+"):
        download_one(base + "/f", tmp_path / "f", FileSpec("0" * 64, 3), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_unknown_name():
    with pytest.raises(ValueError, match="binarized-mnist"):
        fetch("nope")


# ---- toy distributions ---------------------------------------------------------------------------------

def test_ring_of_gaussians_geometry_and_statistics():
    ring = ring_of_gaussians()
    assert ring.centers.shape == (8, 2) and ring.std == 0.02
    np.testing.assert_allclose(np.linalg.norm(ring.centers, axis=1), 2.0)
    assert len({tuple(np.round(c, 6)) for c in ring.centers}) == 8
    n = 8000
    x, k = ring.sample(n, rng=0, return_labels=True)
    r = np.linalg.norm(x, axis=1)
    assert np.all(np.abs(r - 2.0) < 6 * 0.02)
    idx, dist = ring.nearest_mode(x)
    np.testing.assert_array_equal(idx, k)  # modes 0.77 apart, std 0.02: never confused
    se_frac = np.sqrt((1 / 8) * (7 / 8) / n)
    assert np.all(np.abs(np.bincount(k, minlength=8) / n - 1 / 8) < 5 * se_frac)
    resid = x - ring.centers[k]
    assert abs(resid.std() - 0.02) < 5 * 0.02 / np.sqrt(2 * 2 * n)


def test_grid_of_gaussians_centres():
    grid = grid_of_gaussians()
    assert grid.std == 0.05
    assert {tuple(c) for c in grid.centers} == {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    x = grid.sample(2000, rng=1)
    _, dist = grid.nearest_mode(x)
    assert dist.max() < 6 * 0.05 * np.sqrt(2)


def test_samplers_are_reproducible():
    ring = ring_of_gaussians()
    np.testing.assert_array_equal(ring.sample(50, rng=7), ring.sample(50, rng=7))
    assert not np.array_equal(ring.sample(50, rng=7), ring.sample(50, rng=8))
    np.testing.assert_array_equal(two_moons(30, rng=3)[0], two_moons(30, rng=3)[0])
    np.testing.assert_array_equal(swiss_roll(30, rng=3), swiss_roll(30, rng=3))
    scratchgen.manual_seed(11)
    a = bimodal_1d().sample(20)
    scratchgen.manual_seed(11)
    np.testing.assert_array_equal(a, bimodal_1d().sample(20))
    with pytest.raises(TypeError, match="rng must be"):
        ring.sample(3, rng=1.5)


def test_two_moons_and_swiss_roll_shapes():
    x, y = two_moons(500, noise=0.0, rng=0)
    shift = x + np.array([0.5, 0.25])
    np.testing.assert_allclose(np.linalg.norm(shift[y == 0], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(shift[y == 1] - np.array([1.0, 0.5]), axis=1), 1.0)
    assert shift[y == 0, 1].min() >= 0 and shift[y == 1, 1].max() <= 0.5
    roll = swiss_roll(500, noise=0.0, scale=0.2, rng=0)
    r = np.linalg.norm(roll, axis=1) / 0.2   # = t
    assert r.min() >= 1.5 * np.pi - 1e-9 and r.max() <= 4.5 * np.pi + 1e-9
    np.testing.assert_allclose(np.cos(r), roll[:, 0] / (0.2 * r), atol=1e-9)


def test_mixture_1d_density_is_exact():
    mix = GaussianMixture1D([-1.0, 0.5, 3.0], [0.3, 1.0, 0.5], [0.2, 0.5, 0.3])
    grid = np.linspace(-10, 12, 20001)
    assert abs(np.trapezoid(mix.pdf(grid), grid) - 1.0) < 1e-8
    naive = sum(w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
                for w, m, s in zip(mix.weights, mix.means, mix.stds))
    np.testing.assert_allclose(mix.pdf(grid), naive, rtol=1e-10, atol=1e-300)
    assert mix.log_pdf(np.zeros((2, 3))).shape == (2, 3)
    assert np.isfinite(mix.log_pdf(np.array([-200.0, 300.0]))).all()  # far tails: no log(0)
    n = 40000
    x = mix.sample(n, rng=4)
    assert abs(x.mean() - mix.mean()) < 5 * np.sqrt(mix.var() / n)
    assert abs(x.var() - mix.var()) < 0.05 * mix.var()
    assert np.isclose(mix.var(), np.trapezoid((grid - mix.mean()) ** 2 * mix.pdf(grid), grid))


# ---- batches and binarization ------------------------------------------------------------------------

@given(loader_settings())
def test_loader_covers_each_example_once(settings):
    n, batch_size, shuffle, drop_last, seed = settings
    loader = DataLoader(np.arange(n), batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader)
    served = np.concatenate(batches) if batches else np.array([], dtype=int)
    if drop_last:
        assert all(len(b) == batch_size for b in batches) and len(served) == n // batch_size * batch_size
    else:
        assert sorted(served.tolist()) == list(range(n))
    assert len(np.unique(served)) == len(served)
    if not shuffle:
        np.testing.assert_array_equal(served, np.arange(len(served)))


def test_loader_epochs_differ_and_replay():
    a = DataLoader(np.arange(100), batch_size=10, shuffle=True, seed=5)
    b = DataLoader(np.arange(100), batch_size=10, shuffle=True, seed=5)
    e0, e1 = np.concatenate(list(a)), np.concatenate(list(a))
    assert a.epoch == 2 and not np.array_equal(e0, e1)
    np.testing.assert_array_equal(np.concatenate(list(b.iter_epoch(1))), e1)
    np.testing.assert_array_equal(np.concatenate(list(b.iter_epoch(0))), e0)
    other = DataLoader(np.arange(100), batch_size=10, shuffle=True, seed=6)
    assert not np.array_equal(np.concatenate(list(other)), e0)


def test_loader_resumes_mid_epoch_exactly():
    ds = load("digits8", "val", binarize="dynamic", flatten=True)
    reference = DataLoader(ds, batch_size=32, shuffle=True, seed=9)
    ref = [x for _ in range(3) for x, _ in reference]

    first = DataLoader(ds, batch_size=32, shuffle=True, seed=9)
    got = [x for x, _ in first]
    it = iter(first)
    got += [next(it)[0] for _ in range(3)]   # stopped after batch 3 of epoch 1, as a checkpoint records

    resumed = DataLoader(ds, batch_size=32, shuffle=True, seed=9)
    got += [x for x, _ in resumed.iter_epoch(1, start=3)] + [x for x, _ in resumed.iter_epoch(2)]
    assert len(got) == len(ref) == 3 * len(reference)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_loader_tuple_and_labels_stay_aligned():
    x, y = np.arange(20) * 10, np.arange(20)
    for xb, yb in DataLoader((x, y), batch_size=6, shuffle=True, seed=1):
        np.testing.assert_array_equal(xb, yb * 10)
    ds = load("digits8", "test")
    loader = DataLoader(ds, batch_size=64, shuffle=True, seed=2)
    order = loader.order(0)
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(yb, ds.targets[order[:64]])
    np.testing.assert_array_equal(xb, ds.data[order[:64]])
    with pytest.raises(ValueError, match="same length"):
        DataLoader((x, y[:5]))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(x, batch_size=0)


def test_loader_seed_none_follows_manual_seed():
    scratchgen.manual_seed(123)
    s1 = DataLoader(np.arange(5)).seed
    scratchgen.manual_seed(123)
    assert DataLoader(np.arange(5)).seed == s1


def test_dynamic_binarization_fresh_per_epoch_reproducible_and_unbiased():
    ds = load("digits8", "train", binarize="dynamic")
    grey = ds.data.astype(np.float64)
    loader = DataLoader(ds, batch_size=len(ds), shuffle=False, seed=4)
    epochs = [next(iter(loader.iter_epoch(e)))[0] for e in range(4)]
    for x in epochs:
        assert x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
        assert np.all(x[grey == 0] == 0) and np.all(x[grey == 1] == 1)
        # E[x] = grey: totals within 5 standard errors
        assert abs(x.sum() - grey.sum()) < 5 * np.sqrt((grey * (1 - grey)).sum())
    assert not np.array_equal(epochs[0], epochs[1])
    again = DataLoader(ds, batch_size=len(ds), shuffle=False, seed=4)
    np.testing.assert_array_equal(next(iter(again.iter_epoch(1)))[0], epochs[1])
    pm1 = load("digits8", "train", binarize="dynamic", scale="pm1")
    assert set(np.unique(pm1.get(np.arange(50), rng=0)[0])) == {-1.0, 1.0}
    raw = load("digits8", "train", binarize="dynamic", scale="raw")
    assert raw.get(slice(0, 50), rng=0)[0].dtype == np.uint8


def test_fixed_and_threshold_binarization():
    a = load("digits8", "train", binarize="fixed", seed=1)
    b = load("digits8", "train", binarize="fixed", seed=1)
    c = load("digits8", "train", binarize="fixed", seed=2)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    grey = load("digits8", "train").data.astype(np.float64)
    assert abs(a.data.sum() - grey.sum()) < 5 * np.sqrt((grey * (1 - grey)).sum())
    # the draw of an image does not depend on which split it was loaded through
    everything = load("digits8", "all", binarize="fixed", seed=1)
    train_rows = _digits8_indices("train")
    np.testing.assert_array_equal(everything.data[train_rows], a.data)
    t = load("digits8", "train", binarize="threshold")
    np.testing.assert_array_equal(t.data, (grey > 0.5).astype(np.float32))


def test_array_dataset_checks_lengths():
    with pytest.raises(ValueError, match="3 examples but targets has 2"):
        ArrayDataset(np.zeros((3, 2)), np.zeros(2))


def test_command_line_fetch_and_list(server, tmp_path, monkeypatch, capsys):
    from scratchgen.data.__main__ import main
    base, handler = server
    body = b"cli" * 50
    handler.routes = {"/c/f.bin": (body, "ok")}
    monkeypatch.setitem(SOURCES, "toyset", Source("toyset", (base + "/c/",), {"f.bin": spec_of(body)}))
    assert main(["fetch", "toyset", "--cache-dir", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "toyset" / "f.bin").read_bytes() == body
    handler.routes = {}
    assert main(["fetch", "toyset", "--cache-dir", str(tmp_path), "--quiet", "--force"]) == 1
    assert "404" in capsys.readouterr().err
    assert (tmp_path / "toyset" / "f.bin").read_bytes() == body  # a failed re-download keeps the good file
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS)
