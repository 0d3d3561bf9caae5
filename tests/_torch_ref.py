"""PyTorch reference for implicitreg MLPs (test helper, not a test module).

``TorchReference(model, theta, activation, output_activation)`` builds the ``nn.Sequential`` of
``nn.Linear`` and activation modules equivalent to an ``implicitreg.MLP`` from
``model.unflatten(theta)``, in the dtype of ``theta``. Every quantity is then computed with
``torch.func`` as a function of a flat parameter vector that is split in the documented layout
(per layer: W (out, in) row-major, then b if present; the order of ``module.parameters()``), so
the reference does not rely on implicitreg for anything but the weights it is built from.
All methods take and return NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from _archs import NORMALIZATIONS
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, jvp, vmap


def activation_module(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "softplus":
        # beta = 1. torch switches to the identity above `threshold`, an absolute error of
        # log1p(exp(-threshold)): 2e-9 at the default 20, far above float64 round-off; at 40 it
        # is 4e-18, below it.
        return nn.Softplus(beta=1.0, threshold=40.0)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}")


def layer_activations(
    n_layers: int, activation: str | Sequence[str], output_activation: str = "identity"
) -> list[str]:
    """One activation name per layer: the hidden ones, then the output activation."""
    hidden = [activation] * (n_layers - 1) if isinstance(activation, str) else list(activation)
    if len(hidden) != n_layers - 1:
        raise ValueError("need one activation per hidden layer")
    return [*hidden, output_activation]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class TorchReference:
    def __init__(
        self,
        model,
        theta: np.ndarray,
        activation: str | Sequence[str],
        output_activation: str = "identity",
    ):
        theta = np.asarray(theta)
        self.np_dtype = theta.dtype
        self.dtype = torch.float64 if theta.dtype == np.float64 else torch.float32
        parts = model.unflatten(theta)
        self.acts = layer_activations(len(parts), activation, output_activation)
        modules: list[nn.Module] = []
        for (W, b), act in zip(parts, self.acts, strict=True):
            W = np.asarray(W)
            lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=self.dtype)
            with torch.no_grad():
                lin.weight.copy_(_tensor(W))
                if b is not None:
                    lin.bias.copy_(_tensor(np.asarray(b)))
            modules += [lin, activation_module(act)]
        self.module = nn.Sequential(*modules)
        named = list(self.module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.n_params = sum(self.sizes)
        self.n_out = parts[-1][0].shape[0]
        self.theta = torch.nn.utils.parameters_to_vector(self.module.parameters()).detach()

    # ---- flat-parameter functions (torch) -------------------------------------------------

    def params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector in the documented layout into the module's parameters."""
        out, off = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = flat[off : off + size].reshape(shape)
            off += size
        return out

    def f(self, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Outputs (n, out)."""
        return functional_call(self.module, self.params(flat), (X,))

    def f_single(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs (out,) for one input x (in,)."""
        return functional_call(self.module, self.params(flat), (x[None],))[0]

    def jac(self, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Per-sample Jacobians (n, out, p) by vmap(jacrev)."""
        return vmap(jacrev(self.f_single, argnums=0), in_dims=(None, 0))(flat, X)

    def loss_t(self, flat: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, norm: str):
        coef, mean = NORMALIZATIONS[norm]
        c = coef / X.shape[0] if mean else coef
        return c * torch.sum((self.f(flat, X) - Y) ** 2)

    def reg_per_sample_t(self, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.jac(flat, X) ** 2, dim=(1, 2))

    def reg_t(self, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.reg_per_sample_t(flat, X))

    # ---- NumPy interface ------------------------------------------------------------------

    def _x(self, X: np.ndarray) -> torch.Tensor:
        return _tensor(np.asarray(X, dtype=self.np_dtype))

    def _y(self, y: np.ndarray, n: int) -> torch.Tensor:
        return _tensor(np.asarray(y, dtype=self.np_dtype).reshape(n, self.n_out))

    def _flat(self, theta: np.ndarray | None) -> torch.Tensor:
        return self.theta if theta is None else _tensor(np.asarray(theta, dtype=self.np_dtype))

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    def predict(self, X, theta=None) -> np.ndarray:
        return self._np(self.f(self._flat(theta), self._x(X)))

    def jacobian(self, X, theta=None) -> np.ndarray:
        """(n*out, p), row i*out + o = d f_o(x_i) / d theta."""
        J = self.jac(self._flat(theta), self._x(X))
        return self._np(J.reshape(-1, self.n_params))

    def loss(self, X, y, normalization: str = "mean_half", theta=None) -> float:
        X = self._x(X)
        return float(self.loss_t(self._flat(theta), X, self._y(y, X.shape[0]), normalization))

    def grad(self, X, y, normalization: str = "mean_half", theta=None) -> np.ndarray:
        X = self._x(X)
        Y = self._y(y, X.shape[0])
        return self._np(grad(self.loss_t)(self._flat(theta), X, Y, normalization))

    def regularizer(self, X, per_sample: bool = False, theta=None):
        r = self.reg_per_sample_t(self._flat(theta), self._x(X))
        return self._np(r) if per_sample else float(r.sum())

    # ---- second order ---------------------------------------------------------------------

    def hvp(self, X, y, v, normalization: str = "mean_half", theta=None) -> np.ndarray:
        """(d^2 L / d theta^2) v by forward-over-reverse."""
        X = self._x(X)
        Y = self._y(y, X.shape[0])
        g = grad(lambda t: self.loss_t(t, X, Y, normalization))
        return self._np(jvp(g, (self._flat(theta),), (self._flat(v),))[1])

    def hessian(self, X, y, normalization: str = "mean_half", theta=None) -> np.ndarray:
        X = self._x(X)
        Y = self._y(y, X.shape[0])
        return self._np(hessian(self.loss_t)(self._flat(theta), X, Y, normalization))

    def regularizer_grad(self, X, theta=None) -> np.ndarray:
        return self._np(grad(self.reg_t)(self._flat(theta), self._x(X)))

    def ntk(self, X, theta=None) -> np.ndarray:
        J = self.jac(self._flat(theta), self._x(X)).reshape(-1, self.n_params)
        return self._np(J @ J.T)

    # ---- helpers for tests ----------------------------------------------------------------

    def preactivations(self, X, theta=None) -> list[np.ndarray]:
        """Pre-activations (n, out_l) of every layer."""
        params = self.params(self._flat(theta))
        a, zs = self._x(X), []
        for k in range(0, len(self.module), 2):
            lin = self.module[k]
            w = params[f"{k}.weight"]
            z = a @ w.T
            if lin.bias is not None:
                z = z + params[f"{k}.bias"]
            zs.append(self._np(z))
            a = self.module[k + 1](z)
        return zs
