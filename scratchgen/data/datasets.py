"""The image datasets: a registry, fixed splits, scaling and binarization.

    >>> ds = load("digits8", "train", scale="01")          # bundled, works offline
    >>> ds.data.shape, ds.targets.shape                     # NCHW, like torchvision
    ((1297, 1, 8, 8), (1297,))

    load("mnist", "train", binarize="dynamic")  # needs the downloaded files; see paths.py

Splits are deterministic and never overlap:

=================  =====  =====  =====  ===============================================
dataset            train  val    test   how
=================  =====  =====  =====  ===============================================
digits8            1297   250    250    fixed permutation (seed 0) of the 1797 images
mnist, fashion     50000  10000  10000  first 50k / last 10k of the 60k training file
binarized-mnist    50000  10000  10000  Larochelle's own train / valid / test files
=================  =====  =====  =====  ===============================================

``"trainval"`` is train and val together (and ``"all"`` all 1797 digits8 images).

``scale``: ``"01"`` pixels in [0, 1]; ``"pm1"`` in [-1, 1] (tanh outputs, e.g. DCGAN);
``"raw"`` the stored integers as uint8 (0..255 MNIST, 0..16 digits8, 0/1 binarized).

``binarize`` (for Bernoulli likelihoods):

* ``None`` -- grey levels (binarized-mnist is already binary);
* ``"threshold"`` -- pixel > 0.5;
* ``"fixed"`` -- one Bernoulli draw per pixel with p = grey level (the stochastic binarization
  of Salakhutdinov & Murray, 2008), seeded by ``seed`` and the same in every epoch; for
  binarized-mnist it is the file itself, Larochelle's draw (Larochelle & Murray, 2011);
* ``"dynamic"`` -- a fresh Bernoulli draw every time a batch is taken, which acts as data
  augmentation; :class:`~scratchgen.data.loader.DataLoader` seeds the draw with
  (seed, epoch, batch), so it differs per epoch yet replays exactly.
"""
import hashlib
from dataclasses import dataclass

import numpy as np

from ..npz import READ_ERRORS, NpzError, read_npz
from .formats import corrupt, read_amat, read_idx
from .paths import digits8_path, find_file
from .toy import as_rng, grid_of_gaussians, ring_of_gaussians

SCALES = ("01", "pm1", "raw")
BINARIZE = (None, "threshold", "fixed", "dynamic")
SPLIT_ALIASES = {"valid": "val", "validation": "val"}

DIGITS8_SPLIT_SEED = 0
DIGITS8_CONTENT_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    shape: tuple          # one example, (C, H, W)
    num_classes: int | None
    splits: dict          # split name -> number of examples
    max_value: int        # the largest stored pixel value (for scale="01")
    source: str
    citation: str
    license: str


_MNIST_CITE = ("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, Gradient-based learning applied to document "
               "recognition, Proc. IEEE 86(11), 1998; data by LeCun, Cortes and Burges")
_MNIST_SPLITS = {"train": 50000, "val": 10000, "test": 10000, "trainval": 60000}

DATASETS = {
    "digits8": DatasetInfo(
        "digits8", "UCI optical handwritten digits, 8x8 grey levels 0..16, 10 classes (bundled, offline)",
        (1, 8, 8), 10, {"train": 1297, "val": 250, "test": 250, "trainval": 1547, "all": 1797}, 16,
        "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits "
        "(the optdigits.tes set, via scikit-learn)",
        "E. Alpaydin, C. Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning "
        "Repository, 1998, doi:10.24432/C50P49", "CC BY 4.0"),
    "mnist": DatasetInfo(
        "mnist", "MNIST handwritten digits, 28x28 grey levels 0..255, 10 classes",
        (1, 28, 28), 10, _MNIST_SPLITS, 255, "http://yann.lecun.com/exdb/mnist/ (IDX files)",
        _MNIST_CITE, "CC BY-SA 3.0 (as usually quoted)"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Zalando Fashion-MNIST clothing images, 28x28 grey levels 0..255, 10 classes",
        (1, 28, 28), 10, _MNIST_SPLITS, 255, "https://github.com/zalandoresearch/fashion-mnist (IDX files)",
        "H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a novel image dataset for benchmarking machine "
        "learning algorithms, arXiv:1708.07747, 2017", "MIT"),
    "binarized-mnist": DatasetInfo(
        "binarized-mnist", "Larochelle's fixed stochastic binarization of MNIST, 28x28 pixels in {0,1}, "
        "no labels", (1, 28, 28), None, _MNIST_SPLITS, 1,
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/ (.amat text)",
        "H. Larochelle, I. Murray, The Neural Autoregressive Distribution Estimator, AISTATS 2011",
        "as MNIST"),
}

# Procedural 2-D points (the GAN mode-collapse benchmarks of toy.py), served like the image data
# so `scratchgen train gan --data ring8` works: x (N, 2) in the mixture's own coordinates (``scale``
# does not apply), y the index of the mode that drew the point. Each split is a fixed draw.
TOY = {"ring8": ring_of_gaussians, "grid25": grid_of_gaussians}
_TOY_SPLITS = {"train": 50000, "val": 10000, "test": 10000, "trainval": 60000}
DATASETS.update({
    "ring8": DatasetInfo(
        "ring8", "8 Gaussians on a circle of radius 2, std 0.02: 2-D points, label = mode (procedural)",
        (2,), 8, _TOY_SPLITS, 1, "procedural: scratchgen.data.toy.ring_of_gaussians()",
        "L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, Unrolled Generative Adversarial Networks, ICLR 2017",
        "generated, no licence needed"),
    "grid25": DatasetInfo(
        "grid25", "25 Gaussians on the grid {-4,-2,0,2,4}^2, std 0.05: 2-D points, label = mode (procedural)",
        (2,), 25, _TOY_SPLITS, 1, "procedural: scratchgen.data.toy.grid_of_gaussians()",
        "A. Srivastava, L. Valkov, C. Russell, M. Gutmann, C. Sutton, VEEGAN, NeurIPS 2017",
        "generated, no licence needed"),
})


def _load_toy(name, split, binarize, dtype):
    if binarize is not None:
        raise ValueError(f"{name} holds 2-D points, not pixels: binarize does not apply (got {binarize!r})")
    parts = ("train", "val") if split == "trainval" else (split,)
    xs, ys = zip(*(TOY[name]().sample(_TOY_SPLITS[p], rng=np.random.default_rng([7, ("train", "val", "test").index(p)]),
                                      return_labels=True) for p in parts))
    return ArrayDataset(np.concatenate(xs).astype(dtype), np.concatenate(ys).astype(np.int64), name=name,
                        split=split, scale="raw", dtype=dtype)


def list_datasets():
    """The registry as a list of :class:`DatasetInfo`, sorted by name."""
    return [DATASETS[k] for k in sorted(DATASETS)]


class ArrayDataset:
    """In-memory examples ``data`` (N, C, H, W) or (N, D) and integer ``targets`` (N,) or None.

    ``ds[i]`` returns ``(x, y)``. For ``binarize="dynamic"`` ``data`` holds the Bernoulli
    probabilities and every access draws a fresh binary sample (see :meth:`get`).
    """

    def __init__(self, data, targets=None, *, name="arrays", split=None, scale="01", binarize=None,
                 dtype=np.float32):
        self.data, self.targets = data, targets
        self.name, self.split, self.scale, self.binarize, self.dtype = name, split, scale, binarize, dtype
        if targets is not None and len(targets) != len(data):
            raise ValueError(f"data has {len(data)} examples but targets has {len(targets)}")

    def __len__(self):
        return len(self.data)

    def get(self, index, rng=None):
        """``(x, y)`` for an int, slice or index array; ``rng`` drives dynamic binarization
        (an int seed or Generator; None uses scratchgen's global generator)."""
        x = self.data[index]
        if self.binarize == "dynamic":
            x = rescale(as_rng(rng).random(x.shape, dtype=np.float32) < x, self.scale, 1, self.dtype)
        return x, (None if self.targets is None else self.targets[index])

    __getitem__ = get

    def __repr__(self):
        return (f"ArrayDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.data.shape[1:]}, "
                f"scale={self.scale!r}, binarize={self.binarize!r})")


def rescale(values, scale, max_value, dtype=np.float32):
    """Map stored integers 0..max_value (or booleans) to the requested scale."""
    if scale == "raw":
        return np.asarray(values).astype(np.uint8)
    x = np.array(values, dtype=dtype)  # a copy, so the in-place steps below are safe
    if max_value != 1:
        x /= max_value
    if scale == "pm1":
        x *= 2
        x -= 1
    return x


# ---- raw readers ------------------------------------------------------------------------------

def _digits8_all(data_dir=None):
    path = digits8_path(data_dir)

    def check(headers):  # before any array is read into memory
        if set(headers) != {"images", "labels"}:
            raise NpzError(f"it holds arrays {sorted(headers)}, expected ['images', 'labels']")
        if headers["images"].shape != (1797, 8, 8) or headers["labels"].shape != (1797,):
            raise NpzError(f"its arrays have shapes {headers['images'].shape} and {headers['labels'].shape}, "
                           f"expected (1797, 8, 8) and (1797,)")

    try:
        z = read_npz(path, check=check, compressed=True)  # check() fixes every shape
    except NpzError as e:
        raise corrupt(path, str(e)) from None
    except READ_ERRORS as e:
        raise corrupt(path, f"it cannot be read as an .npz file ({type(e).__name__}: {e})") from None
    images, labels = z["images"].astype(np.uint8), z["labels"].astype(np.uint8)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != DIGITS8_CONTENT_SHA256:
        raise corrupt(path, f"its content sha256 is {digest}, expected {DIGITS8_CONTENT_SHA256}; "
                            "regenerate it with `python data/make_digits8.py`")
    return images, labels.astype(np.int64)


def _digits8_indices(split):
    n = 1797
    perm = np.random.default_rng(DIGITS8_SPLIT_SEED).permutation(n)
    parts = {"train": perm[:1297], "val": perm[1297:1547], "test": perm[1547:], "trainval": perm[:1547],
             "all": np.arange(n)}
    return np.sort(parts[split])  # keep file order inside a split; shuffling is the loader's job


def _idx_pair(name, prefix, n, data_dir):
    """Images and labels from one IDX pair (prefix 'train' or 't10k'), with cross-checks."""
    img_path = find_file(name, f"{prefix}-images-idx3-ubyte.gz", data_dir)
    lab_path = find_file(name, f"{prefix}-labels-idx1-ubyte.gz", data_dir)
    images = read_idx(img_path, 2051, (n, 28, 28), name)
    labels = read_idx(lab_path, 2049, (n,), name)
    if labels.max() > 9:
        raise corrupt(lab_path, f"labels must be 0..9; found {int(labels.max())}", name)
    return images, labels.astype(np.int64)


def _source(name, split, data_dir):
    """``(images, labels, rows, key)``: uint8 images (N, H, W) and labels (or None) of the whole
    source file that holds ``split``, the rows of the split in it, and the file's number (which
    seeds the fixed binarization, so the draw of an image never depends on the split asked for)."""
    if name == "digits8":
        return *_digits8_all(data_dir), _digits8_indices(split), 0
    if name in ("mnist", "fashion-mnist"):
        if split == "test":
            return *_idx_pair(name, "t10k", 10000, data_dir), slice(None), 1
        rows = {"train": slice(0, 50000), "val": slice(50000, 60000), "trainval": slice(None)}[split]
        return *_idx_pair(name, "train", 60000, data_dir), rows, 0
    if name == "binarized-mnist":
        files = {"train": ["train"], "val": ["valid"], "test": ["test"], "trainval": ["train", "valid"]}[split]
        n_rows = {"train": 50000, "valid": 10000, "test": 10000}
        parts = [read_amat(find_file(name, f"binarized_mnist_{f}.amat", data_dir), 784, n_rows[f], name)
                 for f in files]
        return np.concatenate(parts).reshape(-1, 28, 28), None, slice(None), None
    raise AssertionError(name)


def load(name, split="train", *, data_dir=None, scale="01", binarize=None, seed=0, flatten=False,
         dtype=np.float32):
    """Load one split of a registered dataset as an :class:`ArrayDataset`.

    name      one of ``DATASETS`` (see :func:`list_datasets`)
    split     "train", "val" (alias "valid"), "test", "trainval" (digits8 also "all")
    data_dir  first folder to search for downloaded files (then $SCRATCHGEN_DATA, then the cache)
    scale     "01", "pm1" or "raw" (module docstring)
    binarize  None, "threshold", "fixed" or "dynamic" (module docstring)
    seed      seed of the ``binarize="fixed"`` draw
    flatten   return (N, C*H*W) instead of (N, C, H, W)
    dtype     float dtype of the pixels (ignored for scale="raw", which gives uint8)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    info = DATASETS[name]
    split = SPLIT_ALIASES.get(split, split)
    if split not in info.splits:
        raise ValueError(f"{name} has splits {list(info.splits)}; got {split!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    if binarize not in BINARIZE:
        raise ValueError(f"binarize must be one of {BINARIZE}; got {binarize!r}")
    if name == "binarized-mnist" and binarize == "dynamic":
        raise ValueError("binarized-mnist is already binary, so there are no grey levels to re-sample; "
                         "use binarize=None or 'fixed' for it, or load('mnist', binarize='dynamic')")

    if name in TOY:
        return _load_toy(name, split, binarize, dtype)
    images, labels, rows, key = _source(name, split, data_dir)
    if binarize == "fixed" and name != "binarized-mnist":
        # u < x/max  <=>  u*max < x: one draw over the whole file, then the split's rows
        u = np.random.default_rng([seed, key, 0, 0]).random(images.shape, dtype=np.float32)
        images = (u * np.float32(info.max_value) < images)[rows]
        max_value = 1
    else:
        images, max_value = images[rows], info.max_value
    if labels is not None:
        labels = labels[rows]
    images = images.reshape(len(images), *info.shape)

    if binarize == "dynamic":
        data = images.astype(dtype) / max_value  # probabilities; ArrayDataset.get draws the pixels
    elif binarize == "threshold":
        data = rescale(images > 0.5 * max_value, scale, 1, dtype)
    else:
        data = rescale(images, scale, max_value, dtype)
    if flatten:
        data = data.reshape(len(data), -1)
    return ArrayDataset(data, labels, name=name, split=split, scale=scale, binarize=binarize, dtype=dtype)
