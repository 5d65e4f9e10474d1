"""scratchgen.optim: SGD and Adam against hand-computed steps and a plain-Python reference,
in-place float32 updates, skipped parameters, argument errors, checkpoints that resume
bit for bit, and Adam's fused Numba kernel giving the NumPy code's bits exactly."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import scratchgen
import scratchgen.functional as F
import scratchgen.nn as nn
import scratchgen.optim as optim
from scratchgen.kernels import adam as adam_kernel
from scratchgen.kernels.backend import use_backend

from strategies import FLOAT_DTYPES, adam_hyperparameters, bounded_floats, layouts, with_layout


def quadratic_steps(opt, w, steps):
    """Run ``steps`` optimizer steps on loss(w) = 1.5 w₀² + 0.5 w₁², whose gradient is (3 w₀, w₁)."""
    for _ in range(steps):
        opt.zero_grad()
        (w * w * np.array([1.5, 0.5])).sum().backward()
        opt.step()
    return w.data


def param(values, dtype=np.float64):
    return nn.Parameter(np.array(values, dtype=dtype))


# ---------------------------------------------------------------------- hand-computed steps
def test_sgd_with_momentum_two_steps_by_hand():
    # lr 0.1, momentum 0.9, from w = (1, -2):
    # step 1: g = (3, -2);     b = g (PyTorch starts the buffer at the first gradient)
    #         w = (1, -2) - 0.1 (3, -2) = (0.7, -1.8)
    # step 2: g = (2.1, -1.8); b = 0.9 (3, -2) + (2.1, -1.8) = (4.8, -3.6)
    #         w = (0.7, -1.8) - 0.1 (4.8, -3.6) = (0.22, -1.44)
    w = param([1.0, -2.0])
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.7, -1.8], rtol=1e-14)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.22, -1.44], rtol=1e-14)
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], [4.8, -3.6], rtol=1e-14)


def test_sgd_with_weight_decay_two_steps_by_hand():
    # lr 0.1, weight decay 0.5 (adds 0.5 w to the gradient), no momentum, from w = (1, -2):
    # step 1: g = (3, -2) + 0.5 (1, -2) = (3.5, -3);          w = (0.65, -1.7)
    # step 2: g = (1.95, -1.7) + 0.5 (0.65, -1.7) = (2.275, -2.55); w = (0.4225, -1.445)
    w = param([1.0, -2.0])
    opt = optim.SGD([w], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.65, -1.7], rtol=1e-14)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.4225, -1.445], rtol=1e-14)
    assert opt.state == {}  # no momentum, no state


def test_adam_two_steps_by_hand():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, from w = (1, -2):
    # step 1: g = (3, -2); m = 0.1 g = (0.3, -0.2); v = 0.001 g² = (0.009, 0.004)
    #         m̂ = m / 0.1 = g; v̂ = v / 0.001 = g²; w -= 0.1 g / (|g| + 1e-8) -> (0.9, -1.9)
    # step 2: g = (2.7, -1.9)
    #         m = 0.9 (0.3, -0.2) + 0.1 (2.7, -1.9) = (0.54, -0.37)
    #         v = 0.999 (0.009, 0.004) + 0.001 (7.29, 3.61) = (0.016281, 0.007606)
    #         m̂ = m / (1 - 0.81) = (2.8421053, -1.9473684)
    #         v̂ = v / (1 - 0.998001) = (8.1445723, 3.8049025); √v̂ = (2.8538697, 1.9506159)
    #         w -= 0.1 m̂ / √v̂ = 0.1 (0.9958775, -0.9983351) -> (0.8004122, -1.8001665)
    w = param([1.0, -2.0])
    opt = optim.Adam([w], lr=0.1)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.9, -1.9], atol=1e-9)
    np.testing.assert_allclose(opt.state[0]["exp_avg"], [0.3, -0.2], rtol=1e-12)
    np.testing.assert_allclose(opt.state[0]["exp_avg_sq"], [0.009, 0.004], rtol=1e-12)
    np.testing.assert_allclose(quadratic_steps(opt, w, 1), [0.8004122, -1.8001665], atol=1e-7)
    np.testing.assert_allclose(opt.state[0]["exp_avg"], [0.54, -0.37], rtol=1e-8)
    np.testing.assert_allclose(opt.state[0]["exp_avg_sq"], [0.016281, 0.007606], rtol=1e-8)
    assert opt.state[0]["step"] == 2 and opt.step_count == 2

    # the same two steps in plain Python floats, to full precision
    x, m, v = [1.0, -2.0], [0.0, 0.0], [0.0, 0.0]
    for t in (1, 2):
        g = [3 * x[0], x[1]]
        m = [0.9 * mi + 0.1 * gi for mi, gi in zip(m, g)]
        v = [0.999 * vi + 0.001 * gi * gi for vi, gi in zip(v, g)]
        x = [xi - 0.1 * (mi / (1 - 0.9 ** t)) / (math.sqrt(vi / (1 - 0.999 ** t)) + 1e-8)
             for xi, mi, vi in zip(x, m, v)]
    np.testing.assert_allclose(w.data, x, rtol=1e-14)


# ---------------------------------------------------------------------- plain-Python reference
def reference_sgd(w, grads, lr, momentum, weight_decay):
    buf = None
    for g in grads:
        g = g + weight_decay * w
        buf = g if buf is None else momentum * buf + g
        w = w - lr * (buf if momentum else g)
    return w


def reference_adam(w, grads, lr, beta1, beta2, eps, weight_decay):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * w  # L2 regularisation, not AdamW's decoupled decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr * (m / (1 - beta1 ** t)) / (math.sqrt(v / (1 - beta2 ** t)) + eps)
    return w


def run_with_gradients(opt, p, grads):
    """Feed a fixed gradient sequence (one list entry per step) to one parameter."""
    for g in grads:
        p.grad = np.array(g)
        opt.step()
    return p.data


@given(bounded_floats(-2, 2), st.lists(st.lists(bounded_floats(-3, 3), min_size=2, max_size=2),
                                       min_size=1, max_size=5),
       st.floats(0.001, 0.5), st.floats(0, 0.99), st.floats(0, 0.3))
def test_sgd_matches_plain_python_reference(w0, grads, lr, momentum, weight_decay):
    p = param([w0, -w0])
    out = run_with_gradients(optim.SGD([p], lr, momentum, weight_decay), p, grads)
    for k in range(2):
        expected = reference_sgd([w0, -w0][k], [g[k] for g in grads], lr, momentum, weight_decay)
        assert out[k] == pytest.approx(expected, rel=1e-10, abs=1e-12)


@given(bounded_floats(-2, 2), st.lists(st.lists(bounded_floats(-3, 3), min_size=2, max_size=2),
                                       min_size=1, max_size=5),
       st.floats(1e-4, 0.5), st.floats(0, 0.99), st.floats(0.9, 0.9999), st.floats(1e-8, 1e-2),
       st.floats(0, 0.3))
def test_adam_matches_plain_python_reference(w0, grads, lr, beta1, beta2, eps, weight_decay):
    p = param([w0, -w0])
    opt = optim.Adam([p], lr, (beta1, beta2), eps, weight_decay)
    out = run_with_gradients(opt, p, grads)
    for k in range(2):
        expected = reference_adam([w0, -w0][k], [g[k] for g in grads], lr, beta1, beta2, eps,
                                  weight_decay)
        assert out[k] == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(st.lists(bounded_floats(0.1, 3).flatmap(lambda a: st.sampled_from([a, -a])),
                min_size=1, max_size=6), st.floats(1e-3, 0.1))
def test_adams_first_step_moves_every_coordinate_by_lr(grad, lr):
    # m̂₁ = g and v̂₁ = g², so the first update is lr·g/(|g| + eps) ≈ lr·sign(g)
    p = param(np.zeros(len(grad)))
    run_with_gradients(optim.Adam([p], lr=lr), p, [grad])
    np.testing.assert_allclose(p.data, -lr * np.sign(grad), rtol=1e-6)


# ---------------------------------------------------------------------- mechanics
@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1)])
def test_updates_are_in_place_in_the_parameters_dtype_and_skip_missing_grads(make):
    used, unused = param([1.0, 2.0], np.float32), param([5.0], np.float32)
    opt = make([used, unused])
    array = used.data
    used.grad = np.array([0.5, -0.5], dtype=np.float32)
    opt.step()
    assert used.data is array and used.dtype == np.float32
    assert not np.array_equal(used.data, [1.0, 2.0])
    assert unused.data[0] == 5.0 and 1 not in opt.state
    assert all(v.dtype == np.float32 for v in opt.state[0].values() if isinstance(v, np.ndarray))
    opt.zero_grad()
    assert used.grad is None and unused.grad is None


def test_adam_counts_steps_per_parameter_as_pytorch():
    # a parameter that first gets a gradient at the third step still makes a first step of size lr
    a, b = param([0.0]), param([0.0])
    opt = optim.Adam([a, b], lr=0.01)
    for step in range(3):
        a.grad = np.array([1.0])
        b.grad = np.array([2.0]) if step == 2 else None
        opt.step()
    assert opt.state[0]["step"] == 3 and opt.state[1]["step"] == 1 and opt.step_count == 3
    np.testing.assert_allclose(b.data, [-0.01], rtol=1e-6)


def test_adam_minimises_a_quadratic():
    w = param([1.0, -2.0])
    quadratic_steps(optim.Adam([w], lr=0.05), w, 400)
    assert np.abs(w.data).max() < 1e-2


def test_argument_errors():
    p = param([1.0])
    for make, text in [(lambda: optim.SGD([p], lr=-0.1), "lr=-0.1"),
                       (lambda: optim.SGD([p], lr=0.1, momentum=-1), "momentum"),
                       (lambda: optim.SGD([p], lr=0.1, weight_decay=-1), "weight_decay"),
                       (lambda: optim.Adam([p], lr=-1), "lr=-1"),
                       (lambda: optim.Adam([p], lr=float("nan")), "lr=nan"),
                       (lambda: optim.Adam([p], betas=(0.9, 1.0)), "betas"),
                       (lambda: optim.Adam([p], betas=(-0.1, 0.9)), "betas"),
                       (lambda: optim.Adam([p], eps=-1e-8), "eps"),
                       (lambda: optim.Adam([p], weight_decay=-0.1), "weight_decay"),
                       (lambda: optim.Adam([]), "empty parameter list"),
                       (lambda: optim.Adam([p, p]), "more than once")]:
        with pytest.raises(ValueError, match=text):
            make()
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(p)
    with pytest.raises(TypeError, match="parameter 1"):
        optim.SGD([p, np.zeros(2)], lr=0.1)


# ---------------------------------------------------------------------- checkpoints
def make_model():
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 2))


def train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        F.mse_loss(model(scratchgen.tensor(x)), scratchgen.tensor(y)).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda ps, lr: optim.Adam(ps, lr=lr, betas=(0.5, 0.99), weight_decay=1e-3),
    lambda ps, lr: optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=1e-3),
])
def test_checkpoint_resumes_bit_for_bit(tmp_path, make_opt):
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((16, 3)).astype(np.float32),
                rng.standard_normal((16, 2)).astype(np.float32)) for _ in range(6)]
    scratchgen.manual_seed(0)
    model = make_model()
    opt = make_opt(model.parameters(), 0.01)
    train(model, opt, batches[:3])
    np.savez(tmp_path / "model.npz", **model.state_dict())
    np.savez(tmp_path / "optim.npz", **opt.state_dict())
    train(model, opt, batches[3:])

    scratchgen.manual_seed(1)  # other initial weights and another learning rate: all overwritten
    resumed = make_model()
    resumed_opt = make_opt(resumed.parameters(), 0.5)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        resumed.load_state_dict(saved)
    with np.load(tmp_path / "optim.npz", allow_pickle=False) as saved:
        resumed_opt.load_state_dict(saved)
    assert resumed_opt.lr == 0.01
    train(resumed, resumed_opt, batches[3:])

    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)
    expected, got = opt.state_dict(), resumed_opt.state_dict()
    assert list(expected) == list(got)
    for key in expected:
        assert expected[key].dtype == got[key].dtype
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_optimizer_state_dict_layout():
    a, b = param([1.0, 2.0], np.float32), param([[3.0]], np.float32)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = np.ones(2, dtype=np.float32)
    opt.step()
    state = opt.state_dict()
    assert set(state) == {"step", "lr", "betas", "eps", "weight_decay", "state.0.step",
                          "state.0.exp_avg", "state.0.exp_avg_sq"}
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    assert state["step"] == 1 and state["state.0.step"] == 1
    np.testing.assert_array_equal(state["betas"], [0.9, 0.999])
    state["state.0.exp_avg"][...] = 99  # a copy
    assert not (opt.state[0]["exp_avg"] == 99).any()
    sgd = optim.SGD([a], lr=0.1)
    sgd.step()
    assert set(sgd.state_dict()) == {"step", "lr", "momentum", "weight_decay"}


def test_optimizer_load_state_dict_reports_every_problem():
    a, b = param([1.0, 2.0]), param([3.0])
    source = optim.Adam([a, b])
    a.grad, b.grad = np.ones(2), np.ones(1)
    source.step()
    state = source.state_dict()
    del state["lr"], state["state.1.exp_avg_sq"]
    state["state.0.exp_avg"] = np.zeros(3)
    state["state.0.momentum_buffer"] = np.zeros(2)  # an SGD key
    state["state.5.step"] = np.array(1)  # no parameter 5
    target = optim.Adam([param([0.0, 0.0]), param([0.0])], lr=0.2)
    with pytest.raises(nn.StateDictError) as info:
        target.load_state_dict(state)
    message = str(info.value)
    for text in ["missing key: lr", "unexpected key: state.0.momentum_buffer",
                 "unexpected key: state.5.step",
                 "state.0.exp_avg: expected (2,) (parameter 0), got (3,)",
                 "incomplete state for parameter 1: missing state.1.exp_avg_sq"]:
        assert text in message
    assert target.lr == 0.2 and target.state == {} and target.step_count == 0  # unchanged


# ---------------------------------------------------------------------- fused Numba kernel
def adam_run(backend, dtype, hyper, seed, param_layout, grad_layout, steps=30):
    """Adam on three parameters (one large enough for the kernel's vector loop, one 0-d) with
    gradients whose scale changes by up to eleven orders of magnitude from step to step, some
    entries exactly 0, and the 0-d parameter skipped (grad None) on every third step."""
    rng = np.random.default_rng(seed)
    shapes = [(37, 29), (5,), ()]
    params = [nn.Parameter(with_layout(rng.standard_normal(s).astype(dtype), param_layout))
              for s in shapes]
    opt = optim.Adam(params, **hyper)
    with use_backend(backend), np.errstate(divide="ignore", invalid="ignore"):
        for step in range(steps):
            for k, p in enumerate(params):
                g = rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-8, 3)
                g = np.where(rng.random(p.shape) < 0.1, 0.0, g)
                p.grad = with_layout(g.astype(dtype), grad_layout)
                if k == 2 and step % 3 == 0:
                    p.grad = None
            opt.step()
    return [p.data for p in params], opt.state_dict()


@given(FLOAT_DTYPES, adam_hyperparameters(), st.integers(0, 2**32 - 1), layouts, layouts)
def test_adam_numba_kernel_equals_numpy_bit_for_bit(dtype, hyper, seed, param_layout, grad_layout):
    # NOTE: bit for bit, not approximately: the kernel promises the NumPy code's exact roundings
    # (so that checkpoints and results do not depend on the backend).
    fused = adam_run("numba", dtype, hyper, seed, param_layout, grad_layout)
    numpy = adam_run("numpy", dtype, hyper, seed, param_layout, grad_layout)
    for got, expected in zip(fused[0], numpy[0]):
        assert got.dtype == expected.dtype == dtype
        assert np.array_equal(got, expected, equal_nan=True)
    assert list(fused[1]) == list(numpy[1])
    for key in numpy[1]:
        assert fused[1][key].dtype == numpy[1][key].dtype, key
        assert np.array_equal(fused[1][key], numpy[1][key], equal_nan=True), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_numba_kernel_equals_numpy_over_many_steps(dtype, weight_decay):
    hyper = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}
    fused = adam_run("numba", dtype, hyper, 0, "contiguous", "contiguous", steps=300)
    numpy = adam_run("numpy", dtype, hyper, 0, "contiguous", "contiguous", steps=300)
    for got, expected in zip(fused[0], numpy[0]):
        np.testing.assert_array_equal(got, expected)
    for key in numpy[1]:
        np.testing.assert_array_equal(fused[1][key], numpy[1][key], err_msg=key)


def test_adam_kernel_is_used_only_where_it_fits():
    # otherwise the bit-for-bit tests above could pass by running NumPy twice
    a = np.zeros((3, 4), np.float32)
    assert adam_kernel.fits(a, a.copy(), a.copy(), a.copy())
    assert adam_kernel.fits(a, with_layout(a, "strided"), a.copy(), a.copy())  # grad is copied
    assert not adam_kernel.fits(with_layout(a, "transposed"), a.copy(), a.copy(), a.copy())
    assert not adam_kernel.fits(a, a.copy(), with_layout(a, "strided"), a.copy())
    assert not adam_kernel.fits(a, a[:1].copy(), a.copy(), a.copy())  # broadcast gradient
    half = a.astype(np.float16)
    assert not adam_kernel.fits(half, half.copy(), half.copy(), half.copy())

    calls = []
    original = adam_kernel.fused_update
    adam_kernel.fused_update = lambda *args, **kwargs: (calls.append(args[0].shape),
                                                        original(*args, **kwargs))
    try:
        p, q = param(np.ones((3, 4)), np.float32), param(np.ones((4, 3)).T, np.float32)
        opt = optim.Adam([p, q])
        p.grad, q.grad = np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)
        with use_backend("numba"):
            opt.step()
        with use_backend("numpy"):
            opt.step()
    finally:
        adam_kernel.fused_update = original
    assert calls == [(3, 4)]  # p with Numba once; the transposed q and the numpy backend: NumPy
    np.testing.assert_array_equal(p.data, q.data)


def test_adam_float16_parameter_falls_back_to_numpy():
    p = param([1.0, -1.0], np.float16)
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.array([1.0, -1.0], np.float16)
    with use_backend("numba"):
        opt.step()
    assert p.dtype == np.float16
    np.testing.assert_allclose(p.data, [0.9, -0.9], rtol=1e-3)
