"""One seeded random generator for the whole library.

Every random draw in scratchgen (initialisation, sampling, dropout of data, shuffling) goes
through :func:`get_rng`, so ``scratchgen.manual_seed(n)`` makes a run reproducible, and
:func:`get_state` / :func:`set_state` let a checkpoint store and restore the stream exactly.
"""
import json

import numpy as np

_rng = np.random.default_rng(0)

# The bit generators whose state a checkpoint may name: only the one scratchgen uses.
# NOTE: the name comes from a file, so it is looked up here and never with getattr(np.random, name):
# a crafted checkpoint must not be able to call an arbitrary function of numpy.random.
BIT_GENERATORS = {"PCG64": np.random.PCG64}


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
    """Restore a state produced by :func:`get_state` (a ValueError says what is wrong with it)."""
    global _rng
    if isinstance(state, str):
        try:
            state = json.loads(state)
        except json.JSONDecodeError as e:
            raise ValueError(f"the random state is not valid JSON ({e})") from None
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"the random state names the bit generator {name!r}; scratchgen restores only "
                         f"{', '.join(BIT_GENERATORS)}")
    bitgen = BIT_GENERATORS[name]()
    try:
        bitgen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"the random state of {name} is malformed ({type(e).__name__}: {e})") from None
    _rng = np.random.Generator(bitgen)
