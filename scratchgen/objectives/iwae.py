"""The importance-weighted bound IWAE_k (Burda, Grosse & Salakhutdinov 2016, "Importance
Weighted Autoencoders"), used to estimate log q_θ(x) for evaluation.

With k samples ω_1..ω_k ~ q_ψ(·|x) and importance weights w_i = q_θ(x|ω_i) p_ω(ω_i) / q_ψ(ω_i|x),

    IWAE_k(x) = log (1/k) Σ_i w_i = logsumexp_i(log w_i) - log k.

Its expectation is a lower bound on log q_θ(x) that never decreases with k (Burda et al.,
Thm. 1): E[IWAE_1] is the ELBO, and E[IWAE_k] -> log q_θ(x) as k -> ∞. Evaluation papers report
-IWAE_5000 as the test negative log-likelihood.

k = 5000 samples of a batch of 784-pixel images would need gigabytes at once, so the samples are
processed in chunks and combined with a running logsumexp:
    L ← logaddexp(L, logsumexp(log w over the chunk)),  starting from L = -∞.
"""
import numpy as np

from ..distributions import Normal
from ..autograd import no_grad
from .evidence_lower_bound import as_normal, log_likelihood_samples, number_of_examples


def log_importance_weights(x, posterior, decoder, k, prior=None, eps=None):
    """log w_i = log q_θ(x|ω_i) + log p_ω(ω_i) - log q_ψ(ω_i|x) for k samples: a (k, N) Tensor.

    Differentiable (so ``F.logsumexp(log_w, 0) - log k`` is the IWAE training objective);
    ``eps`` (shape (k, N, *latent)) fixes the noise.
    """
    q = as_normal(posterior)
    n = number_of_examples(x, q)
    p = prior if prior is not None else Normal(np.zeros((), q.loc.dtype), log_var=np.zeros((), q.loc.dtype))
    z = q.rsample((int(k),), eps=eps)                                   # (k, N, *latent)
    latent_dims = z.ndim - 2
    log_px_z = log_likelihood_samples(x, z, decoder)                  # (k, N)
    log_pz = p.log_prob(z, event_dims=latent_dims)
    log_qz = q.log_prob(z, event_dims=latent_dims)
    if log_pz.shape != (int(k), n):
        raise ValueError(f"the prior's log-density has shape {log_pz.shape}, expected {(int(k), n)}")
    return log_px_z + log_pz - log_qz


def iwae_bound(x, posterior, decoder, k, prior=None, chunk_size=100, eps=None):
    """IWAE_k(x) = log (1/k) Σ_{i=1}^k w_i per example, as a float64 array of shape (N,).

    Evaluation only: computed under ``no_grad``, ``chunk_size`` samples at a time (the decoder
    sees at most chunk_size·N rows at once), merged by a running logsumexp. ``eps`` of shape
    (k, N, *latent) fixes the noise; chunking does not change the result.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    q = as_normal(posterior)
    n = number_of_examples(x, q)
    with no_grad():
        q = Normal(q.loc.detach(), log_var=q.log_var.detach())
        running = np.full(n, -np.inf)
        for start in range(0, int(k), int(chunk_size)):
            size = min(int(chunk_size), int(k) - start)
            chunk_eps = None if eps is None else np.asarray(eps)[start:start + size]
            log_w = log_importance_weights(x, q, decoder, size, prior, chunk_eps).data
            m = log_w.max(axis=0)
            chunk_lse = m + np.log(np.exp(log_w - m).sum(axis=0))
            running = np.logaddexp(running, chunk_lse.astype(np.float64))
    return running - np.log(k)
