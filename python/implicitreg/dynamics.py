"""Update rules for :func:`implicitreg.simulate`, as small immutable configurations.

Every rule is one :class:`Dynamics`; :func:`GD`, :func:`SGD` and :func:`LabelNoiseSGD` build the
common ones. A step is::

    batch  : all samples ("full"), or batch_size indices drawn i.i.d. with replacement
             (sampling="replacement") or from reshuffled epochs (sampling="epochs")
    labels : y_i + sigma * eps, eps fresh for every label used: "gaussian" N(0, 1),
             "uniform" U(-sqrt(3), sqrt(3)), "sign" +-1 -- sigma is the standard deviation
    g      : gradient of the batch loss (``loss`` normalisation, n -> batch size)
             + egr_mu * grad ||grad L_batch||^2        (explicit gradient regularization, EGR)
             + reg_lambda * (n/B) * grad R_batch       (explicit form of the label-noise
               regularizer; R_batch = sum over the batch of ||grad f(x_i)||^2)
             + weight_decay * theta
    update : v = momentum * v + g;  theta -= lr(step) * v
    noise  : theta += param_sigma * xi ("gaussian"), or sqrt(2 lr T) * xi ("langevin", T =
             temperature), xi ~ N(0, I)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._validate import choice, integer, positive
from .quantities import NORMALIZATIONS

LABEL_NOISE = ("none", "gaussian", "uniform", "sign")
PARAM_NOISE = ("none", "gaussian", "langevin")
SAMPLING = ("replacement", "epochs")


@dataclass(frozen=True)
class StepDecay:
    """Multiply the learning rate by ``factor`` at each fraction of the run in ``at``."""

    at: tuple[float, ...] = (0.5, 0.75)
    factor: float = 0.1

    def resolve(self, lr: float, steps: int):
        at = tuple(float(a) for a in self.at)
        if any(not 0 < a < 1 for a in at) or list(at) != sorted(at):
            raise ValueError(f"StepDecay.at must be increasing fractions in (0, 1), got {at}")
        positive("StepDecay.factor", self.factor)
        bounds = [round(a * steps) for a in at]
        return bounds, [lr * self.factor**k for k in range(len(at) + 1)]


@dataclass(frozen=True)
class Piecewise:
    """Learning rate ``values[k]`` from step ``boundaries[k-1]`` on (``values[0]`` before)."""

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def resolve(self, lr: float, steps: int):
        b = [integer("Piecewise.boundaries", x, minimum=0) for x in self.boundaries]
        v = [positive("Piecewise.values", x) for x in self.values]
        if len(v) != len(b) + 1 or b != sorted(b):
            raise ValueError(
                "Piecewise needs increasing boundaries and len(values) = len(boundaries)+1"
            )
        return b, v


@dataclass(frozen=True)
class Dynamics:
    """One update rule; see the module docstring for the exact step."""

    lr: float
    batch_size: int | str = "full"
    sampling: str = "replacement"
    label_noise: str = "none"
    sigma: float = 0.0
    param_noise: str = "none"
    param_sigma: float = 0.0
    temperature: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    egr_mu: float = 0.0
    reg_lambda: float = 0.0
    lr_schedule: StepDecay | Piecewise | tuple | None = None
    loss: str = "mean_half"

    def __post_init__(self):
        positive("lr", self.lr)
        if self.batch_size != "full":
            integer("batch_size", self.batch_size, minimum=1)
        choice("sampling", self.sampling, SAMPLING)
        choice("noise", self.label_noise, LABEL_NOISE)
        positive("sigma", self.sigma, strict=False)
        choice("param_noise", self.param_noise, PARAM_NOISE)
        positive("param_sigma", self.param_sigma, strict=False)
        positive("temperature", self.temperature, strict=False)
        m = positive("momentum", self.momentum, strict=False)
        if m >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {m}")
        positive("weight_decay", self.weight_decay, strict=False)
        positive("egr_mu", self.egr_mu, strict=False)
        positive("reg_lambda", self.reg_lambda, strict=False)
        choice("loss", self.loss, NORMALIZATIONS)
        if isinstance(self.lr_schedule, (list, np.ndarray)):
            object.__setattr__(self, "lr_schedule", tuple(float(x) for x in self.lr_schedule))

    def batch_for(self, n: int) -> int:
        """Batch size on a data set of n samples; raises if it is out of range."""
        if self.batch_size == "full":
            return n
        if self.batch_size > n and self.sampling == "epochs":
            raise ValueError(f"batch_size {self.batch_size} exceeds the {n} samples of an epoch")
        return int(self.batch_size)

    def _core_config(self, n: int, steps: int) -> dict:
        self.batch_for(n)
        bounds, values = [], []
        sched = self.lr_schedule
        if isinstance(sched, tuple):  # one learning rate per step
            if len(sched) != steps:
                raise ValueError(f"lr_schedule array must have one entry per step ({steps})")
            for v in sched:
                positive("lr_schedule", v)
            bounds, values = list(range(1, steps)), list(sched)
        elif sched is not None:
            bounds, values = sched.resolve(self.lr, steps)
        return {
            "lr": float(self.lr),
            "lr_boundaries": bounds,
            "lr_values": values,
            "sampling": 0 if self.batch_size == "full" else 1 + SAMPLING.index(self.sampling),
            "batch_size": n if self.batch_size == "full" else int(self.batch_size),
            "label_noise": LABEL_NOISE.index(self.label_noise),
            "sigma": float(self.sigma),
            "param_noise": PARAM_NOISE.index(self.param_noise),
            "param_sigma": float(self.param_sigma),
            "temperature": float(self.temperature),
            "momentum": float(self.momentum),
            "weight_decay": float(self.weight_decay),
            "egr_mu": float(self.egr_mu),
            "reg_lambda": float(self.reg_lambda),
            "loss": self.loss,
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(self.lr_schedule, (StepDecay, Piecewise)):
            d["lr_schedule"] = {"type": type(self.lr_schedule).__name__, **d["lr_schedule"]}
        return d


def GD(lr: float, **options) -> Dynamics:
    """Full-batch gradient descent."""
    return Dynamics(lr=lr, batch_size="full", **options)


def SGD(lr: float, batch_size: int = 1, **options) -> Dynamics:
    """Minibatch SGD without label noise (batches with replacement unless sampling="epochs")."""
    return Dynamics(lr=lr, batch_size=batch_size, **options)


def LabelNoiseSGD(
    lr: float, sigma: float, noise: str = "gaussian", batch_size: int | str = 1, **options
) -> Dynamics:
    """SGD on labels perturbed by fresh noise of standard deviation ``sigma`` at every use.

    ``batch_size="full"`` is label-noise GD: every sample, each with fresh noise, every step.
    """
    choice("noise", noise, LABEL_NOISE[1:])
    return Dynamics(lr=lr, batch_size=batch_size, label_noise=noise, sigma=sigma, **options)
