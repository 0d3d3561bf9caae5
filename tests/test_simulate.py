"""The run engine: shapes, records, reproducibility, thread-count invariance, moments, divergence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import implicitreg as ir


def problem():
    net = ir.MLP([1, 16, 1], activation="relu")
    X = np.linspace(-1, 1, 10)[:, None]
    return net, net.init(seed=0), X, np.sin(3 * X[:, 0])


def test_result_shapes_and_record_steps():
    net, theta, X, y = problem()
    res = ir.simulate(
        net,
        theta,
        X,
        y,
        ir.LabelNoiseSGD(lr=0.01, sigma=0.1),
        steps=1000,
        record_every=100,
        replicas=3,
        progress=False,
    )
    assert res.theta.shape == (3, net.n_params)
    assert res.trace["loss"].shape == (3, 11) and res.trace["regularizer"].shape == (3, 11)
    np.testing.assert_array_equal(res.steps, np.arange(0, 1001, 100))
    assert (res.diverged_at == -1).all() and res.completed_steps == 1000
    # Step 0 is the start, exactly.
    np.testing.assert_allclose(res.trace["loss"][:, 0], ir.loss(net, theta, X, y), rtol=1e-14)


def test_recorded_scalars_equal_direct_evaluation():
    net, theta, X, y = problem()
    ref = net.init(seed=5)
    res = ir.simulate(
        net,
        theta,
        X,
        y,
        ir.LabelNoiseSGD(lr=0.01, sigma=0.3, batch_size=2),
        steps=60,
        record_every=20,
        snapshot_every=20,
        reference=ref,
        seed=4,
        record=("loss", "regularizer", "grad_norm2", "param_norm", "distance"),
        probes=np.array([[-0.3], [0.7]]),
        progress=False,
    )
    for k, th in enumerate(res.snapshots[:, 0]):
        direct = {
            "loss": ir.loss(net, th, X, y),
            "regularizer": ir.regularizer(net, th, X),
            "grad_norm2": float(np.sum(ir.grad(net, th, X, y) ** 2)),
            "param_norm": float(np.linalg.norm(th)),
            "distance": float(np.linalg.norm(th - ref)),
        }
        for name, value in direct.items():
            np.testing.assert_allclose(res.trace[name][0, k], value, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(
            res.probe_outputs[k, 0], net.predict(th, np.array([[-0.3], [0.7]])), rtol=1e-13
        )
    np.testing.assert_array_equal(res.probe_steps, res.steps)


def test_same_seed_same_trajectory_other_seed_differs():
    net, theta, X, y = problem()
    dyn = ir.LabelNoiseSGD(lr=0.01, sigma=0.1)
    a = ir.simulate(net, theta, X, y, dyn, steps=2000, seed=1, replicas=2, progress=False)
    b = ir.simulate(net, theta, X, y, dyn, steps=2000, seed=1, replicas=2, progress=False)
    c = ir.simulate(net, theta, X, y, dyn, steps=2000, seed=2, replicas=2, progress=False)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.trace["loss"], b.trace["loss"])
    assert not np.array_equal(a.theta, c.theta)
    assert not np.array_equal(a.theta[0], a.theta[1])  # replicas have their own streams


@pytest.mark.parametrize(
    "dyn",
    [
        ir.LabelNoiseSGD(lr=0.01, sigma=0.1, batch_size=3, momentum=0.5),
        ir.SGD(lr=0.01, batch_size=2, sampling="epochs", param_noise="langevin", temperature=1e-4),
    ],
)
def test_thread_count_invariance(dyn):
    net, theta, X, y = problem()
    kw = {
        "steps": 3000,
        "record_every": 500,
        "seed": 9,
        "replicas": 7,
        "progress": False,
        "moments": True,
    }
    one = ir.simulate(net, theta, X, y, dyn, threads=1, **kw)
    two = ir.simulate(net, theta, X, y, dyn, threads=2, **kw)
    three = ir.simulate(net, theta, X, y, dyn, threads=3, **kw)
    for other in (two, three):
        np.testing.assert_array_equal(one.theta, other.theta)
        np.testing.assert_array_equal(one.trace["regularizer"], other.trace["regularizer"])
        np.testing.assert_array_equal(one.moments.cov, other.moments.cov)


def test_wide_layers_same_on_any_thread_count():
    """Layers wide enough for blocked GEMMs whose packing buffers (kept per thread, see
    gemm_buffers.hpp) pass Eigen's 128 KB stack limit, with the second-order EGR step: every
    replica's trajectory is the same on 1 and 2 threads, and finite."""
    rng = np.random.default_rng(4)
    net = ir.MLP([6, 200, 200, 1], activation="tanh")
    theta = net.init(seed=1)
    X = rng.standard_normal((48, 6))
    y = np.sin(X[:, 0])
    dyn = ir.LabelNoiseSGD(lr=0.01, sigma=0.1, batch_size=48, egr_mu=0.01)
    kw = {"steps": 6, "record_every": 3, "seed": 2, "replicas": 3, "progress": False}
    one = ir.simulate(net, theta, X, y, dyn, threads=1, **kw)
    two = ir.simulate(net, theta, X, y, dyn, threads=2, **kw)
    assert np.all(np.isfinite(one.theta))
    np.testing.assert_array_equal(one.theta, two.theta)
    np.testing.assert_array_equal(one.trace["loss"], two.trace["loss"])


def test_replica_results_do_not_depend_on_replica_count():
    net, theta, X, y = problem()
    dyn = ir.LabelNoiseSGD(lr=0.01, sigma=0.1)
    few = ir.simulate(net, theta, X, y, dyn, steps=500, seed=3, replicas=2, progress=False)
    many = ir.simulate(net, theta, X, y, dyn, steps=500, seed=3, replicas=5, progress=False)
    np.testing.assert_array_equal(few.theta, many.theta[:2])


def test_per_replica_start():
    net, _, X, y = problem()
    starts = np.stack([net.init(seed=s) for s in range(3)])
    res = ir.simulate(
        net, starts, X, y, ir.GD(lr=0.01), steps=10, record_every=10, replicas=3, progress=False
    )
    for r in range(3):
        single = ir.simulate(net, starts[r], X, y, ir.GD(lr=0.01), steps=10, progress=False)
        np.testing.assert_array_equal(res.theta[r], single.theta[0])


@pytest.mark.parametrize("diagonal", [False, True])
def test_moments_match_numpy_on_snapshots(diagonal):
    net, theta, X, y = problem()
    burn = 30
    res = ir.simulate(
        net,
        theta,
        X,
        y,
        ir.LabelNoiseSGD(lr=0.05, sigma=0.5),
        steps=200,
        snapshot_every=1,
        moments="diagonal" if diagonal else True,
        burn_in=burn,
        replicas=2,
        progress=False,
    )
    for r in range(2):
        samples = res.snapshots[burn + 1 :, r]
        assert res.moments.count[r] == len(samples)
        np.testing.assert_allclose(
            res.moments.mean[r], samples.mean(axis=0), rtol=1e-12, atol=1e-14
        )
        cov = np.cov(samples, rowvar=False)
        want = np.diag(cov) if diagonal else cov
        np.testing.assert_allclose(res.moments.cov[r], want, rtol=1e-9, atol=1e-16)


def test_divergence_stops_one_replica_and_keeps_records():
    net = ir.MLP([1, 4, 1], activation="identity")  # deep linear: diverges, cannot catapult
    X = np.linspace(-1, 1, 10)[:, None]
    y, theta = np.sin(3 * X[:, 0]), net.init(seed=0, scheme="xavier")
    starts = np.stack([theta, theta * 30.0])  # the second replica starts far too sharp
    with pytest.warns(ir.DivergenceWarning, match="1 of 2 replicas diverged"):
        res = ir.simulate(
            net, starts, X, y, ir.GD(lr=0.1), steps=400, record_every=1, replicas=2, progress=False
        )
    assert res.diverged_at[0] == -1 and res.diverged_at[1] > 0
    k = res.diverged_at[1]
    assert np.isfinite(res.trace["loss"][1, :k]).all()
    assert np.isnan(res.trace["loss"][1, k + 1 :]).all()  # record k holds the offending value
    assert np.isfinite(res.trace["loss"][0]).all()


def test_divergence_bound():
    net, theta, X, y = problem()
    bound = 2 * ir.loss(net, theta, X, y)
    with pytest.warns(ir.DivergenceWarning):
        res = ir.simulate(
            net,
            theta,
            X,
            y,
            ir.LabelNoiseSGD(lr=0.01, sigma=20.0),
            steps=2000,
            record_every=1,
            divergence_bound=bound,
            progress=False,
        )
    k = res.diverged_at[0]
    assert 0 < k < 2000
    assert (res.trace["loss"][0, :k] <= bound).all() and res.trace["loss"][0, k] > bound
    assert np.isnan(res.trace["loss"][0, k + 1 :]).all()


def test_large_step_warning():
    net, theta, X, y = problem()
    with pytest.warns(ir.DivergenceWarning, match="small-step regime"):
        ir.simulate(
            net,
            theta,
            X,
            y,
            ir.LabelNoiseSGD(lr=5.0, sigma=0.1),
            steps=1,
            divergence_bound=1e300,
            progress=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ir.simulate(net, theta, X, y, ir.LabelNoiseSGD(lr=1e-3, sigma=0.1), steps=1, progress=False)


def test_save_and_load_round_trip(tmp_path):
    net, theta, X, y = problem()
    res = ir.simulate(
        net,
        theta,
        X,
        y,
        ir.LabelNoiseSGD(lr=0.01, sigma=0.1),
        steps=100,
        record_every=10,
        snapshot_every=50,
        moments=True,
        replicas=2,
        progress=False,
    )
    res.save(tmp_path / "run.npz")
    back = ir.load(tmp_path / "run.npz")
    np.testing.assert_array_equal(back.theta, res.theta)
    np.testing.assert_array_equal(back.trace["loss"], res.trace["loss"])
    np.testing.assert_array_equal(back.snapshots, res.snapshots)
    np.testing.assert_array_equal(back.moments.cov, res.moments.cov)
    assert back.config == res.config and back.config["version"] == ir.__version__


def test_dataframe_exports():
    pd = pytest.importorskip("pandas")
    net, theta, X, y = problem()
    res = ir.simulate(
        net, theta, X, y, ir.GD(lr=0.01), steps=10, record_every=5, replicas=2, progress=False
    )
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 2 * 3
    np.testing.assert_array_equal(df["loss"].to_numpy(), res.trace["loss"].ravel())


def test_zero_steps():
    net, theta, X, y = problem()
    res = ir.simulate(net, theta, X, y, ir.GD(lr=0.01), steps=0, progress=False)
    np.testing.assert_array_equal(res.theta[0], theta)
    assert res.trace["loss"].shape == (1, 1)


@pytest.mark.parametrize(
    "dyn",
    [
        ir.GD(lr=0.1),
        ir.SGD(lr=0.1, batch_size=3, momentum=0.5),
        ir.LabelNoiseSGD(
            lr=0.05, sigma=0.5, lr_schedule=ir.Piecewise(boundaries=(30,), values=(0.05, 0.1))
        ),
        ir.SGD(lr=0.1, batch_size=4, sampling="epochs", param_noise="gaussian", param_sigma=1e-3),
    ],
    ids=["gd", "momentum", "schedule", "epochs-param-noise"],
)
def test_divergence_step_is_exact_between_records(dyn):
    """Parameters are checked once per block of steps between records; a divergence inside a
    block is replayed to its exact step: the same step and state as a check after every step."""
    net = ir.MLP([1, 4, 1], activation="identity")
    X = np.linspace(-1, 1, 10)[:, None]
    y, theta = np.sin(3 * X[:, 0]), net.init(seed=0, scheme="xavier")
    starts = np.stack([theta, theta * 30.0])
    runs = []
    for snapshot_every in (1, 0):  # snapshots at every step: a check at every step
        with pytest.warns(ir.DivergenceWarning):
            runs.append(
                ir.simulate(
                    net,
                    starts,
                    X,
                    y,
                    dyn,
                    steps=1000,
                    record=(),
                    replicas=2,
                    seed=3,
                    snapshot_every=snapshot_every,
                    progress=False,
                    check_step_size=False,
                )
            )
    a, b = runs
    assert a.diverged_at[1] > 1 and (a.diverged_at == b.diverged_at).all()
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.isfinite(b.theta[1]).all() and np.isfinite(b.theta[0]).all()
