"""The f-divergence lab: D_f by quadrature, the variational bound, tight at T* and rising to D_f in training."""
import numpy as np
import pytest

from scratchgen import divergences
from scratchgen.labs import f_divergences as lab
from scratchgen.labs import js_lab

P, Q = js_lab.default_data(), js_lab.default_model()
X = js_lab.grid()


def test_quadrature_values_match_the_discrete_divergences_of_chapter_3():
    pd, qd = P.pdf(X) / P.pdf(X).sum(), Q.pdf(X) / Q.pdf(X).sum()
    div = lab.DIVERGENCES
    assert div["KL"].exact(P, Q, X) == pytest.approx(float(divergences.kl(pd, qd)), abs=1e-9)
    assert div["reverse KL"].exact(P, Q, X) == pytest.approx(float(divergences.kl(qd, pd)), abs=1e-9)
    assert div["JS"].exact(P, Q, X) == pytest.approx(js_lab.exact_js(P, Q, X), abs=1e-9)
    for d in div.values():
        assert d.exact(P, P, X) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(lab.DIVERGENCES))
def test_bound_is_tight_at_the_optimal_t_and_lower_elsewhere(name):
    """At T* = f'(p/q) the bound equals D_f; the network output that gives T* is g⁻¹(T*)."""
    div, x = lab.DIVERGENCES[name], js_lab.grid(-12, 12, 4801)
    px, qx = P.pdf(x), Q.pdf(x)
    t_star = div.optimal_t(px, qx)
    inverse = {"KL": lambda t: t, "reverse KL": lambda t: -np.log(-t),
               "JS": lambda t: np.log(np.exp(2 * t) / (2 - np.exp(2 * t)))}[name]   # v with g(v) = T*
    v_star = inverse(t_star)
    exact = div.exact(P, Q, x)
    assert div.bound_by_quadrature(v_star, P, Q, x) == pytest.approx(exact, abs=1e-9)
    for wrong in (v_star + 0.3, 0.7 * v_star, v_star + 0.2 * np.sin(x)):
        assert div.bound_by_quadrature(wrong, P, Q, x) < exact - 1e-4


def test_the_js_member_is_chapter_5s_bound_for_any_discriminator():
    """With D = σ(v): E_p[g(v)] − E_q[f*(g(v))] = log 2 + ½(E_p log D + E_q log(1 − D))."""
    import scratchgen as sg
    sg.manual_seed(3)
    d = js_lab.Discriminator()
    with sg.no_grad():
        v = d(X).data
    ours = lab.DIVERGENCES["JS"].bound_by_quadrature(v, P, Q, X)
    assert ours == pytest.approx(js_lab.bound_by_quadrature(d, P, Q, X), abs=1e-9)


@pytest.mark.parametrize("name", list(lab.DIVERGENCES))
def test_training_raises_each_bound_to_within_a_few_percent_of_its_divergence(name):
    _, h = lab.train(name, steps=300, seed=0, eval_every=300, n_eval=5000)
    exact, first, last = h["exact"], h["bound"][0], h["bound"][-1]
    assert last <= exact + 1e-9                              # a lower bound, whatever T is
    assert exact - last < 0.05 * exact                       # and nearly tight after 300 steps
    assert last - first > 0.8 * (exact - first)
    assert abs(h["bound_samples"][-1] - last) < 4 * h["se"][-1]


def test_lab_command_writes_its_figure(tmp_path, capsys):
    assert lab.main(["--out", str(tmp_path), "--steps", "10"]) == 0
    assert (tmp_path / "f-divergence-bounds.png").exists()
    assert "reverse KL" in capsys.readouterr().out
