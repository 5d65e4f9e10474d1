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


# ---------------------------------------------------------------------------- --gan-loss wgan-gp
def make_gan(**options):
    from scratchgen.data import DATASETS
    from scratchgen.models.gan import GAN
    opts = {o.name: o.default for o in GAN.options}
    opts.update(arch="toy", latent=4, g_hidden=[16], d_hidden=[16], eval_samples=300, gan_loss="wgan-gp", **options)
    sg.manual_seed(0)
    return GAN(dict(lr=1e-3, scale="01", data="ring8", data_dir=None, options=opts), DATASETS["ring8"])


@pytest.mark.parametrize("pack", [1, 2])
def test_the_gan_critic_step_minimises_the_lectures_critic_loss(pack):
    """GANNet.discriminator_loss with --gan-loss wgan-gp is E f(fake) − E f(real) + λ·penalty at
    interpolates of the (packed) real and fake batches, recomputed here from the same random draws."""
    from scratchgen.models.gan import pack as pack_batch
    from scratchgen.random import get_rng
    gan = make_gan(pack=pack, gp_weight=3.0)
    x = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
    fake = gan.net(8)
    sg.manual_seed(5)
    loss, real_scores, fake_scores = gan.net.discriminator_loss(x, fake)
    sg.manual_seed(5)
    x_hat = wgan.interpolates(pack_batch(x, pack), pack_batch(fake.data, pack), get_rng())
    _, grad = wgan.mlp_input_gradient(gan.D.net, x_hat)
    expected = (fake_scores.data.mean() - real_scores.data.mean()) + 3.0 * wgan.gradient_penalty(grad, 1.0).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_wgan_gp_training_step_logs_the_critic_terms_and_moves_both_players():
    gan = make_gan()
    from scratchgen.data import load
    x = load("ring8", "train").data[:64]
    before_g, before_d = [p.data.copy() for p in gan.G.parameters()], [p.data.copy() for p in gan.D.parameters()]
    terms = gan.train_step((x, None))
    assert set(terms) == {"loss", "loss_g", "wasserstein", "gradient_penalty"}
    assert terms["gradient_penalty"] >= 0 and terms["loss"] == pytest.approx(terms["gradient_penalty"] - terms["wasserstein"])
    moved = [not np.array_equal(b, p.data) for b, p in zip(before_d, gan.D.parameters())]
    assert all(moved[:-1]) and not moved[-1]     # the critic's last bias cancels in E f(fake) − E f(real)
    assert all(not np.array_equal(b, p.data) for b, p in zip(before_g, gan.G.parameters()))
    out = gan.evaluate(load("ring8", "val"))
    assert {"wasserstein", "wasserstein_se", "modes_covered"} <= set(out) and "js_lower_bound" not in out


def test_wgan_gp_with_a_convolutional_critic_is_refused_with_the_reason():
    from scratchgen.data import DATASETS
    from scratchgen.models.gan import GAN
    opts = {o.name: o.default for o in GAN.options}
    opts.update(arch="dcgan", latent=4, g_channels=4, d_channels=4, gan_loss="wgan-gp")
    with pytest.raises(ValueError, match="--arch toy or mlp"):
        GAN(dict(lr=1e-3, scale="01", data="digits8", data_dir=None, options=opts), DATASETS["digits8"])
