"""Attributes of a handwritten digit measured from its pixels: stroke thickness, slant, width, height.

After Morpho-MNIST (Castro, Tan, Kamnitsas, Glocker & Walker 2019, "Morpho-MNIST: Quantitative
Assessment and Diagnostic Tools for Deep Generative Models"), in plain NumPy on a batch at once.
Every function takes grey images (N, H, W) or (N, 1, H, W) with ink near 1 and paper near 0.

* **thickness** — as Morpho-MNIST does, at a finer resolution than the image: upsampled 4 times
  (bilinear, :func:`upsample`), binarised at ½ and thinned to a one-pixel skeleton (Zhang & Suen 1984,
  :func:`skeleton`); the thickness is twice the mean distance from the skeleton to the paper, with
  the distance measured between pixel centres to the nearest paper pixel. A stroke t pixels wide
  measures t within 0.3 of a pixel, at any angle (``tests/test_attributes.py``).
* **slant** — from the image's second moments (the intensities as weights). With x the column and
  r the row, a shear x ← x + s·(r̄ − r) (the top moves right by s per row) changes the covariance
  μ_xr by −s·μ_rr, so s = −μ_xr / μ_rr, and the slant is the angle arctan(s) in radians:
  positive when the digit leans right.
* **height** — the rows the binarised digit spans; **width** — the columns it spans once its slant is
  undone (x + s·(r − r̄)), so a leaning 1 is narrow, as Morpho-MNIST measures it.

:func:`measure` returns all of them; :func:`stroke` draws a synthetic stroke of known thickness
(for the tests, and for seeing what the numbers mean).
"""
import numpy as np

ATTRIBUTES = ("thickness", "slant", "width", "height")


def _as_images(images):
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"attributes are measured on grey images (N, H, W) or (N, 1, H, W); got shape {x.shape}")
    return x


def _neighbours(mask):
    """P2..P9 of Zhang & Suen for every pixel: N, NE, E, SE, S, SW, W, NW (zero outside the image)."""
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    at = lambda dr, dc: p[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]  # noqa: E731
    return [at(-1, 0), at(-1, 1), at(0, 1), at(1, 1), at(1, 0), at(1, -1), at(0, -1), at(-1, -1)]


def skeleton(mask):
    """Zhang–Suen thinning of boolean images (N, H, W): one-pixel-wide skeletons, same shape.

    Repeated until nothing changes, two sub-steps each; a pixel is removed when it has 2 to 6 ink
    neighbours, exactly one paper-to-ink transition around it (so removing it keeps the stroke
    connected), and (first sub-step) P2·P4·P6 = P4·P6·P8 = 0, (second) P2·P4·P8 = P2·P6·P8 = 0.
    """
    m = np.asarray(mask, dtype=bool).copy()
    while True:
        changed = False
        for step in (0, 1):
            n = _neighbours(m)
            count = sum(v.astype(np.int8) for v in n)
            ring = n + n[:1]
            transitions = sum((~a & b).astype(np.int8) for a, b in zip(ring[:-1], ring[1:]))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = m & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                m &= ~remove
                changed = True
        if not changed:
            return m


def upsample(images, factor):
    """Bilinear upsampling of grey images (N, H, W) by an integer ``factor`` (pixel centres kept aligned)."""
    x = _as_images(images)
    if factor == 1:
        return x

    def matrix(n):
        centres = (np.arange(n * factor) + 0.5) / factor - 0.5          # new pixel centres in old coordinates
        lo = np.clip(np.floor(centres).astype(int), 0, n - 1)
        hi = np.clip(lo + 1, 0, n - 1)
        frac = np.clip(centres - lo, 0.0, 1.0)
        m = np.zeros((n * factor, n))
        np.add.at(m, (np.arange(n * factor), lo), 1 - frac)
        np.add.at(m, (np.arange(n * factor), hi), frac)
        return m
    rows, cols = matrix(x.shape[1]), matrix(x.shape[2])
    return np.einsum("ah,nhw,bw->nab", rows, x, cols, optimize=True)


def _paper_edge(ink):
    """Paper pixels next to ink (8-neighbourhood), and the frame just outside the image counted as paper."""
    n = _neighbours(ink)
    edge = ~ink & np.logical_or.reduce(n)
    return edge


def thickness(images, threshold=0.5, factor=4):
    """Mean stroke thickness in pixels per image (N,), NaN for an image without ink.

    The images are upsampled ``factor`` times, binarised at ``threshold`` and thinned; at each skeleton
    pixel the distance d to the nearest paper pixel (Euclidean, between pixel centres) is measured, and
    the thickness is 2·mean(d − ¼)/factor. NOTE: −½ would move from the paper pixel's centre to its
    edge, but a skeleton cannot sit in the middle of a stroke an even number of fine pixels wide; it
    takes one of the two central rows, half a fine pixel off, so −¼ is right on average (±⅛ px).
    """
    ink = np.pad(upsample(images, factor) >= threshold, ((0, 0), (1, 1), (1, 1)))   # a paper frame
    skel, edge = skeleton(ink), _paper_edge(ink)
    out = np.full(len(ink), np.nan)
    for i in range(len(ink)):
        s, e = np.argwhere(skel[i]).astype(np.float64), np.argwhere(edge[i]).astype(np.float64)
        if len(s) == 0:
            continue
        d2 = ((s[:, None, :] - e[None, :, :]) ** 2).sum(axis=2).min(axis=1)
        out[i] = 2.0 * float((np.sqrt(d2) - 0.25).mean()) / factor
    return out


def _moments(x):
    h, w = x.shape[1:]
    r, c = np.mgrid[0:h, 0:w]
    mass = x.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    rbar = (x * r).sum(axis=(1, 2)) / safe
    cbar = (x * c).sum(axis=(1, 2)) / safe
    dr, dc = r[None] - rbar[:, None, None], c[None] - cbar[:, None, None]
    mu_rr = (x * dr * dr).sum(axis=(1, 2)) / safe
    mu_cr = (x * dc * dr).sum(axis=(1, 2)) / safe
    return rbar, cbar, mu_rr, mu_cr


def shear(images):
    """s = −μ_xr / μ_rr per image: how many columns the digit moves right per row upwards."""
    x = _as_images(images)
    _, _, mu_rr, mu_cr = _moments(x)
    return -mu_cr / np.where(mu_rr > 0, mu_rr, np.nan)


def slant(images):
    """arctan(shear): the slant angle in radians, positive when the digit leans right."""
    return np.arctan(shear(images))


def extent(images, threshold=0.5):
    """(width, height) in pixels per image: the slant-corrected columns and the rows the ink spans."""
    x = _as_images(images)
    ink = x >= threshold
    s = shear(x)
    rbar = _moments(x)[0]
    width, height = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for i in range(len(x)):
        rc = np.argwhere(ink[i])
        if len(rc) == 0:
            continue
        upright = rc[:, 1] + np.nan_to_num(s[i]) * (rc[:, 0] - rbar[i])
        width[i] = upright.max() - upright.min() + 1.0
        height[i] = rc[:, 0].max() - rc[:, 0].min() + 1.0
    return width, height


def measure(images, threshold=0.5):
    """All attributes of a batch: a dict of (N,) float arrays named as in :data:`ATTRIBUTES`."""
    x = _as_images(images)
    width, height = extent(x, threshold)
    return {"thickness": thickness(x, threshold), "slant": slant(x), "width": width, "height": height}


def stroke(shape, start, end, width, supersample=8):
    """A synthetic anti-aliased stroke: each pixel's grey level is the fraction of its area (sampled
    on a ``supersample``² grid) within width/2 of the segment start–end (row, col pixel centres).
    Returns an (H, W) float image with ink 1 and paper 0, like an MNIST digit."""
    h, w = shape
    k = supersample
    offsets = (np.arange(k) + 0.5) / k - 0.5
    r = (np.arange(h)[:, None] + offsets[None, :]).reshape(-1)
    c = (np.arange(w)[:, None] + offsets[None, :]).reshape(-1)
    r, c = np.meshgrid(r, c, indexing="ij")
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    ab = b - a
    t = np.clip(((r - a[0]) * ab[0] + (c - a[1]) * ab[1]) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    inside = np.hypot(r - (a[0] + t * ab[0]), c - (a[1] + t * ab[1])) <= width / 2
    return inside.reshape(h, k, w, k).mean(axis=(1, 3))


def standardise(values, mean=None, std=None):
    """(values − mean) / std per attribute column; the statistics are computed from ``values`` when not
    given (as on the training set). Returns (standardised, mean, std)."""
    v = np.asarray(values, np.float64)
    mean = np.nanmean(v, axis=0) if mean is None else np.asarray(mean)
    std = np.nanstd(v, axis=0) if std is None else np.asarray(std)
    return (v - mean) / np.where(std > 0, std, 1.0), mean, std
