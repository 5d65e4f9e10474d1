"""The Dirac-GAN lab: the field from autograd, the Jacobian's eigenvalues, and what each way of stepping does."""
import math

import numpy as np
import pytest

from scratchgen.labs import dirac_gan
from scratchgen.labs.dirac_gan import DiracGAN


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


@pytest.mark.parametrize("theta,psi", [(0.3, -1.2), (-2.0, 0.7), (1.5, 1.5)])
def test_autograd_field_matches_the_hand_derived_one(theta, psi):
    """V = log σ(0) + log σ(−ψθ): minimax G descends V, non-saturating G descends softplus(−ψθ)."""
    s = sigmoid(psi * theta)
    assert np.allclose(DiracGAN("minimax").field(theta, psi), [psi * s, -theta * s], atol=1e-14)
    assert np.allclose(DiracGAN("non-saturating").field(theta, psi), [psi * (1 - s), -theta * s], atol=1e-14)
    assert np.allclose(DiracGAN(r1=0.4).field(theta, psi), [psi * s, -theta * s - 0.4 * psi], atol=1e-14)


@pytest.mark.parametrize("loss", ["minimax", "non-saturating"])
def test_jacobian_at_the_equilibrium_has_the_closed_form_eigenvalues(loss):
    plain = np.sort_complex(np.linalg.eigvals(DiracGAN(loss).jacobian()))
    assert np.allclose(plain, [-0.5j, 0.5j], atol=1e-8)                       # purely imaginary: ±i/2
    gamma = 0.3
    r1 = np.sort_complex(np.linalg.eigvals(DiracGAN(loss, r1=gamma).jacobian()))
    expected = (-gamma + np.array([-1, 1]) * np.sqrt(complex(gamma ** 2 - 1))) / 2
    assert np.allclose(r1, np.sort_complex(expected), atol=1e-8)
    sigma = 0.7
    noisy = DiracGAN(loss, noise=sigma)
    assert np.allclose(noisy.jacobian(), [[0, 0.5], [-0.5, -sigma ** 2 / 2]], atol=1e-8)
    assert np.allclose(noisy.jacobian(), noisy.closed_form_jacobian(), atol=1e-8)
    assert np.linalg.eigvals(noisy.jacobian()).real.max() == pytest.approx(-sigma ** 2 / 4, abs=1e-8)


def test_step_maps_expand_preserve_and_contract():
    """|eig M| = √(1 + h²/4) for simultaneous steps, exactly 1 for alternating ones, < 1 with R1 or noise."""
    h = 0.1
    plain = DiracGAN()
    assert np.abs(np.linalg.eigvals(plain.step_jacobian(h, "simultaneous"))) == pytest.approx(
        [math.sqrt(1 + h * h / 4)] * 2, abs=1e-9)
    alt = plain.step_jacobian(h, "alternating")
    assert np.abs(np.linalg.eigvals(alt)) == pytest.approx([1.0, 1.0], abs=1e-9)
    assert np.linalg.det(alt) == pytest.approx(1.0, abs=1e-9)
    for game in (DiracGAN(r1=0.3), DiracGAN(noise=0.7)):
        for method in dirac_gan.METHODS:
            assert np.abs(np.linalg.eigvals(game.step_jacobian(h, method))).max() < 0.995


def test_simultaneous_steps_spiral_out_at_the_predicted_rate_near_the_equilibrium():
    h, n = 0.2, 200
    d = dirac_gan.distance(DiracGAN().trajectory((1e-4, 0.0), h, n, "simultaneous"))
    assert d[-1] / d[0] == pytest.approx((1 + h * h / 4) ** (n / 2), rel=1e-6)
    assert np.all(np.diff(d) > 0)                                             # every step moves outwards


def test_from_far_away_simultaneous_grows_alternating_circles_r1_and_noise_converge():
    h, n, x0 = 0.1, 600, (1.0, 1.0)
    runs = {title: dirac_gan.distance(game.trajectory(x0, h, n, method))
            for title, game, method in dirac_gan.settings()}
    simultaneous, alternating, r1, noise = runs.values()
    assert simultaneous[-1] > 1.25 * simultaneous[0]
    assert np.all(np.diff(simultaneous) > 0)
    assert 0.9 < alternating.min() / alternating[0] and alternating.max() / alternating[0] < 1.1
    assert r1[-1] < 1e-3 * r1[0] and noise[-1] < 1e-2 * noise[0]


def test_bad_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="wgan"):
        DiracGAN("wgan")
    with pytest.raises(ValueError, match="r1=-1"):
        DiracGAN(r1=-1)
    with pytest.raises(ValueError, match="'leapfrog'"):
        DiracGAN().step((0.0, 0.0), 0.1, "leapfrog")


def test_lab_command_prints_the_eigenvalues_and_writes_its_figures(tmp_path, capsys):
    assert dirac_gan.main(["--out", str(tmp_path), "--steps", "20"]) == 0
    assert {"dirac-gan-trajectories.png", "dirac-gan-distance.png"} <= {p.name for p in tmp_path.iterdir()}
    out = capsys.readouterr().out
    assert "+0.0000+0.5000i" in out and "-0.1500+0.4770i" in out
