"""One seeded random generator for the whole library.

Every random draw in scratchgen (initialisation, sampling, dropout of data, shuffling) goes
through :func:`get_rng`, so ``scratchgen.manual_seed(n)`` makes a run reproducible, and
:func:`get_state` / :func:`set_state` let a checkpoint store and restore the stream exactly.
"""
import json

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the global generator (like ``torch.manual_seed``); returns it."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))
    return _rng


def get_rng():
    """The global ``numpy.random.Generator`` used by scratchgen."""
    return _rng


def get_state():
    """The generator's state as a JSON string (checkpoints store it without pickle)."""
    return json.dumps(_rng.bit_generator.state)


def set_state(state):
    """Restore a state produced by :func:`get_state`."""
    global _rng
    state = json.loads(state) if isinstance(state, str) else state
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    _rng = np.random.Generator(bitgen)
