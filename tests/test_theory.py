"""Theory functions against independent closed forms and against long seeded simulations."""

from __future__ import annotations

import numpy as np
import pytest

import implicitreg as ir
from implicitreg import theory


def balanced_two_param():
    # f = u v x at x = 1, y = 1, held at the balanced zero-loss point u = v = 1 (papers.md B1),
    # where R restricted to the manifold uv = 1 is stationary: no drift, a pure OU process.
    net = ir.MLP([1, 1, 1], activation="identity", bias=False)
    return net, np.array([1.0, 1.0]), np.array([[1.0]]), np.array([1.0])


@pytest.mark.parametrize(
    ("batch", "norm", "kappa"),
    [
        (1, "mean_half", 0.25),
        (4, "mean_half", 0.25 / 4),
        ("full", "mean_half", 0.25 / 8),
        ("full", "sum_sq", 0.5),
    ],
)
def test_noise_scale_table(batch, norm, kappa):
    # papers.md §1: sigma^2, sigma^2/B, sigma^2/n, and 2 sigma^2 for sum_sq (sigma = 0.5, n = 8).
    assert theory.noise_scale(0.5, batch, 8, norm) == pytest.approx(kappa, rel=1e-15)


def test_ou_prediction_b1_closed_form():
    net, theta, X, _ = balanced_two_param()
    pred = theory.ou_prediction(net, theta, X, lr=0.05, sigma=0.5)
    assert pred.loss == pytest.approx(0.05 * 0.25 * 2 / (2 * (2 - 0.05 * 2)), rel=1e-12)
    assert pred.loss == pytest.approx(0.006578947368421, rel=1e-9)
    # S is rank one along the gradient (1, 1)/sqrt 2 with variance eta kappa/(2 - eta lambda).
    g = np.array([1.0, 1.0]) / np.sqrt(2)
    np.testing.assert_allclose(pred.cov, 0.05 * 0.25 / 1.9 * np.outer(g, g), rtol=1e-12)


def test_ou_covariance_solves_lyapunov_on_random_net():
    rng = np.random.default_rng(3)
    net = ir.MLP([2, 6, 2], activation="tanh")
    theta, X = net.init(seed=1), rng.standard_normal((4, 2))
    for batch in (1, 2, "full"):
        pred = theory.ou_prediction(net, theta, X, lr=0.1, sigma=0.3, batch_size=batch)
        A = np.eye(net.n_params) - 0.1 * pred.hessian
        rhs = A @ pred.cov @ A + 0.01 * pred.kappa * pred.hessian
        np.testing.assert_allclose(pred.cov, rhs, atol=1e-12 * np.abs(pred.cov).max())


def test_ou_prediction_on_nonlinear_model_matches_simulation():
    """B1/B4: label-noise SGD at the balanced point of f = u v x. Measured mean loss and
    stationary covariance against the prediction; the statistical error comes from the
    replicas' spread; the linearisation error is O(eta sigma^2) relative (papers.md: 3%)."""
    net, theta, X, y = balanced_two_param()
    lr, sigma, R = 0.05, 0.5, 16
    pred = theory.ou_prediction(net, theta, X, lr=lr, sigma=sigma)
    res = ir.simulate(
        net,
        theta,
        X,
        y,
        ir.LabelNoiseSGD(lr=lr, sigma=sigma, noise="sign"),
        steps=200_000,
        record_every=10,
        burn_in=1_000,
        moments=True,
        replicas=R,
        seed=3,
        progress=False,
    )
    keep = res.steps > 1_000
    per = res.trace["loss"][:, keep].mean(axis=1)
    se = per.std(ddof=1) / np.sqrt(R)
    assert abs(per.mean() - pred.loss) < 4 * se + 0.03 * pred.loss, (per.mean(), pred.loss, se)
    # Covariance of theta about theta*: Welford moments (about the mean) plus the mean offset.
    cov = res.moments.cov.mean(axis=0)
    rel = np.linalg.norm(cov - pred.cov) / np.linalg.norm(pred.cov)
    assert rel < 0.10, rel


def test_drift_is_tangent_and_decreases_regularizer():
    # Off balance (u, v) = (2, 0.5) on uv = 1, the predicted drift is along the manifold and
    # points to where R = u^2 + v^2 is smaller (papers.md B2: ds/dk < 0, s = ln(u/v)/2).
    net = ir.MLP([1, 1, 1], activation="identity", bias=False)
    theta, X = np.array([2.0, 0.5]), np.array([[1.0]])
    d = theory.drift(net, theta, X, lr=0.01, sigma=1.0)
    J = net.jacobian(theta, X)
    assert abs((J @ d)[0]) < 1e-14 * np.linalg.norm(d)
    s = 0.5 * np.log(2.0 / 0.5)
    # ds/dk = (du/u - dv/v)/2 per step, from papers.md: -(eta^2 sigma^2/2) tanh(2s) (small eta).
    ds = 0.5 * (d[0] / 2.0 - d[1] / 0.5)
    assert ds == pytest.approx(-(0.01**2) * 1.0 / 2 * np.tanh(2 * s), rel=1e-10)


def test_igr_quantities():
    rng = np.random.default_rng(0)
    net = ir.MLP([2, 3, 1], activation="tanh")
    theta, X, y = net.init(seed=0), rng.standard_normal((5, 2)), rng.standard_normal(5)
    g = ir.grad(net, theta, X, y)
    assert theory.igr_modified_loss(net, theta, X, y, h=0.1) == pytest.approx(
        ir.loss(net, theta, X, y) + 0.025 * g @ g, rel=1e-14
    )
    assert theory.igr_rate(0.1, net.n_params) == pytest.approx(0.1 * net.n_params / 4)
    assert theory.igr_regularizer(net, theta, X, y) == pytest.approx(g @ g / net.n_params)


@pytest.mark.parametrize("batch", [1, 3])
def test_sampling_noise_prediction_matches_simulation_on_vector_output(batch):
    """Linear model with two outputs: the linearised recursion is exact, so the prediction with
    sampling noise must match the simulated stationary loss within the statistical error."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, 3))
    net = ir.MLP([3, 2], bias=False)
    w_star = rng.standard_normal(net.n_params)
    y = net.predict(w_star, X)
    lr, sigma, R = 0.1, 0.2, 32
    pred = theory.ou_prediction(net, w_star, X, lr, sigma, batch_size=batch, sampling_noise=True)
    plain = theory.ou_prediction(net, w_star, X, lr, sigma, batch_size=batch)
    res = ir.simulate(
        net,
        w_star,
        X,
        y,
        ir.LabelNoiseSGD(lr=lr, sigma=sigma, batch_size=batch),
        steps=40_000,
        record_every=5,
        seed=2,
        replicas=R,
        progress=False,
    )
    per = res.trace["loss"][:, res.steps > 2_000].mean(axis=1)
    se = per.std(ddof=1) / np.sqrt(R)
    assert se < 0.03 * pred.loss
    assert abs(per.mean() - pred.loss) < 4 * se, (per.mean(), pred.loss, plain.loss, se)
    # ... and the plain Lyapunov form, which leaves the sampling noise out, is visibly off here.
    assert abs(per.mean() - plain.loss) > 4 * se
