"""The bridge out: a trained network's weights as a file PyTorch loads into its ``torch.nn`` twin.

scratchgen's names and layouts follow PyTorch (``nn.Linear`` weights are (out, in), convolutions
NCHW with (C_out, C_in, kH, kW) weights, ``ConvTranspose2d`` (C_in, C_out, kH, kW), ``BatchNorm``
buffers ``running_mean``/``running_var``), so a network written in PyTorch with the same modules
under the same attribute names has the same ``state_dict`` keys and shapes. ``scratchgen export
RUN --to torch-state-dict`` writes the run's network (``experiment.net``: parameters and buffers,
no optimizer state) as an ``.npz`` of plain arrays — nothing pickled, on either side — and PyTorch
reads it in two lines::

    state = {k: torch.from_numpy(v) for k, v in np.load("runs/vae-digits8-seed0/torch_state_dict.npz").items()}
    net.load_state_dict(state)          # net: the torch.nn twin of the scratchgen network

``tests/test_export.py`` builds the twin of a trained MLP VAE in PyTorch and gets the same test
loss to 1e-5 (skipped when PyTorch is not installed).
"""
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .config import load_run

FORMATS = ("torch-state-dict",)
LOAD_SNIPPET = ("state = {{k: torch.from_numpy(v) for k, v in np.load({path!r}).items()}}\n"
                "net.load_state_dict(state)")


def torch_state_dict(experiment):
    """``{name: ndarray}`` of the experiment's network, under PyTorch's names (the module's own)."""
    return {name: np.ascontiguousarray(value) for name, value in experiment.net.state_dict().items()}


def export_run(run_dir, out=None, which="latest", to="torch-state-dict"):
    """Write the network of a run's checkpoint for PyTorch; returns ``(path, state)``.

    ``out`` defaults to ``RUN/torch_state_dict.npz``. The file is written atomically
    (:func:`scratchgen.files.atomic_write`), so an interrupted export leaves no half-written file.
    """
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    run, config, experiment, meta = load_run(run_dir, which)
    path = Path(out) if out else run.path / "torch_state_dict.npz"
    if path.suffix != ".npz":
        raise ValueError(f"the exported file must end in .npz (numpy.load reads it), got {path}")
    state = torch_state_dict(experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, **state)
    return path, state
