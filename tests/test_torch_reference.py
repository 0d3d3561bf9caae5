"""implicitreg against an independent PyTorch (torch.func) reference.

For a fixed, seeded set of random MLPs (depth 0-4 hidden layers, widths 1-64, every activation,
bias on/off or per layer, 1-3 outputs, output activations, batch 1-7) the equivalent
``nn.Sequential`` is built from ``net.unflatten(theta)`` (tests/_torch_ref.py) and compared on:
outputs, per-sample Jacobians (``vmap(jacrev)``), loss and gradient (``torch.func.grad``) for each
normalization, and R = sum of squared per-sample gradient norms (total and per sample).

Tolerances (max-norm relative: |a - b| <= rtol * max|b|): float64 RTOL64 = 1e-10 (both sides
are exact up to round-off of order 1e-14 relative for these sizes); ReLU inputs keep every
nonzero pre-activation at least RELU_MARGIN from the kink, so both sides use the same activation
pattern and agree to round-off. float32: FLOAT32_RTOL = 1e-4, about 1e3 float32 unit roundoffs,
for two independent float32 evaluations.

Second-order functions (hvp, hessian, regularizer_grad, ntk) are tested in the marked section at
the end and skipped while implicitreg lacks them.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import implicitreg as ir


def _load_helper():
    # The tests run with --import-mode=importlib, so sibling modules are not importable by name.
    name = "_implicitreg_torch_ref"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_torch_ref.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_ref = _load_helper()
TorchReference = _ref.TorchReference
# torch's forward-mode AD (torch.func.jvp) loads decompositions through torch.jit.script, which
# warns in torch >= 2.10; the warning is torch-internal.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
NORMALIZATIONS = _ref.NORMALIZATIONS

from _archs import Arch, assert_covers_grid, make_architectures

RTOL64 = 1e-10
FLOAT32_RTOL = 1e-4
RELU_MARGIN = 1e-4
MAX_P_HESSIAN = 2000


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_torch():
    """The reference computations are tiny; torch's intra-op threads alternating with
    implicitreg's OpenMP threads slowed this module ~30x on a 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------


ARCHS = make_architectures(seed=777_001, prefix="t")
ARCH_PARAMS = [pytest.param(a, id=a.id) for a in ARCHS]


def test_architecture_set_covers_the_grid():
    assert_covers_grid(ARCHS)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    arch: Arch
    net: object
    theta: np.ndarray
    X: np.ndarray
    y: np.ndarray
    ref: TorchReference


def _relu_margin(ref: TorchReference, X: np.ndarray) -> float:
    """Smallest nonzero |z| over relu pre-activations (exact zeros come from an all-zero input
    row in a layer without bias; z is then identically 0 nearby, not at a kink)."""
    vals = [
        np.abs(z[z != 0])
        for z, act in zip(ref.preactivations(X), ref.acts, strict=True)
        if act == "relu"
    ]
    vals = [v for v in vals if v.size]
    return float(min(v.min() for v in vals)) if vals else np.inf


def _relu_alive(ref: TorchReference, X: np.ndarray) -> bool:
    """Every sample has a positive pre-activation in every relu layer."""
    return all(
        bool(np.all(np.any(z > 0, axis=1)))
        for z, act in zip(ref.preactivations(X), ref.acts, strict=True)
        if act == "relu"
    )


@functools.cache
def _case(index: int) -> Case:
    """Random parameters (nonzero biases) and data. Inputs are re-drawn until the relu margin
    holds and no sample has an all-zero Jacobian; the parameters every 20 attempts."""
    arch = ARCHS[index]
    rng = np.random.default_rng(50_000 + index)
    net = arch.build()
    for attempt in range(1000):
        if attempt % 20 == 0:
            parts = []
            for i, o, has_b in zip(arch.sizes[:-1], arch.sizes[1:], arch.layer_bias, strict=True):
                W = rng.normal(0.0, 1.5 / np.sqrt(i), size=(o, i))
                parts.append((W, rng.normal(0.0, 0.3, size=o) if has_b else None))
            theta = np.asarray(net.flatten(parts), dtype=np.float64)
            ref = TorchReference(net, theta, arch.activation, arch.output_activation)
        X = rng.standard_normal((arch.n, arch.sizes[0]))
        if _relu_margin(ref, X) >= RELU_MARGIN and _relu_alive(ref, X):
            break
    else:  # pragma: no cover - depends only on the fixed seeds
        raise RuntimeError(f"could not draw kink-free inputs for {arch.id}")
    n_out = arch.sizes[-1]
    y = rng.standard_normal(arch.n) if n_out == 1 else rng.standard_normal((arch.n, n_out))
    return Case(arch, net, theta, X, y, ref)


def case_for(arch: Arch) -> Case:
    c = _case(arch.index)
    return Case(c.arch, c.net, c.theta.copy(), c.X.copy(), c.y.copy(), c.ref)


def assert_scaled_close(actual, expected, rtol: float, what: str) -> None:
    """Max-norm relative agreement: |actual - expected| <= rtol * max|expected| elementwise."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale + 1e-300, err_msg=what)


# --------------------------------------------------------------------------------------------
# First order, float64
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_flat_layout_is_torch_parameter_order(arch: Arch):
    c = case_for(arch)
    module = c.ref.module
    vec = torch.nn.utils.parameters_to_vector(module.parameters()).detach().numpy()
    np.testing.assert_array_equal(vec, c.theta)
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip(arch.sizes[:-1], arch.sizes[1:], strict=True)
    )
    assert [m.bias is not None for m in linears] == arch.layer_bias
    assert c.net.n_params == sum(p.numel() for p in module.parameters()) == arch.n_params


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_outputs_and_jacobian(arch: Arch):
    c = case_for(arch)
    out = c.net.predict(c.theta, c.X)
    assert_scaled_close(out, c.ref.predict(c.X), RTOL64, "predict")
    J = c.net.jacobian(c.theta, c.X)
    assert J.shape == (arch.n * arch.sizes[-1], arch.n_params)
    assert_scaled_close(J, c.ref.jacobian(c.X), RTOL64, "jacobian")


@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_loss_and_grad(arch: Arch, normalization: str):
    c = case_for(arch)
    L = ir.loss(c.net, c.theta, c.X, c.y, normalization=normalization)
    np.testing.assert_allclose(float(L), c.ref.loss(c.X, c.y, normalization), rtol=RTOL64)
    g = ir.grad(c.net, c.theta, c.X, c.y, normalization=normalization)
    assert_scaled_close(g, c.ref.grad(c.X, c.y, normalization), RTOL64, "grad")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer(arch: Arch):
    c = case_for(arch)
    R = ir.regularizer(c.net, c.theta, c.X)
    np.testing.assert_allclose(float(R), c.ref.regularizer(c.X), rtol=RTOL64)
    Ri = ir.regularizer(c.net, c.theta, c.X, per_sample=True)
    assert_scaled_close(Ri, c.ref.regularizer(c.X, per_sample=True), RTOL64, "per-sample R")


# --------------------------------------------------------------------------------------------
# First order, float32 (torch float32 reference built from the float32 parameters)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_float32(arch: Arch):
    c = case_for(arch)
    t32, X32, y32 = (a.astype(np.float32) for a in (c.theta, c.X, c.y))
    ref32 = TorchReference(c.net, t32, arch.activation, arch.output_activation)
    out = c.net.predict(t32, X32)
    assert out.dtype == np.float32
    assert_scaled_close(out, ref32.predict(X32), FLOAT32_RTOL, "predict float32")
    J = c.net.jacobian(t32, X32)
    assert J.dtype == np.float32
    assert_scaled_close(J, ref32.jacobian(X32), FLOAT32_RTOL, "jacobian float32")
    for norm in NORMALIZATIONS:
        L = float(ir.loss(c.net, t32, X32, y32, normalization=norm))
        np.testing.assert_allclose(L, ref32.loss(X32, y32, norm), rtol=FLOAT32_RTOL, err_msg=norm)
        g = ir.grad(c.net, t32, X32, y32, normalization=norm)
        assert g.dtype == np.float32
        assert_scaled_close(g, ref32.grad(X32, y32, norm), FLOAT32_RTOL, f"grad float32 {norm}")
    R = float(ir.regularizer(c.net, t32, X32))
    np.testing.assert_allclose(R, ref32.regularizer(X32), rtol=FLOAT32_RTOL)
    Ri = ir.regularizer(c.net, t32, X32, per_sample=True)
    assert_scaled_close(Ri, ref32.regularizer(X32, per_sample=True), FLOAT32_RTOL, "R_i f32")


# ============================================================================================
# SECOND ORDER (issue 4): ir.hvp, ir.hessian, ir.regularizer_grad, ir.ntk
# Each test skips while implicitreg lacks the function. To cover another second-order
# function, add a test here using the matching TorchReference method.
# ============================================================================================


def _require(name: str):
    if not hasattr(ir, name):
        pytest.skip(f"implicitreg has no {name} yet")
    return getattr(ir, name)


def _normalization_kwargs(fun, normalization: str) -> dict:
    """{} for the default (mean_half); skips if `fun` takes no normalization argument."""
    if normalization == "mean_half":
        return {}
    try:
        params = inspect.signature(fun).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return {"normalization": normalization}
    if "normalization" not in params:
        pytest.skip(f"{fun.__name__} takes no normalization")
    return {"normalization": normalization}


SECOND_ORDER_ARCHS = [p for p in ARCH_PARAMS if p.values[0].n_params <= MAX_P_HESSIAN]


@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_hvp(arch: Arch, normalization: str):
    hvp = _require("hvp")
    kw = _normalization_kwargs(hvp, normalization)
    c = case_for(arch)
    rng = np.random.default_rng(arch.index)
    for _ in range(2):
        v = rng.standard_normal(arch.n_params)
        Hv = hvp(c.net, c.theta, c.X, c.y, v, **kw)
        assert Hv.shape == (arch.n_params,) and Hv.dtype == np.float64
        assert_scaled_close(Hv, c.ref.hvp(c.X, c.y, v, normalization), RTOL64, "hvp")


@pytest.mark.parametrize("normalization", ["mean_half", "sum_sq"])
@pytest.mark.parametrize("arch", SECOND_ORDER_ARCHS)
def test_hessian(arch: Arch, normalization: str):
    hessian = _require("hessian")
    kw = _normalization_kwargs(hessian, normalization)
    c = case_for(arch)
    H = hessian(c.net, c.theta, c.X, c.y, **kw)
    assert H.shape == (arch.n_params, arch.n_params) and H.dtype == np.float64
    assert_scaled_close(H, c.ref.hessian(c.X, c.y, normalization), RTOL64, "hessian")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer_grad(arch: Arch):
    regularizer_grad = _require("regularizer_grad")
    c = case_for(arch)
    gR = regularizer_grad(c.net, c.theta, c.X)
    assert gR.shape == (arch.n_params,) and gR.dtype == np.float64
    assert_scaled_close(gR, c.ref.regularizer_grad(c.X), RTOL64, "regularizer_grad")


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_ntk(arch: Arch):
    ntk = _require("ntk")
    c = case_for(arch)
    K = ntk(c.net, c.theta, c.X)
    m = arch.n * arch.sizes[-1]
    assert K.shape == (m, m) and K.dtype == np.float64
    assert_scaled_close(K, c.ref.ntk(c.X), RTOL64, "ntk")


@pytest.mark.parametrize("arch", ARCH_PARAMS[::4])
def test_second_order_float32(arch: Arch):
    """float32 second-order results against the float64 torch reference on the cast inputs."""
    if not any(hasattr(ir, name) for name in ("hvp", "regularizer_grad", "ntk")):
        pytest.skip("implicitreg has no second-order functions yet")
    c = case_for(arch)
    t32, X32, y32 = (a.astype(np.float32) for a in (c.theta, c.X, c.y))
    ref = TorchReference(c.net, t32.astype(np.float64), arch.activation, arch.output_activation)
    X64, y64 = X32.astype(np.float64), y32.astype(np.float64)
    if hasattr(ir, "hvp"):
        v = np.random.default_rng(arch.index).standard_normal(arch.n_params).astype(np.float32)
        Hv = ir.hvp(c.net, t32, X32, y32, v)
        assert Hv.dtype == np.float32
        expected = ref.hvp(X64, y64, v.astype(np.float64))
        assert_scaled_close(Hv, expected, FLOAT32_RTOL, "hvp float32")
    if hasattr(ir, "regularizer_grad"):
        gR = ir.regularizer_grad(c.net, t32, X32)
        assert gR.dtype == np.float32
        assert_scaled_close(gR, ref.regularizer_grad(X64), FLOAT32_RTOL, "regularizer_grad f32")
    if hasattr(ir, "ntk"):
        K = ir.ntk(c.net, t32, X32)
        assert K.dtype == np.float32
        assert_scaled_close(K, ref.ntk(X64), FLOAT32_RTOL, "ntk float32")
