"""The sample-quality instrument: precision/recall by k-NN balls against a brute-force count, the
convolutional classifier, and the instrument itself — blurred, noised and class-collapsed copies of
real digits must each score worse than real digits on the measure meant to catch them."""
import numpy as np
import pytest

from scratchgen.data import load
from scratchgen.evaluation import classifier
from scratchgen.evaluation import sample_quality as sq


def test_knn_radii_and_coverage_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) + 0.5
    d_aa = ((a[:, None] - a[None]) ** 2).sum(-1)
    expected_r = np.sort(d_aa, axis=1)[:, 3]  # the 3rd nearest other point (column 0 is itself)
    np.testing.assert_allclose(sq.knn_radii(a, 3, chunk=7), expected_r, rtol=1e-10)
    d_ba = ((b[:, None] - a[None]) ** 2).sum(-1)
    expected = np.mean([(d_ba[i] <= expected_r).any() for i in range(30)])
    assert sq.coverage_of(b, a, expected_r, chunk=11) == pytest.approx(expected)
    precision, recall = sq.precision_recall(a, b)
    assert precision == pytest.approx(expected)
    assert sq.precision_recall(a, a) == (1.0, 1.0)  # every point lies inside its own ball
    with pytest.raises(ValueError, match="more than k"):
        sq.knn_radii(a[:3], 3)


@pytest.fixture(scope="module")
def instrument():
    train, test = load("digits8", "train"), load("digits8", "test")
    conv = classifier.train_classifier(train, test, num_classes=10, hidden=(8, 16, 32), epochs=30, batch_size=32,
                                       lr=3e-3, kind="conv")
    mlp = classifier.train_classifier(train, test, num_classes=10, hidden=(64,), epochs=20, batch_size=32)
    return conv, mlp, train, test


def test_the_conv_classifier_learns_digits(instrument):
    conv, mlp, _, _ = instrument
    assert conv.test_accuracy > 0.9 and mlp.test_accuracy > 0.9
    assert conv.kind == "conv" and conv.features(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 32)


def test_degraded_images_score_worse_than_real_ones_on_the_measure_meant_to_catch_them(instrument):
    conv, mlp, train, test = instrument
    reference = train.data  # the "generated" sets are held-out real digits and damaged copies of them
    scores = {name: sq.image_quality(images, reference, conv, mlp)
              for name, images in sq.degraded_copies(test.data, test.targets).items()}
    r = scores["real"]
    assert r["conv_precision"] > 0.8 and r["conv_recall"] > 0.8 and r["conv_classes_covered"] == 10
    for name in ("blurred", "noised"):  # fidelity: precision, confidence, Fréchet distance
        s = scores[name]
        assert s["conv_precision"] < r["conv_precision"] - 0.05, name
        assert s["conv_mean_confidence"] < r["conv_mean_confidence"], name
        assert s["conv_frechet_distance"] > 2 * r["conv_frechet_distance"], name
    c = scores["collapsed"]  # coverage: recall and classes, while precision stays high
    assert c["conv_recall"] < r["conv_recall"] - 0.2
    assert c["conv_classes_covered"] == 3 and c["classes_covered"] == 3
    assert c["conv_precision"] > 0.8
    assert c["conv_frechet_distance"] > 2 * r["conv_frechet_distance"]


def test_eval_quality_samples_sets_how_many_samples_every_family_is_judged_on(monkeypatch):
    from types import SimpleNamespace
    asked = []
    monkeypatch.setattr(sq, "sample_quality", lambda sample, data, name, n, **kw: asked.append(n) or {})
    info = SimpleNamespace(num_classes=10, shape=(1, 28, 28), name="mnist")
    experiment = SimpleNamespace(info=info, config={}, sample=None, quality_samples=None)
    sq.experiment_sample_quality(experiment, None)
    experiment.quality_samples = 2000
    sq.experiment_sample_quality(experiment, None, n=500)
    assert asked == [10000, 2000]
