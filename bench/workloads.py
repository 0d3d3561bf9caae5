"""Data and initial weights of the anchor workloads (shared/workloads.md), as plain NumPy arrays.

Everything is drawn with ``np.random.default_rng`` in float64, in the order the definition gives;
other dtypes cast these float64 arrays (:meth:`Workload.cast`).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np

Layers = list[tuple[np.ndarray, np.ndarray]]  # [(W (out, in), b (out,)), ...] as torch.nn.Linear


@dataclass
class Workload:
    name: str
    X: np.ndarray  # (n, d_in)
    y: np.ndarray  # (n,) clean labels
    layers: Layers  # initial weights of an MLP (empty for W3)
    activation: str  # hidden activation ("relu" / "tanh"); "" if not an MLP
    batch_size: int | str  # int (i.i.d. with replacement) or "full"
    lr: float
    sigma: float
    flops: float  # FLOPs per step (per evaluation for W4)
    extra: dict = field(default_factory=dict)  # workload-specific arrays and numbers

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0][0].shape[1]] + [W.shape[0] for W, _ in self.layers]

    def cast(self, dtype) -> Workload:
        """Copy with every float array cast to ``dtype`` (draws stay those of float64)."""
        dt = np.dtype(dtype)

        def c(v):
            return v.astype(dt) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v

        return dataclasses.replace(
            self,
            X=c(self.X),
            y=c(self.y),
            layers=[(c(W), c(b)) for W, b in self.layers],
            extra={k: c(v) for k, v in self.extra.items()},
        )


def mlp_forward(layers: Layers, X: np.ndarray, activation: str) -> np.ndarray:
    """Output (n,) of a one-output MLP; ``activation`` after every hidden layer."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    h = X
    for k, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if k < len(layers) - 1:
            h = act(h)
    return h[:, 0]


def clean_loss(layers: Layers, X: np.ndarray, y: np.ndarray, activation: str) -> float:
    """Clean full-data loss (1/2n) sum_i (f(x_i) - y_i)^2."""
    r = mlp_forward(layers, X, activation) - y
    return float(0.5 * np.mean(r * r))


def _w1_data() -> tuple[np.ndarray, np.ndarray, Layers]:
    x = np.linspace(-1.0, 1.0, 10)
    y = np.sin(3.0 * x)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(100)
    b = rng.uniform(-1.0, 1.0, 100)
    a = rng.standard_normal(100) / np.sqrt(100)
    layers = [(w[:, None].copy(), b), (a[None, :].copy(), np.zeros(1))]
    return x[:, None].copy(), y, layers


def w1() -> Workload:
    X, y, layers = _w1_data()
    return Workload("W1", X, y, layers, "relu", 1, 0.01, 0.1, 1_708)


def w1b() -> Workload:
    X, y, layers = _w1_data()
    return Workload("W1b", X, y, layers, "relu", "full", 0.01, 0.1, 11_662)


def _w2_layers(seed: int) -> Layers:
    rng = np.random.default_rng(seed)
    sizes = [20, 256, 256, 1]
    return [
        (rng.standard_normal((o, i)) / np.sqrt(i), np.zeros(o))
        for i, o in itertools.pairwise(sizes)
    ]


def _w2_data() -> tuple[np.ndarray, np.ndarray, Layers]:
    X = np.random.default_rng(1).standard_normal((256, 20))
    y = mlp_forward(_w2_layers(101), X, "tanh")
    return X, y, _w2_layers(201)


def w2() -> Workload:
    X, y, layers = _w2_data()
    return Workload("W2", X, y, layers, "tanh", 32, 0.01, 0.1, 13_512_386)


def w3() -> Workload:
    """Matrix sensing. ``X`` holds A as (n, 400); ``extra``: A (n,20,20), U0, Xstar."""
    d, n = 20, 120
    rng = np.random.default_rng(3)
    Ustar = rng.standard_normal((d, 2)) / np.sqrt(d)
    Xstar = Ustar @ Ustar.T
    G = rng.standard_normal((n, d, d))
    A = (G + G.transpose(0, 2, 1)) / 2
    y = np.einsum("ijk,jk->i", A, Xstar)
    U0 = 0.1 * rng.standard_normal((d, d)) / np.sqrt(d)
    extra = {"A": A, "U0": U0, "Xstar": Xstar}
    return Workload("W3", A.reshape(n, d * d), y, [], "", "full", 0.005, 0.1, 225_680, extra)


def w4(with_grad: bool = False) -> Workload:
    """Regularizer R = sum_i ||grad_theta f(x_i)||^2 at the W2 student, all 256 inputs.

    ``flops`` is that of one evaluation of R (W4-R) or of R and grad R (W4-RgR).
    """
    X, y, layers = _w2_data()
    extra = {"R_ref": 32961.081266786, "flops_R": 70.8e6, "flops_RgR": 209.2e6}
    name, flops = ("W4-RgR", 209.2e6) if with_grad else ("W4-R", 70.8e6)
    return Workload(name, X, y, layers, "tanh", "full", 0.0, 0.0, flops, extra)


def w5() -> Workload:
    """EGR step theta -= lr * grad [L + mu ||grad L||^2], full batch, noisy labels."""
    X, y, layers = _w2_data()
    return Workload("W5", X, y, layers, "tanh", "full", 0.01, 0.1, 316.3e6, {"mu": 0.01})


WORKLOADS = {
    "W1": w1,
    "W1b": w1b,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W4-R": w4,
    "W4-RgR": lambda: w4(with_grad=True),
    "W5": w5,
}


def get(name: str, dtype="float64") -> Workload:
    return WORKLOADS[name]().cast(dtype)
