"""Derivative correctness of implicitreg against central finite differences (float64).

Over a fixed, seeded set of random MLP architectures (depth 0-4 hidden layers, widths 1-64, every
activation, bias on/off or per layer, 1-3 outputs, batch 1-7) this checks

* ``net.predict`` against an independent NumPy forward pass built from the documented flat layout;
* ``net.jacobian`` against central differences of ``net.predict``;
* ``ir.loss`` against its formula and ``ir.grad`` against central differences of ``ir.loss`` for
  every normalization;
* ``ir.regularizer`` (total and ``per_sample=True``) against sums of squares of the Jacobian;
* float32 results against float64 results computed from the same (cast) inputs;
* ``flatten``/``unflatten``, ``n_params`` and the ``init`` schemes (statistically);
* second-order functions (``hvp``, ``hessian``, ``regularizer_grad``, ``ntk``) when they exist.

Finite-difference tolerances. A central difference with step h along a unit direction has
truncation error (h^2/6)|f'''| and rounding error ~ eps * |f| / h. With h = 1e-5 the truncation
term is ~1e-11 relative for O(1) third derivatives, so a relative tolerance of 1e-6 of the
column's magnitude leaves a wide margin while any real error (a wrong factor, a wrong index, a
missing term) is many orders larger. The rounding term is bounded by FD_ROUND * eps * F / h with F
an upper bound on the magnitudes summed while evaluating f. ReLU networks are piecewise
polynomial in theta: inputs are re-drawn until every nonzero pre-activation is at least
RELU_MARGIN away from the kink, the step is h = 1e-6, and a difference is used only where the
activation pattern at theta +- h v equals the one at theta (checked with the NumPy forward pass).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
import pytest
from _archs import NORMALIZATIONS, Arch, assert_covers_grid, make_architectures
from scipy import special, stats

import implicitreg as ir

EPS64 = float(np.finfo(np.float64).eps)
H_SMOOTH = 1e-5
H_RELU = 1e-6
RELU_MARGIN = 1e-4
FD_RTOL = 1e-6
FD_ROUND = 1e3
# Exact identities evaluated by two different summation orders in float64.
IDENTITY_RTOL = 1e-11
# float32 vs float64 on the same inputs: ~1e3 float32 ulps (unit roundoff 6e-8) of the array's scale.
FLOAT32_RTOL = 1e-4
# Parameter subsets for coordinate-wise differences (all coordinates when p is at most this).
MAX_COORDS_JAC = 240
MAX_COORDS_GRAD = 60
N_DIRECTIONS = 3


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


ARCHS = make_architectures()
ARCH_PARAMS = [pytest.param(a, id=a.id) for a in ARCHS]


def test_architecture_set_covers_the_grid():
    assert_covers_grid(ARCHS)


# --------------------------------------------------------------------------------------------
# Independent NumPy reference (documented layout)
# --------------------------------------------------------------------------------------------


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return special.expit(z)
    if name == "softplus":
        return np.logaddexp(0, z)
    assert name == "identity"
    return z


def layout_unflatten(arch: Arch, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Documented layout: per layer W (out, in) row-major, then b (out,) if the layer has a bias."""
    layers, off = [], 0
    for i, o, has_b in zip(arch.sizes[:-1], arch.sizes[1:], arch.layer_bias, strict=True):
        W = theta[off : off + o * i].reshape(o, i)
        off += o * i
        b = None
        if has_b:
            b = theta[off : off + o]
            off += o
        layers.append((W, b))
    assert off == theta.size
    return layers


def np_forward(arch: Arch, theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, list]:
    """Outputs (n, out) and the pre-activations of every layer."""
    a, zs = X, []
    for (W, b), act in zip(layout_unflatten(arch, theta), arch.layer_acts, strict=True):
        z = a @ W.T
        if b is not None:
            z = z + b
        zs.append(z)
        a = _activate(act, z)
    return a, zs


def relu_pattern(arch: Arch, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    _, zs = np_forward(arch, theta, X)
    return np.concatenate(
        [(z > 0).ravel() for z, act in zip(zs, arch.layer_acts, strict=True) if act == "relu"]
        + [np.zeros(0, bool)]
    )


def relu_margin(arch: Arch, theta: np.ndarray, X: np.ndarray) -> float:
    """Smallest |z| over relu pre-activations, ignoring exact zeros (a layer whose input row is
    all zero and that has no bias: z is then identically 0 near theta, no kink)."""
    _, zs = np_forward(arch, theta, X)
    vals = [np.abs(z[z != 0]) for z, act in zip(zs, arch.layer_acts, strict=True) if act == "relu"]
    vals = [v for v in vals if v.size]
    return float(min(v.min() for v in vals)) if vals else np.inf


def relu_alive(arch: Arch, theta: np.ndarray, X: np.ndarray) -> bool:
    """Every sample has a positive pre-activation in every relu layer."""
    _, zs = np_forward(arch, theta, X)
    return all(
        bool(np.all(np.any(z > 0, axis=1)))
        for z, act in zip(zs, arch.layer_acts, strict=True)
        if act == "relu"
    )


def has_relu(arch: Arch) -> bool:
    return "relu" in arch.layer_acts


@dataclass
class Case:
    arch: Arch
    net: object
    theta: np.ndarray
    X: np.ndarray
    y: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray | None]]

    @property
    def h(self) -> float:
        return H_RELU if has_relu(self.arch) else H_SMOOTH

    def y2d(self, y: np.ndarray | None = None) -> np.ndarray:
        y = self.y if y is None else y
        return y.reshape(self.arch.n, self.arch.sizes[-1])


@functools.cache
def _case(index: int) -> Case:
    """Random parameters (nonzero biases) and data. Inputs are re-drawn until the relu margin
    holds and every sample has an active unit in every relu layer (no sample with an all-zero
    Jacobian); the parameters are re-drawn every 20 attempts."""
    arch = ARCHS[index]
    rng = np.random.default_rng(10_000 + index)
    for attempt in range(1000):
        if attempt % 20 == 0:
            layers = []
            for i, o, has_b in zip(arch.sizes[:-1], arch.sizes[1:], arch.layer_bias, strict=True):
                W = rng.normal(0.0, 1.5 / np.sqrt(i), size=(o, i))
                b = rng.normal(0.0, 0.3, size=o) if has_b else None
                layers.append((W, b))
            theta = np.concatenate([p.ravel() for W, b in layers for p in (W, b) if p is not None])
        X = rng.standard_normal((arch.n, arch.sizes[0]))
        if relu_margin(arch, theta, X) >= RELU_MARGIN and relu_alive(arch, theta, X):
            break
    else:  # pragma: no cover - depends only on the fixed seeds
        raise RuntimeError(f"could not draw kink-free inputs for {arch.id}")
    n_out = arch.sizes[-1]
    y = rng.standard_normal(arch.n) if n_out == 1 else rng.standard_normal((arch.n, n_out))
    return Case(arch, arch.build(), theta, X, y, layers)


def case_for(arch: Arch) -> Case:
    """Fresh copies of the cached arrays, so a test cannot disturb another."""
    c = _case(arch.index)
    return Case(c.arch, c.net, c.theta.copy(), c.X.copy(), c.y.copy(), c.layers)


# --------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------


def fd_directions(arch: Arch, max_coords: int, seed: int) -> np.ndarray:
    """(p, k): N_DIRECTIONS random unit vectors, then unit coordinate vectors (all coordinates when
    p <= max_coords, else a random subset that takes some from every W and b block)."""
    p = arch.n_params
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((p, N_DIRECTIONS))
    dirs /= np.linalg.norm(dirs, axis=0)
    if p <= max_coords:
        coords = np.arange(p)
    else:
        blocks, off = [], 0
        for i, o, has_b in zip(arch.sizes[:-1], arch.sizes[1:], arch.layer_bias, strict=True):
            blocks.append(np.arange(off, off + o * i))
            off += o * i
            if has_b:
                blocks.append(np.arange(off, off + o))
                off += o
        per_block = max(1, max_coords // len(blocks))
        coords = np.concatenate(
            [rng.choice(b, size=min(per_block, b.size), replace=False) for b in blocks]
        )
        coords.sort()
    unit = np.zeros((p, coords.size))
    unit[coords, np.arange(coords.size)] = 1.0
    return np.concatenate([dirs, unit], axis=1)


def central_differences(fun, case: Case, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) central differences of ravel(fun(theta)) along each column of dirs, and a boolean
    mask (k,) of the columns where they are valid (relu pattern unchanged at theta +- h v)."""
    h, theta, arch = case.h, case.theta, case.arch
    base = relu_pattern(arch, theta, case.X) if has_relu(arch) else None
    cols, ok = [], []
    for v in dirs.T:
        tp, tm = theta + h * v, theta - h * v
        cols.append((np.ravel(fun(tp)) - np.ravel(fun(tm))) / (2 * h))
        ok.append(
            base is None
            or (
                np.array_equal(relu_pattern(arch, tp, case.X), base)
                and np.array_equal(relu_pattern(arch, tm, case.X), base)
            )
        )
    return np.stack(cols, axis=1), np.array(ok)


def assert_fd_close(analytic, fd, ok, f_scale: float, h: float, what: str) -> None:
    """Column-wise: |analytic - fd| <= FD_RTOL * max|analytic column| + FD_ROUND*eps*f_scale/h."""
    analytic = np.asarray(analytic, dtype=np.float64).reshape(fd.shape)
    assert ok.mean() >= 0.9, f"{what}: relu pattern changed for {np.sum(~ok)} FD columns"
    a, d = analytic[:, ok], fd[:, ok]
    col_scale = np.max(np.abs(a), axis=0)
    tol = FD_RTOL * col_scale + FD_ROUND * EPS64 * f_scale / h
    err = np.abs(a - d)
    if np.any(err > tol):
        ratio = err / tol
        r, c = np.unravel_index(np.argmax(ratio), ratio.shape)
        raise AssertionError(
            f"{what}: {int(np.sum(err > tol))}/{err.size} entries off; worst at row {r}, "
            f"column {c}: analytic {a[r, c]:.12g}, finite difference {d[r, c]:.12g}, "
            f"error {err[r, c]:.3g} > tol {tol[c]:.3g}"
        )


def assert_scaled_close(actual, expected, rtol: float, what: str) -> None:
    """Max-norm relative agreement: |actual - expected| <= rtol * max|expected| elementwise."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale + 1e-300, err_msg=what)


def loss_formula(case: Case, f: np.ndarray, y: np.ndarray, normalization: str) -> float:
    coef, mean = NORMALIZATIONS[normalization]
    c = coef / case.arch.n if mean else coef
    return float(c * np.sum((f - case.y2d(y)) ** 2))


# --------------------------------------------------------------------------------------------
# Layout, flatten/unflatten, n_params
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_layout_and_flatten_roundtrip(arch: Arch):
    c = case_for(arch)
    net = c.net
    assert net.n_params == arch.n_params
    assert net.n_in == arch.sizes[0]
    assert net.n_out == arch.sizes[-1]
    assert list(net.sizes) == list(arch.sizes)
    parts = net.unflatten(c.theta)
    assert len(parts) == arch.n_layers
    for (W, b), (W_ref, b_ref), i, o, has_b in zip(
        parts, c.layers, arch.sizes[:-1], arch.sizes[1:], arch.layer_bias, strict=True
    ):
        assert W.shape == (o, i)
        np.testing.assert_array_equal(W, W_ref)
        if has_b:
            assert b is not None and b.shape == (o,)
            np.testing.assert_array_equal(b, b_ref)
        else:
            assert b is None
    flat = net.flatten(parts)
    assert flat.shape == (arch.n_params,) and flat.dtype == np.float64
    np.testing.assert_array_equal(flat, c.theta)
    flat2 = net.flatten([(W_ref, b_ref) for W_ref, b_ref in c.layers])
    np.testing.assert_array_equal(flat2, c.theta)


# --------------------------------------------------------------------------------------------
# Forward pass and Jacobian
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_predict_matches_numpy_forward(arch: Arch):
    c = case_for(arch)
    out = c.net.predict(c.theta, c.X)
    assert out.shape == (arch.n, arch.sizes[-1]) and out.dtype == np.float64
    ref, _ = np_forward(arch, c.theta, c.X)
    assert_scaled_close(out, ref, IDENTITY_RTOL, "predict vs NumPy forward")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_jacobian_vs_finite_differences(arch: Arch):
    c = case_for(arch)
    J = c.net.jacobian(c.theta, c.X)
    assert J.shape == (arch.n * arch.sizes[-1], arch.n_params) and J.dtype == np.float64
    dirs = fd_directions(arch, MAX_COORDS_JAC, seed=arch.index)
    fd, ok = central_differences(lambda t: c.net.predict(t, c.X), c, dirs)
    f_scale = max(1.0, float(np.max(np.abs(c.net.predict(c.theta, c.X)))))
    assert_fd_close(J @ dirs, fd, ok, f_scale, c.h, "jacobian")


# --------------------------------------------------------------------------------------------
# Loss and gradient
# --------------------------------------------------------------------------------------------


def _loss_rounding_scale(case: Case, f: np.ndarray, normalization: str) -> float:
    """Upper bound on the magnitude of the terms summed in the loss."""
    coef, mean = NORMALIZATIONS[normalization]
    c = coef / case.arch.n if mean else coef
    return float(c * np.sum((np.abs(f) + np.abs(case.y2d()) + 1.0) ** 2))


@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_loss_and_grad_vs_finite_differences(arch: Arch, normalization: str):
    c = case_for(arch)
    f = c.net.predict(c.theta, c.X)
    L = ir.loss(c.net, c.theta, c.X, c.y, normalization=normalization)
    expected = loss_formula(c, f, c.y, normalization)
    np.testing.assert_allclose(float(L), expected, rtol=IDENTITY_RTOL)

    g = ir.grad(c.net, c.theta, c.X, c.y, normalization=normalization)
    assert g.shape == (arch.n_params,) and g.dtype == np.float64
    # exact chain rule: grad = 2 c J^T r
    coef, mean = NORMALIZATIONS[normalization]
    cst = coef / arch.n if mean else coef
    J = c.net.jacobian(c.theta, c.X)
    r = (f - c.y2d()).ravel()
    assert_scaled_close(g, 2 * cst * J.T @ r, 1e-10, "grad vs 2c J^T r")

    dirs = fd_directions(arch, MAX_COORDS_GRAD, seed=100 + arch.index)
    fd, ok = central_differences(
        lambda t: ir.loss(c.net, t, c.X, c.y, normalization=normalization), c, dirs
    )
    assert_fd_close(
        (g @ dirs)[None, :], fd, ok, _loss_rounding_scale(c, f, normalization), c.h, "grad"
    )


def test_default_normalization_is_mean_half():
    c = case_for(ARCHS[11])
    assert ir.loss(c.net, c.theta, c.X, c.y) == ir.loss(
        c.net, c.theta, c.X, c.y, normalization="mean_half"
    )
    np.testing.assert_array_equal(
        ir.grad(c.net, c.theta, c.X, c.y),
        ir.grad(c.net, c.theta, c.X, c.y, normalization="mean_half"),
    )


# --------------------------------------------------------------------------------------------
# Regularizer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer_is_squared_jacobian_norm(arch: Arch):
    c = case_for(arch)
    J = c.net.jacobian(c.theta, c.X)
    per = np.sum(J.reshape(arch.n, arch.sizes[-1], arch.n_params) ** 2, axis=(1, 2))
    R = ir.regularizer(c.net, c.theta, c.X)
    assert np.ndim(R) == 0
    np.testing.assert_allclose(float(R), float(per.sum()), rtol=IDENTITY_RTOL)
    Ri = ir.regularizer(c.net, c.theta, c.X, per_sample=True)
    assert Ri.shape == (arch.n,) and Ri.dtype == np.float64
    np.testing.assert_allclose(Ri, per, rtol=IDENTITY_RTOL, atol=1e-300)
    np.testing.assert_allclose(float(R), float(np.sum(Ri)), rtol=IDENTITY_RTOL)


# --------------------------------------------------------------------------------------------
# float32 vs float64 on the same inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_float32_matches_float64(arch: Arch):
    c = case_for(arch)
    t32, X32, y32 = (a.astype(np.float32) for a in (c.theta, c.X, c.y))
    t64, X64, y64 = (a.astype(np.float64) for a in (t32, X32, y32))
    net = c.net

    out32 = net.predict(t32, X32)
    assert out32.dtype == np.float32
    assert_scaled_close(out32, net.predict(t64, X64), FLOAT32_RTOL, "predict float32")

    J32 = net.jacobian(t32, X32)
    assert J32.dtype == np.float32
    assert_scaled_close(J32, net.jacobian(t64, X64), FLOAT32_RTOL, "jacobian float32")

    for norm in NORMALIZATIONS:
        L32 = float(ir.loss(net, t32, X32, y32, normalization=norm))
        L64 = float(ir.loss(net, t64, X64, y64, normalization=norm))
        np.testing.assert_allclose(L32, L64, rtol=FLOAT32_RTOL, err_msg=f"loss float32 ({norm})")
        g32 = ir.grad(net, t32, X32, y32, normalization=norm)
        assert g32.dtype == np.float32
        g64 = ir.grad(net, t64, X64, y64, normalization=norm)
        assert_scaled_close(g32, g64, FLOAT32_RTOL, f"grad float32 ({norm})")

    R32 = float(ir.regularizer(net, t32, X32))
    np.testing.assert_allclose(R32, float(ir.regularizer(net, t64, X64)), rtol=FLOAT32_RTOL)
    Ri32 = ir.regularizer(net, t32, X32, per_sample=True)
    assert Ri32.dtype == np.float32
    assert_scaled_close(
        Ri32, ir.regularizer(net, t64, X64, per_sample=True), FLOAT32_RTOL, "per-sample R"
    )


# --------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------

INIT_SIZES = (200, 400, 300, 50)  # fan_in != fan_out in every layer
INIT_ALPHA = 1e-6  # two-sided false-alarm probability of each statistical check


def _expected_std(scheme: str, scale: float, fan_in: int, fan_out: int) -> float:
    if scheme == "he":
        return scale * np.sqrt(2.0 / fan_in)
    if scheme == "xavier":
        return scale * np.sqrt(2.0 / (fan_in + fan_out))
    assert scheme == "normal"
    return scale


@pytest.mark.parametrize(
    ("scheme", "scale"),
    [("he", 1.0), ("he", 0.5), ("xavier", 1.0), ("xavier", 2.0), ("normal", 1.0), ("normal", 0.37)],
)
def test_init_statistics(scheme: str, scale: float):
    """Each weight block: mean 0 and variance sigma^2. With N entries, sum(w)/(sigma sqrt N) is
    N(0,1) and sum(w^2)/sigma^2 is chi^2_N for Gaussian weights (any lighter-tailed law, e.g.
    uniform, concentrates more), checked at two-sided level INIT_ALPHA. Biases exactly 0."""
    net = ir.MLP(sizes=list(INIT_SIZES), activation="tanh", bias=True)
    theta = net.init(seed=3, scheme=scheme, scale=scale)
    assert theta.shape == (net.n_params,) and theta.dtype == np.float64
    assert np.all(np.isfinite(theta))
    z_crit = stats.norm.isf(INIT_ALPHA / 2)
    for layer, (W, b) in enumerate(net.unflatten(theta)):
        fan_in, fan_out = INIT_SIZES[layer], INIT_SIZES[layer + 1]
        sigma = _expected_std(scheme, scale, fan_in, fan_out)
        N = W.size
        z = float(W.sum()) / (sigma * np.sqrt(N))
        assert abs(z) <= z_crit, f"layer {layer}: mean {W.mean():.4g} (z = {z:.2f})"
        s = float(np.sum(W.astype(np.float64) ** 2)) / sigma**2
        lo, hi = stats.chi2.ppf(INIT_ALPHA / 2, N), stats.chi2.isf(INIT_ALPHA / 2, N)
        assert lo <= s <= hi, (
            f"layer {layer}: std {np.sqrt(np.mean(W**2)):.5g}, expected {sigma:.5g} "
            f"(chi2 {s:.1f} not in [{lo:.1f}, {hi:.1f}])"
        )
        assert b is not None
        np.testing.assert_array_equal(b, 0.0)


def test_init_seed_dtype_and_no_bias():
    net = ir.MLP(sizes=[5, 7, 3], activation="relu", bias=False)
    a = net.init(seed=1, scheme="he")
    np.testing.assert_array_equal(a, net.init(seed=1, scheme="he"))
    assert not np.array_equal(a, net.init(seed=2, scheme="he"))
    assert a.shape == (5 * 7 + 7 * 3,)
    assert all(b is None for _, b in net.unflatten(a))
    a32 = net.init(seed=1, scheme="he", dtype=np.float32)
    assert a32.dtype == np.float32 and a32.shape == a.shape
    net_b = ir.MLP(sizes=[5, 7, 3], activation="relu", bias=[True, False])
    parts = net_b.unflatten(net_b.init(seed=0))
    assert parts[0][1] is not None and parts[0][1].shape == (7,) and parts[1][1] is None
    assert net_b.n_params == 5 * 7 + 7 + 7 * 3


# --------------------------------------------------------------------------------------------
# Second-order functions (skipped until implicitreg provides them)
# --------------------------------------------------------------------------------------------

MAX_P_HESSIAN = 3000


def _require(name: str):
    if not hasattr(ir, name):
        pytest.skip(f"implicitreg has no {name} yet")
    return getattr(ir, name)


def _accepts_normalization(fun) -> bool:
    try:
        return "normalization" in inspect.signature(fun).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True


def _grad_rounding_scale(case: Case, normalization: str) -> float:
    """max_j 2c sum_k |J_kj| |r_k|: bounds the magnitudes summed in each gradient entry."""
    coef, mean = NORMALIZATIONS[normalization]
    cst = coef / case.arch.n if mean else coef
    J = case.net.jacobian(case.theta, case.X)
    f = case.net.predict(case.theta, case.X)
    r = np.abs(f - case.y2d()).ravel() + np.abs(f).ravel() + 1.0
    return float(np.max(2 * cst * np.abs(J).T @ r))


@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("arch", ARCH_PARAMS[::2])
def test_hvp_vs_finite_differences_of_grad(arch: Arch, normalization: str):
    hvp = _require("hvp")
    kw = {} if normalization == "mean_half" else {"normalization": normalization}
    if kw and not _accepts_normalization(hvp):
        pytest.skip("ir.hvp takes no normalization")
    c = case_for(arch)
    rng = np.random.default_rng(200 + arch.index)
    V = rng.standard_normal((arch.n_params, N_DIRECTIONS))
    V /= np.linalg.norm(V, axis=0)
    Hv = np.stack([hvp(c.net, c.theta, c.X, c.y, v.copy(), **kw) for v in V.T], axis=1)
    assert Hv.shape == V.shape
    fd, ok = central_differences(
        lambda t: ir.grad(c.net, t, c.X, c.y, normalization=normalization), c, V
    )
    assert_fd_close(Hv, fd, ok, _grad_rounding_scale(c, normalization), c.h, "hvp")


@pytest.mark.parametrize("arch", [p for p in ARCH_PARAMS if p.values[0].n_params <= MAX_P_HESSIAN])
def test_hessian_vs_finite_differences_and_hvp(arch: Arch):
    hessian = _require("hessian")
    c = case_for(arch)
    H = hessian(c.net, c.theta, c.X, c.y)
    p = arch.n_params
    assert H.shape == (p, p) and H.dtype == np.float64
    assert_scaled_close(H, H.T, IDENTITY_RTOL, "hessian symmetry")
    dirs = fd_directions(arch, MAX_COORDS_GRAD, seed=300 + arch.index)
    fd, ok = central_differences(lambda t: ir.grad(c.net, t, c.X, c.y), c, dirs)
    assert_fd_close(H @ dirs, fd, ok, _grad_rounding_scale(c, "mean_half"), c.h, "hessian")
    if hasattr(ir, "hvp"):
        v = dirs[:, 0].copy()
        assert_scaled_close(ir.hvp(c.net, c.theta, c.X, c.y, v), H @ v, 1e-10, "hvp vs H v")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer_grad_vs_finite_differences(arch: Arch):
    regularizer_grad = _require("regularizer_grad")
    c = case_for(arch)
    gR = regularizer_grad(c.net, c.theta, c.X)
    assert gR.shape == (arch.n_params,) and gR.dtype == np.float64
    dirs = fd_directions(arch, MAX_COORDS_GRAD, seed=400 + arch.index)
    fd, ok = central_differences(lambda t: ir.regularizer(c.net, t, c.X), c, dirs)
    R = float(ir.regularizer(c.net, c.theta, c.X))
    assert_fd_close((gR @ dirs)[None, :], fd, ok, max(R, 1.0), c.h, "regularizer_grad")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_ntk_is_jacobian_gram(arch: Arch):
    ntk = _require("ntk")
    c = case_for(arch)
    K = ntk(c.net, c.theta, c.X)
    J = c.net.jacobian(c.theta, c.X)
    m = arch.n * arch.sizes[-1]
    assert K.shape == (m, m)
    assert_scaled_close(K, J @ J.T, IDENTITY_RTOL, "ntk vs J J^T")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("width", [1, 3, 5, 8, 13])
def test_vectorised_activations_within_a_few_ulp(activation: str, width: int, dtype):
    """The core's own vectorised tanh and sigmoid (packets, padded tail): within a few ulp of
    libm over the whole range (sigmoid keeps its relative accuracy where it is tiny), exact
    signs and limits, and an element's value independent of its position in a row."""
    edge = 700 if dtype == np.float64 else 80  # sigmoid(-edge) still a normal number
    z = np.concatenate(
        [np.linspace(-edge, edge, 7001), np.linspace(-0.7, 0.7, 2001), [0.0, -0.0, 1e-300, -1e-300]]
    )
    net = ir.MLP([1, width], activation="identity", output_activation=activation)
    theta = net.flatten([(np.ones((width, 1)), np.zeros(width))]).astype(dtype)
    z = z.astype(dtype)
    got = net.predict(theta, z[:, None])
    assert got.dtype == dtype
    exact = z.astype(np.float64)
    want = np.tanh(exact) if activation == "tanh" else special.expit(exact)
    np.testing.assert_array_equal(got, np.repeat(got[:, :1], width, axis=1))
    ulp = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).tiny).astype(dtype))
    # Ours (double tanh, sigmoid): 4 ulp. Eigen's float tanh, a rational approximation, measures
    # up to 4.5 ulp in the SSE2 build.
    limit = 6 if (dtype == np.float32 and activation == "tanh") else 4
    assert np.max(np.abs(got[:, 0] - want) / ulp) <= limit
    if activation == "tanh":
        assert np.all(np.sign(got[:, 0]) == np.sign(z)) and np.all(np.abs(got) <= 1)
