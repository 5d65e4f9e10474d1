"""scratchgen.objectives.hand_gradients: every hand-derived gradient against autograd (to 1e-10
in float64) and against central finite differences (tolerances that catch a factor of 2)."""
import numpy as np
import pytest
from hypothesis import given

import scratchgen.functional as F
from scratchgen import Tensor
from scratchgen.distributions import Bernoulli, Normal, kl_divergence
from scratchgen.objectives import (discriminator_loss, discriminator_value, elbo,
                                   generator_loss_nonsaturating, generator_loss_saturating)
from scratchgen.objectives import hand_gradients as hg
from strategies import logit_arrays, normal_params

AUTOGRAD_TOL = dict(rtol=1e-10, atol=1e-12)
FD_TOL = dict(rtol=1e-5, atol=1e-7)


def leaf(a):
    return Tensor(np.array(a, dtype=np.float64), requires_grad=True)


def autograd(fn, arrays):
    """Gradients of the scalar fn(*tensors) w.r.t. each array, by the autograd engine."""
    tensors = [leaf(a) for a in arrays]
    fn(*tensors).backward()
    return [t.grad for t in tensors]


def finite_differences(fn, arrays):
    params = {str(i): np.array(a, dtype=np.float64) for i, a in enumerate(arrays)}
    grads = hg.central_differences(lambda p: float(fn(*[p[str(i)] for i in range(len(arrays))])), params)
    return [grads[str(i)] for i in range(len(arrays))]


def assert_close_all(got, expected, tol):
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, **tol)


# ---------------------------------------------------------------------- KL
@given(normal_params((3,)))
def test_kl_to_standard_normal_gradient(params):
    mu, log_var = params
    hand = hg.kl_std_normal_grad(mu, log_var)
    std = Normal(np.zeros(3), log_var=np.zeros(3))
    auto = autograd(lambda m, s: kl_divergence(Normal(m, log_var=s), std).sum(), [mu, log_var])
    assert_close_all(hand, auto, AUTOGRAD_TOL)
    assert_close_all(hand, finite_differences(lambda m, s: hg.kl_std_normal(m, s).sum(), [mu, log_var]), FD_TOL)
    np.testing.assert_allclose(hg.kl_std_normal(mu, log_var),
                               kl_divergence(Normal(mu, log_var=log_var), std).data, rtol=1e-12, atol=1e-15)


@given(normal_params((3,)), normal_params((3,)))
def test_general_diagonal_normal_kl_gradient(pp, qq):
    arrays = [pp[0], pp[1], qq[0], qq[1]]
    hand = hg.kl_normal_normal_grad(*arrays)
    auto = autograd(lambda a, b, c, d: kl_divergence(Normal(a, log_var=b), Normal(c, log_var=d)).sum(), arrays)
    assert_close_all(hand, auto, AUTOGRAD_TOL)
    assert_close_all(hand, finite_differences(lambda *a: hg.kl_normal_normal(*a).sum(), arrays), FD_TOL)


# ---------------------------------------------------------------------- BCE and GAN logits
@given(logit_arrays((2, 3), bound=6.0), logit_arrays((2, 3), bound=1.0))
def test_bce_with_logits_gradient(logits, raw_target):
    target = np.abs(raw_target)  # targets in [0, 1], binary or not
    hand = hg.bce_with_logits_grad(logits, target)
    [auto] = autograd(lambda l: F.binary_cross_entropy_with_logits(l, Tensor(target), reduction="sum"), [logits])
    np.testing.assert_allclose(hand, auto, **AUTOGRAD_TOL)
    [fd] = finite_differences(lambda l: hg.bce_with_logits(l, target).sum(), [logits])
    np.testing.assert_allclose(hand, fd, **FD_TOL)


@given(logit_arrays((5,), bound=8.0), logit_arrays((3,), bound=8.0))
def test_minimax_value_and_generator_loss_gradients(real, fake):
    hand = hg.minimax_value_grad(real, fake)
    assert_close_all(hand, autograd(discriminator_value, [real, fake]), AUTOGRAD_TOL)
    assert_close_all(hand, finite_differences(hg.minimax_value, [real, fake]), FD_TOL)
    assert abs(hg.minimax_value(real, fake) - discriminator_value(real, fake).item()) < 1e-12
    gen = hg.generator_loss_grads(fake)
    [auto_sat] = autograd(generator_loss_saturating, [fake])
    [auto_non] = autograd(generator_loss_nonsaturating, [fake])
    np.testing.assert_allclose(gen["saturating"], auto_sat, **AUTOGRAD_TOL)
    np.testing.assert_allclose(gen["nonsaturating"], auto_non, **AUTOGRAD_TOL)
    [fd_sat] = finite_differences(lambda l: -hg.softplus(l).mean(), [fake])
    np.testing.assert_allclose(gen["saturating"], fd_sat, **FD_TOL)


# ---------------------------------------------------------------------- MLP VAE
def autograd_mlp_vae(params, x, eps, activation):
    """The same VAE built from library pieces: F.linear, Normal, and objectives.elbo."""
    t = {k: leaf(v) for k, v in params.items()}
    act = F.relu if activation == "relu" else F.tanh
    lin = lambda inp, name: F.linear(inp, t[f"{name}.weight"], t[f"{name}.bias"])
    h = act(lin(Tensor(x), "fc1"))
    posterior = Normal(lin(h, "fc21"), log_var=lin(h, "fc22"))
    decoder = lambda z: Bernoulli(logits=lin(act(lin(z, "fc3")), "fc4"))
    res = elbo(x, posterior, decoder, eps=eps[None])
    res.loss.backward()
    return res.loss.item(), {k: v.grad for k, v in t.items()}


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_vae_negative_elbo_backward(activation):
    rng = np.random.default_rng(0)
    n, x_dim, hidden, z_dim = 5, 7, 6, 3
    params = hg.init_mlp_vae(x_dim, hidden, z_dim, seed=1)
    x = (rng.random((n, x_dim)) < 0.4).astype(np.float64)
    eps = rng.standard_normal((n, z_dim))
    loss, hand = hg.mlp_vae_neg_elbo_backward(params, x, eps, activation)
    auto_loss, auto = autograd_mlp_vae(params, x, eps, activation)
    assert set(hand) == set(hg.VAE_PARAMS) == set(auto)
    assert abs(loss - auto_loss) < 1e-12
    for name in hg.VAE_PARAMS:
        np.testing.assert_allclose(hand[name], auto[name], **AUTOGRAD_TOL, err_msg=name)
    fd = hg.central_differences(lambda p: hg.mlp_vae_neg_elbo(p, x, eps, activation), params)
    for name in hg.VAE_PARAMS:
        np.testing.assert_allclose(hand[name], fd[name], **FD_TOL, err_msg=name)


def test_a_wrong_reparameterisation_gradient_is_caught():
    """Sanity check of the check: drop the ½ in dz/dlog σ² = ½ σ ε and the comparison fails."""
    rng = np.random.default_rng(0)
    params = hg.init_mlp_vae(4, 5, 2, seed=2)
    x, eps = (rng.random((3, 4)) < 0.5).astype(np.float64), rng.standard_normal((3, 2))
    _, hand = hg.mlp_vae_neg_elbo_backward(params, x, eps)
    _, auto = autograd_mlp_vae(params, x, eps, "relu")
    # rebuild fc22's gradient with σ ε instead of ½ σ ε
    W1, b1 = params["fc1.weight"], params["fc1.bias"]
    h = np.maximum(x @ W1.T + b1, 0)
    s = h @ params["fc22.weight"].T + params["fc22.bias"]
    kl_part = 0.5 * (np.exp(s) - 1) / 3
    d_z_times_half_sigma_eps = (hand["fc22.bias"] - kl_part.sum(0))
    wrong_bias = kl_part.sum(0) + 2 * d_z_times_half_sigma_eps
    assert not np.allclose(wrong_bias, auto["fc22.bias"], **FD_TOL)
    np.testing.assert_allclose(hand["fc22.bias"], auto["fc22.bias"], **AUTOGRAD_TOL)


# ---------------------------------------------------------------------- MLP GAN
def autograd_gan(params):
    t = {k: leaf(v) for k, v in params.items()}
    lin = lambda inp, name: F.linear(inp, t[f"{name}.weight"], t[f"{name}.bias"])
    generator = lambda z: F.tanh(lin(F.relu(lin(Tensor(z), "G.fc1")), "G.fc2"))
    discriminator = lambda x: lin(F.leaky_relu(lin(x, "D.fc1"), hg.LEAKY_SLOPE), "D.fc2")
    return t, generator, discriminator


def gan_setup():
    rng = np.random.default_rng(3)
    z_dim, hidden, x_dim, n = 2, 5, 4, 6
    params = hg.init_mlp_gan(z_dim, hidden, x_dim, seed=4)
    return params, rng.uniform(-1, 1, (n, x_dim)), rng.standard_normal((n + 1, z_dim))


def test_gan_discriminator_step_backward():
    params, x_real, z = gan_setup()
    loss, hand = hg.gan_discriminator_step_backward(params, x_real, z)
    t, G, D = autograd_gan(params)
    x_fake = G(z).detach()                           # the D step does not reach the generator
    auto_loss = discriminator_loss(D(Tensor(x_real)), D(x_fake))
    auto_loss.backward()
    assert abs(loss - auto_loss.item()) < 1e-12
    assert set(hand) == set(hg.GAN_D_PARAMS)
    for name in hg.GAN_D_PARAMS:
        np.testing.assert_allclose(hand[name], t[name].grad, **AUTOGRAD_TOL, err_msg=name)
    for name in hg.GAN_G_PARAMS:
        assert t[name].grad is None
    d_params = {k: params[k] for k in hg.GAN_D_PARAMS}
    fd = hg.central_differences(
        lambda p: hg.gan_discriminator_step_backward({**params, **p}, x_real, z)[0], d_params)
    for name in hg.GAN_D_PARAMS:
        np.testing.assert_allclose(hand[name], fd[name], **FD_TOL, err_msg=name)


@pytest.mark.parametrize("kind", ["saturating", "nonsaturating"])
def test_gan_generator_step_backward(kind):
    params, _, z = gan_setup()
    loss, hand = hg.gan_generator_step_backward(params, z, kind)
    t, G, D = autograd_gan(params)
    loss_fn = generator_loss_saturating if kind == "saturating" else generator_loss_nonsaturating
    auto_loss = loss_fn(D(G(z)))
    auto_loss.backward()
    assert abs(loss - auto_loss.item()) < 1e-12
    assert set(hand) == set(hg.GAN_G_PARAMS)
    for name in hg.GAN_G_PARAMS:
        np.testing.assert_allclose(hand[name], t[name].grad, **AUTOGRAD_TOL, err_msg=name)
    g_params = {k: params[k] for k in hg.GAN_G_PARAMS}
    fd = hg.central_differences(lambda p: hg.gan_generator_step_backward({**params, **p}, z, kind)[0], g_params)
    for name in hg.GAN_G_PARAMS:
        np.testing.assert_allclose(hand[name], fd[name], **FD_TOL, err_msg=name)
    with pytest.raises(ValueError, match="saturating"):
        hg.gan_generator_step_backward(params, z, "wasserstein")
