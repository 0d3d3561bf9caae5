"""Models: architecture descriptions whose numerics live in the C++ core.

A model is an immutable description; parameters are one flat numpy vector ``theta``. The
compiled object for each float type is built once, on first use. Every model works with every
function of the package (``simulate``, ``loss``, ``grad``, ``regularizer``, ``hvp``, ...):

* :class:`MLP`: fully connected networks (deep linear networks and the two-parameter model of
  Barrett & Dherin are MLPs with identity activations and no bias, see its docstring);
* :class:`MatrixSensing`: f(A) = <A, U U^T> (or <A, U V^T>), the samples are matrices;
* :class:`DiagonalLinear`: f(x) = <u*u - v*v, x>, <u*v, x> or <w*w, x>.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from . import _core
from ._validate import choice, float_array, inputs, integer, positive, theta_vector

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "identity")
INIT_SCHEMES = ("he", "xavier", "normal")


@dataclass(frozen=True)
class MLP:
    """Fully connected network ``Linear -> act -> ... -> Linear -> output_activation``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_in, hidden..., n_out]``; ``[n_in, n_out]`` is a linear model.
    activation : str or sequence of str
        Hidden-layer activation (one name for all, or one per hidden layer): relu, tanh,
        sigmoid, softplus or identity.
    bias : bool or sequence of bool
        Whether each layer has a bias (one flag for all, or one per layer).
    output_activation : str
        Activation after the last layer (identity by default).

    Notes
    -----
    Flat layout of ``theta``: for each layer in order, its weight ``W`` of shape ``(out, in)``
    in row-major order (as ``torch.nn.Linear.weight``), then its bias ``b`` if it has one. This
    is the order of ``torch.nn.Sequential.parameters()``. :meth:`from_torch` and
    :meth:`to_torch` convert from and to a ``torch.nn.Sequential``.

    Linear models are MLPs with identity activations and no bias: the two-parameter model of
    Barrett & Dherin, f(x) = a b x, is ``MLP([1, 1, 1], activation="identity", bias=False)``
    with ``theta = [b, a]``; a deep linear network of depth 3 and width 50 is
    ``MLP([d, 50, 50, 1], activation="identity", bias=False)``.
    """

    sizes: tuple[int, ...]
    activation: str | tuple[str, ...] = "relu"
    bias: bool | tuple[bool, ...] = True
    output_activation: str = "identity"
    _cores: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        sizes = tuple(integer("sizes", s, minimum=1) for s in self.sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least [n_in, n_out], got {list(self.sizes)}")
        object.__setattr__(self, "sizes", sizes)
        n_hidden = len(sizes) - 2
        acts = (
            (self.activation,) * n_hidden
            if isinstance(self.activation, str)
            else tuple(self.activation)
        )
        if len(acts) != n_hidden:
            raise ValueError(f"activation needs {n_hidden} names (one per hidden layer)")
        for a in (*acts, self.output_activation):
            choice("activation", a, ACTIVATIONS)
        if not isinstance(self.activation, str):
            object.__setattr__(self, "activation", acts)
        n_layers = len(sizes) - 1
        if isinstance(self.bias, (bool, np.bool_)):
            bias = (bool(self.bias),) * n_layers
        else:
            bias = tuple(bool(b) for b in self.bias)
            if len(bias) != n_layers:
                raise ValueError(f"bias needs {n_layers} flags (one per layer)")
            object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "_acts", (*acts, self.output_activation))
        object.__setattr__(self, "_bias", bias)

    # -- architecture -------------------------------------------------------------------------
    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def n_params(self) -> int:
        return sum(o * i + (o if b else 0) for i, o, b in self._layer_shapes())

    def _layer_shapes(self):
        return [
            (i, o, b) for i, o, b in zip(self.sizes[:-1], self.sizes[1:], self._bias, strict=True)
        ]

    def _core(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._cores:
            cls = _core.MLP_f64 if dtype == np.float64 else _core.MLP_f32
            self._cores[dtype] = cls(list(self.sizes), list(self._acts), list(self._bias))
        return self._cores[dtype]

    def __getstate__(self):  # the compiled objects in _cores do not pickle; they are rebuilt
        return {k: v for k, v in self.__dict__.items() if k != "_cores"}

    def __setstate__(self, state):
        self.__dict__.update(state, _cores={})

    def _simulation_class(self, dtype):
        return _core.SimulationMLP_f64 if np.dtype(dtype) == np.float64 else _core.SimulationMLP_f32

    @classmethod
    def from_torch(cls, module) -> tuple[MLP, np.ndarray]:
        """``(model, theta)`` of a ``torch.nn.Sequential`` of ``Linear`` layers and activations.

        Supported modules: ``Linear``, ``ReLU``, ``Tanh``, ``Sigmoid``, ``Softplus`` (beta = 1),
        ``Identity`` and nested ``Sequential``; at most one activation after each ``Linear``
        (none: identity). ``theta`` has the parameters' dtype (float32 or float64).
        """
        from ._torch_interop import mlp_from_torch

        return mlp_from_torch(cls, module)

    def to_torch(self, theta):
        """A ``torch.nn.Sequential`` computing this model at ``theta``, in theta's dtype."""
        from ._torch_interop import mlp_to_torch

        return mlp_to_torch(self, theta_vector(self, theta))

    def _spec(self) -> dict:
        return {
            "model": "MLP",
            "sizes": list(self.sizes),
            "activations": list(self._acts),
            "bias": list(self._bias),
        }

    # -- parameters ---------------------------------------------------------------------------
    def init(self, seed: int = 0, scheme: str = "he", scale: float = 1.0, dtype=np.float64):
        """Random parameters: weights N(0, s^2), biases zero.

        ``scheme="he"``: s = scale * sqrt(2 / fan_in); ``"xavier"`` (Glorot):
        s = scale * sqrt(2 / (fan_in + fan_out)); ``"normal"``: s = scale. Drawn with
        ``numpy.random.default_rng(seed)``, layer by layer, in float64, then cast to ``dtype``.
        """
        choice("scheme", scheme, INIT_SCHEMES)
        rng = np.random.default_rng(integer("seed", seed))
        layers = []
        for fan_in, fan_out, has_bias in self._layer_shapes():
            std = {
                "he": np.sqrt(2.0 / fan_in),
                "xavier": np.sqrt(2.0 / (fan_in + fan_out)),
                "normal": 1.0,
            }[scheme] * float(scale)
            W = rng.standard_normal((fan_out, fan_in)) * std
            layers.append((W, np.zeros(fan_out) if has_bias else None))
        return self.flatten(layers).astype(dtype)

    def unflatten(self, theta) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Split flat ``theta`` into ``[(W, b), ...]`` with W ``(out, in)``, b None without bias."""
        theta = theta_vector(self, theta)
        layers, off = [], 0
        for fan_in, fan_out, has_bias in self._layer_shapes():
            W = theta[off : off + fan_in * fan_out].reshape(fan_out, fan_in)
            off += fan_in * fan_out
            b = None
            if has_bias:
                b = theta[off : off + fan_out]
                off += fan_out
            layers.append((W, b))
        return layers

    def flatten(self, layers: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Inverse of :meth:`unflatten`."""
        shapes = self._layer_shapes()
        if len(layers) != len(shapes):
            raise ValueError(f"layers must hold {len(shapes)} (W, b) pairs, got {len(layers)}")
        parts = []
        for k, ((W, b), (fan_in, fan_out, has_bias)) in enumerate(zip(layers, shapes, strict=True)):
            W = float_array(f"layers[{k}] W", W)
            if W.shape != (fan_out, fan_in):
                raise ValueError(
                    f"layers[{k}] W must have shape {(fan_out, fan_in)}, got {W.shape}"
                )
            parts.append(W.ravel())
            if has_bias:
                if b is None:
                    raise ValueError(f"layers[{k}] needs a bias of shape ({fan_out},)")
                b = float_array(f"layers[{k}] b", b, W.dtype)
                if b.shape != (fan_out,):
                    raise ValueError(f"layers[{k}] b must have shape ({fan_out},), got {b.shape}")
                parts.append(b)
            elif b is not None:
                raise ValueError(f"layers[{k}] has no bias in this model; pass None")
        return np.concatenate(parts)

    # -- evaluation ---------------------------------------------------------------------------
    def predict(self, theta, X) -> np.ndarray:
        """Outputs ``f(x_i; theta)``, shape ``(n, n_out)``."""
        theta = theta_vector(self, theta)
        return self._core(theta.dtype).predict(theta, inputs(self, X, theta.dtype))

    def jacobian(self, theta, X) -> np.ndarray:
        """Per-sample parameter gradients, shape ``(n * n_out, n_params)``.

        Row ``i * n_out + o`` is the gradient of output ``o`` at sample ``i``.
        """
        theta = theta_vector(self, theta)
        return self._core(theta.dtype).jacobian(theta, inputs(self, X, theta.dtype))


class _CoreModel:
    """Plumbing of the models below: the compiled objects (built once per float type, not
    pickled), the simulation class, and the evaluation methods."""

    _core_name: ClassVar[str]

    def _core(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._cores:
            suffix = "_f64" if dtype == np.float64 else "_f32"
            self._cores[dtype] = getattr(_core, self._core_name + suffix)(*self._core_args())
        return self._cores[dtype]

    def _simulation_class(self, dtype):
        suffix = "_f64" if np.dtype(dtype) == np.float64 else "_f32"
        return getattr(_core, "Simulation" + self._core_name + suffix)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cores"}

    def __setstate__(self, state):
        self.__dict__.update(state, _cores={})

    def predict(self, theta, X) -> np.ndarray:
        """Outputs ``f(x_i; theta)``, shape ``(n, 1)``."""
        theta = theta_vector(self, theta)
        return self._core(theta.dtype).predict(theta, inputs(self, X, theta.dtype))

    def jacobian(self, theta, X) -> np.ndarray:
        """Per-sample parameter gradients, shape ``(n, n_params)``."""
        theta = theta_vector(self, theta)
        return self._core(theta.dtype).jacobian(theta, inputs(self, X, theta.dtype))


def _batched(model, theta) -> np.ndarray:
    """theta as ``(p,)`` or ``(replicas, p)``, validated."""
    arr = float_array("theta", theta)
    if arr.shape[-1:] != (model.n_params,) or arr.ndim > 2:
        raise ValueError(
            f"theta must have shape ({model.n_params},) or (replicas, "
            f"{model.n_params}), got {arr.shape}"
        )
    return arr


@dataclass(frozen=True)
class MatrixSensing(_CoreModel):
    """Matrix sensing f(A; U) = <A, U U^T> (Frobenius), U of shape ``(d, k)``.

    ``k = d`` is the overparametrised case. With ``asymmetric=True``, f(A; U, V) = <A, U V^T>
    with U and V both ``(d, k)``.

    Parameters: ``theta = U.ravel()`` (row-major), then ``V.ravel()`` if asymmetric
    (:meth:`flatten`, :meth:`unflatten`). Inputs: the measurement matrices ``A_i``, as
    ``X`` of shape ``(n, d, d)`` or ``(n, d * d)`` (row-major ``A_i.ravel()``); a full-batch
    step is then two matrix-vector products over the ``(n, d*d)`` matrix. Per-sample gradients
    are ``(A_i + A_i^T) U``, so R = sum_i ||(A_i + A_i^T) U||_F^2 (asymmetric:
    sum_i ||A_i V||_F^2 + ||A_i^T U||_F^2). Problem helpers are in :mod:`implicitreg.problems`.
    """

    d: int
    k: int | None = None
    asymmetric: bool = False
    _cores: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _core_name: ClassVar[str] = "MatrixSensing"

    def __post_init__(self):
        object.__setattr__(self, "d", integer("d", self.d, minimum=1))
        object.__setattr__(self, "k", self.d if self.k is None else integer("k", self.k, minimum=1))
        if not isinstance(self.asymmetric, (bool, np.bool_)):
            raise TypeError(f"asymmetric must be a bool, got {type(self.asymmetric).__name__}")
        object.__setattr__(self, "asymmetric", bool(self.asymmetric))

    @property
    def n_in(self) -> int:
        return self.d * self.d

    @property
    def n_out(self) -> int:
        return 1

    @property
    def n_params(self) -> int:
        return (2 if self.asymmetric else 1) * self.d * self.k

    def _core_args(self):
        return (self.d, self.k, self.asymmetric)

    def _spec(self) -> dict:
        return {"model": "MatrixSensing", "d": self.d, "k": self.k, "asymmetric": self.asymmetric}

    def _prepare_inputs(self, X, dtype) -> np.ndarray:
        arr = float_array("X", X, dtype)
        d = self.d
        if arr.ndim == 3 and arr.shape[1:] == (d, d):
            arr = arr.reshape(arr.shape[0], d * d)
        elif arr.ndim != 2 or arr.shape[1] != d * d:
            raise ValueError(
                f"X must hold measurement matrices of shape (n, {d}, {d}) or "
                f"(n, {d * d}), got {arr.shape}"
            )
        if arr.shape[0] < 1:
            raise ValueError("X must contain at least one sample")
        return np.ascontiguousarray(arr)

    def init(self, seed: int = 0, scale: float = 1.0, dtype=np.float64) -> np.ndarray:
        """Random factors with entries ``scale * N(0, 1) / sqrt(d)`` (U, then V), drawn with
        ``numpy.random.default_rng(seed)`` in float64, cast to ``dtype``."""
        rng = np.random.default_rng(integer("seed", seed))
        theta = rng.standard_normal(self.n_params) * (
            positive("scale", scale, strict=False) / np.sqrt(self.d)
        )
        return theta.astype(dtype)

    def unflatten(self, theta):
        """``U`` of shape ``(d, k)``, or ``(U, V)`` if asymmetric (views of ``theta``)."""
        theta = theta_vector(self, theta)
        U = theta[: self.d * self.k].reshape(self.d, self.k)
        return (U, theta[self.d * self.k :].reshape(self.d, self.k)) if self.asymmetric else U

    def flatten(self, U, V=None) -> np.ndarray:
        """Inverse of :meth:`unflatten`."""
        U = float_array("U", U)
        if U.shape != (self.d, self.k):
            raise ValueError(f"U must have shape {(self.d, self.k)}, got {U.shape}")
        if not self.asymmetric:
            if V is not None:
                raise ValueError("V is only for asymmetric=True")
            return U.ravel().copy()
        if V is None:
            raise ValueError("an asymmetric model needs V")
        V = float_array("V", V, U.dtype)
        if V.shape != (self.d, self.k):
            raise ValueError(f"V must have shape {(self.d, self.k)}, got {V.shape}")
        return np.concatenate([U.ravel(), V.ravel()])

    def product(self, theta) -> np.ndarray:
        """The recovered matrix ``U U^T`` (or ``U V^T``), ``(d, d)``; for ``theta`` of shape
        ``(replicas, p)``, ``(replicas, d, d)``."""
        theta = _batched(self, theta)
        dk = self.d * self.k
        U = theta[..., :dk].reshape(*theta.shape[:-1], self.d, self.k)
        V = theta[..., dk:].reshape(U.shape) if self.asymmetric else U
        return U @ np.swapaxes(V, -1, -2)


DIAGONAL_KINDS = ("u2-v2", "uv", "w2")


@dataclass(frozen=True)
class DiagonalLinear(_CoreModel):
    """Diagonal linear network f(x) = <beta, x> on inputs ``(n, d)``, with

    * ``kind="u2-v2"``: beta = u*u - v*v, ``theta = concat(u, v)`` (any sign of beta);
    * ``kind="uv"``: beta = u*v, ``theta = concat(u, v)`` (a two-layer diagonal net; with d = 1
      it is the two-parameter model f(x) = a b x);
    * ``kind="w2"``: beta = w*w, ``theta = w`` (non-negative beta).

    :meth:`beta` gives the effective linear predictor. R = sum_i ||grad f(x_i)||^2 =
    sum_j (sum_i x_ij^2) c_j with c_j = 4(u_j^2 + v_j^2), u_j^2 + v_j^2 or 4 w_j^2.
    """

    d: int
    kind: str = "u2-v2"
    _cores: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _core_name: ClassVar[str] = "DiagonalLinear"

    def __post_init__(self):
        object.__setattr__(self, "d", integer("d", self.d, minimum=1))
        choice("kind", self.kind, DIAGONAL_KINDS)

    @property
    def n_in(self) -> int:
        return self.d

    @property
    def n_out(self) -> int:
        return 1

    @property
    def n_params(self) -> int:
        return self.d if self.kind == "w2" else 2 * self.d

    def _core_args(self):
        return (self.d, self.kind)

    def _spec(self) -> dict:
        return {"model": "DiagonalLinear", "d": self.d, "kind": self.kind}

    def init(
        self, seed: int = 0, scale: float = 1.0, scheme: str = "constant", dtype=np.float64
    ) -> np.ndarray:
        """Initial parameters. ``scheme="constant"`` (the usual start, beta = 0 except for w2):
        u = v = scale (u2-v2), u = scale and v = 0 (uv), w = scale (w2); ``seed`` is unused.
        ``"normal"``: i.i.d. ``scale * N(0, 1)`` from ``numpy.random.default_rng(seed)``."""
        choice("scheme", scheme, ("constant", "normal"))
        scale = positive("scale", scale, strict=False)
        rng = np.random.default_rng(integer("seed", seed))
        if scheme == "normal":
            theta = scale * rng.standard_normal(self.n_params)
        else:
            theta = np.full(self.n_params, scale)
            if self.kind == "uv":
                theta[self.d :] = 0.0
        return theta.astype(dtype)

    def unflatten(self, theta):
        """``(u, v)``, or ``w`` for kind w2 (views of ``theta``)."""
        theta = theta_vector(self, theta)
        return theta if self.kind == "w2" else (theta[: self.d], theta[self.d :])

    def beta(self, theta) -> np.ndarray:
        """Effective linear predictor, ``(d,)`` (``(replicas, d)`` for ``(replicas, p)``)."""
        theta = _batched(self, theta)
        if self.kind == "w2":
            return theta * theta
        u, v = theta[..., : self.d], theta[..., self.d :]
        return u * u - v * v if self.kind == "u2-v2" else u * v
