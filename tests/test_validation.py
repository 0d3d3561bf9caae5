"""Bad input raises a clear exception that names the argument; never a crash or silent garbage."""

from __future__ import annotations

import numpy as np
import pytest

import implicitreg as ir


@pytest.fixture
def setup():
    net = ir.MLP([2, 5, 1], activation="tanh")
    X = np.random.default_rng(0).standard_normal((6, 2))
    return net, net.init(seed=0), X, X[:, 0] ** 2


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation 'swish'"):
        ir.MLP([1, 3, 1], activation="swish")
    with pytest.raises(ValueError, match="activation"):
        ir.MLP([1, 3, 1], output_activation="gelu")


def test_bad_architecture():
    with pytest.raises(ValueError, match="sizes"):
        ir.MLP([3])
    with pytest.raises(ValueError, match="sizes"):
        ir.MLP([3, 0, 1])
    with pytest.raises(ValueError, match="activation needs 2"):
        ir.MLP([1, 3, 3, 1], activation=["relu"])
    with pytest.raises(ValueError, match="bias needs 2"):
        ir.MLP([1, 3, 1], bias=[True])


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((1, 21))])
def test_theta_shape(setup, bad):
    net, _, X, y = setup
    with pytest.raises(ValueError, match="theta must have shape"):
        ir.loss(net, bad, X, y)


def test_dtypes(setup):
    net, theta, X, y = setup
    with pytest.raises(TypeError, match="theta must be a float64 or float32"):
        ir.loss(net, theta.astype(int), X, y)
    with pytest.raises(TypeError, match="X has dtype float32 but theta has dtype float64"):
        ir.loss(net, theta, X.astype(np.float32), y)
    with pytest.raises(TypeError, match="y has dtype"):
        ir.grad(net, theta, X, y.astype(np.float32))
    with pytest.raises(TypeError, match="X must be a float64 or float32"):
        net.predict(theta, X.astype(np.int64))


@pytest.mark.parametrize("where", ["theta", "X", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(setup, where, value):
    net, theta, X, y = setup
    args = {"theta": theta.copy(), "X": X.copy(), "y": y.copy()}
    args[where].flat[1] = value
    with pytest.raises(ValueError, match=f"{where} contains NaN or inf"):
        ir.loss(net, args["theta"], args["X"], args["y"])
    with pytest.raises(ValueError, match=f"{where} contains NaN or inf"):
        ir.simulate(
            net, args["theta"], args["X"], args["y"], ir.GD(lr=0.1), steps=1, progress=False
        )


def test_shapes(setup):
    net, theta, X, y = setup
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\)"):
        ir.loss(net, theta, X[:, :1], y)
    with pytest.raises(ValueError, match="y must have shape"):
        ir.loss(net, theta, X, y[:-1])
    with pytest.raises(ValueError, match="y must have shape"):
        ir.loss(net, theta, X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="theta must have shape"):
        ir.simulate(
            net,
            np.zeros((3, net.n_params)),
            X,
            y,
            ir.GD(lr=0.1),
            steps=1,
            replicas=2,
            progress=False,
        )


@pytest.mark.parametrize("lr", [0.0, -0.1, np.nan, np.inf])
def test_learning_rate(lr):
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        ir.LabelNoiseSGD(lr=lr, sigma=0.1)
    with pytest.raises(ValueError, match="lr must be"):
        ir.GD(lr=lr)


def test_noise_settings():
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        ir.LabelNoiseSGD(lr=0.1, sigma=-1.0)
    with pytest.raises(ValueError, match="unknown noise 'cauchy'"):
        ir.LabelNoiseSGD(lr=0.1, sigma=0.1, noise="cauchy")
    with pytest.raises(ValueError, match="momentum must be in"):
        ir.SGD(lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        ir.GD(lr=0.1, loss="l1")
    with pytest.raises(ValueError, match="unknown param_noise"):
        ir.GD(lr=0.1, param_noise="levy")
    with pytest.raises(ValueError, match="temperature"):
        ir.GD(lr=0.1, param_noise="langevin", temperature=-1.0)
    with pytest.raises(ValueError, match="egr_mu must be finite and >= 0"):
        ir.GD(lr=0.1, egr_mu=-0.1)
    with pytest.raises(ValueError, match="reg_lambda must be finite and >= 0"):
        ir.GD(lr=0.1, reg_lambda=np.nan)


def test_batch_size(setup):
    net, theta, X, y = setup
    for bad in (0, -2):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            ir.SGD(lr=0.1, batch_size=bad)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        ir.SGD(lr=0.1, batch_size=2.5)
    with pytest.raises(ValueError, match="batch_size 7 exceeds"):
        ir.simulate(
            net,
            theta,
            X,
            y,
            ir.SGD(lr=0.1, batch_size=7, sampling="epochs"),
            steps=1,
            progress=False,
        )


def test_run_settings(setup):
    net, theta, X, y = setup
    dyn = ir.GD(lr=0.1)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        ir.simulate(net, theta, X, y, dyn, steps=-1)
    with pytest.raises(TypeError, match="steps must be an integer"):
        ir.simulate(net, theta, X, y, dyn, steps=1.5)
    with pytest.raises(ValueError, match="record_every must be >= 1"):
        ir.simulate(net, theta, X, y, dyn, steps=10, record_every=0)
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        ir.simulate(net, theta, X, y, dyn, steps=10, replicas=0)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ir.simulate(net, theta, X, y, dyn, steps=10, threads=0)
    with pytest.raises(ValueError, match="unknown record 'accuracy'"):
        ir.simulate(net, theta, X, y, dyn, steps=10, record=("accuracy",))
    with pytest.raises(ValueError, match="needs reference"):
        ir.simulate(net, theta, X, y, dyn, steps=10, record=("distance",))
    with pytest.raises(TypeError, match="dynamics must be"):
        ir.simulate(net, theta, X, y, "sgd", steps=10)
    with pytest.raises(ValueError, match="lr_schedule array must have one entry per step"):
        ir.simulate(net, theta, X, y, ir.GD(lr=0.1, lr_schedule=[0.1, 0.2]), steps=10)
    with pytest.raises(ValueError, match=r"StepDecay\.at"):
        ir.simulate(
            net, theta, X, y, ir.GD(lr=0.1, lr_schedule=ir.StepDecay(at=(0.7, 0.2))), steps=10
        )


def test_normalization_and_init(setup):
    net, theta, X, y = setup
    with pytest.raises(ValueError, match="unknown normalization 'mean_third'"):
        ir.loss(net, theta, X, y, normalization="mean_third")
    with pytest.raises(ValueError, match="unknown scheme 'orthogonal'"):
        net.init(scheme="orthogonal")


def test_flatten_errors(setup):
    net, theta, *_ = setup
    layers = net.unflatten(theta)
    with pytest.raises(ValueError, match="must hold 2"):
        net.flatten(layers[:1])
    with pytest.raises(ValueError, match=r"layers\[0\] W must have shape \(5, 2\)"):
        net.flatten([(layers[0][0].T, layers[0][1]), layers[1]])
    with pytest.raises(ValueError, match=r"layers\[1\] needs a bias"):
        net.flatten([layers[0], (layers[1][0], None)])
