"""Second-order functions of implicitreg (hvp, gnvp, hessian, sharpness, hessian_trace,
regularizer_grad, ntk, and the EGR direction of the core) in float64 and float32.

Architectures: a fixed, seeded set of MLPs, every activation at every depth 0-3 (at depth 0 as the
output activation), widths 1-16, 1-3 outputs, bias on/off, plus mixed per-layer activations and
biases; batches of 1-6 samples.

Tolerances.
* Central differences D(h) = (F(theta + h v) - F(theta - h v)) / (2h) have truncation error
  (h^2/6) F''' + O(h^4), so D(2h) - D(h) = 3x the truncation error of D(h): the test allows
  |D(h) - D(2h)| for truncation, estimated from the data, not tuned. Round-off: each entry of F is
  a sum of at most ~400 terms here (n * (width + 1) * (depth + 1)), so its error is below
  FD_ROUND * eps * S with FD_ROUND = 1e3 and S a bound on the magnitudes summed; D(h) and D(2h)
  inherit at most FD_ROUND * eps * S / h each.
* ReLU: inputs keep every nonzero pre-activation at least RELU_MARGIN from the kink and the tests
  assert the activation pattern is unchanged at theta +- 2h v, so the differences stay in one
  polynomial piece.
* Exact vs exact (torch.func, J^T J v, stacked HVPs): RTOL64 = 1e-10 of the largest entry; the
  round-off of either side is ~1e-14 relative for these sizes, the margin covers cancellation.
* float32 vs float64 on the same (cast) inputs: FLOAT32_RTOL = 1e-4, about 1e3 float32 unit
  roundoffs (6e-8) of the result's scale.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _archs import ACTIVATIONS, NORMALIZATIONS, Arch

import implicitreg as ir
import implicitreg.second_order as so

EPS64 = float(np.finfo(np.float64).eps)
H_FD = 1e-5
FD_ROUND = 1e3
RELU_MARGIN = 1e-3
RTOL64 = 1e-10
FLOAT32_RTOL = 1e-4
N_DIRECTIONS = 3


# --------------------------------------------------------------------------------------------
# Architectures and cases
# --------------------------------------------------------------------------------------------


def make_architectures(seed: int = 4_2024) -> list[Arch]:
    rng = np.random.default_rng(seed)
    archs = []
    for k in range(20):  # every (activation, depth) pair
        act, depth = ACTIVATIONS[k % 5], k // 5
        sizes = (
            int(rng.integers(1, 9)),
            *rng.integers(1, 17, size=depth).tolist(),
            int(rng.integers(1, 4)),
        )
        out_act = act if depth == 0 else "identity"
        archs.append(Arch(k, sizes, act, bool(k % 2), out_act, int(rng.integers(1, 7)), "s"))
    for k in range(20, 26):  # mixed per-layer activations and biases, output activations
        depth = 2 + k % 2
        sizes = (
            int(rng.integers(1, 9)),
            *rng.integers(1, 17, size=depth).tolist(),
            int(rng.integers(1, 4)),
        )
        acts = tuple(ACTIVATIONS[int(i)] for i in rng.integers(0, 5, size=depth))
        bias = tuple(bool(b) for b in rng.random(depth + 1) < 0.5)
        archs.append(Arch(k, sizes, acts, bias, ACTIVATIONS[k % 5], int(rng.integers(1, 7)), "s"))
    return archs


ARCHS = make_architectures()
ARCH_PARAMS = [pytest.param(a, id=a.id) for a in ARCHS]


def preactivations(net, theta, X) -> list[np.ndarray]:
    """NumPy forward pass from the documented layout (independent of the core)."""
    acts = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
        "softplus": lambda z: np.logaddexp(0, z),
        "identity": lambda z: z,
    }
    a, zs = X, []
    names = [
        *(
            [net.activation] * (len(net.sizes) - 2)
            if isinstance(net.activation, str)
            else net.activation
        ),
        net.output_activation,
    ]
    for (W, b), name in zip(net.unflatten(theta), names, strict=True):
        z = a @ W.T + (0 if b is None else b)
        zs.append(z)
        a = acts[name](z)
    return zs


def relu_pattern(arch: Arch, net, theta, X) -> np.ndarray:
    zs = preactivations(net, theta, X)
    return np.concatenate(
        [(z > 0).ravel() for z, a in zip(zs, arch.layer_acts, strict=True) if a == "relu"]
        + [np.zeros(0, bool)]
    )


def relu_margin(arch: Arch, net, theta, X) -> float:
    """Smallest nonzero |z| over relu pre-activations (an exact 0 stays 0 near theta)."""
    zs = [
        np.abs(z[z != 0])
        for z, a in zip(preactivations(net, theta, X), arch.layer_acts, strict=True)
        if a == "relu"
    ]
    zs = [z for z in zs if z.size]
    return float(min(z.min() for z in zs)) if zs else np.inf


@dataclass
class Case:
    arch: Arch
    net: ir.MLP
    theta: np.ndarray
    X: np.ndarray
    y: np.ndarray  # (n, out)


@functools.cache
def _case(index: int) -> Case:
    arch = ARCHS[index]
    net = arch.build()
    rng = np.random.default_rng(1000 + index)
    layers = [
        (rng.normal(0, 1.5 / np.sqrt(i), (o, i)), rng.normal(0, 0.3, o) if b is not None else None)
        for (W, b), i, o in zip(
            net.unflatten(np.zeros(net.n_params)), arch.sizes[:-1], arch.sizes[1:], strict=True
        )
    ]
    theta = net.flatten(layers)
    for _ in range(1000):
        X = rng.standard_normal((arch.n, arch.sizes[0]))
        if relu_margin(arch, net, theta, X) >= RELU_MARGIN:
            break
    else:  # pragma: no cover - depends only on the seeds
        raise RuntimeError(f"no kink-free inputs for {arch.id}")
    y = rng.standard_normal((arch.n, arch.sizes[-1]))
    return Case(arch, net, theta, X, y)


def case_for(arch: Arch) -> Case:
    c = _case(arch.index)
    return Case(c.arch, c.net, c.theta.copy(), c.X.copy(), c.y.copy())


def scale_c(case: Case, normalization: str) -> float:
    coef, mean = NORMALIZATIONS[normalization]
    return coef / case.arch.n if mean else coef


def unit_directions(p: int, seed: int, count: int = N_DIRECTIONS) -> np.ndarray:
    V = np.random.default_rng(seed).standard_normal((p, count))
    return V / np.linalg.norm(V, axis=0)


def fd_check(analytic, fun, case: Case, V: np.ndarray, round_scale: float, what: str):
    """analytic[:, k] against central differences of fun along V[:, k] (tolerances: module doc)."""
    h = H_FD
    if "relu" in case.arch.layer_acts:
        base = relu_pattern(case.arch, case.net, case.theta, case.X)
        for v in V.T:
            for t in (case.theta + 2 * h * v, case.theta - 2 * h * v):
                assert np.array_equal(relu_pattern(case.arch, case.net, t, case.X), base)

    def diff(v, step):
        return (np.ravel(fun(case.theta + step * v)) - np.ravel(fun(case.theta - step * v))) / (
            2 * step
        )

    for k, v in enumerate(V.T):
        d1, d2 = diff(v, h), diff(v, 2 * h)
        tol = np.abs(d1 - d2) + 2 * FD_ROUND * EPS64 * round_scale / h
        err = np.abs(np.ravel(analytic[:, k]) - d1)
        assert np.all(err <= tol), (
            f"{what}, direction {k}: max error {err.max():.3g}, tol there "
            f"{tol[np.argmax(err - tol)]:.3g}, value scale {np.abs(d1).max():.3g}"
        )


def grad_round_scale(case: Case, normalization: str) -> float:
    """Bound on the magnitudes summed in a gradient entry: max_j 2c sum_k |J_kj| (|r_k| + |f_k|),
    plus 1 for O(1) intermediates."""
    J = case.net.jacobian(case.theta, case.X)
    f = case.net.predict(case.theta, case.X)
    r = (np.abs(f - case.y) + np.abs(f)).ravel() + 1.0
    return float(np.max(2 * scale_c(case, normalization) * np.abs(J).T @ r)) + 1.0


def assert_scaled_close(actual, expected, rtol: float, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale + 1e-300, err_msg=what)


def torch_reference(case: Case, theta=None):
    pytest.importorskip("torch")
    name = "_implicitreg_torch_ref"  # the module test_torch_reference.py loads, shared
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("_torch_ref.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    theta = case.theta if theta is None else theta
    return sys.modules[name].TorchReference(
        case.net, theta, case.arch.activation, case.arch.output_activation
    )


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_torch():
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------
# Hessian-vector products
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_hvp_vs_finite_differences(arch: Arch, normalization: str):
    c = case_for(arch)
    V = unit_directions(c.net.n_params, seed=arch.index)
    Hv = np.stack(
        [ir.hvp(c.net, c.theta, c.X, c.y, v, normalization=normalization) for v in V.T], axis=1
    )
    assert Hv.shape == V.shape and Hv.dtype == np.float64
    fd_check(
        Hv,
        lambda t: ir.grad(c.net, t, c.X, c.y, normalization=normalization),
        c,
        V,
        grad_round_scale(c, normalization),
        "hvp",
    )


@pytest.mark.parametrize("normalization", ["mean_half", "sum_sq", "mean_quarter"])
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_hvp_vs_torch(arch: Arch, normalization: str):
    c = case_for(arch)
    ref = torch_reference(c)
    for v in unit_directions(c.net.n_params, seed=50 + arch.index, count=2).T:
        assert_scaled_close(
            ir.hvp(c.net, c.theta, c.X, c.y, v, normalization=normalization),
            ref.hvp(c.X, c.y, v, normalization),
            RTOL64,
            "hvp vs torch",
        )


@pytest.mark.parametrize("normalization", ["mean_half", "sum_half"])
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_gnvp_is_jacobian_product(arch: Arch, normalization: str):
    c = case_for(arch)
    J = c.net.jacobian(c.theta, c.X)
    for v in unit_directions(c.net.n_params, seed=60 + arch.index, count=2).T:
        Gv = ir.gnvp(c.net, c.theta, c.X, c.y, v, normalization=normalization)
        expected = 2 * scale_c(c, normalization) * (J.T @ (J @ v))
        assert_scaled_close(Gv, expected, RTOL64, "gnvp vs 2c J^T J v")
    # At zero residual the Hessian is exactly the Gauss-Newton matrix.
    f = c.net.predict(c.theta, c.X)
    v = unit_directions(c.net.n_params, seed=70 + arch.index, count=1)[:, 0]
    assert_scaled_close(
        ir.hvp(c.net, c.theta, c.X, f, v, normalization=normalization),
        ir.gnvp(c.net, c.theta, c.X, f, v, normalization=normalization),
        RTOL64,
        "hvp == gnvp at zero residual",
    )


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_hessian_symmetric_and_stacked_hvps(arch: Arch):
    c = case_for(arch)
    H = ir.hessian(c.net, c.theta, c.X, c.y, normalization="sum_sq")
    p = c.net.n_params
    assert H.shape == (p, p) and H.dtype == np.float64
    np.testing.assert_array_equal(H, H.T)
    cols = np.stack(
        [ir.hvp(c.net, c.theta, c.X, c.y, e, normalization="sum_sq") for e in np.eye(p)], axis=1
    )
    assert_scaled_close(H, cols, RTOL64, "hessian vs stacked HVPs")
    if arch.index % 3 == 0:
        assert_scaled_close(
            H,
            torch_reference(c).hessian(c.X, c.y, "sum_sq"),
            RTOL64,
            "hessian vs torch.func.hessian",
        )


# --------------------------------------------------------------------------------------------
# Spectrum and trace
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lanczos", [False, True], ids=["dense", "lanczos"])
@pytest.mark.parametrize("arch", ARCH_PARAMS[::2])
def test_sharpness_vs_eigvalsh(arch: Arch, lanczos: bool, monkeypatch):
    c = case_for(arch)
    if lanczos:
        monkeypatch.setattr(so, "SMALL_P", 0)  # force eigsh wherever k < p
    p = c.net.n_params
    w = np.linalg.eigvalsh(ir.hessian(c.net, c.theta, c.X, c.y))[::-1]
    k = min(3, p)
    top = ir.sharpness(c.net, c.theta, c.X, c.y, k=k)
    assert top.shape == (k,) and np.all(np.diff(top) <= 0)
    # ARPACK stops at a residual ~ eps * ||H||; Ritz values then err by at most that residual.
    atol = FD_ROUND * EPS64 * np.abs(w).max() + 1e-300
    np.testing.assert_allclose(top, w[:k], rtol=0, atol=atol)
    assert ir.sharpness(c.net, c.theta, c.X, c.y)[0] == pytest.approx(w[0], abs=atol)


def test_sharpness_lanczos_path_on_larger_model():
    net = ir.MLP([6, 24, 24, 2], activation="tanh")
    rng = np.random.default_rng(5)
    theta = net.init(seed=3)
    X, y = rng.standard_normal((20, 6)), rng.standard_normal((20, 2))
    assert net.n_params > so.SMALL_P
    w = np.linalg.eigvalsh(ir.hessian(net, theta, X, y))[::-1]
    top = ir.sharpness(net, theta, X, y, k=4)
    np.testing.assert_allclose(top, w[:4], rtol=0, atol=FD_ROUND * EPS64 * abs(w[0]))


@pytest.mark.parametrize("arch", ARCH_PARAMS[::2])
def test_hessian_trace_exact_and_hutchinson(arch: Arch):
    c = case_for(arch)
    H = ir.hessian(c.net, c.theta, c.X, c.y)
    exact = ir.hessian_trace(c.net, c.theta, c.X, c.y, method="exact")
    assert exact.method == "exact" and exact.stderr == 0.0
    assert exact.value == pytest.approx(np.trace(H), rel=0, abs=RTOL64 * np.abs(H).sum())
    assert ir.hessian_trace(c.net, c.theta, c.X, c.y).value == exact.value  # auto: small p
    est = ir.hessian_trace(
        c.net, c.theta, c.X, c.y, method="hutchinson", samples=400, seed=arch.index
    )
    assert est.method == "hutchinson" and est.samples == 400
    # Rademacher: z^T H z - tr H = sum_{i != j} z_i z_j H_ij, variance 2 sum_{i != j} H_ij^2.
    off = 2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2))
    assert abs(est.value - exact.value) <= 4 * np.sqrt(off / 400) + 1e-12 * np.abs(H).sum()
    if off > 1e-20:  # the reported standard error estimates that standard deviation
        assert 0.5 < est.stderr / np.sqrt(off / 400) < 2.0
    else:
        assert est.stderr <= 1e-12 * np.abs(H).sum()


# --------------------------------------------------------------------------------------------
# Regularizer gradient, NTK, EGR direction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer_grad_vs_finite_differences(arch: Arch):
    c = case_for(arch)
    R, gR = ir.regularizer_grad(c.net, c.theta, c.X, return_value=True)
    np.testing.assert_allclose(R, ir.regularizer(c.net, c.theta, c.X), rtol=1e-13)
    assert gR.shape == (c.net.n_params,) and gR.dtype == np.float64
    np.testing.assert_array_equal(gR, ir.regularizer_grad(c.net, c.theta, c.X))
    V = np.concatenate(
        [
            unit_directions(c.net.n_params, seed=80 + arch.index),
            np.eye(c.net.n_params)[:, :: max(1, c.net.n_params // 20)],
        ],
        axis=1,
    )
    # R is a sum of squares: R itself bounds the magnitudes summed.
    fd_check(
        (gR @ V)[None, :],
        lambda t: ir.regularizer(c.net, t, c.X),
        c,
        V,
        max(R, 1.0),
        "regularizer_grad",
    )


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_regularizer_grad_vs_torch_double_backprop(arch: Arch):
    c = case_for(arch)
    ref = torch_reference(c)
    assert_scaled_close(
        ir.regularizer_grad(c.net, c.theta, c.X),
        ref.regularizer_grad(c.X),
        RTOL64,
        "regularizer_grad vs torch",
    )


def test_regularizer_known_answer_w4():
    """W4 of workloads.md: R of the W2 student at initialisation (float64 reference value)."""
    net = ir.MLP([20, 256, 256, 1], activation="tanh")
    X = np.random.default_rng(1).standard_normal((256, 20))
    rng = np.random.default_rng(201)
    layers = [
        (rng.standard_normal((o, i)) / np.sqrt(i), np.zeros(o))
        for i, o in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    theta = net.flatten(layers)
    R, gR = ir.regularizer_grad(net, theta, X, return_value=True)
    np.testing.assert_allclose(R, 32961.081266786, rtol=1e-11)
    assert gR[-1] == 0.0  # R does not depend on the output bias (identity output)


@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_ntk(arch: Arch):
    c = case_for(arch)
    K = ir.ntk(c.net, c.theta, c.X)
    J = c.net.jacobian(c.theta, c.X)
    m = arch.n * arch.sizes[-1]
    assert K.shape == (m, m)
    assert_scaled_close(K, J @ J.T, RTOL64, "ntk vs J J^T")
    # tr K = R, computed by the norm trick without J.
    assert np.trace(K) == pytest.approx(ir.regularizer(c.net, c.theta, c.X), rel=1e-12)
    if arch.index % 2 == 0:
        assert_scaled_close(K, torch_reference(c).ntk(c.X), RTOL64, "ntk vs torch")


@pytest.mark.parametrize("normalization", ["mean_half", "sum_sq"])
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_egr_direction(arch: Arch, normalization: str):
    c = case_for(arch)
    mu = 0.37
    L, d = so.egr_direction(c.net, c.theta, c.X, c.y, mu, normalization=normalization)
    np.testing.assert_allclose(
        L, ir.loss(c.net, c.theta, c.X, c.y, normalization=normalization), rtol=1e-14
    )
    g = ir.grad(c.net, c.theta, c.X, c.y, normalization=normalization)
    Hg = ir.hvp(c.net, c.theta, c.X, c.y, g, normalization=normalization)
    assert_scaled_close(d, g + 2 * mu * Hg, RTOL64, "egr direction vs g + 2 mu H g")
    # It is the gradient of L + mu ||grad L||^2: check directional derivatives.
    V = unit_directions(c.net.n_params, seed=90 + arch.index)

    def egr_objective(t):
        gt = ir.grad(c.net, t, c.X, c.y, normalization=normalization)
        return ir.loss(c.net, t, c.X, c.y, normalization=normalization) + mu * gt @ gt

    gs = grad_round_scale(c, normalization)
    scale = max(L, 1.0) + mu * gs**2
    fd_check((d @ V)[None, :], egr_objective, c, V, scale, "egr direction")


# --------------------------------------------------------------------------------------------
# float32
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCH_PARAMS[::2])
def test_float32_matches_float64(arch: Arch):
    c = case_for(arch)
    t32, X32, y32 = (a.astype(np.float32) for a in (c.theta, c.X, c.y))
    t64, X64, y64 = (a.astype(np.float64) for a in (t32, X32, y32))
    v32 = unit_directions(c.net.n_params, seed=arch.index, count=1)[:, 0].astype(np.float32)
    v64 = v32.astype(np.float64)
    pairs = {
        "hvp": lambda t, X, y, v: ir.hvp(c.net, t, X, y, v),
        "gnvp": lambda t, X, y, v: ir.gnvp(c.net, t, X, y, v, normalization="sum_sq"),
        "regularizer_grad": lambda t, X, y, v: ir.regularizer_grad(c.net, t, X),
        "ntk": lambda t, X, y, v: ir.ntk(c.net, t, X),
        "egr": lambda t, X, y, v: so.egr_direction(c.net, t, X, y, 0.1)[1],
        "sharpness": lambda t, X, y, v: ir.sharpness(c.net, t, X, y, k=1),
    }
    for name, fun in pairs.items():
        r32, r64 = fun(t32, X32, y32, v32), fun(t64, X64, y64, v64)
        if name != "sharpness":
            assert r32.dtype == np.float32 and r64.dtype == np.float64
        assert_scaled_close(r32, r64, FLOAT32_RTOL, f"{name} float32")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_argument_errors_name_the_argument():
    c = case_for(ARCHS[5])
    net, theta, X, y = c.net, c.theta, c.X, c.y
    with pytest.raises(ValueError, match="v must have shape"):
        ir.hvp(net, theta, X, y, theta[:-1])
    with pytest.raises(TypeError, match="v has dtype float32"):
        ir.gnvp(net, theta, X, y, theta.astype(np.float32))
    with pytest.raises(ValueError, match="normalization"):
        ir.hvp(net, theta, X, y, theta, normalization="bogus")
    with pytest.raises(ValueError, match="k must be"):
        ir.sharpness(net, theta, X, y, k=net.n_params + 1)
    with pytest.raises(ValueError, match="method"):
        ir.hessian_trace(net, theta, X, y, method="lanczos")
    with pytest.raises(ValueError, match="samples"):
        ir.hessian_trace(net, theta, X, y, method="hutchinson", samples=1)
    with pytest.raises(ValueError, match="mu"):
        so.egr_direction(net, theta, X, y, -1.0)
    with pytest.raises(ValueError, match="X must have shape"):
        ir.regularizer_grad(net, theta, X[:, :0])


def test_dense_hessian_refused_above_limit():
    net = ir.MLP([100, 50, 1])  # 5101 parameters
    theta = net.init(seed=0)
    X, y = np.zeros((2, 100)), np.zeros(2)
    assert net.n_params > so.MAX_P_DENSE
    with pytest.raises(ValueError, match="dense Hessian is limited"):
        ir.hessian(net, theta, X, y)
    with pytest.raises(ValueError, match="hutchinson"):
        ir.hessian_trace(net, theta, X, y, method="exact")


def test_cached_workspace_follows_the_model():
    """The bindings keep one workspace per thread: alternating models with the same batch size
    (different depths and widths) must give the same results as in isolation."""
    X = np.random.default_rng(7).standard_normal((5, 3))
    y = np.zeros((5, 1))
    nets = [ir.MLP([3, 4, 1], activation="tanh"), ir.MLP([3, 6, 2, 1], activation="sigmoid")]
    thetas = [net.init(seed=k) for k, net in enumerate(nets)]
    first = [
        ir.regularizer_grad(n, t, X, return_value=True) for n, t in zip(nets, thetas, strict=True)
    ]
    again = [
        ir.regularizer_grad(n, t, X, return_value=True) for n, t in zip(nets, thetas, strict=True)
    ]
    for (R1, g1), (R2, g2), n, t in zip(first, again, nets, thetas, strict=True):
        assert R1 == R2 and np.array_equal(g1, g2)
        np.testing.assert_allclose(R1, ir.regularizer(n, t, X), rtol=1e-13)
        v = np.ones(n.n_params)
        np.testing.assert_array_equal(ir.hvp(n, t, X, y, v), ir.hvp(n, t, X, y, v))
