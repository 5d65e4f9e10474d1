"""The attribute CVAE lab: the condition vector, the model's pieces, and evaluation by measurement."""
import numpy as np
import pytest

from scratchgen.data import attributes as A
from scratchgen.labs import attribute_cvae as lab

MEAN, STD = np.array([2.5, 0.1]), np.array([0.6, 0.2])


def stroke_sampler(y):
    """A perfect 'model': strokes exactly as thick and slanted as asked (the class is ignored)."""
    out = []
    for row in y:
        t = MEAN[0] + row[-2] * STD[0]
        s = np.tan(MEAN[1] + row[-1] * STD[1])
        out.append(A.stroke((28, 28), (4.5, 14 + 9.5 * s), (23.5, 14 - 9.5 * s), t))
    return np.stack(out)[:, None]


def test_evaluation_of_a_perfect_sampler_finds_the_requested_attributes():
    res = lab.evaluate(stroke_sampler, MEAN, STD, num_classes=2, n_per=1)
    for name in lab.ATTRIBUTES:
        assert res[name]["correlation"] > 0.99
        assert res[name]["mae"] < 0.5                          # thickness within 0.3 px = 0.5 sd here
        assert len(res[name]["requested"]) == 2 * len(lab.VALUES)


def test_evaluation_of_a_sampler_that_ignores_the_request_finds_no_correlation():
    rng = np.random.default_rng(0)

    def ignorant(y):
        return stroke_sampler(np.concatenate([y[:, :-2], rng.standard_normal((len(y), 2))], axis=1))
    res = lab.evaluate(ignorant, MEAN, STD, num_classes=2, n_per=4)
    assert abs(res["thickness"]["correlation"]) < 0.4 and res["thickness"]["mae"] > 0.8


def test_condition_vector_and_prior_start():
    y = lab.condition(np.array([2, 0]), np.array([[1.5, -1.0], [0.0, 0.5]]), num_classes=3)
    assert np.array_equal(y, np.array([[0, 0, 1, 1.5, -1.0], [1, 0, 0, 0.0, 0.5]], dtype=np.float32))
    model = lab.AttributeCVAE((1, 8, 8), cond_dim=5, latent=3, hidden=16)
    p = model.prior(lab.Tensor(y))
    assert np.allclose(p.loc.data, 0) and np.allclose(p.log_var.data, 0)       # N(0, I) before training


def test_training_lowers_the_loss_and_the_prior_learns_to_depend_on_y():
    x, labels, raw = lab.prepare("digits8", "train", n=300, seed=0)
    z, mean, std = A.standardise(raw)
    y = lab.condition(labels, z)
    model = lab.AttributeCVAE(x.shape[1:], y.shape[1], latent=4, hidden=32)
    history = lab.train(model, x, y, epochs=3, batch=32, lr=3e-3)
    assert history[-1] < history[0] - 3
    assert np.abs(model.prior.linear.weight.data).max() > 1e-3
    assert model.sample(y[:5]).shape == (5, 1, 8, 8)


def test_attribute_requests_are_parsed_or_refused_with_the_reason():
    assert np.array_equal(lab.parse_attributes(["slant=-1", "thickness=+2"]), [2.0, -1.0])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        lab.parse_attributes(["glasses=1"])
    with pytest.raises(ValueError, match="number of standard deviations"):
        lab.parse_attributes(["thickness=thick"])


def test_lab_command_writes_the_sweep_and_the_requested_samples(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--data", "digits8", "--n-train", "200", "--epochs", "1", "--hidden", "16",
            "--n-per", "1", "--no-classifier", "--label", "7", "--attribute", "thickness=+2"]
    assert lab.main(argv) == 0
    assert {"attribute-cvae-digits8.png", "attribute-cvae-7.png"} <= {p.name for p in tmp_path.iterdir()}
    assert "correlation(requested, measured)" in capsys.readouterr().out
