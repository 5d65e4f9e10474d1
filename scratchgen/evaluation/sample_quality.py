"""Sample quality of an image model, measured the same way for every family.

Generated images have no likelihood we can compare across families (a GAN has none), so they are
judged through two classifiers trained on the real data (:mod:`scratchgen.evaluation.classifier`):

* **Fréchet distance** of Gaussian fits of the classifier's features, real vs generated
  (:mod:`scratchgen.evaluation.frechet`): one number mixing fidelity and diversity;
* **precision and recall** (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved Precision
  and Recall Metric for Assessing Generative Models"), which keep the two apart. Around every real
  feature vector put a ball reaching its k-th nearest real neighbour (k = 3); the *precision* is the
  fraction of generated vectors inside at least one real ball (are samples realistic?). Swap the
  roles for the *recall*: the fraction of real vectors inside a ball of the generated set (is all of
  the data's variety produced?). Blurry or broken samples lower the precision; a model that makes
  only some digits lowers the recall;
* the classifier's **mean confidence** max_y p(y | x) on the samples (scribbles get unsure answers);
* the **class histogram** and the classes covered (at least 5% of the samples each).

The convolutional classifier's numbers carry the prefix ``conv_``; the MLP classifier's keep the
names the GAN reported before (``frechet_distance``, ``classes_covered``, ...), for continuity.
NOTE: these are small-scale analogues of FID and of the paper's precision/recall (which use
Inception or VGG features of 50,000 images): compare them only with each other, computed by the
same classifiers on the same number of samples.
"""
import numpy as np

from .classifier import class_histogram, classes_covered, kl_to_uniform, load_or_train
from .frechet import frechet_distance_of_features


def _squared_distances(a, b):
    """||a_i - b_j||² for rows a (n, D) and b (m, D), as (n, m) float64 (clipped at 0 against rounding)."""
    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0)


def knn_radii(features, k=3, chunk=1000):
    """Squared distance from each row to its k-th nearest *other* row: (n,) — the radii of the balls."""
    f = np.asarray(features, np.float64)
    if len(f) <= k:
        raise ValueError(f"k-nearest-neighbour balls need more than k = {k} points, got {len(f)}")
    out = np.empty(len(f))
    for i in range(0, len(f), chunk):
        d = _squared_distances(f[i:i + chunk], f)
        out[i:i + chunk] = np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)
    return out


def coverage_of(points, centres, radii, chunk=1000):
    """Fraction of ``points`` inside at least one ball (centre_j, squared radius radii_j)."""
    p, c = np.asarray(points, np.float64), np.asarray(centres, np.float64)
    inside = 0
    for i in range(0, len(p), chunk):
        inside += int((_squared_distances(p[i:i + chunk], c) <= radii[None, :]).any(axis=1).sum())
    return inside / len(p)


def precision_recall(real_features, fake_features, k=3):
    """(precision, recall) of Kynkäänniemi et al. 2019 with k-nearest-neighbour balls."""
    real, fake = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
    return (coverage_of(fake, real, knn_radii(real, k)), coverage_of(real, fake, knn_radii(fake, k)))


def image_quality(samples, real, conv, mlp=None, k=3):
    """Every number of the module docstring for ``samples`` against ``real`` images (both in [0, 1]),
    with the classifiers ``conv`` (and ``mlp``, if given). Returns a dict of plain Python values."""
    out = {}
    f_real, f_fake = conv.features(real), conv.features(samples)
    probs = conv.probabilities(samples)
    counts = class_histogram(probs.argmax(1), conv.num_classes)
    out["conv_frechet_distance"] = frechet_distance_of_features(f_real, f_fake)
    out["conv_precision"], out["conv_recall"] = precision_recall(f_real, f_fake, k)
    out["conv_mean_confidence"] = float(probs.max(1).mean())
    out["conv_classes_covered"] = classes_covered(counts)
    out["conv_kl_to_uniform"] = kl_to_uniform(counts)
    out["conv_class_histogram"] = counts.tolist()
    out["conv_classifier_test_accuracy"] = conv.test_accuracy
    if mlp is not None:
        counts = class_histogram(mlp.predict(samples), mlp.num_classes)
        out["frechet_distance"] = frechet_distance_of_features(mlp.features(real), mlp.features(samples))
        out["classes_covered"] = classes_covered(counts)
        out["kl_to_uniform"] = kl_to_uniform(counts)
        out["class_histogram"] = counts.tolist()
        out["classifier_test_accuracy"] = mlp.test_accuracy
    out["n_samples"], out["n_real"] = len(samples), len(real)
    return out


def sample_quality(sample, data, dataset, *, data_dir=None, scale="01", n=10000, batch=1000):
    """:func:`image_quality` of ``n`` samples drawn by ``sample(m)`` (in batches of ``batch``) against the
    real images of the split ``data``, with the cached classifiers of ``dataset``. ``scale`` "pm1":
    samples and data are mapped from [-1, 1] to [0, 1] first."""
    samples = np.concatenate([sample(min(batch, n - i)) for i in range(0, n, batch)])
    real = data.data
    if scale == "pm1":
        samples, real = (samples + 1) / 2, (real + 1) / 2
    conv = load_or_train(dataset, data_dir=data_dir, kind="conv")
    mlp = load_or_train(dataset, data_dir=data_dir, kind="mlp")
    return image_quality(np.clip(samples, 0, 1), real, conv, mlp)


def experiment_sample_quality(experiment, data, n=10000, sample=None):
    """:func:`sample_quality` of a trained :class:`~scratchgen.training.experiment.Experiment` (its
    ``sample``, or the ``sample(n)`` given; its data set, data folder and scale) on labelled images of
    16x16 pixels or more (the classifiers' input); ``{}`` for other data (8x8 digits, 2-D points).
    ``n`` samples, unless ``scratchgen eval --quality-samples N`` set ``experiment.quality_samples``."""
    info = experiment.info
    if not info.num_classes or len(info.shape) != 3 or info.shape[1] < 16:
        return {}
    return sample_quality(sample or experiment.sample, data, info.name, data_dir=experiment.config.get("data_dir"),
                          scale=experiment.config.get("scale", "01"),
                          n=experiment.quality_samples or n)


# ---------------------------------------------------------------------------- testing the instrument
def box_blur(x):
    """3x3 box blur of images (N, C, H, W), edges padded by repetition."""
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[2:]
    return sum(p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9


def degraded_copies(images, labels, seed=0):
    """Real images in [0, 1] and three damaged versions, each meant to be caught by one measure:
    ``blurred`` (two 3x3 box blurs) and ``noised`` (± 0.5 uniform noise, clipped) lose fidelity;
    ``collapsed`` (only classes 0, 1, 2, drawn with replacement to the same number) loses coverage."""
    rng = np.random.default_rng(seed)
    few = images[np.asarray(labels) < 3]
    return {"real": images, "blurred": box_blur(box_blur(images)),
            "noised": np.clip(images + rng.uniform(-0.5, 0.5, images.shape), 0, 1).astype(images.dtype),
            "collapsed": few[rng.integers(0, len(few), len(images))]}


def main(argv=None):
    """``python -m scratchgen.evaluation.sample_quality [--n N]``: the instrument on real MNIST — N
    training images and their degraded copies, scored against the test split like a model's samples
    (the reference rows of Chapter 9, §9.9). Needs the MNIST files (--data-dir or SCRATCHGEN_DATA)."""
    import argparse

    from ..data import load
    parser = argparse.ArgumentParser(prog="python -m scratchgen.evaluation.sample_quality",
                                     description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="training images per set (default 10000)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    train = load("mnist", "train", data_dir=args.data_dir, scale="01")
    real = load("mnist", "test", data_dir=args.data_dir, scale="01").data
    pick = np.random.default_rng(0).choice(len(train), args.n, replace=False)
    conv = load_or_train("mnist", data_dir=args.data_dir, kind="conv")
    mlp = load_or_train("mnist", data_dir=args.data_dir, kind="mlp")
    print(f"| images ({args.n:,}) | conv Fréchet distance | precision | recall | mean confidence | classes covered "
          f"| MLP Fréchet distance |\n|---|---|---|---|---|---|---|")
    for name, images in degraded_copies(train.data[pick], train.targets[pick]).items():
        s = image_quality(images, real, conv, mlp)
        print(f"| {name} | {s['conv_frechet_distance']:.1f} | {s['conv_precision']:.3f} | {s['conv_recall']:.3f} | "
              f"{s['conv_mean_confidence']:.3f} | {s['conv_classes_covered']} | {s['frechet_distance']:.2f} |")


if __name__ == "__main__":
    main()
