"""implicitreg: fast long-horizon simulation of implicit regularization.

Label-noise SGD, gradient descent and friends on small networks, run in C++ (hand-coded
per-sample backprop, OpenMP across replicas, counter-based random numbers), with the
quantities the theory talks about: the loss, the implicit regularizer
R(theta) = sum_i ||grad_theta f(x_i)||^2, and more.

>>> import numpy as np, implicitreg as ir
>>> net = ir.MLP([1, 100, 1], activation="relu")
>>> theta = net.init(seed=0)
>>> X = np.linspace(-1, 1, 10)[:, None]; y = np.sin(3 * X[:, 0])
>>> run = ir.simulate(net, theta, X, y, ir.LabelNoiseSGD(lr=0.01, sigma=0.1), steps=10_000)
"""

from __future__ import annotations

from . import _core, problems, theory
from ._core import __version__
from .dynamics import GD, SGD, Dynamics, LabelNoiseSGD, Piecewise, StepDecay
from .flow import flow
from .models import MLP, DiagonalLinear, MatrixSensing
from .quantities import grad, loss, regularizer
from .result import Moments, SimulationResult, load
from .second_order import gnvp, hessian, hessian_trace, hvp, ntk, regularizer_grad, sharpness
from .simulate import DivergenceWarning, SimulationInterrupted, simulate
from .sweep import SimulateTask, open_sweep, sweep


def build_info() -> dict:
    """How the compiled core was built (for bug reports and benchmark records)."""
    return {
        "version": __version__,
        "isa": _core.isa,
        "openmp": bool(_core.openmp),
        "max_threads": _core.max_threads(),
        "eigen": _core.eigen_version,
    }


__all__ = [
    "GD",
    "MLP",
    "SGD",
    "DiagonalLinear",
    "DivergenceWarning",
    "Dynamics",
    "LabelNoiseSGD",
    "MatrixSensing",
    "Moments",
    "Piecewise",
    "SimulateTask",
    "SimulationInterrupted",
    "SimulationResult",
    "StepDecay",
    "__version__",
    "build_info",
    "flow",
    "gnvp",
    "grad",
    "hessian",
    "hessian_trace",
    "hvp",
    "load",
    "loss",
    "ntk",
    "open_sweep",
    "problems",
    "regularizer",
    "regularizer_grad",
    "sharpness",
    "simulate",
    "sweep",
    "theory",
]
