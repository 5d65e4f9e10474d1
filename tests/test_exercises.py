"""scratchgen.exercises: every exercise can be started, fails its check as a stub, passes it with
the library's own function, and fails it — naming the property — with a typical wrong answer.

All the grading rounds run in one separate process (the grader collects the tests once), so this
file costs a few seconds, not one Python start-up per round.
"""
import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

from scratchgen.exercises import EXERCISES, get
from scratchgen.exercises import __main__ as exercise_cli
from scratchgen.exercises import grader, workspace

ROOT = Path(__file__).resolve().parent.parent

# A typical mistake for each exercise: a missing ½, a sign, a swapped argument, a missing shift.
WRONG = {
    "masked-conv-mask": """
        import numpy as np
        def horizontal_mask(kernel_size, mask_type):
            if mask_type not in ("A", "B"):
                raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
            mask = np.zeros((1, kernel_size))
            mask[0, :kernel_size // 2 + 1] = 1                               # type A sees the centre too
            return mask
        """,
    "tanh-backward": """
        import numpy as np
        from scratchgen import Tensor
        def tanh(a):
            out = np.tanh(a.data)
            return Tensor.from_op(out, (a,), lambda g: (g * (1 - out),), "tanh")     # (1 - out), not 1 - out²
        """,
    "softplus-backward": """
        import numpy as np
        from scratchgen import Tensor
        def softplus(x):
            a = x.data
            out = np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))
            return Tensor.from_op(out, (x,), lambda g: (g * Tensor(-a).sigmoid().data,), "softplus")   # σ(-x)
        """,
    "conv2d-forward": """
        import numpy as np
        from scratchgen.kernels.conv import _output_size, _pad, _window
        def conv2d_forward_reference(x, w, stride, padding):
            stride, padding, out_hw = _output_size("conv2d", x.shape, w.shape, stride, padding)
            xp, w = _pad(x, padding), w[:, :, ::-1, ::-1]                   # a flipped kernel: true convolution
            out = np.zeros((x.shape[0], w.shape[0]) + out_hw, dtype=np.result_type(x, w))
            for i in range(w.shape[2]):
                for j in range(w.shape[3]):
                    out += np.einsum("nchw,oc->nohw", _window(xp, i, j, stride, out_hw), w[:, :, i, j])
            return out
        """,
    "general-gaussian-kl": """
        import numpy as np
        def kl_normal_normal(mu_p, log_var_p, mu_q, log_var_q):
            var_p, var_q = np.exp(log_var_p), np.exp(log_var_q)
            return 0.5 * (log_var_p - log_var_q + (var_p + (mu_p - mu_q) ** 2) / var_q - 1.0)   # log ratio flipped
        """,
    "bayes-log-space": """
        import numpy as np
        def posterior_from_joint(log_joint, dim):
            a = np.asarray(log_joint, dtype=np.float64)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                return a - np.log(np.exp(a).sum(axis=dim, keepdims=True))     # no max shift: overflows
        """,
    "kl-divergence": """
        import numpy as np
        def kl(p, q):
            p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(q > 0, q * np.log(q / p), 0.0).sum(axis=-1)   # p and q swapped
        """,
    "js-divergence": """
        import numpy as np
        from scratchgen.divergences import kl
        def js(p, q):
            m = 0.5 * (np.asarray(p) + np.asarray(q))
            return kl(p, m) + 0.5 * kl(q, m)                                 # a missing ½
        """,
    "optimal-discriminator": """
        import numpy as np
        def optimal_discriminator(p, q):
            p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(p + q > 0, q / (p + q), 0.5)                  # q/(p+q): the fake's probability
        """,
    "reparameterised-sample": """
        import numpy as np
        from scratchgen import Tensor
        from scratchgen.random import get_rng
        def rsample(self, shape=(), eps=None):
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            out = shape + tuple(self.batch_shape)
            eps = get_rng().standard_normal(out) if eps is None else np.asarray(getattr(eps, "data", eps))
            return self.loc + self.log_var.exp() * Tensor(eps.astype(self.loc.dtype))   # exp(log σ²) is σ²
        """,
    "gaussian-kl": """
        import numpy as np
        def kl_std_normal(mu, log_var):
            return mu ** 2 + np.exp(log_var) - 1.0 - log_var                  # a missing ½
        """,
    "gaussian-kl-gradient": """
        import numpy as np
        def kl_std_normal_grad(mu, log_var):
            return mu, 0.5 * (1.0 - np.exp(log_var))                          # a sign
        """,
    "iwae-bound": """
        from scratchgen.objectives.iwae import log_importance_weights
        from scratchgen import no_grad
        def iwae_bound(x, posterior, decoder, k, prior=None, chunk_size=100, eps=None):
            with no_grad():
                log_w = log_importance_weights(x, posterior, decoder, k, prior, eps).data
            return log_w.mean(axis=0)                                         # mean of logs: the ELBO again
        """,
    "gan-value": """
        import numpy as np
        from scratchgen.objectives.gan import log_d, log_one_minus_d, _logits
        def discriminator_value(real_logits, fake_logits):
            real, fake = _logits(real_logits, "real"), _logits(fake_logits, "fake")
            n, m = real.shape[0], fake.shape[0]
            return (log_d(real).sum() + log_one_minus_d(fake).sum()) * (1.0 / (n + m))   # one pooled mean
        """,
    "minimax-generator-loss": """
        from scratchgen.objectives.gan import log_one_minus_d, _logits
        def generator_loss_saturating(fake_logits):
            return -log_one_minus_d(_logits(fake_logits, "fake")).mean()     # a sign
        """,
    "nonsaturating-generator-loss": """
        from scratchgen.objectives.gan import log_d, _logits
        def generator_loss_nonsaturating(fake_logits):
            return log_d(_logits(fake_logits, "fake")).mean()                # a sign
        """,
    "straight-through": """
        def straight_through(z_e, e):
            return (z_e + (e - z_e)).detach() + z_e * 0.0                    # no gradient reaches z_e
        """,
    "commitment-loss": """
        import scratchgen.functional as F
        def commitment_loss(z_e, e):
            return F.mse_loss(z_e.detach(), e)                               # trains the codebook instead
        """,
    "made-masks": """
        import numpy as np
        def made_masks(length, hidden):
            inputs = np.arange(1, length + 1)
            layers = [np.arange(h) % length for h in hidden]
            masks = [(layers[0][:, None] >= inputs[None, :])]
            masks += [(b[:, None] >= a[None, :]) for a, b in zip(layers[:-1], layers[1:])]
            masks.append(inputs[:, None] >= layers[-1][None, :])              # >= : position d sees itself
            return [inputs, *layers, inputs], [m.astype(np.float32) for m in masks]
        """,
    "elbo": """
        import numpy as np
        from scratchgen.objectives.evidence_lower_bound import (ELBOResult, Normal, as_normal, log_likelihood_samples,
                                                                number_of_examples)
        from scratchgen.distributions import kl_divergence
        def elbo(x, posterior, decoder, prior=None, n_samples=1, kl_weight=1.0, free_bits=0.0, eps=None):
            q = as_normal(posterior)
            n = number_of_examples(x, q)
            p = prior if prior is not None else Normal(np.zeros((), q.loc.dtype), log_var=np.zeros((), q.loc.dtype))
            z = q.rsample((int(n_samples),), eps=eps)
            reconstruction = log_likelihood_samples(x, z, decoder).mean(axis=0)
            kl_per_dim = kl_divergence(q, p).expand(q.batch_shape).reshape(n, -1)
            kl = kl_per_dim.sum(axis=1)
            kl_term = kl.mean()                                               # β and free bits forgotten
            loss = -(reconstruction.mean() - kl_term)
            return ELBOResult(reconstruction=reconstruction, kl=kl, elbo=reconstruction - kl,
                              kl_per_dim=kl_per_dim, kl_term=kl_term, loss=loss,
                              kl_weight=float(kl_weight), free_bits=float(free_bits))
        """,
}


# Correct answers written as a student would (their own file, their own imports).
RIGHT = {
    "js-divergence": """
        import numpy as np
        def js(p, q):
            p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
            m = (p + q) / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                to_m = lambda a: np.where(a > 0, a * np.log(a / m), 0.0).sum(axis=-1)
            return 0.5 * to_m(p) + 0.5 * to_m(q)
        """,
    "tanh-backward": """
        import numpy as np
        from scratchgen import Tensor
        def tanh(a):
            y = np.tanh(a.data)
            return Tensor.from_op(y, (a,), lambda g: (g * (1.0 - y ** 2),), "tanh")
        """,
}


def test_the_catalogue_points_at_functions_tests_and_sections_that_exist():
    assert len(EXERCISES) >= 12 and len({e.name for e in EXERCISES}) == len(EXERCISES)
    for e in EXERCISES:
        workspace.resolve(e.target)                          # imports, and is a plain function
        file, section = workspace.lecture_reference(e)
        assert file.startswith("lectures/") and section.startswith("§"), \
            f"{e.name}: no lecture *-{e.lecture}.md with a section titled {e.section!r}; fix its catalogue row"
        lecture = (ROOT / file).read_text(encoding="utf-8")
        assert f"scratchgen exercise start {e.name}" in lecture, \
            f"{e.name}: {file} does not end with the command that starts it"
        assert e.hints and e.tests
        for node in e.tests:
            file, name = node.split("::")
            name = name.split("[")[0]                            # a parametrized test's function
            source = (ROOT / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.M), f"{e.name}: {node} does not exist"
    assert set(WRONG) == {e.name for e in EXERCISES}, "every exercise needs a typical wrong answer below"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every exercise graded three times in one grading process — stub, library, wrong answer —
    and one file with a syntax error."""
    folder = tmp_path_factory.mktemp("student")
    wrong = tmp_path_factory.mktemp("wrong")
    pairs = []
    for e in EXERCISES:
        stub = workspace.write_stub(e, folder)
        (wrong / e.file_name).write_text(textwrap.dedent(WRONG[e.name]), encoding="utf-8")
        pairs += [(e.name, stub), (e.name, grader.LIBRARY), (e.name, wrong / e.file_name)]
    broken = wrong / "broken.py"
    broken.write_text("def kl_std_normal(mu, log_var):\n    return mu +\n")
    extra, kinds = [("gaussian-kl", broken)], ["stub", "library", "wrong"] * len(EXERCISES) + ["broken"]
    for name, source in RIGHT.items():
        right = tmp_path_factory.mktemp("right") / get(name).file_name
        right.write_text(textwrap.dedent(source), encoding="utf-8")
        extra.append((name, right))
        kinds.append("right")
    rounds = grader.grade(pairs + extra)
    return {(r["exercise"], kind): r for r, kind in zip(rounds, kinds)}


@pytest.mark.parametrize("name", [e.name for e in EXERCISES])
def test_the_stub_fails_the_library_passes_and_a_wrong_answer_fails_naming_the_property(graded, name):
    e = get(name)
    stub, library, wrong = graded[name, "stub"], graded[name, "library"], graded[name, "wrong"]
    assert stub["load_error"] is None and len(stub["results"]) >= len(e.tests)
    # every listed test must really call the student's function: each one fails on the stub
    assert all(not r["passed"] and "NotImplementedError" in r["message"] for r in stub["results"]), \
        [r["test"] for r in stub["results"] if r["passed"] or "NotImplementedError" not in r["message"]]
    assert "is not written yet" in exercise_cli.format_result(e, stub)
    assert len(library["results"]) >= len(e.tests) and exercise_cli.passed(library), \
        exercise_cli.format_result(e, library)
    assert wrong["load_error"] is None and not exercise_cli.passed(wrong)
    report = exercise_cli.format_result(e, wrong)
    failed = [r for r in wrong["results"] if not r["passed"]]
    assert all("NotImplementedError" not in r["message"] for r in failed)
    for r in failed:
        assert f"FAIL {exercise_cli.property_name(r['test'])}" in report
        assert r["message"].strip(), f"{r['test']} failed without saying what it compared"


def test_start_check_and_hint_from_the_command_line(tmp_path, capsys):
    """The student's path: start, check (not written), a wrong answer (the failing property and the
    values), then hints one at a time remembered in the folder; and nothing installed changes."""
    installed = ROOT / "scratchgen" / "objectives" / "hand_gradients.py"
    before = hashlib.sha256(installed.read_bytes()).hexdigest()
    folder = str(tmp_path / "mine")
    run = lambda *a: exercise_cli.main([*a, "--dir", folder])     # noqa: E731
    assert run("start", "gaussian-kl") == 0
    assert run("start", "gaussian-kl") == 1                        # never overwrites the student's work
    assert "already exists" in capsys.readouterr().err
    stub = Path(folder) / "gaussian_kl.py"
    assert "NotImplementedError" in stub.read_text() and "lectures/04-elbo.md, §4.7" in stub.read_text()
    stub.write_text(textwrap.dedent(WRONG["gaussian-kl"]))
    assert run("check", "gaussian-kl") == 1
    out = capsys.readouterr().out
    assert "FAIL kl to standard normal gradient" in out
    assert "expected [0." in out and "got" in out                  # the worked example: expected vs got
    shown = [run("hint", "gaussian-kl") for _ in range(4)]
    out = capsys.readouterr().out
    assert shown == [0] * 4 and "Hint 1 of 3" in out and "Hint 3 of 3" in out and out.count("Hint 3 of 3") == 2
    progress = json.loads((Path(folder) / workspace.PROGRESS_FILE).read_text())
    assert progress == {"checked": {"gaussian-kl": "failed"}, "hints": {"gaussian-kl": 3}}
    assert run("list") == 0 and re.search(r"gaussian-kl +04-elbo §4.7 +failed", capsys.readouterr().out)
    assert run("check", "no-such-exercise") == 1 and "exercise list" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert exercise_cli.main(["start", "js-divergence", "--dir", str(tmp_path / "a-file")]) == 1   # not a folder
    assert "a-file" in capsys.readouterr().err
    from scratchgen import cli                                      # the same through `scratchgen exercise`
    assert cli.main(["exercise", "list", "--dir", folder]) == 0 and "made-masks" in capsys.readouterr().out
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_a_correct_answer_written_by_a_student_passes(graded, name):
    result = graded[name, "right"]
    assert exercise_cli.passed(result), exercise_cli.format_result(get(name), result)
    assert f"{name} is done" in exercise_cli.format_result(get(name), result)


def test_a_file_that_does_not_load_is_reported_as_such(graded):
    result = graded["gaussian-kl", "broken"]
    assert result["load_error"].startswith("SyntaxError") and not result["results"]
    assert "could not be loaded" in exercise_cli.format_result(get("gaussian-kl"), result)


def test_substitution_reaches_every_holder_and_is_undone():
    """The target is replaced in its module, in names imported from it (library and tests), and in
    module-level tables; everything is put back afterwards, even after an error."""
    from scratchgen.models import gan as gan_model
    from scratchgen.objectives import gan

    def fake(fake_logits):
        return "student"

    original = gan.generator_loss_nonsaturating
    holders = [(gan_model.GAN_LOSSES, "non-saturating")]
    assert all(h[k] is original for h, k in holders) and generator_loss_nonsaturating is original
    table = {"pair": (original, 1)}                  # a tuple inside a module-level table
    globals()["_TABLE"] = table
    with pytest.raises(ZeroDivisionError):
        with grader.substituted("scratchgen.objectives.gan:generator_loss_nonsaturating", fake):
            assert gan.generator_loss_nonsaturating is fake
            assert all(h[k] is fake for h, k in holders)
            assert globals()["generator_loss_nonsaturating"] is fake       # a test module's import
            assert table["pair"] == (fake, 1)
            1 / 0
    assert gan.generator_loss_nonsaturating is original and generator_loss_nonsaturating is original
    assert table["pair"] == (original, 1)
    assert all(h[k] is original for h, k in holders)


from scratchgen.objectives.gan import generator_loss_nonsaturating  # noqa: E402  (held by this module)


def test_check_explains_what_is_missing_without_the_repository_s_tests(tmp_path, monkeypatch):
    monkeypatch.setattr(grader, "ROOT", tmp_path)              # an installation without tests/ beside it
    with pytest.raises(FileNotFoundError, match="Clone the scratchgen repository"):
        grader.grade([("gaussian-kl", grader.LIBRARY)])


def test_a_check_that_never_finishes_is_stopped_with_a_message(tmp_path):
    e = get("gaussian-kl")
    (tmp_path / e.file_name).write_text("def kl_std_normal(mu, log_var):\n    while True:\n        pass\n")
    with pytest.raises(RuntimeError, match="did not finish within 1 s"):
        grader.grade([(e.name, tmp_path / e.file_name)], timeout=1)
