"""The exercises, in one table: what to write, where the lecture explains it, which tests grade it.

Each exercise names its **target** as ``"module:qualified.name"`` — the library function the student
rewrites — and the library's **own tests** for that function (pytest node ids). ``scratchgen
exercise check`` runs exactly those tests with the student's function in place of the target, so
an exercise is graded by the same checks that guard the library, and cannot drift from them: the
suite (tests/test_exercises.py) checks that every stub fails its tests and the library's own
function passes them. When a function moves to another module, its row here is the one line to
change.

``helpers`` are names the stub imports from the target's module (things the library's version
uses, so the student can too); ``imports`` are further import lines for the stub.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exercise:
    name: str                 # what the student types: scratchgen exercise start NAME
    target: str               # "module:qualname" of the library function the student writes
    lecture: str              # the lecture, by the name its file has after the number: "vq-vae" for 08-vq-vae.md
    section: str              # the title of the section that explains it (its number is looked up)
    summary: str              # one line for `scratchgen exercise list`
    tests: tuple              # node ids of the library's tests that grade it
    hints: tuple              # shown one at a time by `scratchgen exercise hint NAME`
    helpers: tuple = ()       # names imported into the stub from the target's module
    imports: tuple = ()       # extra import lines for the stub
    example: object = None    # () -> the arguments of a worked example, shown as expected vs got
    note: str = ""            # extra words for the stub's header (e.g. "this is a method of ...")

    @property
    def module(self):
        return self.target.split(":")[0]

    @property
    def qualname(self):
        return self.target.split(":")[1]

    @property
    def function_name(self):
        return self.qualname.split(".")[-1]

    @property
    def file_name(self):
        return self.name.replace("-", "_") + ".py"


TD, TO, TH = "tests/test_divergences.py::", "tests/test_objectives.py::", "tests/test_hand_gradients.py::"
NUMPY = ("import numpy as np",)
TENSORS = ("import numpy as np", "import scratchgen.functional as F", "from scratchgen import Tensor")

EXERCISES = (
    # ---------------------------------------------------------------- chapter 1
    Exercise(
        "tanh-backward", "scratchgen.ops:tanh",
        "autograd-and-kernels", "The chain rule, one vector–Jacobian product at a time",
        "an op with its backward rule: tanh, and the vector–Jacobian product g·(1 - tanh²)",
        ("tests/test_autograd.py::test_unary_values_and_gradients[tanh]",
         "tests/test_functional.py::test_activation_values_and_gradients[tanh]"),
        ("Forward: out = np.tanh(a.data). Backward: given the upstream gradient g (an array shaped like out), "
         "return a tuple with one gradient per input.",
         "d tanh(x)/dx = 1 - tanh(x)², and the output is already computed: reuse out in the backward.",
         "Tensor.from_op(out, (a,), backward, 'tanh') makes the result and records how it was made; "
         "backward is a function of g returning (g * (1 - out * out),)."),
        imports=("import numpy as np", "from scratchgen import Tensor"),
        note="tanh(a) is the op behind Tensor.tanh and F.tanh: `a` is a Tensor, a.data its array."),
    Exercise(
        "softplus-backward", "scratchgen.functional:softplus",
        "autograd-and-kernels", "The chain rule, one vector–Jacobian product at a time",
        "softplus log(1 + e^x) without overflow, and its backward rule σ(x)",
        ("tests/test_functional.py::test_activation_values_and_gradients[softplus]",
         "tests/test_functional.py::test_softplus_is_stable_for_large_magnitudes"),
        ("d/dx log(1 + e^x) = e^x / (1 + e^x) = σ(x): the backward multiplies g by the sigmoid of the input.",
         "np.log(1 + np.exp(1000.0)) overflows. Write log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) "
         "(np.log1p keeps precision when e^-|x| is tiny).",
         "Return Tensor.from_op(out, (x,), lambda g: (g * sigmoid_of_input,), 'softplus'); compute the "
         "sigmoid stably too: Tensor(a).sigmoid().data does."),
        imports=("import numpy as np", "from scratchgen import Tensor")),
    Exercise(
        "conv2d-forward", "scratchgen.kernels.conv:conv2d_forward_reference",
        "autograd-and-kernels", "Transposed convolution is the adjoint of convolution",
        "conv2d as a sum over kernel offsets: the NumPy reference the fast kernels are checked against",
        ("tests/test_conv_kernels.py::test_conv2d_forward_matches_definitions[numpy]",),
        ("out[n, o, y, x] = Σ_{c, i, j} x_pad[n, c, y·sh + i, x·sw + j] · w[o, c, i, j]: a cross-correlation, "
         "as PyTorch defines conv2d — the kernel is not flipped.",
         "stride, padding, out_hw = _output_size('conv2d', x.shape, w.shape, stride, padding) validates the "
         "arguments and gives (Ho, Wo); _pad(x, padding) zero-pads H and W.",
         "Loop over the kernel offsets (i, j) only: _window(xp, i, j, stride, out_hw) is the (N, C, Ho, Wo) view "
         "that w[:, :, i, j] multiplies; np.einsum('nchw,oc->nohw', window, w[:, :, i, j]) sums over c."),
        helpers=("_output_size", "_pad", "_window"), imports=NUMPY),
    # ---------------------------------------------------------------- chapter 2
    Exercise(
        "bayes-log-space", "scratchgen.bayes:posterior_from_joint",
        "generative-vs-discriminative", "Computing it without underflow",
        "Bayes' rule in log space: log p(y|x) from log p(x, y), without overflow",
        ("tests/test_bayes.py::test_posterior_sums_to_one_and_equals_enumeration",
         "tests/test_bayes.py::test_posterior_is_unchanged_by_a_constant_and_never_overflows"),
        ("p(y|x) = p(x, y) / Σ_y' p(x, y'). In logs: log p(y|x) = log p(x, y) - log Σ_y' exp(log p(x, y')).",
         "exp of a log-joint of -800 is 0.0 in float64, and of +800 is inf. Subtract the largest entry "
         "along the y axis before exponentiating, and add it back after the log: that is log-sum-exp.",
         "Only arrays are graded here: np.asarray(log_joint, dtype=np.float64), keepdims=True on the max "
         "and the sum so the result broadcasts back against log_joint. Mind rows that are all -inf."),
        imports=NUMPY, example=lambda: (np.array([[1000.0, 1001.0], [-1000.0, -1003.0]]), 1,)),
    # ---------------------------------------------------------------- chapter 3
    Exercise(
        "kl-divergence", "scratchgen.divergences:kl",
        "density-estimation-and-divergences", "The Kullback–Leibler divergence",
        "the KL divergence of two discrete distributions, with its zero conventions",
        (TD + "test_kl_matches_the_definition_and_is_nonnegative", TD + "test_kl_zero_conventions"),
        ("d_KL(p, q) = Σ_x p(x) log(p(x)/q(x)), summed over the last axis.",
         "Outcomes with p(x) = 0 contribute 0, whatever q(x) is (0 log 0 = 0).",
         "An outcome with p(x) > 0 and q(x) = 0 makes the KL +inf. np.where and np.errstate(divide='ignore') "
         "keep the warnings away."),
        imports=NUMPY, example=lambda: (np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5]),)),
    Exercise(
        "js-divergence", "scratchgen.divergences:js",
        "density-estimation-and-divergences", "The Jensen–Shannon divergence",
        "the Jensen–Shannon divergence, through the mixture m = (p + q)/2",
        (TD + "test_js_is_symmetric_bounded_and_matches_its_definition", TD + "test_js_is_log2_on_disjoint_supports",
         TD + "test_js_variational_at_the_optimal_discriminator_equals_js"),
        ("d_JS(p, q) = ½ d_KL(p, m) + ½ d_KL(q, m) with m = (p + q) / 2.",
         "m is positive wherever p or q is, so the JS is always finite; it is at most log 2.",
         "You may call kl(p, m) (imported in the stub), or write the sums out; both halves carry a ½."),
        helpers=("kl",), imports=NUMPY, example=lambda: (np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]),)),
    Exercise(
        "optimal-discriminator", "scratchgen.divergences:optimal_discriminator",
        "density-estimation-and-divergences", "The variational identity for JS, step by step",
        "the discriminator t* that maximises the GAN value, outcome by outcome",
        (TD + "test_js_variational_at_the_optimal_discriminator_equals_js",
         TD + "test_js_variational_is_a_lower_bound_for_any_discriminator",
         TO + "test_value_at_the_optimal_discriminator_is_2js_minus_2log2_on_empirical_samples"),
        ("Maximise h(s) = a log s + b log(1 - s) over s in [0, 1], with a = p(x), b = q(x).",
         "h'(s) = a/s - b/(1 - s) = 0 gives s = a/(a + b): t*(x) = p(x) / (p(x) + q(x)).",
         "Where p(x) = q(x) = 0 any value is optimal; return ½ there (np.where), without a division warning."),
        imports=NUMPY, example=lambda: (np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.25, 0.75]),)),
    # ---------------------------------------------------------------- chapter 4
    Exercise(
        "reparameterised-sample", "scratchgen.distributions:Normal.rsample",
        "elbo", "The reparameterisation trick",
        "z = μ + σ ε: a Gaussian sample that gradients flow through",
        ("tests/test_distributions.py::test_rsample_has_the_claimed_mean_and_variance",
         "tests/test_distributions.py::test_variance_check_catches_exp_log_var_used_as_std",
         "tests/test_distributions.py::test_reparameterised_gradient_is_unbiased_for_a_quadratic",
         "tests/test_distributions.py::test_sample_has_no_gradient_and_is_seeded"),
        ("z = μ + σ ε with ε ~ N(0, I): the randomness is in ε, which does not depend on the parameters.",
         "self.loc is μ, self.std is σ = exp(½ log σ²) — not exp(log σ²), which would be the variance.",
         "The output shape is tuple(shape) + tuple(self.batch_shape) (shape may be an int). When eps is "
         "None draw it with get_rng().standard_normal(out_shape); then return "
         "self.loc + self.std * Tensor(eps.astype(self.loc.dtype))."),
        imports=TENSORS + ("from scratchgen.random import get_rng",),
        note="rsample is a method of scratchgen.distributions.Normal: `self` is the Normal, with\n"
             "self.loc (μ), self.std (σ), self.log_var (log σ²) and self.batch_shape. A given eps of\n"
             "the wrong shape must raise a ValueError whose message starts \"Normal.rsample: eps has shape\"."),
    Exercise(
        "gaussian-kl", "scratchgen.objectives.hand_gradients:kl_std_normal",
        "elbo", "The regulariser in closed form",
        "KL(N(μ, σ²) || N(0, 1)) in closed form",
        (TH + "test_kl_to_standard_normal_gradient",),
        ("Write KL = E_q[log q(ω) - log p(ω)] with both densities Gaussian; the log 2π terms cancel.",
         "E_q[(ω - μ)²] = σ² and E_q[ω²] = μ² + σ².",
         "The result is ½(μ² + σ² - 1 - log σ²), elementwise, with σ² = exp(log_var)."),
        imports=NUMPY, example=lambda: (np.array([0.0, 1.0, -2.0]), np.array([0.0, 0.5, -1.0]),)),
    Exercise(
        "gaussian-kl-gradient", "scratchgen.objectives.hand_gradients:kl_std_normal_grad",
        "elbo", "The regulariser in closed form",
        "the gradient of that KL with respect to μ and log σ²",
        (TH + "test_kl_to_standard_normal_gradient",),
        ("Differentiate ½(μ² + e^s - 1 - s) with s = log σ², term by term.",
         "d/dμ gives μ; d/ds gives ½(e^s - 1). Return the pair (dKL/dμ, dKL/d log σ²)."),
        imports=NUMPY, example=lambda: (np.array([0.0, 1.0, -2.0]), np.array([0.0, 0.5, -1.0]),)),
    Exercise(
        "elbo", "scratchgen.objectives.evidence_lower_bound:elbo",
        "elbo", "Jensen's inequality gives the ELBO",
        "the ELBO: reconstruction by reparameterised samples, minus the closed-form KL; β and free bits",
        (TO + "test_elbo_terms_match_direct_computation", TO + "test_kl_weight_scales_only_the_kl_in_the_loss",
         TO + "test_free_bits_floor_each_dimensions_batch_mean_kl",
         TO + "test_conditional_prior_uses_the_general_normal_kl"),
        ("q = as_normal(posterior); n = number_of_examples(x, q); the prior defaults to N(0, I): "
         "Normal(np.zeros((), q.loc.dtype), log_var=np.zeros((), q.loc.dtype)).",
         "Reconstruction: z = q.rsample((n_samples,), eps=eps), then "
         "log_likelihood_samples(x, z, decoder).mean(axis=0) — one number per example.",
         "KL: kl_divergence(q, p).expand(q.batch_shape).reshape(n, -1) is (N, d). Its row sums are the "
         "per-example KL; its column means, floored at free_bits with .clamp(min=...), summed, are the "
         "KL term of the loss = -(mean reconstruction - kl_weight · KL term). Return an ELBOResult."),
        helpers=("ELBOResult", "Normal", "as_normal", "number_of_examples", "log_likelihood_samples", "kl_divergence"),
        imports=NUMPY),
    Exercise(
        "iwae-bound", "scratchgen.objectives.iwae:iwae_bound", "elbo", "A tighter bound for evaluation: IWAE",
        "the importance-weighted bound, log-mean-exp of k weights, computed in chunks",
        (TO + "test_iwae_chunking_does_not_change_the_estimate",
         TO + "test_iwae_with_one_sample_equals_the_elbo_estimator_on_that_sample",
         TO + "test_iwae_5000_runs_in_chunks_of_bounded_size"),
        ("IWAE_k(x) = log (1/k) Σ_i w_i with log w_i from log_importance_weights (shape (k, N)).",
         "Never exponentiate log w directly: the weights of an image are e^-100 or smaller. Use "
         "log-sum-exp: m + log Σ exp(log w - m), m the max over the k samples.",
         "Chunks: loop over the k samples chunk_size at a time, keep a running log-sum-exp per example "
         "(np.logaddexp(running, chunk_lse)), and subtract log k at the end. Work under no_grad(), on a "
         "detached copy of q, and pass eps[start:start + size] to each chunk when eps is given."),
        helpers=("as_normal", "number_of_examples", "log_importance_weights", "Normal", "no_grad"),
        imports=NUMPY),
    # ---------------------------------------------------------------- chapter 5
    Exercise(
        "gan-value", "scratchgen.objectives.gan:discriminator_value",
        "gan", "A discriminator network gives a lower bound",
        "V = mean log D(real) + mean log(1 - D(fake)), from logits",
        (TO + "test_gan_objectives_match_their_definitions",
         TO + "test_gan_value_of_an_ignorant_discriminator_and_shapes",
         TO + "test_discriminator_loss_is_twice_the_pooled_binary_cross_entropy",
         TO + "test_value_at_the_optimal_discriminator_is_2js_minus_2log2_on_empirical_samples"),
        ("V is a sum of two means — one over the real batch, one over the fake batch — not one mean over both.",
         "From a logit l: log D = log σ(l) = -softplus(-l) and log(1 - D) = -softplus(l): log_d and "
         "log_one_minus_d in the stub's imports.",
         "Accept arrays or Tensors of shape (N,) or (N, 1): _logits(real_logits, 'real_logits') does that."),
        helpers=("log_d", "log_one_minus_d", "_logits"), imports=TENSORS,
        example=lambda: (np.array([2.0, 0.5, -1.0]), np.array([-3.0, 0.2]),)),
    Exercise(
        "minimax-generator-loss", "scratchgen.objectives.gan:generator_loss_saturating",
        "gan", "The non-saturating generator loss, and why it is needed",
        "the generator's side of the minimax game, E[log(1 - D(G(z)))]",
        (TO + "test_gan_objectives_match_their_definitions",
         TO + "test_saturating_generator_gradient_vanishes_when_d_rejects_fakes"),
        ("The generator minimises the part of V that depends on it: the mean over fakes of log(1 - D(G(z))).",
         "log(1 - σ(l)) = -softplus(l): use log_one_minus_d, and _logits to accept arrays and (N, 1) shapes."),
        helpers=("log_one_minus_d", "_logits"), imports=TENSORS, example=lambda: (np.array([-3.0, 0.2, 4.0]),)),
    Exercise(
        "nonsaturating-generator-loss", "scratchgen.objectives.gan:generator_loss_nonsaturating",
        "gan", "The non-saturating generator loss, and why it is needed",
        "the generator loss used in practice, -E[log D(G(z))]",
        (TO + "test_gan_objectives_match_their_definitions",
         TO + "test_saturating_generator_gradient_vanishes_when_d_rejects_fakes"),
        ("Instead of minimising log(1 - D(G(z))) the generator maximises log D(G(z)); as a loss to minimise, "
         "that is minus the mean of log D over the fakes.",
         "log σ(l) = -softplus(-l): use log_d, and _logits to accept arrays and (N, 1) shapes. Watch the sign."),
        helpers=("log_d", "_logits"), imports=TENSORS, example=lambda: (np.array([-3.0, 0.2, 4.0]),)),
    # ---------------------------------------------------------------- chapter 7
    Exercise(
        "general-gaussian-kl", "scratchgen.objectives.hand_gradients:kl_normal_normal", "conditional-vae",
        "The conditional prior, and the KL between two general Gaussians",
        "KL between two diagonal Gaussians: the learned conditional prior's regulariser",
        (TH + "test_general_diagonal_normal_kl_gradient",),
        ("Per dimension, KL = E_p[log p(ω) - log q(ω)] for p = N(μp, σp²), q = N(μq, σq²).",
         "E_p[(ω - μq)²] = σp² + (μp - μq)².",
         "The result is ½[log σq² - log σp² + (σp² + (μp - μq)²)/σq² - 1], elementwise."),
        imports=NUMPY, example=lambda: (np.array([0.0, 1.0]), np.array([0.0, 0.5]), np.array([1.0, 1.0]),
                                        np.array([0.0, -1.0]))),
    # ---------------------------------------------------------------- chapter 8 (autoregressive models)
    Exercise(
        "masked-conv-mask", "scratchgen.models.pixelcnn:horizontal_mask",
        "autoregressive-models", "Masked convolutions, and the blind spot",
        "the mask of a masked convolution's horizontal stack: type A (first layer) and type B",
        ("tests/test_pixelcnn.py::test_masks_keep_exactly_the_past",
         "tests/test_pixelcnn.py::test_perturbing_code_i_changes_no_output_at_or_before_i_in_any_layer[3]"),
        ("The horizontal stack is a (1, k) kernel centred on the current position: columns left of the centre "
         "are the past of the same row, the centre is the position itself.",
         "Type A (the first layer, which reads the input codes) must not see the position it predicts: only "
         "the columns left of the centre. Type B (later layers, which read features) may see the centre too.",
         "Return a (1, k) float array of 0/1: ones in the first k // 2 columns, plus the centre for type B. "
         "Any other mask_type raises a ValueError that names mask_type."),
        imports=NUMPY, example=lambda: (5, "A")),
    # ---------------------------------------------------------------- chapter 9 (VQ-VAE)
    Exercise(
        "straight-through", "scratchgen.models.vector_quantizer:straight_through",
        "vq-vae", "The straight-through gradient",
        "z_q = z_e + sg[e - z_e]: the codeword's value, the identity's gradient",
        ("tests/test_vqvae.py::test_straight_through_gives_z_e_the_gradient_taken_at_z_q",
         "tests/test_vqvae.py::test_each_loss_term_trains_only_its_own_side"),
        ("Forward, z_q must equal the codeword e exactly; backward, dL/dz_e must equal dL/dz_q.",
         "x.detach() is a stop-gradient: its value, no gradient. Which part of z_e + (e - z_e) must it wrap?"),
        imports=TENSORS),
    Exercise(
        "commitment-loss", "scratchgen.models.vector_quantizer:commitment_loss",
        "vq-vae", "Three loss terms, and which weights each one trains",
        "mean ||z_e - sg[e]||²: the term that keeps the encoder near its codewords",
        ("tests/test_vqvae.py::test_vq_losses_and_their_gradients_match_the_formulas",
         "tests/test_vqvae.py::test_each_loss_term_trains_only_its_own_side"),
        ("The commitment loss trains the encoder only: the codewords must get no gradient from it.",
         "F.mse_loss(a, b) is mean((a - b)²). Which argument takes the .detach()?"),
        imports=TENSORS),
    Exercise(
        "made-masks", "scratchgen.models.code_prior:made_masks", "vq-vae", "The prior, fitted afterwards",
        "the 0/1 masks that make an MLP autoregressive (MADE)",
        ("tests/test_vqvae.py::test_made_prior_is_autoregressive_and_conditioned_on_its_context",
         "tests/test_vqvae.py::test_prior_probabilities_sum_to_one_and_loss_is_their_cross_entropy"),
        ("Give inputs the degrees 1..length and hidden unit j the degree j mod length (0, 1, ..., length-1, 0, ...).",
         "A hidden unit of degree m may see inputs of degree <= m, and another hidden unit of degree <= m.",
         "An output of degree d may see hidden units of degree < d — strictly less, or position d sees itself. "
         "Each mask has the shape (out, in) of its layer's weight; return (degrees, masks) as float32 0/1."),
        imports=NUMPY, example=lambda: (3, [4],)),
)

BY_NAME = {e.name: e for e in EXERCISES}


def get(name):
    """The exercise called ``name``; a KeyError that lists the valid names otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"there is no exercise {name!r}; `scratchgen exercise list` shows them: "
                       f"{', '.join(BY_NAME)}") from None
