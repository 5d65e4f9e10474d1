"""A seeded mini-batch iterator that can replay any epoch exactly.

Like ``torch.utils.data.DataLoader``, but every random choice is a pure function of
``(seed, epoch)``: the shuffle order of epoch e is drawn from a generator seeded with
(seed, 0, e, 0), and the dynamic binarization of batch b of epoch e from (seed, 1, e, b).
So a run resumed from a checkpoint at epoch e, batch b (``loader.iter_epoch(e, start=b)``)
sees exactly the batches the uninterrupted run would have seen.

NOTE: the keys all have four entries on purpose. NumPy's SeedSequence pads short keys with
zeros, so ``default_rng([s, e])`` and ``default_rng([s, e, 0])`` give the *same* stream.
"""
import numpy as np

from scratchgen.random import get_rng

from .datasets import ArrayDataset


class DataLoader:
    """Mini-batches from an :class:`ArrayDataset` (yields ``(x, y)``, y None if unlabeled),
    a NumPy array (yields arrays) or a tuple of equally long arrays (yields tuples).

    ``seed=None`` draws a seed from scratchgen's global generator; the value used is kept in
    ``loader.seed``. ``for batch in loader`` serves epoch ``loader.epoch`` and then counts it, so
    the next loop gets the next epoch's order. A resumed run asks for the rest of an epoch by
    number: ``loader.iter_epoch(epoch, start=batch)`` (the trainer keeps epoch and batch in its
    checkpoint), and gets exactly the batches it would have seen.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=None, drop_last=False):
        if isinstance(dataset, tuple):
            lengths = {len(a) for a in dataset}
            if len(lengths) != 1:
                raise ValueError(f"all arrays in the tuple must have the same length; got {sorted(lengths)}")
        elif not isinstance(dataset, ArrayDataset):
            dataset = np.asarray(dataset)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if seed is None:
            seed = int(get_rng().integers(2**63))
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.seed, self.drop_last = int(seed), drop_last
        self.epoch = 0

    @property
    def n(self):
        return len(self.dataset[0]) if isinstance(self.dataset, tuple) else len(self.dataset)

    def __len__(self):
        """Number of batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch):
        """The example indices of ``epoch`` in the order they are served."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, 0, epoch, 0]).permutation(self.n)

    def _take(self, idx, epoch, b):
        if isinstance(self.dataset, ArrayDataset):
            return self.dataset.get(idx, rng=np.random.default_rng([self.seed, 1, epoch, b]))
        if isinstance(self.dataset, tuple):
            return tuple(a[idx] for a in self.dataset)
        return self.dataset[idx]

    def iter_epoch(self, epoch, start=0):
        """Yield the batches of ``epoch``, beginning at batch number ``start`` (for resuming)."""
        if epoch < 0 or start < 0:
            raise ValueError(f"epoch and start must be >= 0; got epoch={epoch}, start={start}")
        order = self.order(epoch)
        for b in range(start, len(self)):
            yield self._take(order[b * self.batch_size:(b + 1) * self.batch_size], epoch, b)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        yield from self.iter_epoch(epoch)
