"""The Wasserstein GAN with gradient penalty (Arjovsky et al. 2017; Gulrajani et al. 2017, "WGAN-GP").

The Kantorovich–Rubinstein duality writes the earth mover's distance as a best score:

    W₁(p, q) = sup_{‖f‖_L ≤ 1}  E_{x~p}[f(x)] − E_{x~q}[f(x)],

the supremum over 1-Lipschitz functions f, the *critic* (a discriminator without a sigmoid). Unlike
the JS bound of chapter 5, which stops at log 2 once p and q have disjoint supports, W₁ keeps
measuring how far apart they are. Gulrajani et al. keep the critic near 1-Lipschitz softly, with a
penalty on the norm of its input gradient at random interpolates x̂ = εx + (1 − ε)x̃ (ε ~ U(0, 1))
between a real x and a fake x̃, where the optimal critic has gradient norm 1:

    critic loss     L_f = E_q[f(x̃)] − E_p[f(x)] + λ E_x̂[(‖∇_x f(x̂)‖₂ − 1)²]     (λ = 10)
    generator loss  L_g = −E_q[f(g_θ(z))]

The penalty is a function of a gradient, so training the critic needs the gradient of a gradient.
Our autograd is first-order only, so for an MLP critic we write its input gradient out as an ordinary
forward computation (:func:`mlp_input_gradient`) — for a = W h + b, h' = φ(a) layer by layer,

    δ ← 1;  backwards through the layers:  Linear: δ ← δ W;   activation φ: δ ← δ ⊙ φ'(a),

so ∇_x f(x) = δ at the input — and reverse mode then differentiates the penalty through W and φ'(a)
with the first-order rules it already has. For LeakyReLU and ReLU, φ'(a) is piecewise constant (its
own derivative is 0 wherever it exists); for tanh, φ'(a) = 1 − tanh²(a) carries a gradient too.
``tests/test_wgan.py`` checks the input gradient against autograd's and the penalty's gradient with
respect to every critic weight against central differences.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor


def wasserstein_estimate(real_scores, fake_scores):
    """E_p[f] − E_q[f]: the critic's estimate of W₁(p, q) (a lower bound if f is 1-Lipschitz)."""
    return real_scores.reshape(-1).mean() - fake_scores.reshape(-1).mean()


def critic_loss(real_scores, fake_scores):
    """E_q[f] − E_p[f] (without the penalty): what the critic minimises."""
    return -wasserstein_estimate(real_scores, fake_scores)


def generator_loss(fake_scores):
    """−E_q[f(g_θ(z))]: the generator moves its samples up the critic."""
    return -fake_scores.reshape(-1).mean()


def interpolates(real, fake, rng):
    """x̂ = εx + (1 − ε)x̃ with one ε ~ U(0, 1) per example (arrays in, array out)."""
    real, fake = np.asarray(real), np.asarray(fake)
    eps = rng.random((len(real),) + (1,) * (real.ndim - 1)).astype(real.dtype)
    return eps * real + (1 - eps) * fake


def _derivative(layer, a):
    """φ'(a) for the activation ``layer`` at pre-activations a (a Tensor)."""
    if isinstance(layer, nn.LeakyReLU):
        return Tensor(np.where(a.data > 0, 1.0, layer.negative_slope).astype(a.dtype))
    if isinstance(layer, nn.ReLU):
        return Tensor((a.data > 0).astype(a.dtype))
    if isinstance(layer, nn.Tanh):
        t = a.tanh()
        return 1.0 - t * t
    raise TypeError(f"mlp_input_gradient handles Linear, Flatten, LeakyReLU, ReLU and Tanh layers; got "
                    f"{type(layer).__name__}. A critic with other layers needs its input gradient derived "
                    f"the same way (see the module docstring)")


def mlp_input_gradient(net, x):
    """(f(x) of shape (N,), ∇_x f(x) of x's shape) for an MLP critic ``net`` with one output,
    the gradient written out as a forward computation so that autograd can differentiate it."""
    layers = list(net) if isinstance(net, nn.Sequential) else [net]
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    h, chain = x, []
    for layer in layers:
        if isinstance(layer, nn.Flatten):
            h = layer(h)
        elif isinstance(layer, nn.Linear):
            chain.append(("linear", layer.weight))
            h = F.linear(h, layer.weight, layer.bias)
        else:
            chain.append(("activation", _derivative(layer, h)))
            h = layer(h)
    if h.ndim != 2 or h.shape[1] != 1:
        raise ValueError(f"the critic must output one score per example, shape (N, 1); got {h.shape}")
    delta = Tensor(np.ones((h.shape[0], 1), dtype=h.dtype))
    for kind, value in reversed(chain):
        delta = delta @ value if kind == "linear" else delta * value     # δ W  or  δ ⊙ φ'(a)
    return h.reshape(-1), delta.reshape(*x.shape)


def gradient_penalty(grad, weight=10.0):
    """λ · mean over examples of (‖∇_x f(x̂)‖₂ − 1)² (Gulrajani et al. 2017, eq. 3)."""
    flat = grad.reshape(grad.shape[0], -1)
    norm = ((flat * flat).sum(axis=1) + 1e-12).sqrt()          # NOTE: +1e-12 keeps d√s/ds finite at s = 0
    return ((norm - 1.0) * (norm - 1.0)).mean() * weight
