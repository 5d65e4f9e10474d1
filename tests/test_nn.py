"""scratchgen.nn: module bookkeeping, state dicts, layers (gradients, shapes, default
initialisation), init schemes and gradient clipping."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen
import scratchgen.functional as F
import scratchgen.nn as nn
from scratchgen import Tensor, gradcheck
from scratchgen.nn import init
from scratchgen.nn.utils import clip_grad_norm_

from strategies import (away_from_zero, batch_norm_shapes, conv2d_cases, conv_transpose2d_cases,
                        linear_cases, seeded_arrays)


def t64(array, requires_grad=True):
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def randn64(*shape, seed=0):
    return t64(np.random.default_rng(seed).standard_normal(shape))


def check_module_grads(module, *inputs):
    """gradcheck of module(*inputs) with respect to the inputs and every parameter.

    The parameters are passed to gradcheck as extra inputs: it perturbs their arrays in place,
    which the module reads, so the lambda may ignore them.
    """
    params = list(module.parameters())
    n = len(inputs)
    return gradcheck(lambda *args: module(*args[:n]), [*inputs, *params])


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("calls", np.zeros((), dtype=np.int64))

    def forward(self, x):
        return self.decoder(self.encoder(x)) * self.scale


# ---------------------------------------------------------------------- Parameter and Module
def test_parameter_is_a_leaf_tensor_that_requires_grad_and_keeps_dtype():
    p = nn.Parameter(np.zeros((2, 3), dtype=np.float64))
    assert isinstance(p, Tensor) and p.requires_grad and p.is_leaf
    assert p.dtype == np.float64
    assert nn.Parameter([1.0, 2.0]).dtype == np.float32
    assert repr(p).startswith("Parameter containing:")
    with pytest.raises(TypeError):
        nn.Parameter(np.arange(3))  # integers cannot require gradients


def test_named_parameters_use_pytorch_dotted_names_in_registration_order():
    model = AutoEncoder()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "encoder.fc1.weight", "encoder.fc1.bias", "encoder.fc2.weight",
                     "decoder.0.weight", "decoder.0.bias", "decoder.1.weight", "decoder.1.bias"]
    assert [p for _, p in model.named_parameters()] == list(model.parameters())
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    assert [name for name, _ in model.named_parameters(recurse=False)] == ["scale"]
    assert model.encoder.fc2.bias is None


def test_children_modules_and_buffers():
    model = AutoEncoder()
    assert [name for name, _ in model.named_children()] == ["encoder", "decoder"]
    assert list(model.children()) == [model.encoder, model.decoder]
    names = [name for name, _ in model.named_modules()]
    assert names == ["", "encoder", "encoder.fc1", "encoder.act", "encoder.fc2", "decoder",
                     "decoder.0", "decoder.1"]
    assert len(list(model.modules())) == len(names)
    assert [name for name, _ in model.named_buffers()] == [
        "calls", "decoder.1.running_mean", "decoder.1.running_var", "decoder.1.num_batches_tracked"]
    assert all(isinstance(b, np.ndarray) for b in model.buffers())


def test_a_shared_layer_is_listed_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert model.num_parameters() == 6
    assert len(list(model.modules())) == 3


def test_num_parameters_counts_scalars():
    assert nn.Linear(3, 4).num_parameters() == 3 * 4 + 4
    assert nn.Linear(3, 4, bias=False).num_parameters() == 12
    assert nn.Conv2d(2, 5, 3).num_parameters() == 5 * 2 * 9 + 5
    assert nn.BatchNorm2d(7).num_parameters() == 14  # buffers are not parameters
    assert AutoEncoder().num_parameters() == (12 + 4) + 8 + (6 + 3) + 6 + 1


def test_attribute_rules():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)  # before super().__init__()

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()
    model = Encoder()
    with pytest.raises(TypeError, match="Parameter"):
        model.fc1.weight = Tensor(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="ndarray"):
        model.register_buffer("stats", [1, 2])
    with pytest.raises(TypeError, match="submodule 'fc1'"):
        model.fc1 = "not a module"
    model.fc1 = None  # None removes a submodule, as in PyTorch
    assert "fc1" not in dict(model.named_children())
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        model.missing


def test_repr_matches_pytorch_layout():
    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.Sigmoid()))
    expected = "\n".join([
        "Sequential(",
        "  (0): Linear(in_features=784, out_features=400, bias=True)",
        "  (1): ReLU()",
        "  (2): Sequential(",
        "    (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)",
        "    (1): Sigmoid()",
        "  )",
        ")"])
    assert repr(model) == expected


def test_call_runs_forward_and_a_module_without_forward_says_so():
    lin = nn.Linear(3, 2)
    x = scratchgen.randn(5, 3)
    np.testing.assert_array_equal(lin(x).data, lin.forward(x).data)
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(x)


def test_zero_grad_and_requires_grad():
    model = Encoder()
    model(scratchgen.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not model(scratchgen.randn(2, 3)).requires_grad
    model.requires_grad_(True)
    assert model(scratchgen.randn(2, 3)).requires_grad


def test_apply_and_to_dtype():
    model = AutoEncoder()
    model.apply(lambda m: init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert all(not m.weight.data.any() for m in model.modules() if isinstance(m, nn.Linear))
    before = list(model.parameters())
    model.double()
    assert list(model.parameters()) == before  # the same Parameter objects, new dtype
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.decoder[1].running_var.dtype == np.float64
    assert model.decoder[1].num_batches_tracked.dtype == np.int64
    assert model(scratchgen.randn(4, 3, dtype=np.float64)).dtype == np.float64


# ---------------------------------------------------------------------- train / eval
def test_train_and_eval_set_every_module():
    model = AutoEncoder()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.decoder.train()
    assert model.decoder[1].training and not model.encoder.training
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError):
        model.train("yes")


def test_batchnorm_uses_batch_statistics_in_training_and_running_statistics_in_eval():
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    x = randn64(6, 3, seed=1) * 2.0 + 5.0
    train_out = bn(x).data
    # in training mode the output of each channel has mean 0 and (biased) variance 1/(1+eps/var)
    np.testing.assert_allclose(train_out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train_out.var(axis=0), x.data.var(axis=0) / (x.data.var(axis=0) + 1e-5))
    bn.eval()
    stats = bn.running_mean.copy(), bn.running_var.copy(), int(bn.num_batches_tracked)
    eval_out = bn(x).data
    expected = (x.data - stats[0]) / np.sqrt(stats[1] + 1e-5)
    np.testing.assert_allclose(eval_out, expected, rtol=1e-12)
    assert not np.allclose(eval_out, train_out)
    # eval mode leaves the running statistics alone
    np.testing.assert_array_equal(bn.running_mean, stats[0])
    np.testing.assert_array_equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    # an eval-mode output depends on its example only, not on the rest of the batch
    np.testing.assert_allclose(bn(x[:2]).data, eval_out[:2], rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2), (3, 3, 2, 4)])
def test_batchnorm_running_statistics_follow_pytorchs_update(shape):
    layer = nn.BatchNorm2d(3, momentum=0.3, dtype=np.float64) if len(shape) == 4 else \
        nn.BatchNorm1d(3, momentum=0.3, dtype=np.float64)
    axes = (0,) + tuple(range(2, len(shape)))
    mean, var = np.zeros(3), np.ones(3)
    for step in range(1, 4):
        x = randn64(*shape, seed=step) * step + step
        layer(x)
        # unbiased variance (ddof=1) for the running estimate, exactly as torch.nn.BatchNorm
        mean = 0.7 * mean + 0.3 * x.data.mean(axis=axes)
        var = 0.7 * var + 0.3 * x.data.var(axis=axes, ddof=1)
        np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, var, rtol=1e-12)
        assert layer.num_batches_tracked == step and layer.num_batches_tracked.dtype == np.int64


# ---------------------------------------------------------------------- state_dict
def test_state_dict_holds_copies_of_parameters_and_buffers_in_pytorch_order():
    model = AutoEncoder()
    state = model.state_dict()
    assert list(state) == ["scale", "calls", "encoder.fc1.weight", "encoder.fc1.bias",
                           "encoder.fc2.weight", "decoder.0.weight", "decoder.0.bias",
                           "decoder.1.weight", "decoder.1.bias", "decoder.1.running_mean",
                           "decoder.1.running_var", "decoder.1.num_batches_tracked"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    np.testing.assert_array_equal(state["encoder.fc1.weight"], model.encoder.fc1.weight.data)
    state["encoder.fc1.weight"][...] = 7.0  # a copy: the model does not change
    assert not np.any(model.encoder.fc1.weight.data == 7.0)


def test_state_dict_round_trip_through_npz_restores_outputs_exactly(tmp_path):
    scratchgen.manual_seed(1)
    source = AutoEncoder()
    source(scratchgen.randn(8, 3))  # moves the batch-norm running statistics
    source.eval()
    np.savez(tmp_path / "model.npz", **source.state_dict())
    scratchgen.manual_seed(2)
    target = AutoEncoder().eval()
    x = scratchgen.randn(5, 3)
    assert not np.array_equal(target(x).data, source(x).data)
    weight = target.encoder.fc1.weight
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        result = target.load_state_dict(saved)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.encoder.fc1.weight is weight  # loaded in place: optimizers keep their references
    np.testing.assert_array_equal(target(x).data, source(x).data)
    for key, value in source.state_dict().items():
        loaded = target.state_dict()[key]
        assert loaded.dtype == value.dtype
        np.testing.assert_array_equal(loaded, value)


def test_load_state_dict_reports_every_problem_in_one_error():
    model = AutoEncoder()
    state = model.state_dict()
    del state["encoder.fc1.bias"], state["decoder.1.running_var"]
    state["encoder.fc3.weight"] = np.zeros(2)
    state["decoder.0.weight"] = np.zeros((3, 5), dtype=np.float32)
    state["scale"] = np.zeros((2, 2), dtype=np.float32)
    before = model.state_dict()
    with pytest.raises(nn.StateDictError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for text in ["encoder.fc1.bias", "decoder.1.running_var", "encoder.fc3.weight",
                 "decoder.0.weight: expected (3, 2), got (3, 5)", "scale: expected (1,), got (2, 2)",
                 "missing", "unexpected", "AutoEncoder"]:
        assert text in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    for key, value in model.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_non_strict_skips_keys_but_not_shape_mismatches():
    model = Encoder()
    partial = {"fc1.weight": np.full((4, 3), 0.5), "extra": np.zeros(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["fc1.bias", "fc2.weight"]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model.fc1.weight.data, 0.5)
    assert model.fc1.weight.dtype == np.float32  # cast into the parameter's dtype
    with pytest.raises(nn.StateDictError, match=r"fc1.weight: expected \(4, 3\), got \(3, 4\)"):
        model.load_state_dict({"fc1.weight": np.zeros((3, 4))}, strict=False)
    with pytest.raises(nn.StateDictError, match="dtype"):
        nn.BatchNorm1d(2).load_state_dict({**nn.BatchNorm1d(2).state_dict(),
                                           "num_batches_tracked": np.array(1.5)})


# ---------------------------------------------------------------------- Linear
@given(linear_cases(), st.integers(0, 2**32 - 1))
def test_linear_gradients(case, seed):
    shape, n_in, n_out, bias = case
    layer = nn.Linear(n_in, n_out, bias=bias, dtype=np.float64)
    x = t64(np.random.default_rng(seed).standard_normal(shape))
    out = layer(x)
    assert out.shape == shape[:-1] + (n_out,) and out.dtype == np.float64
    expected = x.data @ layer.weight.data.T + (layer.bias.data if bias else 0)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert check_module_grads(layer, x)


def test_linear_shape_error_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear\(784 -> 400\) got input of shape \(128, 20\)"):
        nn.Linear(784, 400)(scratchgen.zeros(128, 20))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(-1, 3)
    with pytest.raises(ValueError, match="dtype"):
        nn.Linear(2, 3, dtype=np.int32)


# ---------------------------------------------------------------------- convolutions
@settings(max_examples=15)
@given(conv2d_cases(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv2d_gradients_over_strides_paddings_and_kernels(case, bias, seed):
    c_out, c_in, kh, kw = case["w_shape"]
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=case["stride"], padding=case["padding"],
                      bias=bias, dtype=np.float64)
    x = t64(np.random.default_rng(seed).standard_normal(case["x_shape"]))
    out = layer(x)
    (sh, sw), (ph, pw) = case["stride"], case["padding"]
    n, _, h, w = case["x_shape"]
    assert out.shape == (n, c_out, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    expected = F.conv2d(x, layer.weight, layer.bias, case["stride"], case["padding"]).data
    np.testing.assert_array_equal(out.data, expected)
    assert check_module_grads(layer, x)


@settings(max_examples=15)
@given(conv_transpose2d_cases(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_transpose2d_gradients_over_strides_paddings_and_kernels(case, bias, seed):
    c_in, c_out, kh, kw = case["w_shape"]
    layer = nn.ConvTranspose2d(c_in, c_out, (kh, kw), stride=case["stride"], padding=case["padding"],
                               output_padding=case["output_padding"], bias=bias, dtype=np.float64)
    assert layer.weight.shape == (c_in, c_out, kh, kw)
    x = t64(np.random.default_rng(seed).standard_normal(case["x_shape"]))
    out = layer(x)
    (sh, sw), (ph, pw), (oh, ow) = case["stride"], case["padding"], case["output_padding"]
    n, _, h, w = case["x_shape"]
    assert out.shape == (n, c_out, (h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow)
    assert check_module_grads(layer, x)


def test_conv_transpose2d_inverts_conv2d_shapes():
    conv = nn.Conv2d(3, 5, 4, stride=2, padding=1)
    deconv = nn.ConvTranspose2d(5, 3, 4, stride=2, padding=1)
    x = scratchgen.randn(2, 3, 14, 14)
    assert conv(x).shape == (2, 5, 7, 7)
    assert deconv(conv(x)).shape == x.shape


def test_conv_shape_errors_name_layer_and_shapes():
    conv = nn.Conv2d(3, 8, 5)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(5, 5\).*\(2, 1, 9, 9\).*\(N, 3, H, W\)"):
        conv(scratchgen.zeros(2, 1, 9, 9))
    with pytest.raises(ValueError, match=r"\(2, 3, 9\)"):
        conv(scratchgen.zeros(2, 3, 9))
    with pytest.raises(ValueError, match=r"padded input 4x6 is smaller than the 5x5 kernel"):
        nn.Conv2d(3, 8, 5, padding=(0, 1))(scratchgen.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"ConvTranspose2d.*\(1, 2, 3, 3\)"):
        nn.ConvTranspose2d(4, 2, 3)(scratchgen.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(1, 1, 3, stride=0)


# ---------------------------------------------------------------------- batch norm
@settings(max_examples=15)
@given(st.sampled_from([2, 3, 4]).flatmap(lambda d: batch_norm_shapes(d)), st.integers(0, 2**32 - 1))
def test_batchnorm_gradients_in_training_mode(shape, seed):
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    layer = cls(shape[1], dtype=np.float64)
    rng = np.random.default_rng(seed)
    init.normal_(layer.weight), init.normal_(layer.bias)  # away from the trivial 1 and 0
    x = t64(rng.standard_normal(shape) * 1.5 + 0.5)
    assert check_module_grads(layer, x)


@settings(max_examples=10)
@given(st.sampled_from([2, 3, 4]).flatmap(lambda d: batch_norm_shapes(d)), st.integers(0, 2**32 - 1))
def test_batchnorm_gradients_in_eval_mode(shape, seed):
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    layer = cls(shape[1], dtype=np.float64)
    rng = np.random.default_rng(seed)
    layer.running_mean[:] = rng.standard_normal(shape[1])
    layer.running_var[:] = rng.uniform(0.5, 2.0, shape[1])
    layer.eval()
    assert check_module_grads(layer, t64(rng.standard_normal(shape)))


def test_batchnorm_shape_errors():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4.*\(8, 3\).*\(N, 4\) or \(N, 4, L\)"):
        nn.BatchNorm1d(4)(scratchgen.zeros(8, 3))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4.*\(8, 4\).*\(N, 4, H, W\)"):
        nn.BatchNorm2d(4)(scratchgen.zeros(8, 4))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(4, momentum=1.5)


# ---------------------------------------------------------------------- embedding
def test_embedding_gradient_adds_up_repeated_indices():
    emb = nn.Embedding(4, 3, dtype=np.float64)
    idx = np.array([[0, 2], [0, 0]])
    out = emb(idx)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.data[1, 0], emb.weight.data[0])
    out.sum().backward()
    # row 0 was looked up three times, row 2 once, rows 1 and 3 never
    np.testing.assert_array_equal(emb.weight.grad, np.array([[3.0] * 3, [0] * 3, [1] * 3, [0] * 3]))
    assert check_module_grads(emb, idx)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        emb(np.array([4]))


@given(st.lists(st.integers(0, 4), min_size=1, max_size=8))
def test_embedding_gradients_for_any_indices(indices):
    emb = nn.Embedding(5, 2, dtype=np.float64)
    assert check_module_grads(emb, np.array(indices))


# ---------------------------------------------------------------------- activations and shapes
@given(seeded_arrays((3, 4)), st.floats(0.01, 0.5))
def test_activations_match_functional_and_have_correct_gradients(array, slope):
    x = t64(np.where(np.abs(array) < 0.05, 0.5, array))  # away from the kink at 0
    cases = [(nn.ReLU(), F.relu), (nn.Tanh(), F.tanh), (nn.Sigmoid(), F.sigmoid),
             (nn.LeakyReLU(slope), lambda v: F.leaky_relu(v, slope))]
    for layer, fn in cases:
        np.testing.assert_array_equal(layer(x).data, fn(x).data)
        assert gradcheck(layer, [x])
    np.testing.assert_allclose(nn.LeakyReLU(slope)(x).data, np.where(x.data > 0, x.data, slope * x.data))
    assert nn.LeakyReLU().negative_slope == 0.01


@given(away_from_zero())
def test_identity_returns_its_input(value):
    x = Tensor(np.array([value]))
    assert nn.Identity()(x) is x


def test_flatten_and_unflatten():
    x = randn64(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(-2)(x).shape == (2, 3, 20)
    assert nn.Flatten()(Tensor(np.zeros((0, 3, 4)))).shape == (0, 12)  # an empty batch
    flat = nn.Flatten()(x)
    np.testing.assert_array_equal(nn.Unflatten(1, (3, 4, 5))(flat).data, x.data)
    assert nn.Unflatten(1, (3, -1))(flat).shape == (2, 3, 20)
    assert nn.Unflatten(-2, (2, 2))(x).shape == (2, 3, 2, 2, 5)
    assert gradcheck(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (12, 5))), [x])
    with pytest.raises(ValueError, match=r"Unflatten.*\(2, 60\).*size 60.*\(7, 8\)"):
        nn.Unflatten(1, (7, 8))(flat)
    with pytest.raises(ValueError, match=r"Flatten.*dimension 3 is out of range"):
        nn.Flatten(3)(Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError):
        nn.Unflatten(1, (-1, -1))


# ---------------------------------------------------------------------- Sequential
def test_sequential_indexing_len_iteration_and_names():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:]
    assert [name for name, _ in tail.named_parameters()] == ["2.weight", "2.bias"]  # keys kept
    with pytest.raises(IndexError):
        model[3]
    named = nn.Sequential({"enc": nn.Linear(2, 2), "act": nn.Tanh()})
    assert [name for name, _ in named.named_parameters()] == ["enc.weight", "enc.bias"]
    model.append(nn.Sigmoid())
    assert len(model) == 4 and isinstance(model[3], nn.Sigmoid)
    with pytest.raises(TypeError, match="nn.ReLU"):
        nn.Sequential(nn.Linear(2, 2), F.relu)


def test_sequential_error_names_the_failing_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"Linear\(5 -> 2\) got input of shape \(2, 3\)"):
        model(scratchgen.zeros(2, 4))


def test_mlp_gradients():
    scratchgen.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.Tanh(),
                          nn.Linear(4, 4, dtype=np.float64), nn.LeakyReLU(0.2),
                          nn.Linear(4, 2, dtype=np.float64), nn.Sigmoid())
    assert check_module_grads(model, randn64(5, 3, seed=4))


def test_conv_encoder_gradients_with_batchnorm_in_training_mode():
    scratchgen.manual_seed(5)
    f64 = dict(dtype=np.float64)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, **f64), nn.BatchNorm2d(3, **f64),
                          nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(3 * 2 * 2, 2, **f64))
    assert check_module_grads(model, randn64(3, 2, 4, 4, seed=6))


def test_conv_decoder_gradients():
    scratchgen.manual_seed(7)
    f64 = dict(dtype=np.float64)
    model = nn.Sequential(nn.Embedding(3, 8, **f64), nn.Unflatten(1, (2, 2, 2)),
                          nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, **f64),
                          nn.BatchNorm2d(2, **f64), nn.ReLU(),
                          nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1, **f64),
                          nn.Tanh())
    labels = np.array([0, 2, 2])
    assert model(labels).shape == (3, 1, 8, 8)
    assert check_module_grads(model, labels)


# ---------------------------------------------------------------------- default initialisation
def assert_uniform(values, bound):
    """values look like U(-bound, bound): inside the bounds, reaching near them, with the right
    mean and variance (within 5 standard errors)."""
    v = values.astype(np.float64).ravel()
    n = v.size
    assert np.abs(v).max() <= bound * (1 + 1e-6)
    assert np.abs(v).max() > bound * (1 - 10 / n)  # P(all n draws inside (1 - 10/n) b) ≈ e^-10
    assert abs(v.mean()) < 5 * bound / math.sqrt(3 * n)
    # Var U(-b, b) = b²/3; the sample second moment has variance (b⁴/5 - b⁴/9) / n
    assert abs(np.mean(v * v) - bound ** 2 / 3) < 5 * math.sqrt(4 * bound ** 4 / 45 / n)


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Linear(300, 200), 300),
    (lambda: nn.Conv2d(16, 32, 5), 16 * 25),
    (lambda: nn.Conv2d(8, 64, (3, 2)), 8 * 6),
    # NOTE: PyTorch's fan_in for ConvTranspose2d is weight.shape[1]·kH·kW = C_out·kH·kW
    (lambda: nn.ConvTranspose2d(64, 16, 4), 16 * 16),
])
def test_default_weight_init_is_pytorchs_kaiming_uniform_with_a_sqrt5(make, fan_in):
    scratchgen.manual_seed(0)
    layer = make()
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert_uniform(layer.weight.data, 1 / math.sqrt(fan_in))
    bias = layer.bias.data
    assert np.abs(bias).max() <= 1 / math.sqrt(fan_in) * (1 + 1e-6)
    assert np.abs(bias).max() > 0.8 / math.sqrt(fan_in)  # P(all inside 0.8 b) = 0.8^n, n >= 16


def test_default_init_of_embedding_and_batchnorm():
    scratchgen.manual_seed(0)
    w = nn.Embedding(1000, 50).weight.data.astype(np.float64)
    n = w.size
    assert abs(w.mean()) < 5 / math.sqrt(n)
    assert abs(w.var() - 1) < 5 * math.sqrt(2 / (n - 1))
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.data, np.ones(5))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(5))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(5))
    np.testing.assert_array_equal(bn.running_var, np.ones(5))
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked == 0
    assert bn.num_batches_tracked.dtype == np.int64


def test_init_is_reproducible_from_the_global_seed():
    scratchgen.manual_seed(42)
    a = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 3), nn.Embedding(5, 2)).state_dict()
    scratchgen.manual_seed(42)
    b = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 3), nn.Embedding(5, 2)).state_dict()
    c = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(1, 2, 3), nn.Embedding(5, 2)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not any(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_functions_fill_in_place_and_keep_dtype(dtype):
    scratchgen.manual_seed(0)
    w = nn.Parameter(np.empty((200, 300), dtype=dtype))
    array = w.data
    assert init.uniform_(w, -0.5, 0.5) is w and w.data is array and w.dtype == dtype
    assert_uniform(w.data - 0.0, 0.5)
    init.normal_(w, 1.0, 0.1)
    n = w.data.size
    assert abs(w.data.mean() - 1.0) < 5 * 0.1 / math.sqrt(n)
    assert abs(w.data.astype(np.float64).std() - 0.1) < 5 * 0.1 / math.sqrt(2 * n)
    init.zeros_(w)
    assert not w.data.any()
    init.ones_(w)
    assert (w.data == 1).all() and w.data is array
    # He: Var = gain²/fan_in with gain = √(2/(1+a²)); uniform bound √3·std
    init.kaiming_uniform_(w, a=0.2)
    assert_uniform(w.data, math.sqrt(6 / ((1 + 0.04) * 300)))
    init.kaiming_uniform_(w, nonlinearity="relu", mode="fan_out")
    assert_uniform(w.data, math.sqrt(6 / 200))
    # Glorot: bound gain·√(6/(fan_in + fan_out))
    init.xavier_uniform_(w, gain=2.0)
    assert_uniform(w.data, 2.0 * math.sqrt(6 / 500))
    # for a conv weight (C_out, C_in, kH, kW) both fans include the kernel size
    conv_w = nn.Parameter(np.empty((40, 20, 3, 3), dtype=dtype))
    init.xavier_uniform_(conv_w)
    assert_uniform(conv_w.data, math.sqrt(6 / (20 * 9 + 40 * 9)))
    init.kaiming_uniform_(conv_w, mode="fan_out")
    assert_uniform(conv_w.data, math.sqrt(6 / ((1 + 0.0) * 40 * 9)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(nn.Parameter(np.zeros(3)))
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_uniform_(w, nonlinearity="swish")


def test_init_gains():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == math.sqrt(1 / 3)
    assert init.calculate_gain("sigmoid") == 1


# ---------------------------------------------------------------------- clip_grad_norm_
@given(st.lists(seeded_arrays((3,), scale=2.0), min_size=1, max_size=3),
       st.floats(0.1, 5.0), st.booleans())
def test_clip_grad_norm(grads, max_norm, with_unused):
    params = [nn.Parameter(np.zeros(3)) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = np.array(g)
    unused = nn.Parameter(np.zeros(2))  # no gradient: skipped
    originals = [np.array(g) for g in grads]
    total = clip_grad_norm_(params + [unused] * with_unused, max_norm)
    expected = math.sqrt(sum(float(x) ** 2 for g in originals for x in g))
    assert total == pytest.approx(expected, rel=1e-12)
    if expected > max_norm:
        scale = max_norm / (expected + 1e-6)
        for p, g in zip(params, originals):
            np.testing.assert_allclose(p.grad, g * scale, rtol=1e-12)
        new_norm = math.sqrt(sum(float(np.sum(p.grad ** 2)) for p in params))
        assert new_norm == pytest.approx(max_norm, rel=1e-5)
    else:
        for p, g in zip(params, originals):
            np.testing.assert_array_equal(p.grad, g)
    assert unused.grad is None


def test_clip_grad_norm_details():
    p = nn.Parameter(np.zeros(2, dtype=np.float32))
    p.grad = np.array([3.0, -4.0], dtype=np.float32)
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)  # a single tensor is accepted
    assert p.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, [0.6, -0.8], rtol=1e-5)
    p.grad = np.array([3.0, -4.0], dtype=np.float32)
    assert clip_grad_norm_([p], 2.0, norm_type=float("inf")) == pytest.approx(4.0)
    np.testing.assert_allclose(p.grad, [1.5, -2.0], rtol=1e-5)
    assert clip_grad_norm_([nn.Parameter(np.zeros(2))], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([p], -1.0)
