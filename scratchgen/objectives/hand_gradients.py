"""Gradients derived by hand, in plain NumPy (no autograd), to compare with your own derivation.

Each function is written as the maths it implements, one named step per line; the tests in
``tests/test_hand_gradients.py`` check every one against the autograd engine and against
central finite differences (:func:`central_differences`). Conventions: σ is the logistic
sigmoid, softplus(a) = log(1 + e^a), and N the batch size; weights are PyTorch-shaped
(out_features, in_features), so a linear layer is a = x Wᵀ + b and its backward is
dW = daᵀ x, db = Σ_n da, dx = da W.

Contents
  * KL(N(μ, σ²) || N(0, 1)) and the general diagonal Normal–Normal KL, with their gradients;
  * binary cross-entropy with logits;
  * the GAN value and generator losses with respect to the discriminator's logits;
  * the full backward pass of a one-hidden-layer MLP VAE's negative ELBO;
  * one discriminator step and one generator step of an MLP GAN.
"""
import numpy as np


def sigmoid(a):
    e = np.exp(-np.abs(a))  # NOTE: never exponentiate a large positive number
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def softplus(a):
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


# ---------------------------------------------------------------------- KL divergences
def kl_std_normal(mu, log_var):
    """KL(N(μ, σ²) || N(0, 1)) = ½ (μ² + σ² - 1 - log σ²), elementwise, with σ² = e^{log σ²}."""
    return 0.5 * (mu ** 2 + np.exp(log_var) - 1.0 - log_var)


def kl_std_normal_grad(mu, log_var):
    """(dKL/dμ, dKL/d log σ²) = (μ, ½ (σ² - 1)), elementwise."""
    d_mu = mu
    d_log_var = 0.5 * (np.exp(log_var) - 1.0)
    return d_mu, d_log_var


def kl_normal_normal(mu_p, log_var_p, mu_q, log_var_q):
    """KL(N(μp, σp²) || N(μq, σq²)) = ½ [log σq² - log σp² + (σp² + (μp - μq)²)/σq² - 1]."""
    var_p, var_q = np.exp(log_var_p), np.exp(log_var_q)
    return 0.5 * (log_var_q - log_var_p + (var_p + (mu_p - mu_q) ** 2) / var_q - 1.0)


def kl_normal_normal_grad(mu_p, log_var_p, mu_q, log_var_q):
    """Gradients of the general KL with respect to (μp, log σp², μq, log σq²), elementwise.

        dKL/dμp      =  (μp - μq) / σq²
        dKL/dμq      = -(μp - μq) / σq²
        dKL/dlog σp² =  ½ (σp²/σq² - 1)
        dKL/dlog σq² =  ½ (1 - (σp² + (μp - μq)²)/σq²)
    With μq = 0, σq² = 1 the first and third reduce to :func:`kl_std_normal_grad`.
    """
    var_p, var_q = np.exp(log_var_p), np.exp(log_var_q)
    diff = mu_p - mu_q
    d_mu_p = diff / var_q
    d_mu_q = -diff / var_q
    d_log_var_p = 0.5 * (var_p / var_q - 1.0)
    d_log_var_q = 0.5 * (1.0 - (var_p + diff ** 2) / var_q)
    return d_mu_p, d_log_var_p, d_mu_q, d_log_var_q


# ---------------------------------------------------------------------- BCE with logits
def bce_with_logits(logits, target):
    """-[t log σ(l) + (1 - t) log(1 - σ(l))] = softplus(l) - t l, elementwise."""
    return softplus(logits) - target * logits


def bce_with_logits_grad(logits, target):
    """d/dl [softplus(l) - t l] = σ(l) - t  (softplus' = σ)."""
    return sigmoid(logits) - target


# ---------------------------------------------------------------------- GAN objectives w.r.t. logits
def minimax_value(real_logits, fake_logits):
    """V = mean_n log σ(l_real) + mean_m log(1 - σ(l_fake)) = -mean softplus(-l_r) - mean softplus(l_f)."""
    return -softplus(-real_logits).mean() - softplus(fake_logits).mean()


def minimax_value_grad(real_logits, fake_logits):
    """(dV/dl_real, dV/dl_fake) = ((1 - σ(l_r)) / N_r,  -σ(l_f) / N_f).

    d/dl log σ(l) = 1 - σ(l) and d/dl log(1 - σ(l)) = -σ(l). The discriminator ascends V: it
    pushes real logits up and fake logits down.
    """
    d_real = (1.0 - sigmoid(real_logits)) / real_logits.size
    d_fake = -sigmoid(fake_logits) / fake_logits.size
    return d_real, d_fake


def generator_loss_grads(fake_logits):
    """Gradients w.r.t. the fake logits of both generator losses (each a mean over N fakes).

    saturating      L = mean log(1 - σ(l))  ->  dL/dl = -σ(l) / N      = -D(G(z)) / N
    non-saturating  L = -mean log σ(l)      ->  dL/dl = -(1 - σ(l)) / N = -(1 - D(G(z))) / N
    As D(G(z)) -> 0 the first vanishes and the second tends to -1/N.
    """
    n = fake_logits.size
    d = sigmoid(fake_logits)
    return {"saturating": -d / n, "nonsaturating": -(1.0 - d) / n}


# ---------------------------------------------------------------------- activations and their derivatives
def _act(name, a):
    if name == "relu":
        return np.maximum(a, 0)
    if name == "tanh":
        return np.tanh(a)
    raise ValueError(f"activation must be 'relu' or 'tanh', got {name!r}")


def _act_grad(name, a, out):
    """d act(a) / da, from the input a or the output out (whichever is simpler)."""
    return (a > 0).astype(a.dtype) if name == "relu" else 1.0 - out ** 2


# ---------------------------------------------------------------------- MLP VAE
VAE_PARAMS = ("fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
              "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias")


def init_mlp_vae(x_dim, hidden, z_dim, seed=0):
    """Random float64 parameters for :func:`mlp_vae_neg_elbo_backward`, named as the
    pytorch/examples VAE names them: encoder ψ = fc1 (x -> h), fc21 (h -> μ), fc22 (h -> log σ²);
    decoder θ = fc3 (z -> h2), fc4 (h2 -> logits)."""
    rng = np.random.default_rng(seed)
    shapes = {"fc1": (hidden, x_dim), "fc21": (z_dim, hidden), "fc22": (z_dim, hidden),
              "fc3": (hidden, z_dim), "fc4": (x_dim, hidden)}
    params = {}
    for name, (out_f, in_f) in shapes.items():
        params[f"{name}.weight"] = rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)
        params[f"{name}.bias"] = 0.1 * rng.standard_normal(out_f)
    return params


def mlp_vae_neg_elbo(params, x, eps, activation="relu"):
    """The forward pass alone (the loss value), for finite differences. See the backward below."""
    return mlp_vae_neg_elbo_backward(params, x, eps, activation)[0]


def mlp_vae_neg_elbo_backward(params, x, eps, activation="relu"):
    """Negative ELBO of a one-hidden-layer MLP VAE and its gradient w.r.t. every parameter.

    Model (x: (N, D) in [0, 1], eps: (N, d) fixed standard-normal noise):

        encoder q_ψ(ω|x):  h  = act(x W1ᵀ + b1)              fc1
                           μ  = h W21ᵀ + b21                  fc21
                           s  = h W22ᵀ + b22  (= log σ²)      fc22
        reparameterise:    z  = μ + σ ⊙ ε,   σ = exp(s / 2)
        decoder q_θ(x|ω):  h2 = act(z W3ᵀ + b3)              fc3
                           l  = h2 W4ᵀ + b4   (logits)        fc4
        loss = (1/N) Σ_n [ Σ_j BCE(l_nj, x_nj)  +  Σ_k ½(μ_nk² + σ_nk² - 1 - s_nk) ]
             = -(1/N) Σ_n ELBO_n   (one sample; the same loss as ``elbo(...).loss``).

    Returns ``(loss, grads)`` with ``grads`` keyed like ``params``.
    """
    W1, b1 = params["fc1.weight"], params["fc1.bias"]
    W21, b21 = params["fc21.weight"], params["fc21.bias"]
    W22, b22 = params["fc22.weight"], params["fc22.bias"]
    W3, b3 = params["fc3.weight"], params["fc3.bias"]
    W4, b4 = params["fc4.weight"], params["fc4.bias"]
    n = x.shape[0]

    # ---- forward
    a1 = x @ W1.T + b1
    h = _act(activation, a1)
    mu = h @ W21.T + b21
    s = h @ W22.T + b22
    sigma = np.exp(0.5 * s)
    z = mu + sigma * eps
    a2 = z @ W3.T + b3
    h2 = _act(activation, a2)
    logits = h2 @ W4.T + b4
    recon_loss = bce_with_logits(logits, x).sum(axis=1)           # -log q_θ(x|z) per example
    kl = kl_std_normal(mu, s).sum(axis=1)                          # KL(q_ψ(·|x) || N(0, I)) per example
    loss = (recon_loss + kl).mean()

    # ---- backward: every d_* is dloss/d(*)
    d_logits = bce_with_logits_grad(logits, x) / n                 # σ(l) - x, averaged over the batch
    grads = {"fc4.weight": d_logits.T @ h2, "fc4.bias": d_logits.sum(axis=0)}
    d_h2 = d_logits @ W4
    d_a2 = d_h2 * _act_grad(activation, a2, h2)
    grads["fc3.weight"] = d_a2.T @ z
    grads["fc3.bias"] = d_a2.sum(axis=0)
    d_z = d_a2 @ W3                                                 # the decoder's pull on the sample
    # z = μ + exp(s/2) ε:  dz/dμ = 1,  dz/ds = ½ σ ε.  The KL adds its own gradient (÷ N).
    kl_d_mu, kl_d_s = kl_std_normal_grad(mu, s)
    d_mu = d_z + kl_d_mu / n
    d_s = d_z * 0.5 * sigma * eps + kl_d_s / n
    grads["fc21.weight"] = d_mu.T @ h
    grads["fc21.bias"] = d_mu.sum(axis=0)
    grads["fc22.weight"] = d_s.T @ h
    grads["fc22.bias"] = d_s.sum(axis=0)
    d_h = d_mu @ W21 + d_s @ W22                                    # h feeds both heads: gradients add
    d_a1 = d_h * _act_grad(activation, a1, h)
    grads["fc1.weight"] = d_a1.T @ x
    grads["fc1.bias"] = d_a1.sum(axis=0)
    return float(loss), grads


# ---------------------------------------------------------------------- MLP GAN
GAN_G_PARAMS = ("G.fc1.weight", "G.fc1.bias", "G.fc2.weight", "G.fc2.bias")
GAN_D_PARAMS = ("D.fc1.weight", "D.fc1.bias", "D.fc2.weight", "D.fc2.bias")
LEAKY_SLOPE = 0.2


def init_mlp_gan(z_dim, hidden, x_dim, seed=0):
    """Random float64 parameters: generator g_θ = G.fc1 (z -> h, ReLU), G.fc2 (h -> x, tanh);
    discriminator t_φ = σ(logit), D.fc1 (x -> u, leaky ReLU 0.2), D.fc2 (u -> one logit)."""
    rng = np.random.default_rng(seed)
    shapes = {"G.fc1": (hidden, z_dim), "G.fc2": (x_dim, hidden),
              "D.fc1": (hidden, x_dim), "D.fc2": (1, hidden)}
    params = {}
    for name, (out_f, in_f) in shapes.items():
        params[f"{name}.weight"] = rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)
        params[f"{name}.bias"] = 0.1 * rng.standard_normal(out_f)
    return params


def _generator_forward(params, z):
    a1 = z @ params["G.fc1.weight"].T + params["G.fc1.bias"]
    h = np.maximum(a1, 0)
    a2 = h @ params["G.fc2.weight"].T + params["G.fc2.bias"]
    return a1, h, np.tanh(a2)


def _discriminator_forward(params, x):
    c1 = x @ params["D.fc1.weight"].T + params["D.fc1.bias"]
    u = np.where(c1 > 0, c1, LEAKY_SLOPE * c1)
    logits = (u @ params["D.fc2.weight"].T + params["D.fc2.bias"])[:, 0]
    return c1, u, logits


def _discriminator_backward(params, x, c1, u, d_logits):
    """Given dloss/dlogits for a batch, return (grads of D's parameters, dloss/dx)."""
    d_logits = d_logits[:, None]                                    # (N, 1), as D.fc2's output
    grads = {"D.fc2.weight": d_logits.T @ u, "D.fc2.bias": d_logits.sum(axis=0)}
    d_u = d_logits @ params["D.fc2.weight"]
    d_c1 = d_u * np.where(c1 > 0, 1.0, LEAKY_SLOPE)
    grads["D.fc1.weight"] = d_c1.T @ x
    grads["D.fc1.bias"] = d_c1.sum(axis=0)
    d_x = d_c1 @ params["D.fc1.weight"]
    return grads, d_x


def gan_discriminator_step_backward(params, x_real, z):
    """One discriminator step: loss_D = -V = mean softplus(-l_real) + mean softplus(l_fake), with
    x_fake = g_θ(z) held fixed (as after ``.detach()``). Returns (loss_D, grads w.r.t. D.*).

    dloss/dl_real = -(1 - σ(l_r)) / N_r and dloss/dl_fake = σ(l_f) / N_f (minus
    :func:`minimax_value_grad`), then back through D for each batch; D's parameters are shared
    by both batches, so their gradients add.
    """
    _, _, x_fake = _generator_forward(params, z)
    c1_r, u_r, l_r = _discriminator_forward(params, x_real)
    c1_f, u_f, l_f = _discriminator_forward(params, x_fake)
    loss = -minimax_value(l_r, l_f)
    dv_real, dv_fake = minimax_value_grad(l_r, l_f)
    g_real, _ = _discriminator_backward(params, x_real, c1_r, u_r, -dv_real)
    g_fake, _ = _discriminator_backward(params, x_fake, c1_f, u_f, -dv_fake)
    return float(loss), {k: g_real[k] + g_fake[k] for k in GAN_D_PARAMS}


def gan_generator_step_backward(params, z, loss="nonsaturating"):
    """One generator step with D fixed: loss_G (``"saturating"``: mean log(1 - σ(l_f)), or
    ``"nonsaturating"``: -mean log σ(l_f)) and its gradient w.r.t. G.* through D.

        dloss/dl_f  from :func:`generator_loss_grads`
        dloss/dx    = back through D (D.fc2, leaky ReLU, D.fc1)
        dloss/da2   = dloss/dx ⊙ (1 - x_fake²)           (tanh' = 1 - tanh²)
        G.fc2:  dW = da2ᵀ h,  db = Σ da2;   dh = da2 W_G2
        dloss/da1   = dh ⊙ [a1 > 0]                       (ReLU')
        G.fc1:  dW = da1ᵀ z,  db = Σ da1
    """
    if loss not in ("saturating", "nonsaturating"):
        raise ValueError(f"loss must be 'saturating' or 'nonsaturating', got {loss!r}")
    a1, h, x_fake = _generator_forward(params, z)
    c1, u, l_f = _discriminator_forward(params, x_fake)
    value = -softplus(l_f).mean() if loss == "saturating" else softplus(-l_f).mean()
    d_logits = generator_loss_grads(l_f)[loss]
    _, d_x = _discriminator_backward(params, x_fake, c1, u, d_logits)
    d_a2 = d_x * (1.0 - x_fake ** 2)
    grads = {"G.fc2.weight": d_a2.T @ h, "G.fc2.bias": d_a2.sum(axis=0)}
    d_h = d_a2 @ params["G.fc2.weight"]
    d_a1 = d_h * (a1 > 0)
    grads["G.fc1.weight"] = d_a1.T @ z
    grads["G.fc1.bias"] = d_a1.sum(axis=0)
    return float(value), grads


# ---------------------------------------------------------------------- finite differences
def central_differences(loss_fn, params, eps=1e-6):
    """(loss(θ + eps e_i) - loss(θ - eps e_i)) / (2 eps) for every element of every array in the
    dict ``params`` (perturbed in place and restored); ``loss_fn(params) -> float``."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            original = value[idx]
            value[idx] = original + eps
            plus = loss_fn(params)
            value[idx] = original - eps
            minus = loss_fn(params)
            value[idx] = original
            g[idx] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads
