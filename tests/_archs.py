"""Test conventions shared by the derivative test modules: the loss normalisations, the
activations, and random MLP architectures (one seed per module)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import implicitreg as ir

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "identity")

# L = coef * (1/n if mean else 1) * sum_i ||f(x_i) - y_i||^2, written out here independently of
# the library's own table (implicitreg.quantities.NORMALIZATIONS).
NORMALIZATIONS: dict[str, tuple[float, bool]] = {
    "mean_half": (0.5, True),
    "mean": (1.0, True),
    "sum_half": (0.5, False),
    "sum_sq": (1.0, False),
    "mean_quarter": (0.25, True),
}


@dataclass(frozen=True)
class Arch:
    index: int
    sizes: tuple[int, ...]
    activation: str | tuple[str, ...]  # as passed to ir.MLP (one name, or one per hidden layer)
    bias: bool | tuple[bool, ...]  # as passed to ir.MLP (one flag, or one per layer)
    output_activation: str
    n: int  # batch size
    prefix: str = "a"  # test-id prefix, one per test module

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def layer_acts(self) -> list[str]:
        hidden = self.n_layers - 1
        acts = [self.activation] * hidden if isinstance(self.activation, str) else self.activation
        return [*acts, self.output_activation]

    @property
    def layer_bias(self) -> list[bool]:
        if isinstance(self.bias, bool):
            return [self.bias] * self.n_layers
        return list(self.bias)

    @property
    def n_params(self) -> int:
        return sum(
            o * i + (o if b else 0)
            for i, o, b in zip(self.sizes[:-1], self.sizes[1:], self.layer_bias, strict=True)
        )

    @property
    def id(self) -> str:
        act = self.activation if isinstance(self.activation, str) else "-".join(self.activation)
        if isinstance(self.bias, bool):
            bias = "b" if self.bias else "nob"
        else:
            bias = "b" + "".join("1" if b else "0" for b in self.bias)
        out = "" if self.output_activation == "identity" else f"-out_{self.output_activation}"
        return f"{self.prefix}{self.index:02d}-{'x'.join(map(str, self.sizes))}-{act}-{bias}{out}-n{self.n}"

    def build(self) -> ir.MLP:
        kwargs = {}
        if self.output_activation != "identity":
            kwargs["output_activation"] = self.output_activation
        activation = self.activation if isinstance(self.activation, str) else list(self.activation)
        bias = self.bias if isinstance(self.bias, bool) else list(self.bias)
        return ir.MLP(sizes=list(self.sizes), activation=activation, bias=bias, **kwargs)


def _width(rng: np.random.Generator) -> int:
    """Log-uniform integer in [1, 64]."""
    return int(np.clip(np.rint(np.exp(rng.uniform(0.0, np.log(64.0)))), 1, 64))


def make_architectures(count: int = 40, seed: int = 20_240_601, prefix: str = "a") -> list[Arch]:
    """The first 25 cover every (activation, depth) pair; the rest mix per-layer activations and
    biases and output activations. Some force all widths to 1 or to 64."""
    rng = np.random.default_rng(seed)
    archs = []
    for k in range(count):
        depth = k % 5
        n_in, n_out = _width(rng), int(rng.integers(1, 4))
        hidden = [_width(rng) for _ in range(depth)]
        if k % 8 == 7:
            hidden = [1] * depth
        elif k % 8 == 3:
            hidden = [64] * depth
        activation: str | tuple[str, ...]
        bias: bool | tuple[bool, ...]
        output_activation = "identity"
        if k < 25:
            activation = ACTIVATIONS[k // 5]
            bias = bool(rng.random() < 0.5)
        else:
            activation = ACTIVATIONS[int(rng.integers(5))]
            if depth >= 2 and rng.random() < 0.5:
                activation = tuple(ACTIVATIONS[int(i)] for i in rng.integers(0, 5, size=depth))
            bias = bool(rng.random() < 0.5)
            if rng.random() < 0.4:
                bias = tuple(bool(b) for b in rng.random(depth + 1) < 0.5)
            if rng.random() < 0.4:
                output_activation = ACTIVATIONS[int(rng.integers(5))]
        n = 1 if k % 10 == 0 else 7 if k % 10 == 1 else int(rng.integers(1, 8))
        archs.append(
            Arch(k, (n_in, *hidden, n_out), activation, bias, output_activation, n, prefix)
        )
    return archs


def assert_covers_grid(ARCHS: list[Arch]) -> None:
    """Every activation at every depth 1-4, with and without bias; widths 1 and 64; 1-3
    outputs; batch sizes 1-7; per-layer activations and biases; output activations."""
    pairs = {(a.layer_acts[0] if a.n_layers > 1 else None, a.n_layers - 1) for a in ARCHS}
    for act in ACTIVATIONS:
        for depth in range(1, 5):
            assert (act, depth) in pairs
    assert any(a.n_layers == 1 for a in ARCHS)
    used = {(act, b) for a in ARCHS for act, b in zip(a.layer_acts, a.layer_bias, strict=True)}
    for act in ACTIVATIONS:
        assert (act, True) in used and (act, False) in used
    widths = {w for a in ARCHS for w in a.sizes[1:-1]}
    assert {1, 64} <= widths and max(widths) <= 64
    assert {a.sizes[-1] for a in ARCHS} == {1, 2, 3}
    assert {a.n for a in ARCHS} == set(range(1, 8))
    assert any(not isinstance(a.activation, str) for a in ARCHS)
    assert any(not isinstance(a.bias, bool) for a in ARCHS)
    assert {a.output_activation for a in ARCHS} > {"identity"}
