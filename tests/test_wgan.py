"""WGAN-GP: the critic's input gradient written as a forward pass, and the penalty's gradient by finite differences."""
import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn
from scratchgen.autograd import Tensor
from scratchgen.objectives import wgan


def critic(act, sizes=(3, 5, 4, 1), seed=0):
    sg.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=np.float64))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


ACTS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU, "tanh": nn.Tanh}


@pytest.mark.parametrize("act", list(ACTS))
def test_the_written_out_input_gradient_equals_autograds(act):
    net = critic(ACTS[act])
    x = Tensor(np.random.default_rng(1).standard_normal((7, 3)), requires_grad=True)
    scores, grad = wgan.mlp_input_gradient(net, x)
    assert np.allclose(scores.data, net(x).data.reshape(-1), atol=1e-14)
    net(x).sum().backward()
    assert np.allclose(grad.data, x.grad, atol=1e-12)


def test_input_gradient_through_a_flatten_layer_keeps_the_image_shape():
    sg.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3, dtype=np.float64), nn.LeakyReLU(0.2), nn.Linear(3, 1, dtype=np.float64))
    x = Tensor(np.random.default_rng(2).standard_normal((4, 2, 2, 2)), requires_grad=True)
    _, grad = wgan.mlp_input_gradient(net, x)
    net(x).sum().backward()
    assert grad.shape == (4, 2, 2, 2) and np.allclose(grad.data, x.grad, atol=1e-12)


@pytest.mark.parametrize("act", list(ACTS))
def test_penalty_gradient_matches_central_differences_for_every_weight(act):
    """d/dθ of λ·mean(‖∇_x f(x̂)‖ − 1)², by reverse mode through the written-out input gradient,
    against central differences of the penalty itself, every element of every weight (float64)."""
    net = critic(ACTS[act], seed=3)
    rng = np.random.default_rng(4)
    x_hat = wgan.interpolates(rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 2.0, rng)

    def penalty():
        return wgan.gradient_penalty(wgan.mlp_input_gradient(net, x_hat)[1], weight=10.0)

    net.zero_grad()
    penalty().backward()
    h = 1e-6
    for p in net.parameters():
        # a bias the penalty does not depend on (the last one; all of them for piecewise-linear φ) gets none
        analytic = np.zeros_like(p.data) if p.grad is None else p.grad.copy()
        numeric = np.zeros_like(p.data)
        for i in np.ndindex(p.data.shape):
            old = p.data[i]
            p.data[i] = old + h
            up = penalty().item()
            p.data[i] = old - h
            down = penalty().item()
            p.data[i] = old
            numeric[i] = (up - down) / (2 * h)
        assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-7), (act, p.shape)
    assert any(p.grad is not None and np.abs(p.grad).max() > 1e-3 for p in net.parameters())      # the check is not vacuous


def test_losses_and_the_penalty_on_known_values():
    real, fake = Tensor(np.array([[2.0], [4.0]])), Tensor(np.array([[1.0], [0.0]]))
    assert wgan.wasserstein_estimate(real, fake).item() == pytest.approx(2.5)
    assert wgan.critic_loss(real, fake).item() == pytest.approx(-2.5)
    assert wgan.generator_loss(fake).item() == pytest.approx(-0.5)
    g = Tensor(np.array([[3.0, 4.0], [0.6, 0.8]]))                       # norms 5 and 1
    assert wgan.gradient_penalty(g, weight=10.0).item() == pytest.approx(10 * (16 + 0) / 2)


def test_a_critic_with_an_unknown_layer_is_refused_by_name():
    net = nn.Sequential(nn.Linear(2, 2, dtype=np.float64), nn.Sigmoid(), nn.Linear(2, 1, dtype=np.float64))
    with pytest.raises(TypeError, match="Sigmoid"):
        wgan.mlp_input_gradient(net, np.zeros((1, 2)))
