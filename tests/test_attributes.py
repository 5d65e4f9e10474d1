"""Morpho-MNIST-style attributes measured on synthetic strokes of known thickness, slant and size."""
import numpy as np
import pytest

from scratchgen.data import attributes as A

SEGMENTS = {"vertical": ((4, 14), (23, 14)), "horizontal": ((14, 4), (14, 23)),
            "diagonal": ((5, 5), (22, 22)), "steep": ((4, 9), (23, 19))}


@pytest.mark.parametrize("orientation", list(SEGMENTS))
def test_thickness_of_a_synthetic_stroke_is_its_width_within_a_third_of_a_pixel(orientation):
    start, end = SEGMENTS[orientation]
    widths = np.array([1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0])
    images = np.stack([A.stroke((28, 28), start, end, w) for w in widths])
    measured = A.thickness(images)
    assert np.abs(measured - widths).max() < 0.3, measured
    assert np.all(np.diff(measured) > 0)                        # thicker strokes always measure thicker


@pytest.mark.parametrize("s", [-0.4, -0.2, 0.0, 0.25, 0.5])
def test_slant_of_a_sheared_stroke_is_the_arctangent_of_its_shear(s):
    """A vertical stroke whose top is moved s columns right per row up: slant = arctan(s)."""
    half = 9.5
    image = A.stroke((28, 28), (14 - half, 14 + s * half), (14 + half, 14 - s * half), 3.0)
    assert A.slant(image[None])[0] == pytest.approx(np.arctan(s), abs=0.02)
    width, height = A.extent(image[None])
    assert height[0] == pytest.approx(22, abs=1)                 # 19 rows of segment plus the round caps
    assert width[0] == pytest.approx(3.0, abs=1.5)               # de-slanted: as wide as the stroke


def test_width_and_height_of_a_rectangle_of_ink():
    image = np.zeros((1, 28, 28))
    image[0, 5:25, 8:20] = 1.0
    assert [v[0] for v in A.extent(image)] == [12.0, 20.0]
    m = A.measure(image)
    assert set(m) == set(A.ATTRIBUTES) and m["slant"][0] == pytest.approx(0.0, abs=1e-12)


def test_skeleton_of_a_bar_is_one_pixel_wide_and_keeps_its_length():
    bar = np.zeros((1, 12, 30), dtype=bool)
    bar[0, 4:9, 3:27] = True
    sk = A.skeleton(bar)[0]
    assert sk.sum(axis=0).max() == 1 and 14 <= sk.sum() <= 24 and sk[:, 15].argmax() == 6


def test_upsampling_keeps_the_mean_grey_level_and_an_empty_image_gives_nan():
    x = np.random.default_rng(0).random((2, 8, 8))
    assert np.allclose(A.upsample(x, 4).mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.02)
    blank = A.measure(np.zeros((1, 8, 8)))
    assert all(np.isnan(v[0]) for v in blank.values())


def test_standardise_uses_the_given_statistics():
    v = np.array([[1.0, 10.0], [3.0, 30.0]])
    z, mean, std = A.standardise(v)
    assert np.allclose(z, [[-1, -1], [1, 1]]) and np.allclose(mean, [2, 20]) and np.allclose(std, [1, 10])
    assert np.allclose(A.standardise(np.array([[4.0, 0.0]]), mean, std)[0], [[2.0, -2.0]])


def test_a_wrong_shape_is_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\)"):
        A.measure(np.zeros((2, 3, 8, 8)))
