"""The Dirac-GAN: why gradient steps on a min–max game circle instead of converging, and the fix.

Mescheder, Geiger & Nowozin (2018), "Which Training Methods for GANs do actually Converge?", §2.
The smallest GAN there is:

* data: a point mass at x = 0;
* generator: a point mass at x = θ (one parameter);
* discriminator: a linear logit l_ψ(x) = ψ·x, so D(x) = σ(ψx) (one parameter).

The value of chapter 5, V(θ, ψ) = E_data[log D(x)] + E_fake[log(1 − D(x))], becomes
V = log σ(0) + log σ(−ψθ). The only equilibrium is (θ, ψ) = (0, 0): the generator sits on the data
and the discriminator cannot tell them apart. Gradient play moves the point (θ, ψ) along the
vector field

    v(θ, ψ) = ( −∂L_G/∂θ , +∂V_D/∂ψ )          (G descends its loss, D ascends its value),

and everything about local convergence is in the Jacobian J = ∂v/∂(θ, ψ) at the equilibrium:

    plain (minimax or non-saturating):   J = [[0, ½], [−½, 0]],      eigenvalues ±i/2;
    R1 penalty  −(γ/2) E_data |∂l/∂x|²: J = [[0, ½], [−½, −γ]],     eigenvalues (−γ ± √(γ² − 1))/2;
    instance noise x + ε, ε ~ N(0, σ²): J = [[0, ½], [−½, −σ²/2]],  eigenvalues (−σ²/2 ± √(σ⁴/4 − 1))/2.

Purely imaginary eigenvalues mean the continuous flow circles the equilibrium for ever. A step of
size h turns them into the eigenvalues of the one-step map: simultaneous steps, x ← x + h v(x),
have M = I + hJ with |1 ± ih/2| = √(1 + h²/4) > 1 — every step moves *outwards*, a spiral. Alternating
steps (D first, then G on the new ψ) have det M = 1 + hJ₂₂ = 1: the eigenvalues sit on the unit circle
and the iterates circle at a constant distance. A negative real part (R1 or instance noise) makes
both |eigenvalues| < 1 for small h: convergence.

The gradients are computed by our autograd from :mod:`scratchgen.objectives.gan` (the same losses
the GAN trains with). Instance noise is integrated exactly for a polynomial of degree < 2K by
K-point Gauss–Hermite quadrature, so the lab's dynamics are deterministic. For the linear
discriminator ∂l/∂x = ψ at every x, so the R1 penalty is (γ/2)ψ² without a gradient-of-a-gradient
(a nonlinear discriminator needs one: see the WGAN-GP critic).

Run ``python -m scratchgen.labs.dirac_gan --out DIR`` (the lecture's figures: ``--out lectures/figures``).
"""
import math
import sys
from pathlib import Path

import numpy as np

from ..objectives import gan as objectives
from ..autograd import Tensor
from . import lab_parser

METHODS = ("simultaneous", "alternating")


class DiracGAN:
    """The game's two losses at a point (θ, ψ), and its vector field, for one choice of regulariser.

    ``loss``: "minimax" (G minimises V) or "non-saturating" (G minimises −E log D(fake)).
    ``r1``: γ of the R1 penalty (γ/2)·E_data|∂l/∂x|² subtracted from D's value (0 = off).
    ``noise``: σ of instance noise added to real and fake points alike (0 = off).
    """

    def __init__(self, loss="minimax", r1=0.0, noise=0.0, nodes=20):
        if loss not in ("minimax", "non-saturating"):
            raise ValueError(f"loss must be 'minimax' or 'non-saturating', got {loss!r}")
        if r1 < 0 or noise < 0:
            raise ValueError(f"r1 and noise must be >= 0, got r1={r1}, noise={noise}")
        self.loss, self.r1, self.noise = loss, float(r1), float(noise)
        if noise > 0:  # ε_k = σ·node_k with weights w_k: E f(ε) = Σ w_k f(ε_k) exactly for low-degree f
            eps, w = np.polynomial.hermite_e.hermegauss(nodes)
            self.eps, self.w = noise * eps, w / w.sum()
        else:
            self.eps, self.w = np.zeros(1), np.ones(1)

    def _mean(self, values):
        return (values * Tensor(self.w)).sum()

    def losses(self, theta, psi):
        """(L_G, −V_D): the generator's loss and the discriminator's (both minimised), as Tensors."""
        real_logits = psi * Tensor(self.eps)                 # l(x) = ψ·x at the real points 0 + ε
        fake_logits = psi * (theta + Tensor(self.eps))       # ... and at the fake points θ + ε
        value = self._mean(objectives.log_d(real_logits)) + self._mean(objectives.log_one_minus_d(fake_logits))
        d_value = value - psi * psi * (0.5 * self.r1)        # R1: ∂l/∂x = ψ for a linear D
        if self.loss == "minimax":
            g_loss = self._mean(objectives.log_one_minus_d(fake_logits))
        else:
            g_loss = -self._mean(objectives.log_d(fake_logits))
        return g_loss, -d_value

    def _grad(self, which, theta, psi):
        t = Tensor(np.array(float(theta)), requires_grad=True)
        p = Tensor(np.array(float(psi)), requires_grad=True)
        g_loss, d_loss = self.losses(t, p)
        if which == "theta":
            g_loss.backward()
            return float(t.grad)
        d_loss.backward()
        return float(p.grad)

    def field(self, theta, psi):
        """v(θ, ψ) = (−∂L_G/∂θ, −∂(−V_D)/∂ψ): the direction gradient play moves in."""
        return np.array([-self._grad("theta", theta, psi), -self._grad("psi", theta, psi)])

    def step(self, x, h, method="simultaneous"):
        """One gradient step of size h from x = (θ, ψ); ``alternating`` updates ψ first, then θ."""
        theta, psi = x
        if method == "simultaneous":
            return np.asarray(x, np.float64) + h * self.field(theta, psi)
        if method == "alternating":
            psi = psi - h * self._grad("psi", theta, psi)
            theta = theta - h * self._grad("theta", theta, psi)
            return np.array([theta, psi])
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def trajectory(self, x0=(1.0, 1.0), h=0.1, steps=2000, method="simultaneous"):
        """The iterates (steps + 1, 2) of gradient play started at x0."""
        xs = np.empty((steps + 1, 2))
        xs[0] = x0
        for k in range(steps):
            xs[k + 1] = self.step(xs[k], h, method)
        return xs

    def jacobian(self, fn=None, x=(0.0, 0.0), eps=1e-5):
        """Central-difference Jacobian of ``fn`` (default: the field v) at x."""
        fn = (lambda y: self.field(*y)) if fn is None else fn
        x = np.asarray(x, np.float64)
        cols = []
        for j in range(2):
            e = np.zeros(2)
            e[j] = eps
            cols.append((fn(x + e) - fn(x - e)) / (2 * eps))
        return np.stack(cols, axis=1)

    def step_jacobian(self, h, method="simultaneous"):
        """The Jacobian M of the one-step map at the equilibrium (by central differences)."""
        return self.jacobian(lambda y: self.step(y, h, method))

    def closed_form_jacobian(self):
        """J at (0, 0) from the linearisation in the module docstring (σ(u) ≈ ½ + u/4)."""
        damping = self.r1 + float((self.w * self.eps ** 2).sum()) / 2   # γ, or σ²/2 for instance noise
        return np.array([[0.0, 0.5], [-0.5, -damping]])


def distance(xs):
    """|x_k − (0, 0)| along a trajectory."""
    return np.hypot(xs[:, 0], xs[:, 1])


def settings(r1=0.3, noise=0.7):
    """The four panels of the lab: (title, game, method)."""
    return [("simultaneous steps", DiracGAN(), "simultaneous"),
            ("alternating steps", DiracGAN(), "alternating"),
            (f"simultaneous + R1 ($\\gamma$ = {r1})", DiracGAN(r1=r1), "simultaneous"),
            (f"simultaneous + instance noise ($\\sigma$ = {noise})", DiracGAN(noise=noise), "simultaneous")]


def eigen_table(h=0.1, r1=0.3, noise=0.7):
    """One row per setting: eigenvalues of J (measured and closed form) and of the step map M."""
    rows = []
    for title, game, method in settings(r1, noise):
        rows.append({"setting": title, "eig_J": np.linalg.eigvals(game.jacobian()),
                     "eig_J_closed_form": np.linalg.eigvals(game.closed_form_jacobian()),
                     "eig_M": np.linalg.eigvals(game.step_jacobian(h, method))})
    return rows


def _fmt(z):
    return ", ".join(f"{c.real:+.4f}{c.imag:+.4f}i" for c in z)


# ---------------------------------------------------------------------------- figures
def plot_trajectories(h, steps, path, r1=0.3, noise=0.7, x0=(1.0, 1.0)):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(9.6, 9.0))
    table = eigen_table(h, r1, noise)
    g = np.linspace(-2.5, 2.5, 15)
    T, P = np.meshgrid(g, g)
    for i, ((title, game, method), row) in enumerate(zip(settings(r1, noise), table)):
        ax = fig.add_subplot(2, 2, i + 1)
        V = np.array([[game.field(t, p) for t, p in zip(tr, pr)] for tr, pr in zip(T, P)])
        ax.quiver(T, P, V[..., 0], V[..., 1], color="0.6", angles="xy", width=0.003)
        xs = game.trajectory(x0, h, steps, method)
        ax.plot(xs[:, 0], xs[:, 1], color="C0", lw=0.8)
        ax.plot(*x0, "o", color="C0", ms=4)
        ax.plot(0, 0, "*", color="C3", ms=10)
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.set_xlabel(r"generator $\theta$")
        ax.set_ylabel(r"discriminator $\psi$")
        rho = np.abs(row["eig_M"]).max()
        ax.set_title(f"{title}\neig J: {_fmt(row['eig_J'])}\n|eig M| = {rho:.4f} (h = {h})", fontsize=8)
    return save_figure(fig, path, tight_layout=True)


def plot_distance(h, steps, path, r1=0.3, noise=0.7, x0=(1.0, 1.0)):
    from matplotlib.figure import Figure

    from ..training.plots import save_figure
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for (title, game, method), c in zip(settings(r1, noise), ("C0", "C1", "C2", "C3")):
        ax.semilogy(distance(game.trajectory(x0, h, steps, method)), color=c, label=title)
    ax.set_xlabel("step")
    ax.set_ylabel(r"distance to the equilibrium $|(\theta, \psi)|$")
    ax.legend(fontsize=8)
    return save_figure(fig, path, tight_layout=True)


def main(argv=None):
    ap = lab_parser("scratchgen.labs.dirac_gan", __doc__)
    ap.add_argument("--h", type=float, default=0.1, help="step size (default 0.1)")
    ap.add_argument("--steps", type=int, default=1500, help="gradient steps per trajectory (default 1500)")
    ap.add_argument("--r1", type=float, default=0.3, help="R1 penalty weight gamma (default 0.3)")
    ap.add_argument("--noise", type=float, default=0.7, help="instance noise std sigma (default 0.7)")
    args = ap.parse_args(argv)
    if args.h <= 0 or args.steps < 1:
        ap.error("--h must be > 0 and --steps >= 1")
    out = Path(args.out)
    print(f"Dirac-GAN, equilibrium (theta, psi) = (0, 0), step h = {args.h}")
    print(f"{'setting':<44} {'eigenvalues of J (measured)':<34} {'closed form':<34} |eig M|")
    for row in eigen_table(args.h, args.r1, args.noise):
        print(f"{row['setting'].replace('$', '').replace(chr(92), ''):<44} {_fmt(row['eig_J']):<34} "
              f"{_fmt(row['eig_J_closed_form']):<34} {np.abs(row['eig_M']).max():.5f}")
    for title, game, method in settings(args.r1, args.noise):
        d = distance(game.trajectory((1.0, 1.0), args.h, args.steps, method))
        print(f"distance to equilibrium, {title.replace('$', '').replace(chr(92), '')}: "
              f"{d[0]:.3f} -> {d[-1]:.4g} after {args.steps} steps")
    for path in (plot_trajectories(args.h, args.steps, out / "dirac-gan-trajectories.png", args.r1, args.noise),
                 plot_distance(args.h, args.steps, out / "dirac-gan-distance.png", args.r1, args.noise)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
