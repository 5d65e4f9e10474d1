"""``Flatten`` and ``Unflatten``: reshaping layers, e.g. between a conv stack and a Linear."""
import math

from .module import Module


def _dim(dim, ndim, layer, shape):
    if not -ndim <= dim < ndim:
        raise ValueError(f"{layer} got input of shape {shape}: dimension {dim} is out of range "
                         f"for a {ndim}-D input")
    return dim % ndim


class Flatten(Module):
    """Merge dimensions start_dim..end_dim (inclusive) into one: (N, C, H, W) -> (N, C·H·W)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        shape = tuple(x.shape)
        start = _dim(self.start_dim, x.ndim, repr(self), shape)
        end = _dim(self.end_dim, x.ndim, repr(self), shape)
        if start > end:
            raise ValueError(f"{self!r} got input of shape {shape}: start_dim comes after end_dim")
        merged = math.prod(shape[start:end + 1])
        return x.reshape(shape[:start] + (merged,) + shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``: (N, 784) -> (N, 1, 28, 28).

    One entry of ``unflattened_size`` may be -1, to be inferred.
    """

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim = int(dim)
        self.unflattened_size = tuple(int(s) for s in unflattened_size)
        if sum(s == -1 for s in self.unflattened_size) > 1 or \
                any(s < -1 for s in self.unflattened_size):
            raise ValueError(f"Unflatten: unflattened_size {self.unflattened_size} may hold at "
                             f"most one -1 and otherwise non-negative sizes")

    def forward(self, x):
        shape = tuple(x.shape)
        dim = _dim(self.dim, x.ndim, repr(self), shape)
        sizes = self.unflattened_size
        known = math.prod(s for s in sizes if s != -1)
        fits = (shape[dim] % known == 0) if -1 in sizes and known else (shape[dim] == known)
        if not fits:
            raise ValueError(f"{self!r} got input of shape {shape}: dimension {dim} has size "
                             f"{shape[dim]}, which cannot be split into {sizes}")
        return x.reshape(shape[:dim] + sizes + shape[dim + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
