"""The rate-distortion lab: the two gaps on the linear-Gaussian model, exactly, and a small beta sweep."""
import numpy as np
import pytest

from scratchgen.labs import rate_distortion as lab
from scratchgen.autograd import Tensor

LG = lab.default_model()
X, _ = LG.sample(40, rng=np.random.default_rng(0))


def test_tensor_elbo_of_a_diagonal_q_matches_the_closed_form_of_the_model():
    rng = np.random.default_rng(1)
    m, log_v = rng.standard_normal((40, 2)), rng.standard_normal((40, 2)) * 0.3
    ours = lab.diagonal_elbo(LG, X, Tensor(m), Tensor(log_v)).data
    ref = np.array([LG.elbo(x[None], mi, np.diag(np.exp(lv)))[0] for x, mi, lv in zip(X, m, log_v)])
    assert np.allclose(ours, ref, atol=1e-10)


def test_approximation_gap_closed_form_equals_the_kl_to_the_posterior_and_per_point_optimisation():
    m, v = lab.best_diagonal(LG, X)
    best = LG.elbo(X, m, np.diag(v))
    gap = lab.approximation_gap(LG)
    assert 0.1 < gap < 0.3
    assert np.allclose(LG.log_prob(X) - best, gap, atol=1e-10)                 # the same for every x
    _, _, optimised = lab.optimise_per_point(LG, X, steps=400)
    assert np.all(optimised <= best + 1e-9) and np.abs(optimised - best).max() < 1e-4
    for dm, dv in (((0.05, 0.0), (1.0, 1.0)), ((0.0, 0.0), (1.2, 1.0)), ((0.0, 0.0), (1.0, 0.8))):
        assert np.all(LG.elbo(X, m + np.array(dm), np.diag(v * np.array(dv))) < best)


def test_amortised_encoders_gaps_are_positive_and_the_linear_one_closes_its_gap():
    study = lab.amortisation_study(n_train=1000, n_test=200, steps=800, seed=0)
    assert study["approximation_gap_optimised"] == pytest.approx(study["approximation_gap"], abs=1e-4)
    linear, narrow = (study["encoders"][k]["amortisation_gap"] for k in ("linear", "tanh MLP, 1 hidden unit"))
    assert -1e-9 <= linear < 0.005              # a linear map can output q*'s mean and variances exactly
    assert narrow > study["approximation_gap"]   # one hidden unit gives the mean one direction only
    for e in study["encoders"].values():
        assert e["history"]["amortisation_gap"][0] > 10 * e["amortisation_gap"]


def test_collapse_is_marked_where_active_units_first_drop():
    pts = [{"beta": b, "active_units": a} for b, a in ((0.5, 8), (1, 8), (2, 6), (4, 3))]
    assert lab.collapse_beta(pts) == 2
    assert lab.collapse_beta(pts[:2]) is None


def test_blur_is_marked_where_sharpness_falls_halfway_to_the_mean_image():
    pts = [{"beta": b, "sharpness": s, "mean_image_sharpness": 0.5} for b, s in ((0.5, 0.7), (1, 0.65), (2, 0.59), (4, 0.5))]
    assert lab.blur_beta(pts) == 2                       # below (0.7 + 0.5) / 2 = 0.6
    assert lab.blur_beta(pts[:2]) is None
    assert lab.sharpness(np.array([0.0, 1.0, 1.0])) == 1.0 and lab.sharpness(np.full(4, 0.5)) == 0.0


def test_a_larger_beta_trades_rate_for_distortion_and_minus_elbo_is_their_sum(tmp_path):
    points = lab.beta_sweep((0.25, 4.0), epochs=3, latent=4, hidden=(32,), n_samples=8)
    low, high = points
    assert high["rate"] < 0.6 * low["rate"] and high["distortion"] > low["distortion"] + 1.0
    for p in points:
        assert p["neg_elbo"] == pytest.approx(p["rate"] + p["distortion"], rel=1e-6)
        assert p["samples"].shape == (8, 1, 8, 8)
    assert high["active_units"] <= low["active_units"]
    assert lab.plot_rate_distortion(points, tmp_path / "rd.png").exists()


def test_lab_command_prints_both_gaps_and_writes_the_figure(tmp_path, capsys):
    assert lab.main(["--out", str(tmp_path), "--skip-sweep", "--encoder-steps", "50"]) == 0
    assert (tmp_path / "amortisation-gap.png").exists()
    out = capsys.readouterr().out
    assert "approximation gap: 0.2098 (closed form)" in out and "amortisation gap, linear" in out
