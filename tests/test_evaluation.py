"""The evaluation metrics on inputs whose answers are known in closed form."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchgen.data.toy import GaussianMixture, GaussianMixture1D, grid_of_gaussians, ring_of_gaussians
from scratchgen.evaluation import (expected_high_quality_fraction, frechet_distance,
                                   frechet_distance_of_features, mode_coverage, parzen_log_density,
                                   parzen_log_likelihood, select_bandwidth, sqrtm_psd)
from strategies import spd_matrices


# ---------------------------------------------------------------------------- mode coverage
def test_mode_coverage_counts_exactly_placed_points():
    ring = ring_of_gaussians()                       # std 0.02: "high quality" means within 0.06
    c, s = ring.centers, ring.std
    direction = np.array([0.6, 0.8])                 # a unit vector
    inside = c[[0, 1, 2, 4, 4, 4]] + 2.9 * s * direction
    outside = c[[3, 5]] + 3.1 * s * direction        # near modes 3 and 5, but not high quality
    far = np.zeros((2, 2))                           # the centre of the ring
    r = mode_coverage(np.concatenate([inside, outside, far]), ring)
    assert r["modes_covered"] == 4                   # modes 0, 1, 2, 4
    assert r["counts"] == [1, 1, 1, 0, 3, 0, 0, 0]
    assert r["high_quality_fraction"] == pytest.approx(6 / 10, abs=1e-15)
    assert mode_coverage(inside, ring, min_count=2)["modes_covered"] == 1
    assert mode_coverage(outside, ring, n_std=3.2)["modes_covered"] == 2


def test_mode_coverage_of_the_data_itself_matches_the_chi_distribution():
    for mixture in (ring_of_gaussians(), grid_of_gaussians()):
        n = 20000
        r = mode_coverage(mixture.sample(n, rng=3), mixture)
        p = expected_high_quality_fraction(2)     # 1 - exp(-4.5)
        assert r["modes_covered"] == mixture.n_modes
        assert abs(r["high_quality_fraction"] - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_a_collapsed_generator_covers_one_mode():
    grid = grid_of_gaussians()
    x = grid.centers[12] + grid.std * np.random.default_rng(0).standard_normal((500, 2))
    r = mode_coverage(x, grid)
    assert r["modes_covered"] == 1 and r["high_quality_fraction"] > 0.95


def test_mode_coverage_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        mode_coverage(np.zeros((5, 3)), ring_of_gaussians())
    with pytest.raises(ValueError, match="NaN"):
        mode_coverage(np.full((5, 2), np.nan), ring_of_gaussians())


# ---------------------------------------------------------------------------- Fréchet distance
def test_frechet_1d_closed_form():
    for m1, s1, m2, s2 in [(0.0, 2.0, 1.0, 1.0), (-1.5, 0.3, 2.0, 0.7), (3.0, 1.0, 3.0, 1.0)]:
        expected = (m1 - m2) ** 2 + s1 ** 2 + s2 ** 2 - 2 * s1 * s2
        assert frechet_distance([m1], [[s1 ** 2]], [m2], [[s2 ** 2]]) == pytest.approx(expected, abs=1e-12)


@given(spd_matrices(4), spd_matrices(4), st.integers(0, 2**32 - 1))
def test_frechet_matches_the_eigenvalues_of_c1_c2(c1, c2, seed):
    # tr (C1^½ C2 C1^½)^½ = Σ √λ(C1 C2): the non-symmetric route, computed independently
    rng = np.random.default_rng(seed)
    m1, m2 = rng.standard_normal(4), rng.standard_normal(4)
    cross = np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
    expected = ((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross
    d = frechet_distance(m1, c1, m2, c2)
    assert d == pytest.approx(expected, rel=1e-8, abs=1e-9)
    assert d == pytest.approx(frechet_distance(m2, c2, m1, c1), rel=1e-8, abs=1e-9)   # symmetric
    assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_diagonal_covariances_and_a_singular_one():
    a, b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])      # commuting; one zero variance
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + 1.0
    assert frechet_distance([0, 0, 1], np.diag(a), [0, 0, 0], np.diag(b)) == pytest.approx(expected, abs=1e-12)


@given(spd_matrices(5))
def test_sqrtm_psd_squares_back_and_is_symmetric(c):
    s = sqrtm_psd(c)
    assert np.allclose(s, s.T, atol=1e-12)
    assert np.allclose(s @ s, c, rtol=1e-9, atol=1e-10)


def test_frechet_of_features_identical_and_shifted():
    f = np.random.default_rng(1).standard_normal((300, 6)) @ np.random.default_rng(2).standard_normal((6, 6))
    shift = np.arange(6.0)
    assert frechet_distance_of_features(f, f) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance_of_features(f, f + shift) == pytest.approx((shift ** 2).sum(), rel=1e-9)


def test_frechet_rejects_mismatched_or_non_symmetric_input():
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(np.zeros(2), [[1, 0.5], [0, 1]], np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="positive semi-definite"):
        sqrtm_psd(np.diag([1.0, -1.0]))


# ---------------------------------------------------------------------------- Parzen windows
@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_parzen_on_the_centres_is_the_exact_mixture_density(chunk_size):
    mix = GaussianMixture(np.random.default_rng(0).uniform(-3, 3, (7, 3)), 0.4)
    x = mix.sample(50, rng=1)
    ours = parzen_log_density(x, mix.centers, mix.std, chunk_size=chunk_size)
    assert np.allclose(ours, mix.log_pdf(x), rtol=0, atol=1e-10)


def test_parzen_1d_and_several_bandwidths_at_once():
    mix = GaussianMixture1D([-1.0, 0.5, 2.0], 0.3)
    x = np.linspace(-3, 3, 13)[:, None]
    table = parzen_log_density(x, mix.means[:, None], [0.3, 0.6])
    assert np.allclose(table[0], mix.log_pdf(x[:, 0]), atol=1e-12)
    assert np.allclose(table[1], GaussianMixture1D(mix.means, 0.6).log_pdf(x[:, 0]), atol=1e-12)


def test_bandwidth_selection_finds_the_maximum_likelihood_sigma():
    # one kernel at 0 in D dims: mean log N(x; 0, σ²I) peaks at σ² = mean |x|² / D
    rng = np.random.default_rng(4)
    val = 0.7 * rng.standard_normal((400, 5))
    best_sigma = math.sqrt((val ** 2).sum(1).mean() / 5)
    grid = np.sort(np.append(np.linspace(0.3, 1.2, 10), best_sigma))
    sigma, table = select_bandwidth(val, np.zeros((1, 5)), grid)
    assert sigma == best_sigma and max(table.values()) == table[best_sigma]


def test_parzen_protocol_reports_mean_se_and_the_chosen_sigma():
    mix = GaussianMixture1D([-2.0, 2.0], 0.5)
    samples, val, test = (mix.sample(n, rng=s)[:, None] for n, s in ((2000, 0), (500, 1), (500, 2)))
    r = parzen_log_likelihood(test, samples, val, sigmas=np.linspace(0.05, 1.5, 30))
    exact = mix.log_pdf(test[:, 0]).mean()
    assert not r["sigma_at_edge"]
    assert abs(r["mean"] - exact) < 0.05 + 3 * r["se"]   # a kernel estimate of a known density
    assert 0 < r["se"] < 0.1


def test_parzen_errors():
    with pytest.raises(ValueError, match="values per example"):
        parzen_log_density(np.zeros((2, 3)), np.zeros((2, 4)), 1.0)
    with pytest.raises(ValueError, match="positive"):
        parzen_log_density(np.zeros((2, 3)), np.zeros((2, 3)), 0.0)


# ---------------------------------------------------------------------------- classifier statistics
def test_label_statistics():
    from scratchgen.evaluation.classifier import class_histogram, classes_covered, kl_to_uniform
    assert kl_to_uniform([5, 5, 5, 5]) == pytest.approx(0.0, abs=1e-15)
    assert kl_to_uniform([0, 9, 0]) == pytest.approx(math.log(3), abs=1e-15)
    assert kl_to_uniform([1, 3]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-15)
    counts = class_histogram([0, 0, 1, 3, 3, 3], 5)
    assert counts.tolist() == [2, 1, 0, 3, 0]
    assert classes_covered(counts) == 3 and classes_covered(counts, min_fraction=0.3) == 2
    assert classes_covered(np.array([100] * 9 + [4])) == 9           # 4/904 < 5%: not covered
    with pytest.raises(ValueError, match="0..4"):
        class_histogram([5], 5)


def test_classifier_trains_on_digits8_and_survives_a_round_trip(tmp_path):
    from scratchgen.data import load
    from scratchgen.evaluation.classifier import label_report, load_classifier, save_classifier, train_classifier
    train, test = load("digits8", "train"), load("digits8", "test")
    clf = train_classifier(train, test, hidden=(64,), epochs=6, batch_size=128, lr=1e-2, seed=0)
    assert clf.test_accuracy > 0.9                              # chance is 0.1
    path = save_classifier(clf, tmp_path / "clf.npz")
    again = load_classifier(path)
    assert again.test_accuracy == clf.test_accuracy
    assert np.array_equal(again.logits(test.data), clf.logits(test.data))
    assert again.features(test.data[:7]).shape == (7, 64)
    r = label_report(again, test.data)
    assert sum(r["class_histogram"]) == len(test) and r["classes_covered"] == 10
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        again.predict(2 * test.data - 1)


def test_random_shifts_move_each_image_by_its_own_offset_and_fill_the_border_with_zeros():
    from scratchgen.evaluation.classifier import random_shifts
    x = np.random.default_rng(0).random((40, 2, 5, 6)).astype(np.float32) + 1  # no zeros inside
    moved = random_shifts(x, 2, np.random.default_rng(1))
    assert moved.shape == x.shape and moved.dtype == x.dtype
    offsets = set()
    for a, b in zip(x, moved):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(np.roll(a, (dy, dx), axis=(1, 2))[:, max(dy, 0):5 + min(dy, 0), max(dx, 0):6 + min(dx, 0)],
                                   b[:, max(dy, 0):5 + min(dy, 0), max(dx, 0):6 + min(dx, 0)])
                 and (b == 0).sum() == 2 * (abs(dy) * 6 + abs(dx) * 5 - abs(dy * dx))]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 10  # each image its own offset
    np.testing.assert_array_equal(random_shifts(x, 0, np.random.default_rng(1)), x)
