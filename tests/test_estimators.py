"""The gradient-estimator lab: exact gradients, per-sample rows, and the bias each estimator has or has not."""
import numpy as np
import pytest

from scratchgen.labs import estimators as lab
from scratchgen.labs.estimators import CategoricalModel, GaussianModel

GAUSS, CAT = GaussianModel(), CategoricalModel()


def test_exact_gradients_match_finite_differences_of_the_exact_expectations():
    def gauss_value(mu):
        return (mu - GAUSS.c) ** 2 + GAUSS.sigma ** 2
    h = 1e-6
    assert GAUSS.exact_gradient()[0] == pytest.approx((gauss_value(GAUSS.mu + h) - gauss_value(GAUSS.mu - h)) / (2 * h))

    def cat_value(eta):
        return CategoricalModel(eta, CAT.t).probs @ CAT.f_values()
    fd = [(cat_value(CAT.eta + h * e) - cat_value(CAT.eta - h * e)) / (2 * h) for e in np.eye(3)]
    assert np.allclose(CAT.exact_gradient(), fd, atol=1e-9)


def test_per_sample_rows_from_autograd_match_the_textbook_formulas():
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((5, 4))
    z = GAUSS.mu + GAUSS.sigma * eps
    assert np.allclose(GAUSS.score_function(eps)[..., 0], (z - GAUSS.c) ** 2 * (z - GAUSS.mu) / GAUSS.sigma ** 2)
    assert np.allclose(GAUSS.reparameterised(eps)[..., 0], 2 * (z - GAUSS.c))
    g = CAT.noise((6, 3), rng).reshape(-1, 3)
    onehot, pi = CAT._draw(g), CAT.probs
    fz = ((onehot - CAT.t) ** 2).sum(1)
    assert np.allclose(CAT.score_function(g.reshape(6, 3, 3)), fz[:, None] * (onehot - pi), atol=1e-12)
    jac = np.diag(pi) - np.outer(pi, pi)                       # ∂softmax/∂η, symmetric
    assert np.allclose(CAT.straight_through(g), 2 * (onehot - CAT.t) @ jac, atol=1e-12)
    y = np.exp((CAT.eta + g) / 0.5)
    y /= y.sum(1, keepdims=True)
    rows = np.einsum("nk,nkj->nj", 2 * (y - CAT.t), (np.einsum("nk,kj->nkj", y, np.eye(3)) - np.einsum("nk,nj->nkj", y, y)) / 0.5)
    assert np.allclose(CAT.gumbel_softmax(g, 0.5), rows, atol=1e-12)


def test_leave_one_out_baseline_is_unchanged_in_expectation_and_needs_two_samples():
    fz = np.array([1.0, 2.0, 6.0, 3.0])
    assert np.allclose(lab._with_baseline(fz, (2, 2), True), [-1, 1, 3, -3])
    with pytest.raises(ValueError, match="M >= 2"):
        lab._with_baseline(fz, (4, 1), True)


UNBIASED = [(GAUSS, n) for n in GAUSS.estimators()] + [(CAT, n) for n, (_, ok) in CAT.estimators().items() if ok]


@pytest.mark.parametrize("model,name", UNBIASED, ids=[f"{type(m).__name__}-{n}" for m, n in UNBIASED])
def test_each_unbiased_estimator_agrees_with_the_exact_gradient_within_standard_errors(model, name):
    s = lab.summary(model, name, n=40_000, seed=1)
    assert s["unbiased"]
    assert np.all(np.abs(s["bias"]) < 4 * s["se"]), (s["mean"], s["se"], s["exact"])


def test_the_biased_ones_are_biased_and_gumbel_softmax_less_so_at_low_temperature():
    st = lab.summary(CAT, "straight-through", n=40_000, seed=1)
    assert np.abs(st["bias"]).max() > 20 * st["se"].max()
    norms = []
    for tau in (0.1, 1.0, 3.0):
        s = lab.summary(CAT, f"Gumbel-softmax, tau = {tau:g}", n=40_000, seed=1)
        assert np.abs(s["bias"]).max() > 5 * s["se"].max()          # every temperature: measurably biased
        norms.append((np.linalg.norm(s["bias"]), s["variance"]))
    (b01, v01), (b1, v1), (b3, v3) = norms
    assert b01 < b1 < b3 and v01 > v1 > v3                            # lower tau: less bias, more variance


def test_reparameterisation_and_baseline_reduce_the_variance():
    v = {n: lab.summary(GAUSS, n, n=40_000, seed=2)["variance"] for n in GAUSS.estimators()}
    assert v["reparameterisation"] < 0.2 * v["score function"]
    assert v["reparameterisation"] == pytest.approx(4 * GAUSS.sigma ** 2, rel=0.05)   # Var 2(z - c) = 4σ²
    assert v["score function + baseline"] < 0.8 * v["score function"]
    c = {n: lab.summary(CAT, n, n=40_000, seed=2)["variance"] for n in ("score function", "score function + baseline")}
    assert c["score function + baseline"] < 0.5 * c["score function"]


def test_error_of_an_unbiased_estimator_falls_like_one_over_m():
    curve = lab.error_versus_samples(GAUSS, "reparameterisation", ms=(2, 32), replicates=2000, seed=0)
    assert curve["variance"][0] / curve["variance"][1] == pytest.approx(16, rel=0.15)


def test_lab_command_prints_the_table_and_writes_its_figure(tmp_path, capsys):
    assert lab.main(["--out", str(tmp_path), "--n", "800", "--replicates", "4"]) == 0
    assert (tmp_path / "gradient-estimators.png").exists()
    out = capsys.readouterr().out
    assert "reparameterisation" in out and "biased: |bias|" in out
