"""Hypothesis strategies for the whole test suite (one module; each area appends its own section)."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


# core
# Shapes stay tiny: a gradient check perturbs every element, two forward passes each.

def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_pairs(min_dims=0, max_dims=3, max_side=4):
    """Two shapes that broadcast together (either may be the smaller one, or have 1-sized axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=max_dims,
                                             max_side=max_side).map(lambda r: r.input_shapes)


def bounded_floats(low=-2.0, high=2.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def away_from_zero(margin=0.1, high=2.0):
    """Floats with |x| in [margin, high]: safe for relu, abs, division and leaky_relu (kinks at 0)."""
    return st.tuples(st.booleans(), bounded_floats(margin, high)).map(lambda t: t[1] if t[0] else -t[1])


def positive_floats(low=0.2, high=3.0):
    """Floats safely inside the domain of log and sqrt (away from the edge at 0)."""
    return bounded_floats(low, high)


def away_from(points, margin=0.1, low=-2.0, high=2.0):
    """Floats in [low, high] at least ``margin`` from every kink in ``points`` (clamp bounds)."""
    return bounded_floats(low, high).filter(lambda x: all(abs(x - p) >= margin for p in points))


def arrays(shape, elements=None, dtype=np.float64):
    return hnp.arrays(dtype, shape, elements=elements if elements is not None else bounded_floats())


def with_layout(array, layout):
    """The same values as ``array`` in another memory layout: 'contiguous', 'transposed' (a
    transposed view of a copy: all axes reversed), 'swapped' (the last two axes swapped, as
    autograd's ``aᵀ`` of a batch of matrices) or 'strided' (every second element of a larger buffer)."""
    if layout == "transposed" and array.ndim >= 2:
        return np.ascontiguousarray(array.T).T
    if layout == "swapped" and array.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2)
    if layout == "strided" and array.ndim >= 1:
        buffer = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        buffer[..., ::2] = array
        return buffer[..., ::2]
    return np.array(array)


layouts = st.sampled_from(["contiguous", "transposed", "swapped", "strided"])


@st.composite
def laid_out_arrays(draw, shape, elements=None, dtype=np.float64):
    """Arrays of ``shape`` in any layout, so ops and gradcheck are exercised on non-contiguous data."""
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    return with_layout(draw(arrays(shape, elements, dtype)), draw(layouts))


@st.composite
def seeded_arrays(draw, shape, scale=1.0, dtype=np.float64):
    """Standard-normal arrays (times ``scale``) from a drawn seed, in any layout: cheaper than
    drawing each element when a layer's input has hundreds of them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return with_layout((scale * rng.standard_normal(shape)).astype(dtype), draw(layouts))


@st.composite
def distinct_arrays(draw, shape, gap=0.3):
    """Arrays whose elements differ pairwise by at least ``gap`` (no ties for max/min)."""
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    n = int(np.prod(shape))
    ranks = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = np.array(draw(st.lists(bounded_floats(-0.05, 0.05), min_size=n, max_size=n)))
    values = (ranks - n / 2) * (gap + 0.1) + jitter
    return with_layout(values.reshape(shape), draw(layouts))


@st.composite
def conv2d_cases(draw, max_n=2, max_c=3, max_hw=6, max_k=3, max_stride=3, max_pad=2):
    """Keyword arguments for a valid conv2d: shapes of x and weight, stride and padding pairs."""
    n, c_in, c_out = draw(st.integers(1, max_n)), draw(st.integers(1, max_c)), draw(st.integers(1, max_c))
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    padding = (draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), max_hw))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), max_hw))
    return dict(x_shape=(n, c_in, h, w), w_shape=(c_out, c_in, kh, kw), stride=stride, padding=padding)


@st.composite
def conv_transpose2d_cases(draw, max_n=2, max_c=3, max_hw=4, max_k=3, max_stride=3, max_pad=2):
    """Keyword arguments for a valid conv_transpose2d, including output_padding < stride."""
    n, c_in, c_out = draw(st.integers(1, max_n)), draw(st.integers(1, max_c)), draw(st.integers(1, max_c))
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    out_pad = (draw(st.integers(0, stride[0] - 1)), draw(st.integers(0, stride[1] - 1)))
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    # padding may not crop the whole output: H_out = (H - 1) s - 2 p + k + op must stay >= 1
    ph = draw(st.integers(0, min(max_pad, ((h - 1) * stride[0] + kh + out_pad[0] - 1) // 2)))
    pw = draw(st.integers(0, min(max_pad, ((w - 1) * stride[1] + kw + out_pad[1] - 1) // 2)))
    return dict(x_shape=(n, c_in, h, w), w_shape=(c_in, c_out, kh, kw), stride=stride,
                padding=(ph, pw), output_padding=out_pad)


# data
# IDX round trips over every element type the format defines, and loader settings that hit the
# edge cases (batch larger than the data, a last batch of one, drop_last on an exact multiple).

IDX_TEST_DTYPES = [np.uint8, np.int8, np.dtype(">i2"), np.int32, np.float32, np.float64]


@st.composite
def idx_arrays(draw):
    """Small arrays of an IDX element type, 1 to 3 dimensions, possibly with a zero-length axis."""
    dtype = np.dtype(draw(st.sampled_from(IDX_TEST_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    elements = None if dtype.kind in "iu" else st.floats(allow_nan=False, width=8 * dtype.itemsize)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def loader_settings(draw, max_n=40):
    """(n, batch_size, shuffle, drop_last, seed) for DataLoader tests."""
    n = draw(st.integers(1, max_n))
    return (n, draw(st.integers(1, n + 3)), draw(st.booleans()), draw(st.booleans()),
            draw(st.integers(0, 2**32)))


# probability
# Probability vectors that may contain exact zeros (0 log 0 and KL = inf paths), Gaussian
# parameters with log-variances in a range where Monte Carlo checks converge, logits, joints.

@st.composite
def probability_vectors(draw, min_size=2, max_size=6, allow_zeros=True):
    """A float64 probability vector (non-negative, sums to 1), possibly with exact zeros."""
    k = draw(st.integers(min_size, max_size))
    # NOTE: non-zero weights stay >= 1e-6: at q/p ~ 1e-38, t* = p/(p+q) rounds to exactly 1 and
    # log(1 - t*) = -inf although q > 0 (a float limit, documented in divergences.value).
    low = 1e-6 if allow_zeros else 0.05
    weights = np.array(draw(st.lists(st.floats(low, 1.0), min_size=k, max_size=k)))
    if allow_zeros:
        zero = np.array(draw(st.lists(st.booleans(), min_size=k, max_size=k)))
        weights = np.where(zero, 0.0, weights)
    if weights.sum() < 1e-3:  # at least one clearly positive outcome
        weights[draw(st.integers(0, k - 1))] = 1.0
    return weights / weights.sum()


@st.composite
def probability_vector_pairs(draw, min_size=2, max_size=6, allow_zeros=True):
    """(p, q) over the same outcomes."""
    p = draw(probability_vectors(min_size, max_size, allow_zeros))
    q = draw(probability_vectors(len(p), len(p), allow_zeros))
    return p, q


def log_variances(low=-2.0, high=1.5):
    """log σ²: σ between about 0.37 and 2.1, where moment checks converge with modest samples."""
    return bounded_floats(low, high)


def positive_variances(low=0.1, high=4.0):
    return bounded_floats(low, high)


@st.composite
def normal_params(draw, shape=(3,)):
    """(loc, log_var) float64 arrays of ``shape`` for a diagonal Gaussian."""
    return (draw(arrays(shape, bounded_floats(-2.0, 2.0))), draw(arrays(shape, log_variances())))


def logit_arrays(shape, bound=4.0):
    return arrays(shape, bounded_floats(-bound, bound))


@st.composite
def log_joints(draw, max_x=4, max_y=5, allow_impossible=True):
    """A table log p(x, y) of shape (n_x, n_y) (unnormalised is fine for Bayes' rule); with
    ``allow_impossible`` some entries are -inf (p = 0) but every row keeps a finite one."""
    n_x, n_y = draw(st.integers(1, max_x)), draw(st.integers(2, max_y))
    table = draw(arrays((n_x, n_y), bounded_floats(-30.0, 5.0)))
    if allow_impossible:
        mask = np.array(draw(st.lists(st.booleans(), min_size=n_x * n_y, max_size=n_x * n_y))).reshape(n_x, n_y)
        mask[np.arange(n_x), draw(st.integers(0, n_y - 1))] = False
        table = np.where(mask, -np.inf, table)
    return table


# nn
# Layer configurations small enough that a gradient check over every parameter stays cheap.

@st.composite
def linear_cases(draw, max_batch=3, max_features=4):
    """(input shape (..., in_features) with 1 or 2 leading dims, in_features, out_features, bias)."""
    n_in, n_out = draw(st.integers(1, max_features)), draw(st.integers(1, max_features))
    lead = tuple(draw(st.lists(st.integers(1, max_batch), min_size=1, max_size=2)))
    return lead + (n_in,), n_in, n_out, draw(st.booleans())


@st.composite
def batch_norm_shapes(draw, ndim, max_n=4, max_c=3, max_side=3):
    """Input shapes (N, C, *spatial) with ``ndim`` dims and at least 2 values per channel."""
    shape = (draw(st.integers(1, max_n)), draw(st.integers(1, max_c))) + \
        tuple(draw(st.integers(1, max_side)) for _ in range(ndim - 2))
    if np.prod(shape) // shape[1] < 2:
        shape = (2,) + shape[1:]
    return shape


@st.composite
def batch_norm_problems(draw):
    """(x, g, γ, β, training) for the batch-norm kernels: 2-4 dims (features (N, C) take the row-sum
    path), 1-sized axes, float32 or float64, x and g in any layout, |mean| of the order of the spread."""
    shape = draw(batch_norm_shapes(draw(st.integers(2, 4)), max_n=5, max_c=5, max_side=5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = with_layout((3 * rng.standard_normal(shape) + 1).astype(dtype), draw(layouts))
    g = with_layout(rng.standard_normal(shape).astype(dtype), draw(layouts))
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    return x, g, gamma, beta, draw(st.booleans())


# evaluation
# Covariance matrices for the Fréchet distance: symmetric positive definite, condition number
# kept moderate so eigendecomposition routes agree to ~1e-9.

@st.composite
def spd_matrices(draw, d):
    """A d x d symmetric positive definite float64 matrix A Aᵀ + 0.1 I."""
    a = draw(arrays((d, d), bounded_floats(-2.0, 2.0)))
    return a @ a.T + 0.1 * np.eye(d)


# kernels
# Matmul and conv2d kernel inputs: sizes straddle the 4x4 register tile (1, 3, 4, 5, ...), either
# float dtype, any memory layout; seeded normal values so a draw is cheap at any size.

FLOAT_DTYPES = st.sampled_from([np.float32, np.float64])


def matmul_shape_pairs(max_dims=4, max_side=9, vectors=True):
    """Shapes (a, b) that ``np.matmul`` accepts: broadcast batch dimensions, and 1-D operands
    unless ``vectors=False`` (the kernel's contract: at least 2-D; ``Tensor @`` promotes vectors)."""
    signature = "(n?,k),(k,m?)->(n?,m?)" if vectors else "(n,k),(k,m)->(n,m)"
    return hnp.mutually_broadcastable_shapes(signature=signature, max_dims=max_dims,
                                             max_side=max_side).map(lambda r: r.input_shapes)


@st.composite
def matmul_operands(draw, shapes=None, dtypes=None):
    """(a, b) float arrays for a matmul, each in any layout and either float dtype."""
    a_shape, b_shape = draw(shapes if shapes is not None else matmul_shape_pairs())
    pick = dtypes if dtypes is not None else FLOAT_DTYPES
    return draw(seeded_arrays(a_shape, dtype=draw(pick))), draw(seeded_arrays(b_shape, dtype=draw(pick)))


@st.composite
def matrix_triples(draw, max_n=13, max_k=13, max_m=13, max_batch=3):
    """(batch, n, k, m) for a batched (batch, n, k) @ (batch, k, m) product."""
    return (draw(st.integers(1, max_batch)), draw(st.integers(1, max_n)), draw(st.integers(1, max_k)),
            draw(st.integers(1, max_m)))


@st.composite
def tile_edge_triples(draw, tile_rows, tile_cols, max_k=40, max_batch=2):
    """(batch, n, k, m) whose n and m fall on, just before or just after a multiple of the register
    tile's rows and columns (0, 1 or 2 whole tiles and a ragged rest), and sizes of 1."""
    def around(tile):
        return draw(st.sampled_from([1, tile - 1, tile, tile + 1, 2 * tile + 1]) | st.integers(1, 2 * tile + 1))
    return (draw(st.integers(1, max_batch)), max(1, around(tile_rows)), draw(st.integers(1, max_k)),
            max(1, around(tile_cols)))


@st.composite
def conv2d_grad_input_shapes(draw, case):
    """An input shape for ``case`` (from ``conv2d_cases``) with up to stride-1 extra rows/columns
    that no window reaches: the shapes conv_transpose2d's output_padding produces."""
    n, c, h, w = case["x_shape"]
    (sh, sw), (ph, pw), (kh, kw) = case["stride"], case["padding"], case["w_shape"][2:]
    extra_h = draw(st.integers(0, sh - 1 - (h + 2 * ph - kh) % sh))
    extra_w = draw(st.integers(0, sw - 1 - (w + 2 * pw - kw) % sw))
    return (n, c, h + extra_h, w + extra_w)


# vq
# Vector-quantiser inputs: a grid of encoder outputs (N, D, H, W) and a codebook (K, D), small,
# seeded normal values (ties in the nearest-codeword search have probability zero).

@st.composite
def quantizer_grids(draw, max_n=3, max_side=4, max_codes=9, max_dim=5):
    """(z_e grid (N, D, H, W), codebook (K, D)) as float64 arrays."""
    n, h, w = draw(st.integers(1, max_n)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    k, d = draw(st.integers(1, max_codes)), draw(st.integers(1, max_dim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal((n, d, h, w)), rng.standard_normal((k, d))


# optim
# Adam's hyperparameters over the ranges people use, plus the edges: no momentum (β1 = 0), no
# weight decay, eps = 0 (0/0 = nan where a gradient has been 0 so far).

@st.composite
def adam_hyperparameters(draw):
    """Keyword arguments for ``optim.Adam``: lr, betas, eps, weight_decay."""
    return {"lr": draw(st.sampled_from([1e-4, 1e-3, 0.1]) | st.floats(1e-5, 0.5)),
            "betas": (draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0, 0.99)),
                      draw(st.sampled_from([0.99, 0.999]) | st.floats(0.9, 0.9999))),
            "eps": draw(st.sampled_from([0.0, 1e-8, 1e-6]) | st.floats(1e-10, 1e-2)),
            "weight_decay": draw(st.sampled_from([0.0, 1e-4]) | st.floats(0, 0.3))}
