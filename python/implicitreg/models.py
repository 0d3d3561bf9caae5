"""Models: architecture descriptions whose numerics live in the C++ core.

A model is an immutable description; parameters are one flat numpy vector ``theta``. The
compiled object for each float type is built once, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._validate import choice, float_array, inputs, integer, theta_vector

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
    is the order of ``torch.nn.Sequential.parameters()``.
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
        acts = (self.activation,) * n_hidden if isinstance(self.activation, str) else tuple(
            self.activation
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
        return [(i, o, b) for i, o, b in zip(self.sizes[:-1], self.sizes[1:], self._bias)]

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
            std = {"he": np.sqrt(2.0 / fan_in), "xavier": np.sqrt(2.0 / (fan_in + fan_out)),
                   "normal": 1.0}[scheme] * float(scale)
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
        for k, ((W, b), (fan_in, fan_out, has_bias)) in enumerate(zip(layers, shapes)):
            W = float_array(f"layers[{k}] W", W)
            if W.shape != (fan_out, fan_in):
                raise ValueError(f"layers[{k}] W must have shape {(fan_out, fan_in)}, got {W.shape}")
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
