"""A classifier from a generative model, by Bayes' rule — and the baselines it is compared with.

A class-conditional density p(x|y) and class frequencies p(y) give

    p(y|x) = p(x|y) p(y) / Σ_y' p(x|y') p(y'),      predict argmax_y p(y|x),

computed in log space by :func:`scratchgen.bayes.posterior_from_joint`. With the exact densities
this is the Bayes-optimal classifier (no classifier has a lower error rate). With a conditional
VAE, log p(x|y) is not available exactly; for each class it is estimated by importance sampling
with the encoder as proposal — the IWAE bound with k samples,

    log p(x|y) ≈ log (1/k) Σ_i p(x|z_i, y) p(z_i|y) / q(z_i|x, y),   z_i ~ q(·|x, y),

(:func:`scratchgen.evaluation.vae_metrics.iwae_log_likelihood`), which is a lower bound in
expectation that tightens as k grows. Classifying one image costs K·k decoder evaluations.

Two numbers go beside it in ``scratchgen eval``:

* the **discriminative baseline** (:func:`discriminative_baseline`): an MLP trained in
  scratchgen to predict y from x directly, on the same training split, with the CVAE's hidden
  sizes and number of epochs;
* the **conditional accuracy** (:func:`conditional_accuracy`): draw samples of each class from
  the CVAE and let the evaluation classifier (:mod:`scratchgen.evaluation.classifier`) label them;
  the fraction labelled with the class they were drawn for.
"""
import sys

import numpy as np

from ..bayes import posterior_from_joint


def _log(message):
    # NOTE: stderr, so that `scratchgen eval --json` keeps stdout a single JSON object
    print(message, file=sys.stderr, flush=True)


def _check_log_likelihoods(log_likelihoods):
    ll = np.asarray(log_likelihoods, dtype=np.float64)
    if ll.ndim != 2 or ll.shape[1] < 2:
        raise ValueError(f"log_likelihoods must be (N, K) with K >= 2 classes, got shape {ll.shape}")
    return ll


def log_posterior(log_likelihoods, log_prior=None):
    """log p(y|x) (N, K) from log p(x|y) (N, K) and log p(y) (K,) (uniform if None)."""
    ll = _check_log_likelihoods(log_likelihoods)
    k = ll.shape[1]
    lp = np.full(k, -np.log(k)) if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    if lp.shape != (k,):
        raise ValueError(f"log_prior must have one entry per class, shape ({k},), got {lp.shape}")
    return posterior_from_joint(ll + lp, dim=1)


def predict(log_likelihoods, log_prior=None):
    """argmax_y p(y|x) for each row, (N,) int64 (the normaliser does not change the argmax, but
    the posterior is computed anyway so a bad input fails loudly)."""
    return log_posterior(log_likelihoods, log_prior).argmax(axis=1)


def confusion_matrix(y_true, y_pred, num_classes):
    """C[i, j] = number of examples of true class i predicted as j, (K, K) int64."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {y_true.shape} and {y_pred.shape}")
    for name, v in (("y_true", y_true), ("y_pred", y_pred)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got range [{v.min()}, {v.max()}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def class_log_likelihoods(log_likelihood, x, num_classes):
    """The (N, K) matrix L[n, c] = log p(x_n | y = c) from ``log_likelihood(x, y) -> (N,)``,
    called once per class with every label set to c."""
    n = len(x)
    cols = [np.asarray(log_likelihood(x, np.full(n, c, dtype=np.int64)), dtype=np.float64) for c in range(num_classes)]
    for c, col in enumerate(cols):
        if col.shape != (n,):
            raise ValueError(f"log_likelihood must return one value per example, shape ({n},); "
                             f"got {col.shape} for class {c}")
    return np.stack(cols, axis=1)


def cvae_log_likelihoods(model, x, k=100, **kw):
    """IWAE_k estimates of log p(x|y) for every class y: (N, K) float64."""
    from .vae_metrics import iwae_log_likelihood
    return class_log_likelihoods(lambda xb, yb: iwae_log_likelihood(model, xb, yb, k=k, **kw), x,
                                 model.info.num_classes)


def evaluate_cvae(model, x, y, k=100, **kw):
    """Bayes-rule classification of (x, y) by a CVAE with log p(y) = ``model.log_class_prior()``.

    Returns ``accuracy``, ``confusion`` (K, K), ``predictions`` (N,) and ``log_posterior`` (N, K).
    """
    if y is None:
        raise ValueError("the Bayes classifier is scored against labels; this split has none")
    ll = cvae_log_likelihoods(model, x, k=k, **kw)
    post = log_posterior(ll, model.log_class_prior())
    pred = post.argmax(axis=1)
    return {"accuracy": float((pred == np.asarray(y)).mean()), "predictions": pred, "log_posterior": post,
            "confusion": confusion_matrix(np.asarray(y), pred, model.info.num_classes)}


def to_unit_interval(images, scale):
    """Model outputs in the data's scale -> pixels in [0, 1] for the evaluation classifier."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip((images + 1) / 2 if scale == "pm1" else images, 0.0, 1.0)


def conditional_accuracy(model, n_per_class=1000, classifier=None, data_dir=None):
    """Draw ``n_per_class`` samples of each class from ``model.sample(n, label=c)`` and label them
    with the evaluation classifier (the cached one for the model's dataset unless given).

    Returns ``conditional_accuracy`` (the fraction labelled with their own class),
    ``conditional_accuracy_per_class`` and ``classifier_test_accuracy``.
    """
    if classifier is None:
        from .classifier import load_or_train
        classifier = load_or_train(model.config["data"], data_dir=data_dir, log=_log)
    k = model.info.num_classes
    per_class = []
    for c in range(k):
        images = to_unit_interval(model.sample(int(n_per_class), label=c), model.config.get("scale", "01"))
        per_class.append(float((classifier.predict(images) == c).mean()))
    return {"conditional_accuracy": float(np.mean(per_class)), "conditional_accuracy_per_class": per_class,
            "classifier_test_accuracy": classifier.test_accuracy}


def discriminative_baseline(dataset, x, y, hidden=(400,), epochs=10, seed=0, data_dir=None):
    """The accuracy on (x, y) of an MLP classifier trained in scratchgen on ``dataset``'s train split
    with the given hidden sizes and epochs (trained once, then cached; see
    :func:`scratchgen.evaluation.classifier.load_or_train`)."""
    from .classifier import load_or_train
    clf = load_or_train(dataset, data_dir=data_dir, hidden=tuple(int(h) for h in hidden), epochs=int(epochs),
                        seed=seed, log=_log)
    return {"discriminative_accuracy": clf.accuracy(x, y), "discriminative_hidden": list(clf.hidden),
            "discriminative_epochs": int(epochs)}
