"""VQ-VAE and VQ-VAE-2: the vector quantiser (nearest codeword, straight-through gradient, which
parameters each loss term trains, the loss formulas, moving-average codebook), the MADE prior over
codes (autoregressive, normalised, learns), training on the bundled 8x8 digits, and the command line."""
import json

import numpy as np
import pytest
from hypothesis import given

from scratchgen import cli, optim
from scratchgen import functional as F
from scratchgen.data import DATASETS, DataLoader, load
from scratchgen.finite_differences import numerical_gradient
from scratchgen.models import vector_quantizer as vq
from scratchgen.models.code_prior import CodePrior, made_masks
from scratchgen.models.vqvae import VQVAE, VQVAE2
from scratchgen.random import get_rng, get_state, manual_seed, set_state
from scratchgen.autograd import Tensor
from scratchgen.training.config import load_run, resolve_config
from strategies import quantizer_grids

DIGITS = DATASETS["digits8"]


def make(family=VQVAE, **given):
    """A model built the way `scratchgen train` builds it (small unless told otherwise)."""
    config = resolve_config(family, {"channels": 16, "codebook_size": 16, "code_dim": 4,
                                         "prior_hidden": [64], **given})
    manual_seed(config["seed"])
    return family(config, DIGITS)


def brute_force_nearest(vectors, codebook):
    """Index of the nearest codeword of each row, by comparing it with every codeword in turn."""
    return np.array([min(range(len(codebook)), key=lambda j: ((v - codebook[j]) ** 2).sum()) for v in vectors])


def quantizer_with(codebook, **kw):
    layer = vq.VectorQuantizer(*codebook.shape, init="uniform", dtype=np.float64, **kw)
    (layer.codebook.data if kw.get("update", "loss") == "loss" else layer.codebook)[...] = codebook
    if kw.get("update") == "ema":
        layer.ema_sum[...] = codebook  # ema_count starts at 1, so s / n is the codebook
    return layer


# ---------------------------------------------------------------------------- quantisation
@given(quantizer_grids())
def test_quantizer_picks_the_nearest_codeword(case):
    z, codebook = case
    out = quantizer_with(codebook)(Tensor(z))
    vectors = z.transpose(0, 2, 3, 1).reshape(-1, z.shape[1])  # raster order: n, then row, then column
    expected = brute_force_nearest(vectors, codebook)
    np.testing.assert_array_equal(out.indices.ravel(), expected)
    np.testing.assert_array_equal(vq.nearest_codes(vectors, codebook), expected)
    # z_q holds the chosen codewords, at the positions of their vectors (z + (e - z) rounds, hence allclose)
    np.testing.assert_allclose(out.z_q.data.transpose(0, 2, 3, 1).reshape(-1, z.shape[1]), codebook[expected],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(vq.squared_distances(vectors, codebook),
                               ((vectors[:, None] - codebook[None]) ** 2).sum(-1), atol=1e-12)


def test_straight_through_gives_z_e_the_gradient_taken_at_z_q():
    rng = np.random.default_rng(0)
    z_e = Tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    book = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    u, v = Tensor(rng.standard_normal(z_e.shape)), Tensor(rng.standard_normal(z_e.shape))

    def f(z_q):  # a loss whose gradient depends on where it is taken
        return (z_q.tanh() * u + z_q * z_q * v).sum()

    def quantize(z):
        return vq.to_grid(F.embedding(vq.nearest_codes(vq.to_vectors(z).data, book.data), book), z.shape)

    z_q = vq.straight_through(z_e, quantize(z_e))
    f(z_q).backward()
    at_z_q = numerical_gradient(f, [Tensor(z_q.data.copy())], 0, np.ones(()))
    np.testing.assert_allclose(z_e.grad, at_z_q, rtol=1e-6, atol=1e-9)
    assert not np.allclose(at_z_q, numerical_gradient(f, [Tensor(z_e.data.copy())], 0, np.ones(())), atol=1e-3)
    assert book.grad is None  # the loss after the bottleneck never trains the codebook
    # the true derivative of z_e -> f(quantize(z_e)) is zero: nearest-neighbour lookup is piecewise constant
    true = numerical_gradient(lambda z: f(quantize(z)), [Tensor(z_e.data.copy())], 0, np.ones(()))
    assert np.all(true == 0)


def _nonzero_grads(module):
    return {name for name, p in module.named_parameters() if p.grad is not None and np.abs(p.grad).max() > 0}


@pytest.mark.parametrize("family", [VQVAE, VQVAE2])
def test_each_loss_term_trains_only_its_own_side(family):
    """Reconstruction: encoder and decoder, never a codebook. Codebook loss: only codebooks.
    Commitment loss: only the encoder(s)."""
    model = make(family)
    net, x = model.net, Tensor(load("digits8", "train")[:16][0])
    names = [n for n, _ in net.named_parameters()]
    codebooks = {n for n in names if n.startswith("quantizer")}
    decoder = {n for n in names if n.startswith(("decoder.", "upsample_top"))}
    encoder = set(names) - codebooks - decoder  # VQ-VAE-2: includes decoder_top, which feeds the bottom encoder
    net.train()
    for term in ("recon", "codebook", "commitment"):
        net.zero_grad()
        x_hat, qs = net(x)
        loss = {"recon": F.mse_loss(x_hat, x), "codebook": sum(q.codebook_loss for q in qs),
                "commitment": sum(q.commitment_loss for q in qs)}[term]
        loss.backward()
        expected = {"recon": encoder | decoder, "codebook": codebooks, "commitment": encoder}[term]
        assert _nonzero_grads(net) == expected, term


def test_vq_losses_and_their_gradients_match_the_formulas():
    rng = np.random.default_rng(1)
    z, book = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((4, 3))
    layer = quantizer_with(book, beta=0.25)
    z_e = Tensor(z, requires_grad=True)
    out = layer(z_e)
    Z = z.transpose(0, 2, 3, 1).reshape(-1, 3)
    k = brute_force_nearest(Z, book)
    m, d = Z.shape
    dist = ((Z - book[k]) ** 2).mean()
    assert out.codebook_loss.item() == pytest.approx(dist, rel=1e-12)
    assert out.commitment_loss.item() == pytest.approx(dist, rel=1e-12)
    assert out.loss.item() == pytest.approx(dist + 0.25 * dist, rel=1e-12)
    out.loss.backward()
    # d/de_j mean ||sg[z] - e||² = (2 / (M·D)) Σ_{i: k_i = j} (e_j - z_i)
    # d/dz_i β mean ||z - sg[e]||² = β (2 / (M·D)) (z_i - e_{k_i})
    grad_book = np.zeros_like(book)
    np.add.at(grad_book, k, 2 / (m * d) * (book[k] - Z))
    np.testing.assert_allclose(layer.codebook.grad, grad_book, rtol=1e-10, atol=1e-14)
    grad_z = (0.25 * 2 / (m * d) * (Z - book[k])).reshape(2, 2, 3, 3).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(z_e.grad, grad_z, rtol=1e-10, atol=1e-14)


def test_model_loss_is_pixel_mse_plus_beta_weighted_vq_terms():
    model = make(beta=0.5)
    x = load("digits8", "train")[:8][0]
    model.net.train()
    x_hat, (q,), recon, loss = model.forward(x)
    assert recon.item() == pytest.approx(((x_hat.data - x) ** 2).mean(), rel=1e-5)
    assert loss.item() == pytest.approx(recon.item() + q.codebook_loss.item() + 0.5 * q.commitment_loss.item(),
                                        rel=1e-5)


def test_ema_codebook_moves_to_the_moving_average_of_its_vectors():
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [9.0, 9.0]])  # the last one is never chosen
    rng = np.random.default_rng(2)
    assign = np.arange(24) % 3
    vectors = centres[assign] + 0.3 * rng.standard_normal((24, 2))
    z = vectors.reshape(2, 3, 4, 2).transpose(0, 3, 1, 2)
    book = centres + 0.5
    layer = quantizer_with(book, update="ema", decay=0.9)
    assert "codebook" not in dict(layer.named_parameters())  # a buffer, not trained by the optimizer
    out = layer(Tensor(z))
    np.testing.assert_array_equal(out.indices.ravel(), assign)
    for j in range(3):  # n_j = γ·1 + (1-γ)·count_j,  s_j = γ e_j + (1-γ) Σ z_i,  e_j = s_j / n_j
        members = vectors[assign == j]
        expected = (0.9 * book[j] + 0.1 * members.sum(0)) / (0.9 + 0.1 * len(members))
        np.testing.assert_allclose(layer.codebook[j], expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.codebook[3], book[3])  # unused: unchanged
    assert out.loss.item() == pytest.approx(0.25 * out.commitment_loss.item(), rel=1e-12)  # no codebook term
    for _ in range(300):  # with the assignments fixed, the averages converge to the cluster means
        layer(Tensor(z))
    np.testing.assert_allclose(layer.codebook[:3], [vectors[assign == j].mean(0) for j in range(3)], atol=1e-9)
    before = layer.codebook.copy()
    layer.eval()
    layer(Tensor(z + 1.0))
    np.testing.assert_array_equal(layer.codebook, before)  # eval mode: no updates


def test_data_init_puts_every_codeword_on_a_distinct_encoder_output():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 3, 4, 4))
    fresh = vq.VectorQuantizer(5, 3, dtype=np.float64).eval()
    fresh(Tensor(z))
    assert fresh.initialized == 0  # evaluation never initialises
    layer = vq.VectorQuantizer(5, 3, dtype=np.float64)
    layer(Tensor(z))
    vectors = z.transpose(0, 2, 3, 1).reshape(-1, 3)
    rows = [int(np.flatnonzero((vectors == e).all(1))[0]) for e in layer.codebook.data]
    assert len(set(rows)) == 5 and layer.initialized == 1
    first = layer.codebook.data.copy()
    layer(Tensor(z + 1.0))
    np.testing.assert_array_equal(layer.codebook.data, first)  # only the first training batch


def test_perplexity_is_the_effective_number_of_codes():
    assert vq.perplexity(np.zeros(10, int), 8) == pytest.approx(1.0)
    assert vq.perplexity(np.arange(8), 8) == pytest.approx(8.0)
    assert vq.perplexity(np.array([0, 0, 1, 2]), 8) == pytest.approx(2 ** 1.5)  # p = (1/2, 1/4, 1/4)


def test_quantizer_errors_name_the_shapes():
    layer = vq.VectorQuantizer(4, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(2, 5, 4, 4\)"):
        layer(Tensor(np.zeros((2, 5, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="update"):
        vq.VectorQuantizer(4, 3, update="kmeans")
    with pytest.raises(ValueError, match="prior-fraction"):
        make(prior_fraction=1.0)


# ---------------------------------------------------------------------------- the prior
def test_made_prior_is_autoregressive_and_conditioned_on_its_context():
    manual_seed(0)
    prior = CodePrior(5, 4, hidden=[16, 16], embed=3, context_length=2)
    rng = np.random.default_rng(4)
    codes, ctx = rng.integers(0, 4, (1, 5)), rng.integers(0, 4, (1, 2))
    base = prior.logits(codes, ctx).data
    for j in range(5):
        changed = codes.copy()
        changed[0, j] = (changed[0, j] + 1) % 4
        moved = np.abs(prior.logits(changed, ctx).data - base).max(axis=2)[0] > 0
        assert not moved[:j + 1].any()  # c_j never reaches the logits of positions up to j
    # and the masks connect every earlier position to every later one (through some hidden path)
    _, masks = made_masks(5, [16, 16])
    paths = masks[2] @ masks[1] @ masks[0]  # (output position, input position): number of paths
    np.testing.assert_array_equal(paths > 0, np.tril(np.ones((5, 5), bool), k=-1))
    other = ctx.copy()
    other[0, 0] = (other[0, 0] + 1) % 4
    assert (np.abs(prior.logits(codes, other).data - base).max(axis=2)[0] > 0).all()


def test_prior_probabilities_sum_to_one_and_loss_is_their_cross_entropy():
    manual_seed(1)
    prior = CodePrior(3, 3, hidden=[8], embed=2, context_length=2)
    grids = np.array(np.meshgrid(*[np.arange(3)] * 3, indexing="ij")).reshape(3, -1).T  # all 27 grids
    ctx = np.tile([[2, 0]], (27, 1))
    logp = prior.log_prob(grids, ctx)
    assert np.exp(logp.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)
    assert prior.loss(grids, ctx).item() == pytest.approx(-logp.mean() / 3, rel=1e-5)


def test_prior_learns_a_dependency_between_codes_and_samples_it():
    """c_1 uniform over 4 codes, c_2 = c_1, c_3 = c_1 + 1 mod 4: 2 nats per grid, 0.46 nats per code."""
    manual_seed(2)
    prior = CodePrior(3, 4, hidden=[32], embed=4)
    opt = optim.Adam(prior.parameters(), lr=1e-2)
    rng = np.random.default_rng(5)
    first = rng.integers(0, 4, 64)
    data = np.stack([first, first, (first + 1) % 4], axis=1)
    losses = []
    for _ in range(150):
        loss = prior.loss(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.2 and losses[-1] < 0.55  # from about log 4 = 1.39 to near log(4) / 3 = 0.46
    samples = prior.sample(200)
    assert samples.shape == (200, 3) and samples.min() >= 0 and samples.max() <= 3
    assert np.mean((samples[:, 1] == samples[:, 0]) & (samples[:, 2] == (samples[:, 0] + 1) % 4)) > 0.9
    assert len(set(samples[:, 0])) == 4


def test_made_samples_at_a_temperature_follow_the_sharpened_distribution():
    """At temperature T the first code is drawn with probabilities ∝ p^(1/T); 4,000 draws, each frequency
    within 4 standard errors (T = 1 and T = 0.5 differ by far more)."""
    manual_seed(6)
    prior = CodePrior(2, 4, hidden=[8], embed=2)
    prior.out.bias.data[...] = np.random.default_rng(1).normal(0, 1, prior.out.bias.shape)
    first = F.softmax(prior.logits(np.zeros((1, 2), np.int64))[:, 0].to(np.float64), dim=1).data[0]
    for T in (1.0, 0.5):
        want = first ** (1 / T) / (first ** (1 / T)).sum()
        got = np.bincount(prior.sample(4000, temperature=T)[:, 0], minlength=4) / 4000
        assert np.all(np.abs(got - want) < 4 * np.sqrt(want * (1 - want) / 4000) + 1e-9), (T, got, want)
    assert np.abs(first ** 2 / (first ** 2).sum() - first).max() > 0.05       # the two T are told apart
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, temperature=0)


# ---------------------------------------------------------------------------- training on digits
@pytest.fixture(scope="module")
def trained():
    """A small VQ-VAE trained by its own schedule: 4 epochs of autoencoder, then 2 of prior."""
    train, val = load("digits8", "train"), load("digits8", "val")
    model = make(epochs=6, prior_fraction=1 / 3, channels=32, codebook_size=32, code_dim=8, prior_hidden=[128])
    before = model.evaluate(val)
    loader = DataLoader(train, batch_size=32, shuffle=True, seed=0)
    phases = []
    for epoch in range(6):
        for batch in loader.iter_epoch(epoch):
            phases.append(model.phase())
            model.train_step(batch)
            if len(phases) == model.autoencoder_steps():
                at_switch = model.evaluate(val)
    x = train[:][0]
    baseline = float(((val[:][0] - x.mean(axis=0)) ** 2).mean())  # predict every image by the training mean
    return model, before, at_switch, model.evaluate(val), baseline, phases


def test_training_reconstructs_far_better_than_the_data_mean_and_uses_many_codes(trained):
    model, before, at_switch, after, baseline, _ = trained
    assert after["recon"] < 0.5 * baseline < before["recon"]
    assert after["codes_used"] > 1 and after["perplexity"] > 4


def test_prior_cross_entropy_falls_once_its_phase_starts(trained):
    model, before, at_switch, after, _, phases = trained
    k = model.opts["codebook_size"]
    assert phases[:model.autoencoder_steps()] == ["autoencoder"] * model.autoencoder_steps()
    assert set(phases[model.autoencoder_steps():]) == {"prior"}
    assert at_switch["prior_ce"] > 0.9 * np.log(k)  # untrained: close to guessing
    assert after["prior_ce"] < at_switch["prior_ce"] - 0.5
    assert after["recon"] == at_switch["recon"]  # the autoencoder was frozen meanwhile


def test_samples_have_the_data_shape_and_range_and_follow_the_seed(trained):
    model = trained[0]
    manual_seed(7)
    s = model.sample(6)
    assert s.shape == (6, 1, 8, 8) and s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    manual_seed(7)
    np.testing.assert_array_equal(model.sample(6), s)
    codes = model.encode(load("digits8", "val")[:4][0])
    assert codes[0].shape == (4, 4, 4) and codes[0].max() < model.opts["codebook_size"]


def test_vqvae2_has_a_top_grid_and_a_bottom_prior_conditioned_on_it():
    model = make(VQVAE2, epochs=2)
    assert model.net.grids == [(2, 2), (4, 4)]
    top, bottom = model.prior.levels
    assert (top.grid, top.context_grid, bottom.grid, bottom.context_grid) == ((2, 2), None, (4, 4), (2, 2))
    x = load("digits8", "train")[:64][0]
    recon = [model.autoencoder_step(x)["recon"] for _ in range(20)]
    assert recon[-1] < 0.8 * recon[0]
    terms = model.prior_step(x)
    assert {"perplexity_top", "perplexity_bottom", "prior_ce_top", "prior_ce_bottom"} <= set(terms)
    s = model.sample(3)
    assert s.shape == (3, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    codes = model.encode(x[:2])
    assert [c.shape for c in codes] == [(2, 2, 2), (2, 4, 4)]
    np.testing.assert_allclose(model.decode(codes), model.reconstruct(x[:2]))


def test_vqvae2_bottom_level_can_have_its_own_codebook_size():
    """--bottom-codebook-size: the bottom quantiser, its prior's softmax and the context the bottom prior
    reads (the top codes, from the top codebook) all follow their own level's K; one-level models refuse it."""
    model = make(VQVAE2, epochs=2, codebook_size=12, bottom_codebook_size=5, codebook_init="uniform")
    assert model.codebook_sizes() == [12, 5]
    assert model.net.quantizer_top.num_codes == 12 and model.net.quantizer_bottom.num_codes == 5
    top, bottom = model.prior.levels
    assert (top.num_codes, bottom.num_codes, bottom.context_embed.weight.shape[0]) == (12, 5, 12)
    x = load("digits8", "train")[:64][0]
    model.autoencoder_step(x)
    terms = model.prior_step(x)
    assert np.isfinite(terms["prior_ce_bottom"])
    codes = model.encode(x)
    assert codes[0].max() < 12 and codes[1].max() < 5
    ev = model.evaluate(load("digits8", "val"))
    assert ev["codes_used_bottom"] + ev["dead_codes_bottom"] == 5 and ev["codes_used_top"] + ev["dead_codes_top"] == 12
    manual_seed(0)
    assert model.sample(2).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="bottom-codebook-size"):
        make(epochs=1, bottom_codebook_size=5)


def test_vqvae2_bottom_dropout_decodes_some_training_images_from_their_top_codes_alone():
    """--bottom-dropout p: in training, each image is decoded without its bottom codewords with probability p
    (zeros in their place), so the decoder must learn to read the top level; in evaluation never."""
    model = make(VQVAE2, epochs=2, bottom_dropout=0.5)
    net = model.net
    x = load("digits8", "train")[:64][0]
    net.train()
    manual_seed(3)
    out, (top, bottom) = net(Tensor(x))
    full = net.decode(top.z_q, bottom.z_q).data
    alone = net.decode(top.z_q, Tensor(np.zeros_like(bottom.z_q.data))).data
    assert np.abs(full - alone).max() > 1e-3  # the bottom codes matter to this decoder
    dropped = np.array([np.array_equal(o, a) for o, a in zip(out.data, alone)])
    kept = np.array([np.array_equal(o, f) for o, f in zip(out.data, full)])
    assert np.all(dropped ^ kept) and 16 <= dropped.sum() <= 48
    keep = net.bottom_keep_mask(4000, np.float32)
    assert keep.shape == (4000, 1, 1, 1) and abs(keep.mean() - 0.5) < 4 * np.sqrt(0.25 / 4000)
    net.eval()
    np.testing.assert_array_equal(net(Tensor(x))[0].data, full)
    with pytest.raises(ValueError, match="bottom-dropout"):
        make(epochs=1, bottom_dropout=0.5)


def test_prior_learning_rate_is_constant_or_a_cosine_over_the_prior_epochs():
    """--prior-lr-schedule cosine: η (1 + cos(π i / n)) / 2 in the i-th of the prior phase's n epochs, for the
    PixelCNN's optimizer and the comparison MADE's; the autoencoder's optimizer keeps --lr."""
    model = make(epochs=10, prior_fraction=0.4, prior_lr=2e-3, prior_lr_schedule="cosine", compare_made=1)
    assert model.autoencoder_steps() == 6 * model.total_steps() // 10  # epochs 6..9 fit the prior
    for epoch, i in ((0, 0), (6, 0), (7, 1), (9, 3)):
        model.start_epoch(epoch)
        want = 2e-3 * (1 + np.cos(np.pi * i / 4)) / 2
        assert model.prior_optimizer.lr == pytest.approx(want) and model.made_optimizer.lr == pytest.approx(want)
        assert model.optimizer.lr == model.config["lr"]
    assert "at learning rate 0.002 on a half cosine" in model.describe()
    constant = make(epochs=10, prior_fraction=0.4)
    constant.start_epoch(9)
    assert constant.prior_optimizer.lr == constant.config["lr"]
    assert f"at learning rate {constant.config['lr']:g}" in constant.describe() and "cosine" not in constant.describe()


def test_state_dict_holds_everything_that_training_changes():
    """Saving after a few steps and restoring into a fresh model continues bit for bit (including the
    data-initialised codebook flag, the moving averages and both optimizers)."""
    x = load("digits8", "train")[:32][0]
    model = make(codebook_update="ema", epochs=1)
    for _ in range(3):
        model.autoencoder_step(x)
    model.prior_step(x)
    state, rng = model.state_dict(), get_state()
    expected = [model.autoencoder_step(x), model.prior_step(x)]
    other = make(codebook_update="ema", epochs=1)
    other.load_state_dict(state)
    set_state(rng)
    assert [other.autoencoder_step(x), other.prior_step(x)] == expected


# ---------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One epoch of the digits8 preset, trained by the command line (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(["train", "vqvae", "--preset", "digits8", "--epochs", "1", "--out", str(out),
                     "--plot-every", "1000"]) == 0
    return out


def test_cli_trains_one_epoch_then_samples_and_evaluates_from_the_checkpoint(cli_run, tmp_path, capsys):
    out = cli_run
    assert cli.main(["sample", str(out), "--n", "5", "--out", str(tmp_path / "s.npy")]) == 0
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["model"] == "vqvae" and report["epoch"] == 1
    _, _, model, _ = load_run(out)  # the numbers are the checkpoint's, on the test split
    assert report["test_recon"] == pytest.approx(model.evaluate(load("digits8", "test"))["recon"], rel=1e-6)
    assert 1 < report["test_codes_used"] <= 32 and report["test_prior_bits_per_image"] > 0
    assert {p.name for p in (out / "figures").iterdir()} >= {"reconstructions.png", "samples.png"}


def test_cli_samples_at_the_temperature_it_is_told_and_refuses_settings_that_do_not_apply(cli_run, tmp_path, capsys):
    out = cli_run
    draws = {}
    for t in ("1", "0.25"):
        for seed in ("3", "3", "4"):
            assert cli.main(["sample", str(out), "--n", "40", "--seed", seed, "--set", f"temperature={t}",
                             "--out", str(tmp_path / "s.npy")]) == 0
            draws.setdefault(t, []).append(np.load(tmp_path / "s.npy"))
    for t, (a, again, other) in draws.items():
        np.testing.assert_array_equal(a, again)          # the same seed and temperature: the same samples
        assert not np.array_equal(a, other)
    def spread(s):                                       # how different the samples of one draw are
        return float(((s - s.mean(axis=0)) ** 2).mean())
    # a sharper prior draws likelier, so more alike, code grids: the cooler draws spread less (both seeds)
    assert all(spread(c) < spread(w) for c, w in zip(draws["0.25"][1:], draws["1"][1:]))
    capsys.readouterr()
    for bad in ("temperature=0", "eval_samples=5", "temperature"):
        assert cli.main(["sample", str(out), "--set", bad, "--out", str(tmp_path / "x.npy")]) == 1
        err = capsys.readouterr().err
        assert "temperature" in err and "Traceback" not in err
    assert not (tmp_path / "x.npy").exists()


# ---------------------------------------------------------------------------- the paper's design
def test_residual_block_adds_relu_conv3_relu_conv1_to_its_input_and_passes_gradcheck():
    from scratchgen.finite_differences import gradcheck
    from scratchgen.kernels.backend import use_backend
    from scratchgen.models.blocks import ResidualBlock, ResidualStack
    manual_seed(0)
    block = ResidualBlock(3, 2, dtype=np.float64)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)), requires_grad=True)
    branch = F.conv2d(F.conv2d(x.relu(), block.conv3.weight, block.conv3.bias, padding=1).relu(),
                      block.conv1.weight, block.conv1.bias)
    np.testing.assert_allclose(block(x).data, x.data + branch.data, rtol=1e-12)
    with use_backend("numpy"):
        assert gradcheck(lambda x, *_: block(x), [x, *block.parameters()], atol=1e-7, rtol=1e-5)
    stack = ResidualStack(3, 2, 2, dtype=np.float64)
    assert stack(x).data.min() >= 0 and len(stack.blocks) == 2


@pytest.mark.parametrize("downsample, grid", [(1, (4, 4)), (2, (2, 2))])
def test_encoder_and_decoder_are_configurable_and_mirror_each_other(downsample, grid):
    model = make(downsample=downsample, res_blocks=1, channels=8, res_channels=4)
    x = load("digits8", "train")[:3][0]
    out, (q,) = model.net(Tensor(x))
    assert model.net.grids == [grid] and q.indices.shape == (3, *grid) and out.shape == x.shape
    kinds = [type(m).__name__ for m in model.net.encoder[0]]
    assert kinds.count("Conv2d") == downsample + 1 and "ResidualStack" in kinds
    assert [type(m).__name__ for m in model.net.decoder].count("ConvTranspose2d") == downsample
    with pytest.raises(ValueError, match="divisible by 2\\^4"):
        make(downsample=4)


def test_dead_code_restarts_move_unused_codes_onto_encoder_outputs():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((2, 2, 4, 4))
    book = np.array([[0.0, 0.0], [50.0, 50.0], [-50.0, 50.0]])  # codes 1 and 2 are never the nearest
    layer = quantizer_with(book, restart_threshold=0.5, decay=0.5)
    vectors = z.transpose(0, 2, 3, 1).reshape(-1, 2)
    layer(Tensor(z))  # usage of codes 1, 2: 0.5 · 1/3 = 1/6 = the threshold 0.5 / 3: not yet below it
    np.testing.assert_array_equal(layer.codebook.data[1:], book[1:])
    layer(Tensor(z))  # 1/12 < 1/6: both restart on encoder outputs of this batch
    for e in layer.codebook.data[1:]:
        assert np.any(np.all(vectors == e, axis=1))
    np.testing.assert_array_equal(layer.codebook.data[0], book[0])
    assert layer(Tensor(z)).perplexity > 1  # the restarted codes are used at once
    never = quantizer_with(book)  # without restarts they stay dead
    for _ in range(3):
        assert never(Tensor(z)).perplexity == 1


def test_bernoulli_decoder_reports_the_bound_in_nats_per_image():
    model = make(likelihood="bernoulli", epochs=1)
    data = load("digits8", "test", binarize="dynamic")
    x = data[:16][0]
    for _ in range(2):
        model.autoencoder_step(x)
    out = model.report(data, "test")
    pixels = 64
    assert out["test_recon_nats_per_image"] == pytest.approx(out["test_recon"] * pixels)
    prior_nats = out["test_prior_bits_per_image"] * np.log(2)
    assert out["test_bound_nats"] == pytest.approx(out["test_recon_nats_per_image"] + prior_nats)
    assert prior_nats == pytest.approx(16 * out["test_prior_ce"])  # 4x4 codes
    s = model.sample(2)
    assert s.min() >= 0 and s.max() <= 1  # pixel probabilities


def test_class_conditional_prior_and_the_made_comparison():
    model = make(prior_conditional=1, compare_made=1, epochs=1)
    x, y = load("digits8", "train")[:32]
    terms = model.prior_step(x, y)
    assert {"prior_ce", "prior_ce_made", "recon"} <= set(terms)
    assert model.sample(3, label=7).shape == (3, 1, 8, 8)
    assert set(model.checkpointed()) >= {"made", "made_optimizer"}
    with pytest.raises(ValueError, match="labels"):
        model.prior_step(x)
    with pytest.raises(ValueError, match="prior-conditional"):
        make(prior_conditional=1, prior="made")


def test_eval_scores_samples_of_the_comparison_made_with_the_same_instrument(monkeypatch):
    from scratchgen.evaluation import sample_quality
    model = make(compare_made=1, epochs=1, eval_samples=4, eval_diagnosis=0)
    drawn = {}

    def fake_quality(experiment, data, n=10000, sample=None):  # records which prior drew the codes
        calls = []
        real = model.prior.sample
        monkeypatch.setattr(model.prior, "sample", lambda *a, **k: calls.append("pixelcnn") or real(*a, **k))
        images = (sample or experiment.sample)(n)
        monkeypatch.setattr(model.prior, "sample", real)
        drawn["made" if sample else "prior"] = calls
        return {"conv_precision": float(len(images)), "frechet_distance": 0.0}

    monkeypatch.setattr(sample_quality, "experiment_sample_quality", fake_quality)
    out = model.report(load("digits8", "val"), "test")
    assert drawn == {"prior": ["pixelcnn"], "made": []}  # the MADE's samples did not come from the PixelCNN
    assert out["conv_precision"] == out["made_conv_precision"] == 4.0
    assert "made_frechet_distance" not in out  # only the conv instrument's keys are repeated


@pytest.mark.parametrize("family, conditional", [(VQVAE, 0), (VQVAE2, 0), (VQVAE2, 1)])
def test_eval_diagnosis_scores_reconstructions_and_real_top_codes_with_a_sampled_bottom(family, conditional,
                                                                                       monkeypatch):
    """recon_conv_*: decoded codes of random training images (no prior); real_top_conv_* (two levels): the
    top codes of training images, the bottom ones drawn by the bottom prior given exactly those (no labels
    needed even when the top prior is class-conditional)."""
    from scratchgen.evaluation import sample_quality
    model = make(family, epochs=1, eval_samples=3, prior_conditional=conditional)
    train = load("digits8", "train")[:][0]
    seen = {}

    def fake_quality(experiment, data, n=10000, sample=None):
        if sample is None:
            return {"conv_precision": 0.5}
        calls = []
        for i, level in enumerate(model.prior.levels):
            real = level.sample
            level.sample = (lambda n, ctx=None, *a, _i=i, _real=real, **k:
                            calls.append((_i, None if ctx is None else ctx.copy())) or _real(n, ctx, *a, **k))
        manual_seed(5)
        images = sample(n)
        manual_seed(5)
        x = train[get_rng().integers(0, len(train), n)]
        for level in model.prior.levels:
            del level.sample
        seen[len(seen)] = (images, x, calls)
        return {"conv_precision": float(len(seen)), "conv_recall": 1.0, "frechet_distance": 9.0}

    monkeypatch.setattr(sample_quality, "experiment_sample_quality", fake_quality)
    monkeypatch.setattr(VQVAE2, "_level_swap_report", lambda self, data: {"swap_class_of_top": 0.5})
    out = model.report(load("digits8", "val"), "test")
    assert ("swap_class_of_top" in out) == (family is VQVAE2)
    images, x, calls = seen[0]  # reconstructions: no prior drew anything
    assert calls == [] and out["recon_conv_precision"] == 1.0 and "recon_frechet_distance" not in out
    np.testing.assert_allclose(images, model.reconstruct(x))
    if family is VQVAE:
        assert len(seen) == 1 and not any(k.startswith("real_top") for k in out)
    else:
        images, x, calls = seen[1]
        top = model.encode(x)[0].reshape(len(x), -1)
        assert [i for i, _ in calls] == [1] and np.array_equal(calls[0][1], top)  # only the bottom prior, given the real top
        assert out["real_top_conv_precision"] == 2.0 and images.shape == x.shape


def test_eval_diagnosis_asks_which_level_decides_the_class(monkeypatch):
    """swap_class_of_top / _bottom: images decoded from the top codes of the split's first half and the bottom
    codes of its second half, classified; the shares labelled as the top donor's and as the bottom donor's class."""
    from scratchgen.evaluation import classifier
    from scratchgen.models.vqvae import class_decided_by
    assert class_decided_by([0, 1, 2, 3], [0, 1, 5, 3], [1, 1, 2, 4]) == (2 / 3, 1 / 3)  # the pair (1, 1) left out
    model = make(VQVAE2, epochs=1)
    data = load("digits8", "val")
    x, y = data[:]
    h = len(x) // 2
    top, bottom = model.encode(x)
    want = model.decode([top[:h], bottom[h:2 * h]])
    np.testing.assert_array_equal(model.swapped_levels(x), want)
    seen = []

    class Fake:  # "classifies" every image as its top donor's label
        def predict(self, images):
            seen.append(images)
            return y[:h]
    monkeypatch.setattr(classifier, "load_or_train", lambda *a, **k: Fake())
    out = model._level_swap_report(data)
    np.testing.assert_array_equal(seen[0], want)
    assert out == {"swap_class_of_top": 1.0, "swap_class_of_bottom": 0.0}
