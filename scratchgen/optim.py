"""Optimizers, ``import scratchgen.optim as optim``: PyTorch's update rules, step for step.

An optimizer holds a list of parameters. ``loss.backward()`` fills each ``p.grad``;
``step()`` then changes ``p.data`` in place, in the parameter's dtype, skipping parameters whose
``.grad`` is None; ``zero_grad()`` sets every ``.grad`` back to None.

For a parameter p with gradient g at step t (weight decay λ adds λ·p to g first — plain L2
regularisation, not the decoupled AdamW form):

=========  ================================================================================
SGD        b ← μ b + g  (b starts as the first g, not 0)    p ← p − lr · b   (b = g if μ = 0)
Adam       m ← β1 m + (1 − β1) g      v ← β2 v + (1 − β2) g²      (m and v start at 0)
           p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
=========  ================================================================================

Adam is Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization". Dividing by
1 − β^t removes the bias towards 0 of averages that start at 0.

``state_dict()`` is a flat ``{name: np.ndarray}`` (``np.savez`` stores it without pickle):
``"step"`` (number of ``step()`` calls), the hyperparameters (``"lr"``, ...), and per-parameter
state ``"state.<i>.<name>"``, where i is the parameter's position in the list given to the
optimizer. ``load_state_dict()`` restores all of it, so training resumes bit for bit.

``Adam.step`` calls ``scratchgen.kernels.adam.adam_update`` for each parameter: the update's NumPy
reference on the ``"numpy"`` kernel backend, a fused Numba pass with the same bits on ``"numba"``.
"""

import numpy as np

from .kernels import adam as adam_kernel
from .nn.module import StateDictError
from .autograd import Tensor


def _check(condition, message):
    if not condition:
        raise ValueError(message)


class Optimizer:
    """Base class: the parameter list, ``zero_grad``, and the ``state_dict`` machinery.

    A subclass names its float hyperparameters in ``hyperparameters`` and its per-parameter
    state in ``state_keys``, and writes ``step``.
    """
    hyperparameters = ()
    state_keys = ()

    def __init__(self, params):
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__} expects an iterable of tensors such as "
                            f"model.parameters(), got a single Tensor; wrap it in a list")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list: does the model "
                             f"assign its layers as attributes after super().__init__()?")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: parameter {i} must be a floating-point "
                                f"Tensor, got {type(p).__name__}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once in the "
                             f"list; it would be updated twice per step")
        self.state = {}  # parameter index -> {state name: ndarray or int}
        self.step_count = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _gradients(self):
        """(index, parameter, gradient in the parameter's dtype) for parameters that have a grad."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                yield i, p, np.asarray(p.grad, dtype=p.dtype)

    def step(self):
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self):
        """Flat ``{name: ndarray}``: "step", hyperparameters, and "state.<i>.<name>" (copies)."""
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        for name in self.hyperparameters:
            out[name] = np.array(getattr(self, name), dtype=np.float64)
        for i, entries in sorted(self.state.items()):
            for name, value in entries.items():
                out[f"state.{i}.{name}"] = np.array(value, copy=True)
        return out

    def load_state_dict(self, state_dict):
        """Restore ``step``, hyperparameters and state; every problem is reported at once."""
        given = {k: np.asarray(v) for k, v in state_dict.items()}
        required = ["step", *self.hyperparameters]
        problems = [f"missing key: {k}" for k in required if k not in given]
        state = {}
        for key, value in given.items():
            if key in required:
                continue
            parts = key.split(".")
            if (len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit()
                    or int(parts[1]) >= len(self.params) or parts[2] not in self.state_keys):
                problems.append(f"unexpected key: {key}")
                continue
            i, name = int(parts[1]), parts[2]
            expected = () if name == "step" else self.params[i].shape
            if value.shape != expected:
                problems.append(f"shape mismatch for {key}: expected {expected} (parameter {i}), "
                                f"got {value.shape}")
            state.setdefault(i, {})[name] = value
        for i, entries in sorted(state.items()):
            absent = [n for n in self.state_keys if n not in entries]
            if absent:
                problems.append(f"incomplete state for parameter {i}: missing "
                                f"{', '.join(f'state.{i}.{n}' for n in absent)}")
        if problems:
            raise StateDictError(f"cannot load state_dict into {type(self).__name__} "
                                 f"({len(self.params)} parameters):\n  " + "\n  ".join(problems))
        self.step_count = int(given["step"])
        for name in self.hyperparameters:
            value = given[name]
            setattr(self, name, tuple(float(v) for v in value) if value.ndim else float(value))
        self.state = {i: {name: (int(v) if name == "step" else v.astype(self.params[i].dtype))
                          for name, v in entries.items()} for i, entries in state.items()}

    def __repr__(self):
        hyper = ", ".join(f"{name}={getattr(self, name)}" for name in self.hyperparameters)
        return f"{type(self).__name__}({hyper}; {len(self.params)} parameters)"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum μ and L2 weight decay λ.

    NOTE: as in PyTorch, the momentum buffer starts as the first gradient (b₁ = g₁), not as
    μ·0 + g₁ scaled by a dampening factor; this "heavy ball" form is p ← p − lr Σ μ^k g_{t−k}.
    """
    hyperparameters = ("lr", "momentum", "weight_decay")
    state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        _check(lr >= 0, f"SGD: learning rate must be non-negative, got lr={lr}")
        _check(momentum >= 0, f"SGD: momentum must be non-negative, got momentum={momentum}")
        _check(weight_decay >= 0, f"SGD: weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)

    def step(self):
        for i, p, g in self._gradients():
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                state = self.state.setdefault(i, {})
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.copy()
                else:
                    state["momentum_buffer"] *= self.momentum
                    state["momentum_buffer"] += g
                g = state["momentum_buffer"]
            p.data -= self.lr * g
        self.step_count += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction and optional L2 weight decay (not AdamW)."""
    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check(lr >= 0, f"Adam: learning rate must be non-negative, got lr={lr}")
        _check(len(betas) == 2 and all(0 <= b < 1 for b in betas),
               f"Adam: betas must be two numbers in [0, 1), got {betas}")
        _check(eps >= 0, f"Adam: eps must be non-negative, got eps={eps}")
        _check(weight_decay >= 0, f"Adam: weight_decay must be non-negative, got {weight_decay}")
        super().__init__(params)
        self.lr, self.eps, self.weight_decay = float(lr), float(eps), float(weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))

    def step(self):
        beta1, beta2 = self.betas
        for i, p, g in self._gradients():
            if i not in self.state:
                self.state[i] = {"step": 0, "exp_avg": np.zeros_like(p.data),
                                 "exp_avg_sq": np.zeros_like(p.data)}
            state = self.state[i]
            state["step"] += 1
            t = state["step"]
            adam_kernel.adam_update(p.data, g, state["exp_avg"], state["exp_avg_sq"], lr=self.lr,
                                    betas=self.betas, eps=self.eps, weight_decay=self.weight_decay,
                                    bias1=1 - beta1 ** t, bias2=1 - beta2 ** t)
        self.step_count += 1
