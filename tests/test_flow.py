"""Gradient flow and the IGR modified flow: closed forms and backward-error orders."""

from __future__ import annotations

import numpy as np
import pytest

import implicitreg as ir

pytest.importorskip("scipy")


def two_param():
    # f(x) = a b x as an MLP without bias: Barrett & Dherin's two-parameter model.
    net = ir.MLP([1, 1, 1], activation="identity", bias=False)
    return net, np.array([2.8, 3.5]), np.array([[1.0]]), np.array([0.6])


def test_linear_regression_flows_match_closed_forms():
    from scipy.linalg import expm

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal(6)
    net = ir.MLP([3, 1], bias=False)
    theta0 = rng.standard_normal(3)
    H = X.T @ X / 6
    w_star = np.linalg.solve(H, X.T @ y / 6)
    times = np.array([0.0, 0.5, 2.0])
    gf = ir.flow(net, theta0, X, y, t_end=2.0, times=times)
    mod = ir.flow(net, theta0, X, y, t_end=2.0, h=0.1, times=times)
    for k, t in enumerate(times):
        np.testing.assert_allclose(gf[k], w_star + expm(-H * t) @ (theta0 - w_star), rtol=1e-8)
        Ht = (H + 0.05 * H @ H) * t
        np.testing.assert_allclose(mod[k], w_star + expm(-Ht) @ (theta0 - w_star), rtol=1e-8)


def test_gradient_flow_conserves_balance():
    net, theta, X, y = two_param()
    a, b = ir.flow(net, theta, X, y, t_end=1.0, rtol=1e-12, atol=1e-14)[0]
    assert abs((a**2 - b**2) - (2.8**2 - 3.5**2)) < 1e-8


def test_gd_exact_balance_identity():
    # a'^2 - b'^2 = (a^2 - b^2)(1 - h^2 r^2 x^2) for one GD step (papers.md, test I1).
    net, theta, X, y = two_param()
    h = 0.01
    res = ir.simulate(net, theta, X, y, ir.GD(lr=h), steps=5, snapshot_every=1, progress=False)
    for (a, b), (a1, b1) in zip(res.snapshots[:-1, 0], res.snapshots[1:, 0], strict=True):
        r = a * b - 0.6
        np.testing.assert_allclose(a1**2 - b1**2, (a**2 - b**2) * (1 - h**2 * r**2), rtol=1e-12)


def test_backward_error_orders():
    """Halving h halves |GD - gradient flow| and quarters |GD - modified flow| (test I2)."""
    net, theta, X, y = two_param()
    err_gf, err_mod = [], []
    for h in (0.02, 0.01, 0.005):
        steps = round(1.0 / h)
        gd = ir.simulate(
            net, theta, X, y, ir.GD(lr=h), steps=steps, record_every=steps, progress=False
        ).theta[0]
        gf = ir.flow(net, theta, X, y, t_end=1.0, rtol=1e-12, atol=1e-14)[0]
        mod = ir.flow(net, theta, X, y, t_end=1.0, h=h, rtol=1e-12, atol=1e-14)[0]
        err_gf.append(np.linalg.norm(gd - gf))
        err_mod.append(np.linalg.norm(gd - mod))
    for k in range(2):
        assert 1.8 < err_gf[k] / err_gf[k + 1] < 2.2, err_gf
        assert 3.6 < err_mod[k] / err_mod[k + 1] < 4.4, err_mod
    assert err_mod[-1] < 0.1 * err_gf[-1]


def test_flow_validation():
    net, theta, X, y = two_param()
    with pytest.raises(ValueError, match="t_end"):
        ir.flow(net, theta, X, y, t_end=-1.0)
    with pytest.raises(ValueError, match="times"):
        ir.flow(net, theta, X, y, t_end=1.0, times=[0.5, 0.2])
    with pytest.raises(ValueError, match="h must be"):
        ir.flow(net, theta, X, y, t_end=1.0, h=0.0)
