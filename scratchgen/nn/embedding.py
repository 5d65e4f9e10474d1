"""``Embedding``: a learnable lookup table, one row of ``weight`` per integer index."""
import numpy as np

from .. import functional as F
from . import init
from .linear import check_size
from .module import Module, Parameter, float_dtype


class Embedding(Module):
    """Maps integer indices of any shape (...) to vectors (..., embedding_dim).

    The gradient of a row is the sum of the upstream gradients of every position that
    looked it up (repeated indices add up). Default initialisation as PyTorch: N(0, 1).
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32):
        super().__init__()
        self.num_embeddings = check_size(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = check_size(embedding_dim, "embedding_dim", "Embedding")
        dtype = float_dtype(dtype, "Embedding")
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)

    def forward(self, indices):
        return F.embedding(indices, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
