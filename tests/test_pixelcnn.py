"""Gated PixelCNN: the masks (no output at or before a position ever sees its code — every layer, both
stacks, several kernel sizes), the receptive field (no blind spot, unlike one masked stack), gradient
checks of the masked convolution, the gate, the shift and a whole gated layer, exact normalisation,
class and context conditioning, learning and sampling."""
import numpy as np
import pytest

from scratchgen import functional as F, optim
from scratchgen.finite_differences import gradcheck
from scratchgen.kernels.backend import use_backend
from scratchgen.models import pixelcnn as pc
from scratchgen.random import manual_seed
from scratchgen.autograd import Tensor, no_grad


def small_net(grid=(4, 5), k=3, layers=3, num_codes=5, **kw):
    manual_seed(0)
    return pc.GatedPixelCNN(grid, num_codes, channels=6, layers=layers, kernel_size=k, embed=3, dtype=np.float64,
                            **kw)


def stack_outputs(net, codes):
    """Every layer's vertical and horizontal outputs and the logits, for flattened codes (1, H·W)."""
    with no_grad():
        x = net.embed(codes.reshape(len(codes), *net.grid)).permute(0, 3, 1, 2)
        v = h = x
        outs = []
        for layer in net.layers:
            v, h, _ = layer(v, h)
            outs.append((v.data.copy(), h.data.copy()))
        return outs, net.logits(codes).data


def changed_positions(a, b):
    """(H, W) booleans: where any channel differs, for (1, C, H, W) arrays."""
    return np.abs(a - b).max(axis=(0, 1)) > 0


# ---------------------------------------------------------------------------- masks
def test_masks_keep_exactly_the_past():
    np.testing.assert_array_equal(pc.vertical_mask(3), [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(pc.horizontal_mask(5, "A"), [[1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(pc.horizontal_mask(5, "B"), [[1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(pc.single_stack_mask(3, "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="mask_type"):
        pc.horizontal_mask(3, "C")


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("kind", ["vertical", "A", "B", "single A", "single B"])
def test_a_masked_convolution_equals_the_full_kernel_times_its_mask(k, kind, numpy_backend):
    """The layer convolves only the mask's rectangle of ones (a crop, with shifted borders): its output and
    gradients must be those of the whole kernel multiplied by the mask."""
    rng = np.random.default_rng(k)
    mask = {"vertical": pc.vertical_mask(k), "A": pc.horizontal_mask(k, "A"), "B": pc.horizontal_mask(k, "B"),
            "single A": pc.single_stack_mask(k, "A"), "single B": pc.single_stack_mask(k, "B")}[kind]
    padding = (mask.shape[0] // 2, k // 2)
    layer = pc.MaskedConv2d(3, 4, mask, padding, dtype=np.float64)
    layer.weight.data[...] = rng.standard_normal(layer.weight.shape)
    x = Tensor(rng.standard_normal((2, 3, 5, 6)), requires_grad=True)
    g = rng.standard_normal((2, 4, 5, 6))
    out = layer(x)
    (out * Tensor(g)).sum().backward()
    got = out.data, x.grad, layer.weight.grad
    x.grad = layer.weight.grad = None
    full = F.conv2d(x, layer.weight * mask, layer.bias, 1, padding)
    (full * Tensor(g)).sum().backward()
    for a, b in zip(got, (full.data, x.grad, layer.weight.grad)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_perturbing_code_i_changes_no_output_at_or_before_i_in_any_layer(k):
    """Horizontal stacks and logits: only positions after i (raster order) may change. Vertical stacks
    (which the horizontal one reads one row lower): only rows at or below i's row."""
    net = small_net(k=k, layers=3)
    H, W = net.grid
    rng = np.random.default_rng(k)
    codes = rng.integers(0, 5, (1, H * W))
    outs, logits = stack_outputs(net, codes)
    raster = np.arange(H * W).reshape(H, W)
    reached_logits = np.zeros(H * W, bool)
    for i in range(H * W):
        other = codes.copy()
        other[0, i] = (other[0, i] + 1) % 5
        outs2, logits2 = stack_outputs(net, other)
        for j, ((v, h), (v2, h2)) in enumerate(zip(outs, outs2)):
            moved_h = changed_positions(h, h2)
            assert not moved_h[raster <= i].any(), f"layer {j} horizontal stack at or before position {i}"
            moved_v = changed_positions(v, v2)
            assert not moved_v[: i // W].any(), f"layer {j} vertical stack above the row of position {i}"
        moved = np.abs(logits - logits2).max(axis=2)[0] > 0
        assert not moved[:i + 1].any(), f"logits at or before position {i}"
        reached_logits |= moved
    assert reached_logits[1:].all()  # and every later position does see something earlier


def test_the_last_position_sees_every_earlier_one_and_a_single_masked_stack_does_not():
    """The blind spot: with one k x k masked stack (PixelCNN 2016a), position (4, 1) of a 5x5 grid misses
    (2, 4), (3, 3) and (3, 4), up and to the right, however deep the stack; the two stacks see every earlier
    position, from the last position and from (4, 1)."""
    grid = (5, 5)
    net = small_net(grid=grid, k=3, layers=6)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, (1, 25))
    field = pc.receptive_field(lambda c: net.logits(c).data, codes, 5, position=24)
    assert field[:24].all() and not field[24]
    field = pc.receptive_field(lambda c: net.logits(c).data, codes, 5, position=21)
    assert field[:21].all() and not field[21:].any()

    manual_seed(0)  # one stack: type A then type B masked 3x3 convolutions, linear (nothing can cancel)
    convs = [pc.MaskedConv2d(1 if i == 0 else 4, 4, pc.single_stack_mask(3, "A" if i == 0 else "B"), 1,
                             dtype=np.float64) for i in range(6)]

    def single_stack(c):
        x = Tensor(c.reshape(len(c), 1, *grid).astype(np.float64))
        for conv in convs:
            x = conv(x)
        return x.data.sum(1).reshape(len(c), 25, 1)

    blind = pc.receptive_field(single_stack, codes, 5, position=21)
    assert not blind[21:].any()
    # the blind spot: (2, 4), (3, 3) and (3, 4), up and to the right; everything else before (4, 1) is seen
    assert set(np.flatnonzero(~blind[:21])) == {2 * 5 + 4, 3 * 5 + 3, 3 * 5 + 4}


# ---------------------------------------------------------------------------- gradient checks
@pytest.fixture
def numpy_backend():
    with use_backend("numpy"):  # the finite differences run many small convolutions
        yield


def test_gate_shift_and_masked_conv_pass_gradcheck(numpy_backend):
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 4, 3, 3)), requires_grad=True)
    assert gradcheck(pc.gate, [x], atol=1e-8, rtol=1e-6)
    assert gradcheck(pc.shift_down, [x], atol=1e-8, rtol=1e-6)
    manual_seed(1)
    conv = pc.MaskedConv2d(2, 3, pc.vertical_mask(3), (1, 1), dtype=np.float64)
    inp = Tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)
    assert gradcheck(lambda a, w, b: conv(a), [inp, conv.weight, conv.bias], atol=1e-8, rtol=1e-6)
    conv(inp).sum().backward()  # masked weights get exactly zero gradient
    assert np.all(conv.weight.grad[:, :, 2] == 0) and np.any(conv.weight.grad[:, :, :2] != 0)


def test_gate_is_tanh_times_sigmoid_of_the_two_halves():
    a = np.linspace(-2, 2, 2 * 3 * 2).reshape(1, 6, 2)
    out = pc.gate(Tensor(a)).data
    np.testing.assert_allclose(out, np.tanh(a[:, :3]) / (1 + np.exp(-a[:, 3:])), rtol=1e-15)


@pytest.mark.parametrize("first", [True, False])
def test_gated_layer_passes_gradcheck_for_inputs_parameters_and_conditioning(first, numpy_backend):
    manual_seed(2)
    layer = pc.GatedLayer(3, 2, 3, first, 2, dtype=np.float64)
    rng = np.random.default_rng(2)
    v = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    h = Tensor(rng.standard_normal((2, 3 if first else 2, 3, 3)), requires_grad=True)
    if not first:
        layer = pc.GatedLayer(2, 2, 3, first, 2, dtype=np.float64)
        v = Tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    cv = Tensor(rng.standard_normal((2, 4, 1, 1)), requires_grad=True)
    ch = Tensor(rng.standard_normal((2, 4, 3, 3)), requires_grad=True)
    params = [p for _, p in layer.named_parameters()]

    def f(v, h, cv, ch, *_):
        a, b, c = layer(v, h, cv, ch)
        return (a * a).sum() + (b * b * b).sum() + (c * a).sum()
    assert gradcheck(f, [v, h, cv, ch, *params], atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------- a distribution
def test_probabilities_of_all_grids_sum_to_one_with_class_and_context():
    manual_seed(3)
    net = pc.GatedPixelCNN((2, 2), 3, channels=4, layers=2, embed=2, num_classes=2, context_grid=(1, 1),
                           dtype=np.float64)
    grids = np.array(np.meshgrid(*[np.arange(3)] * 4, indexing="ij")).reshape(4, -1).T  # all 81 grids
    for label, ctx in ((0, 1), (1, 2)):
        logp = net.log_prob(grids, np.full((81, 1), ctx), np.full(81, label))
        assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-12)
    # the class and the context both change the distribution
    base = net.log_prob(grids[:5], np.full((5, 1), 1), np.zeros(5, np.int64))
    assert np.abs(net.log_prob(grids[:5], np.full((5, 1), 1), np.ones(5, np.int64)) - base).min() > 0
    assert np.abs(net.log_prob(grids[:5], np.full((5, 1), 0), np.zeros(5, np.int64)) - base).min() > 0
    assert net.loss(grids, np.ones((81, 1), np.int64), np.zeros(81, np.int64)).item() == pytest.approx(
        -net.log_prob(grids, np.ones((81, 1), np.int64), np.zeros(81, np.int64)).mean() / 4, rel=1e-12)


def test_learns_a_class_dependent_grid_and_samples_it_with_a_temperature():
    """Class y draws c_00 uniformly and then copies c_00 + y (mod 4) into the other three positions."""
    manual_seed(4)
    net = pc.GatedPixelCNN((2, 2), 4, channels=16, layers=2, embed=4, num_classes=2)
    opt = optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(5)
    first, y = rng.integers(0, 4, 128), rng.integers(0, 2, 128)
    data = np.stack([first] + [(first + y) % 4] * 3, axis=1)
    for _ in range(120):
        loss = net.loss(data, labels=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5  # from log 4 = 1.39 towards log(4) / 4 = 0.35
    for label in (0, 1):
        s = net.sample(200, labels=np.full(200, label))
        assert np.mean(np.all(s[:, 1:] == ((s[:, :1] + label) % 4), axis=1)) > 0.9
        assert len(set(s[:, 0])) == 4
    cold = net.sample(200, labels=np.zeros(200, np.int64), temperature=0.05)
    hot = net.sample(200, labels=np.zeros(200, np.int64), temperature=1.0)
    assert np.mean(cold[:, 1:] == cold[:, :1]) >= np.mean(hot[:, 1:] == hot[:, :1])
    with pytest.raises(ValueError, match="temperature"):
        net.sample(2, labels=np.zeros(2, np.int64), temperature=0)


def test_shapes_and_inputs_are_checked():
    net = small_net()
    with pytest.raises(ValueError, match=r"\(N, 20\)"):
        net.logits(np.zeros((2, 19), np.int64))
    with pytest.raises(ValueError, match="unconditional"):
        net.loss(np.zeros((2, 20), np.int64), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="odd"):
        pc.GatedLayer(2, 2, 4, True, 2)
