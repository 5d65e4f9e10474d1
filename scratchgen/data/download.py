"""Download the image datasets into the cache, verified byte for byte.

Each file is streamed into a temporary file *in the destination folder*, hashed on the way,
and renamed to its real name only when its size and SHA-256 (and MD5, where published)
match. A failed or interrupted download deletes its temporary file, and a cached file that
fails its checksum is deleted, so the cache never holds a bad file. Mirrors are tried in
order; the error lists what each one did wrong.

Checksums: MNIST and binarized MNIST are those of copies verified when the project started
(they agree with TensorFlow Datasets' ``url_checksums``).
Fashion-MNIST SHA-256 values are TensorFlow Datasets' (``url_checksums/fashion_mnist.txt``),
its MD5 values those published in the Fashion-MNIST README (Xiao et al., 2017).
Binarized MNIST is stored as downloaded: the uncompressed ``.amat`` text (78 MB for train).
"""
import hashlib
import http.client
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write, remove_stale_temps
from .paths import default_cache_dir, fetch_command

USER_AGENT = "scratchgen/0.1 (Python urllib)"
CHUNK = 1 << 16


@dataclass(frozen=True)
class FileSpec:
    sha256: str
    size: int
    md5: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: mirror base URLs (tried in order) and expected checksums."""
    folder: str
    mirrors: tuple
    files: dict = field(default_factory=dict)


SOURCES = {
    "mnist": Source("mnist", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ), {
        "train-images-idx3-ubyte.gz": FileSpec(
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": FileSpec(
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881,
            "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": FileSpec(
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877,
            "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": FileSpec(
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542,
            "ec29112dd5afa0611ce80d1b7f02629c"),
    }),
    "fashion-mnist": Source("fashion-mnist", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ), {
        "train-images-idx3-ubyte.gz": FileSpec(
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": FileSpec(
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
            "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": FileSpec(
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
            "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": FileSpec(
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
            "bb300cfdad3c16e7a12a480ee83cd310"),
    }),
    "binarized-mnist": Source("binarized-mnist", (
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
    ), {
        "binarized_mnist_train.amat": FileSpec(
            "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", 78400000,
            "db28b1a6ae0fe70cbd3da91acf46e477"),
        "binarized_mnist_valid.amat": FileSpec(
            "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", 15680000,
            "bf37822a04e94123630de6a7dfd9c9ef"),
        "binarized_mnist_test.amat": FileSpec(
            "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", 15680000,
            "14e41ae11040adba6ab8cb291eda0dd8"),
    }),
}


class ChecksumError(ValueError):
    """Downloaded or cached bytes differ from the published checksum."""


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected checksum."""


def file_digests(path):
    """(size, sha256, md5) of a file, read in chunks."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def check(name, spec, size, sha256, md5):
    """Raise ChecksumError, naming expected and got, unless size, SHA-256 and MD5 all match."""
    if size != spec.size or sha256 != spec.sha256 or (spec.md5 is not None and md5 != spec.md5):
        raise ChecksumError(
            f"{name}: expected {spec.size} bytes with sha256 {spec.sha256}"
            + (f" (md5 {spec.md5})" if spec.md5 else "")
            + f", got {size} bytes with sha256 {sha256}" + (f" (md5 {md5})" if spec.md5 else ""))


def _progress_bar(name, total, progress):
    from tqdm.auto import tqdm
    quiet = not progress or not sys.stderr.isatty()
    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=quiet,
                leave=False)


def download_one(url, dest, spec, progress=True, timeout=30.0):
    """Stream ``url`` to ``dest`` through a temporary file; rename only if it matches ``spec``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # the real name only ever holds good bytes: an exception inside the block deletes the .part file
    with atomic_write(dest, "wb", suffix=".part") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
        announced = resp.headers.get("Content-Length")
        with _progress_bar(dest.name, int(announced) if announced else spec.size, progress) as bar:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        # NOTE: if the server hangs up early, read() just returns b"" -- only the count tells
        if announced and size != int(announced):
            raise ConnectionError(f"the server announced {announced} bytes but closed the connection "
                                  f"after {size}")
        check(f"{dest.name} from {url}", spec, size, sha.hexdigest(), md5.hexdigest())
    return dest


def download(urls, dest, spec, progress=True, timeout=30.0):
    """Try each URL in turn until one yields the expected bytes; DownloadError lists every failure."""
    failures = []
    for url in urls:
        try:
            return download_one(url, dest, spec, progress, timeout)
        except (OSError, http.client.HTTPException, ChecksumError) as e:  # URLError is an OSError
            failures.append(f"{url}: {type(e).__name__}: {e}")
    raise DownloadError(f"could not download {Path(dest).name}:\n  " + "\n  ".join(failures))


def fetch(name, cache_dir=None, progress=True, mirrors=None, force=False, timeout=30.0):
    """Download dataset ``name`` into ``<cache_dir>/<folder>/`` and return that folder.

    ``cache_dir`` defaults to :func:`~scratchgen.data.paths.default_cache_dir`. Files already
    there are kept if their checksums match (``force=True`` downloads anyway). ``mirrors``
    overrides the list of base URLs (tests point it at a local server). Every file is tried
    even if an earlier one failed; then one DownloadError reports all failures.
    """
    if name not in SOURCES:
        raise ValueError(f"no downloadable dataset {name!r}; choose one of {sorted(SOURCES)}")
    source = SOURCES[name]
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / source.folder
    bases = list(mirrors if mirrors is not None else source.mirrors)
    failures = []
    remove_stale_temps(folder)  # .part files of downloads that were killed
    for filename, spec in source.files.items():
        dest = folder / filename
        if dest.exists() and not force:
            try:
                check(str(dest), spec, *file_digests(dest))
                continue
            except ChecksumError as e:
                dest.unlink()  # never leave a bad file where a loader would find it
                print(f"deleted a bad cached file; {e}", file=sys.stderr)
        try:
            download([base + filename for base in bases], dest, spec, progress, timeout)
        except DownloadError as e:
            failures.append(str(e))
    if failures:
        raise DownloadError(f"fetch {name!r} into {folder} failed; good files were kept, bad ones deleted.\n"
                            + "\n".join(failures)
                            + f"\nRetry later with {fetch_command(name)}.")
    return folder
