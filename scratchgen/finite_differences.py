"""Check analytic gradients against central finite differences.

For a function ``fn(*inputs) -> Tensor`` we compare, for every element ``x_i`` of every input
that requires grad,

    analytic_i  = d <u, fn(x)> / d x_i      (one reverse-mode pass with upstream gradient u)
    numerical_i = (<u, fn(x + eps e_i)> - <u, fn(x - eps e_i)>) / (2 eps)

where ``u`` is a random upstream gradient (all ones would hide errors that cancel in a sum;
for a scalar output u = 1). The check runs in float64: in float32 the rounding error of the
difference quotient (~1e-7 / eps) swamps the truncation error (~eps²).

Run ``python -m scratchgen.finite_differences`` for a demo table.
"""
import numpy as np

from .autograd import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the finite-difference estimate."""


def _value(fn, inputs, upstream):
    with no_grad():
        return float(np.sum(fn(*inputs).data * upstream))


def numerical_gradient(fn, inputs, k, upstream, eps=1e-6):
    """Central differences of <upstream, fn(inputs)> with respect to every element of inputs[k]."""
    x = inputs[k].data  # perturbed in place, element by element (works for any memory layout)
    numerical = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        original = x[idx]
        x[idx] = original + eps
        plus = _value(fn, inputs, upstream)
        x[idx] = original - eps
        minus = _value(fn, inputs, upstream)
        x[idx] = original
        numerical[idx] = (plus - minus) / (2 * eps)
    return numerical


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0):
    """Return True if ``fn``'s autograd gradients match central differences, else raise.

    ``inputs`` is a sequence of Tensors; those with ``requires_grad=True`` are checked and must
    be float64. The error names the input, the index, analytic vs numerical values, and the
    worst absolute and relative errors over that input.
    """
    inputs = list(inputs)
    for k, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} has dtype {t.dtype}; finite differences need "
                            f"float64 (e.g. Tensor(x.astype(np.float64), requires_grad=True)).")
    checked = [k for k, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")

    for k in checked:
        inputs[k].grad = None
    out = fn(*inputs)
    rng = np.random.default_rng(seed)
    upstream = np.ones_like(out.data) if out.data.size == 1 else rng.standard_normal(out.shape)
    out.backward(upstream.astype(out.dtype))

    for k in checked:
        x = inputs[k]
        analytic = np.zeros_like(x.data) if x.grad is None else x.grad
        numerical = numerical_gradient(fn, inputs, k, upstream, eps)
        err = np.abs(analytic - numerical)
        bad = ~(err <= atol + rtol * np.abs(numerical))  # NOTE: written so that NaN counts as bad
        if bad.any():
            worst = np.where(bad, np.nan_to_num(err, nan=np.inf), -1)
            idx = tuple(int(i) for i in np.unravel_index(np.argmax(worst), x.shape))
            rel = err / np.maximum(np.abs(numerical), 1e-300)
            raise GradcheckError(
                f"gradcheck failed for input {k} (shape {x.shape}) at index {idx}: "
                f"analytic {analytic[idx]:.10g} vs numerical {numerical[idx]:.10g}; "
                f"{int(bad.sum())} of {bad.size} elements outside atol={atol}, rtol={rtol}; "
                f"worst absolute error {err.max():.3g}, worst relative error {rel.max():.3g}")
    return True


def demo():
    """Check a handful of ops and print one table row each."""
    from . import functional as F

    rng = np.random.default_rng(0)

    def t(*shape, positive=False):
        a = rng.standard_normal(shape)
        return Tensor(np.abs(a) + 0.5 if positive else a, requires_grad=True)

    cases = [
        ("a * b + a", lambda a, b: a * b + a, [t(3, 4), t(4)]),
        ("log(a) / a", lambda a: a.log() / a, [t(5, positive=True)]),
        ("tanh(a @ b)", lambda a, b: (a @ b).tanh(), [t(3, 4), t(4, 2)]),
        ("sigmoid(a).sum(0)", lambda a: a.sigmoid().sum(0), [t(3, 4)]),
        ("a[idx] (repeats)", lambda a: a[np.array([0, 2, 0])], [t(4, 3)]),
        ("log_softmax(a, 1)", lambda a: F.log_softmax(a, dim=1), [t(3, 5)]),
        ("conv2d(x, w, stride 2, pad 1)",
         lambda x, w: F.conv2d(x, w, stride=2, padding=1), [t(2, 3, 5, 5), t(4, 3, 3, 3)]),
        ("conv_transpose2d(x, w, stride 2)",
         lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
         [t(2, 4, 3, 3), t(4, 3, 3, 3)]),
        ("bce_with_logits(a, y)",
         lambda a: F.binary_cross_entropy_with_logits(a, Tensor(np.eye(3, 4))), [t(3, 4)]),
    ]
    print(f"{'function':34s} {'elements':>8s} {'max |analytic - numerical|':>28s}  result")
    for name, fn, inputs in cases:
        out = fn(*inputs)
        u = rng.standard_normal(out.shape)
        for x in inputs:
            x.grad = None
        out.backward(u)
        worst = max(float(np.abs(numerical_gradient(fn, inputs, k, u) - x.grad).max())
                    for k, x in enumerate(inputs))
        n = sum(x.data.size for x in inputs)
        print(f"{name:34s} {n:8d} {worst:28.2e}  {'ok' if worst < 1e-6 else 'FAIL'}")


if __name__ == "__main__":
    demo()
