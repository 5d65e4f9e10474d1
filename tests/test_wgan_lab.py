"""The 1-D disjoint-support lab: JS flat at log 2 while the WGAN-GP critic's estimate tracks the distance."""
import math

import pytest

from scratchgen.labs import wgan_lab


def test_js_bound_is_flat_while_the_critic_estimate_falls_with_the_distance():
    rows = {r["theta"]: r for r in wgan_lab.sweep(thetas=(3.0, 1.0, 0.0), d_steps=200, critic_steps=300)}
    far, near, on = rows[3.0], rows[1.0], rows[0.0]
    for r in (far, near):                                    # disjoint supports: JS at its ceiling
        assert r["js"] == pytest.approx(math.log(2), abs=1e-5)
        assert math.log(2) - 0.01 < r["js_bound"] <= r["js"] + 1e-9
    assert abs(far["js_bound"] - near["js_bound"]) < 0.01    # ... so it cannot tell 3 from 1
    # the critic can: its estimate is near the penalised optimum θ + θ²/(2λ) (W₁ = θ plus the overshoot)
    for r in (far, near):
        assert r["w1_estimate"] == pytest.approx(wgan_lab.penalised_optimum(r["theta"]), rel=0.05)
    assert far["w1_estimate"] > 2.5 * near["w1_estimate"]
    assert abs(on["w1_estimate"]) < 4 * on["w1_se"] + 0.01 and on["js"] < 1e-12


def test_penalised_optimum_of_a_linear_critic():
    assert wgan_lab.penalised_optimum(4.0, penalty=10.0) == pytest.approx(4.8)
    assert wgan_lab.penalised_optimum(-2.0, penalty=1.0) == pytest.approx(4.0)


def test_lab_command_writes_its_figure(tmp_path, capsys):
    assert wgan_lab.main(["--out", str(tmp_path), "--critic-steps", "5", "--d-steps", "5", "--thetas", "2,0"]) == 0
    assert (tmp_path / "wgan-disjoint-supports.png").exists()
    assert "W1 critic" in capsys.readouterr().out
