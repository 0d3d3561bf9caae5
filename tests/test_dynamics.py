"""Every update rule of the engine against the step-by-step numpy reference in _reference.py."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import trajectory

import implicitreg as ir

STEPS = 12


def problem(out=1):
    net = ir.MLP([2, 4, out], activation="tanh")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 2))
    y = rng.standard_normal((5, out)) if out > 1 else rng.standard_normal(5)
    return net, net.init(seed=1, scheme="xavier"), X, y


RULES = {
    "gd": ir.GD(lr=0.1),
    "sgd_replacement": ir.SGD(lr=0.1, batch_size=2),
    "sgd_epochs": ir.SGD(lr=0.1, batch_size=2, sampling="epochs"),
    "label_gaussian_b1": ir.LabelNoiseSGD(lr=0.1, sigma=0.3, noise="gaussian"),
    "label_uniform_b3": ir.LabelNoiseSGD(lr=0.1, sigma=0.3, noise="uniform", batch_size=3),
    "label_sign_full": ir.LabelNoiseSGD(lr=0.1, sigma=0.3, noise="sign", batch_size="full"),
    "label_epochs": ir.LabelNoiseSGD(lr=0.1, sigma=0.3, batch_size=2, sampling="epochs"),
    "param_gaussian": ir.GD(lr=0.1, param_noise="gaussian", param_sigma=0.01),
    "langevin": ir.SGD(lr=0.1, batch_size=1, param_noise="langevin", temperature=1e-3),
    "momentum": ir.SGD(lr=0.05, batch_size=2, momentum=0.9),
    "weight_decay": ir.GD(lr=0.1, weight_decay=0.01),
    "step_decay": ir.LabelNoiseSGD(lr=0.1, sigma=0.1, lr_schedule=ir.StepDecay(at=(0.25, 0.5))),
    "piecewise": ir.GD(
        lr=0.1, lr_schedule=ir.Piecewise(boundaries=(3, 7), values=(0.1, 0.2, 0.05))
    ),
    "per_step_lr": ir.GD(lr=0.1, lr_schedule=np.linspace(0.1, 0.01, STEPS)),
    "sum_sq_loss": ir.LabelNoiseSGD(lr=0.02, sigma=0.2, batch_size=2, loss="sum_sq"),
    "mean_quarter_loss": ir.SGD(lr=0.1, batch_size=3, loss="mean_quarter"),
    "egr_gd": ir.GD(lr=0.1, egr_mu=0.05),
    "egr_label_noise": ir.LabelNoiseSGD(lr=0.1, sigma=0.3, batch_size=2, egr_mu=0.1),
    "explicit_reg_gd": ir.GD(lr=0.1, reg_lambda=0.01),
    "explicit_reg_sgd": ir.LabelNoiseSGD(
        lr=0.1, sigma=0.3, batch_size=3, reg_lambda=0.02, egr_mu=0.05, momentum=0.5
    ),
}


@pytest.mark.parametrize("name", RULES)
def test_rule_matches_reference(name):
    dyn = RULES[name]
    net, theta, X, y = problem()
    res = ir.simulate(
        net, theta, X, y, dyn, steps=STEPS, seed=11, replicas=2, snapshot_every=1, progress=False
    )
    for replica in range(2):
        ref = trajectory(net, theta, X, y, dyn, STEPS, seed=11, replica=replica)
        np.testing.assert_allclose(res.snapshots[:, replica], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", RULES)
def test_rule_matches_reference_over_unrecorded_steps(name):
    """No record between the start and the end: the steps run as one block, their random numbers
    computed ahead (StepStreams), with the same result."""
    net, theta, X, y = problem()
    res = ir.simulate(net, theta, X, y, RULES[name], steps=STEPS, seed=11, progress=False)
    ref = trajectory(net, theta, X, y, RULES[name], STEPS, seed=11)
    np.testing.assert_allclose(res.theta[0], ref[-1], rtol=1e-12, atol=1e-14)


def test_vector_output_label_noise_matches_reference():
    net, theta, X, y = problem(out=3)
    dyn = ir.LabelNoiseSGD(lr=0.1, sigma=0.3, batch_size=2)
    res = ir.simulate(net, theta, X, y, dyn, steps=STEPS, seed=2, snapshot_every=1, progress=False)
    ref = trajectory(net, theta, X, y, dyn, STEPS, seed=2)
    np.testing.assert_allclose(res.snapshots[:, 0], ref, rtol=1e-12, atol=1e-14)


def test_epochs_visit_every_sample_once_per_epoch():
    from _reference import batch_indices

    dyn = ir.SGD(lr=0.1, batch_size=3, sampling="epochs")
    seen = [i for s in range(20) for i in batch_indices(dyn, 4, 0, s, 6)]
    for e in range(10):
        assert sorted(seen[6 * e : 6 * e + 6]) == list(range(6))


def test_float32_follows_float64():
    net, theta, X, y = problem()
    dyn = ir.LabelNoiseSGD(lr=0.1, sigma=0.3, batch_size=2)
    r64 = ir.simulate(net, theta, X, y, dyn, steps=50, seed=3, progress=False)
    f = np.float32
    r32 = ir.simulate(
        net, theta.astype(f), X.astype(f), y.astype(f), dyn, steps=50, seed=3, progress=False
    )
    assert r32.theta.dtype == np.float32
    np.testing.assert_allclose(r32.theta, r64.theta, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softplus", "identity"])
@pytest.mark.parametrize(
    "width,bias", [(1, True), (7, True), (8, False), (8, (True, False)), (100, True)]
)
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_scalar_two_layer_nets_follow_reference(activation, width, bias, batch_size):
    """1 -> m -> 1 nets take a fused step (MLP::scalar_two_layer_step). On one sample it does the
    operations of the layer-by-layer gradient, so the trajectory is the reference's bit for bit;
    on a batch it sums over the samples in another order: equal to round-off. Snapshots only
    every 40 steps: the steps' random numbers come from blocks computed ahead (StepStreams)."""
    net = ir.MLP([1, width, 1], activation=activation, bias=bias)
    x = np.linspace(-1, 1, 10)[:, None]
    y = np.sin(3 * x[:, 0])
    theta = net.init(seed=2)
    dyn = ir.LabelNoiseSGD(lr=0.01, sigma=0.1, noise="gaussian", batch_size=batch_size)
    res = ir.simulate(net, theta, x, y, dyn, steps=120, seed=5, snapshot_every=40, progress=False)
    ref = trajectory(net, theta, x, y, dyn, 120, seed=5)
    if batch_size == 1:
        np.testing.assert_array_equal(res.snapshots[:, 0], ref[::40])
    else:  # 120 steps of a contraction: the round-off of each stays of its order
        np.testing.assert_allclose(res.snapshots[:, 0], ref[::40], rtol=1e-12, atol=1e-13)
    f = np.float32
    res32 = ir.simulate(
        net, theta.astype(f), x.astype(f), y.astype(f), dyn, steps=120, seed=5, progress=False
    )
    np.testing.assert_allclose(res32.theta[0], ref[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "dyn",
    [
        ir.LabelNoiseSGD(lr=0.01, sigma=0.5, noise="gaussian", batch_size=1),
        ir.SGD(lr=0.01, batch_size=1, lr_schedule=ir.StepDecay(at=(0.5,))),
    ],
    ids=["label_noise", "plain_step_decay"],
)
def test_one_sample_steps_follow_reference_to_the_last_bit(dyn):
    """One sample per step (Simulation::one_sample_steps reads the index and the label noise from
    the blocks computed ahead): 1,000 steps, so that ziggurat draws outside their layer's core
    (1% of draws; they take the stream) occur too, the reference's trajectory bit for bit."""
    net = ir.MLP([1, 100, 1], activation="relu")
    x = np.linspace(-1, 1, 10)[:, None]
    y = np.sin(3 * x[:, 0])
    theta = net.init(seed=0)
    res = ir.simulate(net, theta, x, y, dyn, steps=1000, seed=9, snapshot_every=250, progress=False)
    ref = trajectory(net, theta, x, y, dyn, 1000, seed=9)
    np.testing.assert_array_equal(res.snapshots[:, 0], ref[::250])
