"""Data for scratchgen: image datasets, their downloader, toy distributions and a batch iterator.

* :func:`load` / :data:`DATASETS` / :func:`list_datasets` -- digits8 (bundled), MNIST,
  Fashion-MNIST, binarized MNIST, with fixed splits, scalings and binarizations (datasets.py).
* :func:`fetch` -- download a dataset into the cache, checksum-verified (download.py).
* :class:`DataLoader` -- seeded, resumable mini-batches (loader.py).
* :mod:`~scratchgen.data.toy` -- Gaussian rings and grids, moons, swiss roll, 1-D mixtures.
* :func:`read_idx` / :func:`read_amat` -- the file parsers (formats.py); where files are
  looked for is decided in paths.py.
"""
from .datasets import DATASETS, ArrayDataset, DatasetInfo, list_datasets, load
from .download import SOURCES, ChecksumError, DownloadError, fetch
from .formats import CorruptDataError, read_amat, read_idx, write_idx
from .loader import DataLoader
from .paths import default_cache_dir, digits8_path, find_file, search_dirs
from .toy import (GaussianMixture, GaussianMixture1D, bimodal_1d, grid_of_gaussians, ring_of_gaussians,
                  swiss_roll, two_moons)

__all__ = ["DATASETS", "ArrayDataset", "DatasetInfo", "list_datasets", "load", "SOURCES", "ChecksumError",
           "DownloadError", "fetch", "CorruptDataError", "read_amat", "read_idx", "write_idx", "DataLoader",
           "default_cache_dir", "digits8_path", "find_file", "search_dirs", "GaussianMixture",
           "GaussianMixture1D", "bimodal_1d", "grid_of_gaussians", "ring_of_gaussians", "swiss_roll",
           "two_moons"]
