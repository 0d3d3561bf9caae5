"""Sweeps: grids, tasks, the local and Dask backends, the store (exactly once, resume), the CLI."""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import implicitreg as ir
from implicitreg._sweep_exec import plan, to_record
from implicitreg._sweep_store import Store

xr = pytest.importorskip("xarray")
pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

sweep_module = importlib.import_module("implicitreg.sweep")  # ir.sweep is the function
# Worker processes cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STEPS, EVERY, REPLICAS, SIGMA = 60, 20, 2, 0.5
GRID = {"lr": [0.01, 0.02], "seed": [0, 1, 2]}


def problem(width=4):
    net = ir.MLP([1, width, 1])
    X = np.linspace(-1, 1, 6)[:, None]
    return net, net.init(seed=0), X, np.sin(3 * X[:, 0])


TASK = ir.SimulateTask(
    problem, ir.LabelNoiseSGD, sigma=SIGMA, steps=STEPS, record_every=EVERY, replicas=REPLICAS
)


def direct(lr, seed, width=4):
    return ir.simulate(
        *problem(width),
        ir.LabelNoiseSGD(lr, SIGMA),
        steps=STEPS,
        record_every=EVERY,
        replicas=REPLICAS,
        seed=seed,
    )


def logged(log, marker=None, fail=None, **config):
    """TASK, leaving one file per execution in ``log``; the first execution (over all workers)
    to create ``marker`` kills its own process; while the file ``fail`` exists, seed 2 fails."""
    Path(log, f"{config['lr']}-{config['seed']}-{uuid.uuid4().hex}").touch()
    if marker is not None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            os._exit(1)
        except FileExistsError:
            pass
    if fail is not None and os.path.exists(fail) and config["seed"] == 2:
        raise ValueError("planned failure")
    return TASK(**config)


def executions(log) -> dict:
    counts = {}
    for f in os.listdir(log):
        lr, seed, _ = f.split("-")
        counts[float(lr), int(seed)] = counts.get((float(lr), int(seed)), 0) + 1
    return counts


def check_against_direct(ds):
    assert ds["loss"].dims == ("lr", "seed", "replica", "record")
    assert list(ds["step"].values) == list(range(0, STEPS + 1, EVERY))
    for lr in GRID["lr"]:
        for seed in GRID["seed"]:
            run = direct(lr, seed)
            cell = ds.sel(lr=lr, seed=seed)
            np.testing.assert_array_equal(cell["loss"].values, run.trace["loss"])
            np.testing.assert_array_equal(cell["regularizer"].values, run.trace["regularizer"])
            np.testing.assert_array_equal(cell["theta"].values, run.theta)


@pytest.fixture(scope="module")
def local_result(tmp_path_factory):
    store = tmp_path_factory.mktemp("local") / "sweep.zarr"
    return store, ir.sweep(TASK, GRID, store=store, workers=2)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


# -- pieces ---------------------------------------------------------------------------------------
def test_grid_expansion_and_stable_keys():
    g = sweep_module.expand_grid({"lr": np.array([0.1, 0.2]), "act": ["relu", "tanh"], "k": [1]})
    assert g.dims == ("lr", "act", "k") and g.shape == (2, 2, 1)
    assert g.configs[1] == {"lr": 0.1, "act": "tanh", "k": 1}
    assert type(g.configs[0]["lr"]) is float  # numpy scalars become JSON numbers
    key = sweep_module.config_key
    assert g.keys[1] == key({"k": 1, "act": "tanh", "lr": 0.1})  # order does not matter
    assert key({"lr": 0.1}) == key({"lr": np.float64(0.1)}) != key({"lr": 0.1000001})
    assert key({"lr": 0.1}) == "9c9ba942d8bb6213cd855c3e8ddfeb66"  # fixed across versions
    lst = sweep_module.expand_grid(
        [{"lr": 0.1, "sizes": [1, 4, 1]}, {"lr": 0.2, "sizes": [1, 8, 1]}]
    )
    assert lst.dims == ("config",) and list(lst.coords["sizes"][1]) == ["[1,4,1]", "[1,8,1]"]
    for bad, err in [
        ({"lr": []}, ValueError),
        ({"lr": 0.1}, TypeError),
        ({"lr": [1, 1]}, ValueError),
        ([{"a": 1}, {"b": 1}], ValueError),
        ({"threads": [1]}, ValueError),
        ({"lr": [object()]}, TypeError),
        ([{"a": 1}, {"a": 1}], ValueError),
    ]:
        with pytest.raises(err):
            sweep_module.expand_grid(bad)
    with pytest.raises(ValueError, match="NaN"):
        key({"lr": float("nan")})


def test_thread_plan_never_oversubscribes():
    for cores in (1, 2, 7, 64):
        for n in (1, 3, 100):
            workers, threads = plan(n, None, None, cores)
            assert workers * threads <= cores and workers <= max(n, 1)
        if cores >= 4:
            assert plan(100, None, 4, cores)[0] * 4 <= cores
    assert plan(100, None, None, 8) == (8, 1) and plan(2, None, None, 8) == (2, 4)
    with pytest.warns(RuntimeWarning, match="oversubscribe"):
        plan(4, 4, 4, 8)


def test_simulate_task_routes_keys_and_checks_them_early():
    run = TASK(lr=0.02, seed=1)
    np.testing.assert_array_equal(run.theta, direct(0.02, 1).theta)
    wide = TASK(lr=0.02, seed=1, width=8)  # width goes to problem(); lr to LabelNoiseSGD
    assert wide.theta.shape == (REPLICAS, problem(8)[0].n_params)
    fixed = ir.SimulateTask(
        model=problem()[0],
        theta=problem()[1],
        X=problem()[2],
        y=problem()[3],
        dynamics=lambda lr: ir.LabelNoiseSGD(lr, SIGMA),
        steps=STEPS,
        record_every=EVERY,
        replicas=REPLICAS,
    )
    np.testing.assert_array_equal(fixed(lr=0.02, seed=1).theta, run.theta)
    with pytest.raises(TypeError, match="no part of the task takes 'colour'"):
        fixed.check({"lr": 0.1, "colour": 1})
    with pytest.raises(TypeError, match=r"needs \['lr'\]"):
        fixed.check({})
    with pytest.raises(TypeError, match="fixed in the task"):
        TASK.check({"lr": 0.1, "steps": 5})
    with pytest.raises(TypeError, match="no part"):
        ir.sweep(fixed, {"lr": [0.1], "colour": [1]})  # before any process starts
    with pytest.raises(TypeError, match="cannot be called"):
        ir.sweep(lambda a: {}, {"b": [1]})
    assert sweep_module._resolve("implicitreg.dynamics:LabelNoiseSGD", "x") is ir.LabelNoiseSGD
    assert sweep_module._resolve("GD", "x") is ir.GD


def test_models_and_tasks_pickle_without_compiled_objects():
    net = problem()[0]
    net.predict(net.init(), np.zeros((1, 1)))  # fills the cache of compiled objects
    back = pickle.loads(pickle.dumps(net))
    assert back == net and back._cores == {}
    np.testing.assert_array_equal(back.init(), net.init())
    task = cloudpickle.loads(cloudpickle.dumps(TASK))
    np.testing.assert_array_equal(task(lr=0.01, seed=0).theta, direct(0.01, 0).theta)


def test_dict_results_with_named_dims():
    rec = to_record(
        {
            "a": np.zeros((2, 3)),
            "b": (("replica",), [1, 2]),
            "c": 1.5,
            "d": ("replica", [3, 4]),
            "e": (1.0, 2.0),
        }
    )
    assert rec["vars"]["a"][0] == ("a_dim_0", "a_dim_1") and rec["vars"]["b"][0] == ("replica",)
    assert rec["vars"]["c"][0] == () and rec["vars"]["d"][0] == ("replica",)
    assert rec["vars"]["e"][0] == ("e_dim_0",)
    summary = {
        "fit": {"slope": 1.5, "ok": True},
        "name": "drift",
        "ragged": [[1, 2], [np.int64(3)]],
    }
    rec = to_record(summary)["vars"]
    assert rec["fit.slope"] == ((), 1.5) and rec["name"][1] == "drift"
    assert rec["ragged"][1] == "[[1, 2], [3]]"  # not an array: kept as JSON text
    with pytest.raises(TypeError, match="SimulationResult or a dict"):
        to_record([1, 2])


# -- backends -------------------------------------------------------------------------------------
def test_local_backend_matches_direct_runs_and_writes_the_store(local_result):
    store, ds = local_result
    check_against_direct(ds)
    assert ds["diverged_at"].dtype == np.int64 and (ds["diverged_at"] == -1).all()
    assert sorted(os.listdir(store / "runs")) == sorted(
        [*ds["key"].values.ravel().tolist(), "zarr.json"]
    )
    run = xr.open_zarr(store / "runs" / ds["key"].values[1, 2], consolidated=False).load()
    np.testing.assert_array_equal(run["loss"].values, direct(0.02, 2).trace["loss"])
    assert '"lr":0.02' in run.attrs["config"]
    xr.testing.assert_identical(xr.open_zarr(store, group="dataset", consolidated=False).load(), ds)
    xr.testing.assert_identical(ir.open_sweep(store), ds)


def test_dask_local_cluster_gives_the_local_results(local_result, client, tmp_path):
    ds = ir.sweep(TASK, GRID, backend="dask", client=client, store=tmp_path / "dask.zarr")
    xr.testing.assert_identical(ds, local_result[1])
    ds = ir.sweep(TASK, GRID, backend="dask", workers=1)  # a LocalCluster of its own, no store
    xr.testing.assert_identical(ds, local_result[1])


def test_dask_worker_killed_mid_sweep_every_result_exactly_once(local_result, client, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    task = functools.partial(logged, str(log), marker=str(tmp_path / "killed"))
    ds = ir.sweep(task, GRID, backend="dask", client=client, store=tmp_path / "s.zarr")
    assert (tmp_path / "killed").exists()  # one worker died in its first task
    counts = executions(log)
    assert sorted(counts.values()) == [1] * 5 + [2]  # only the lost task ran again
    assert len(os.listdir(tmp_path / "s.zarr" / "runs")) == 6 + 1  # each result once (+ zarr.json)
    xr.testing.assert_equal(ds, local_result[1])
    # Nothing finished runs twice: the same sweep again computes nothing.
    ir.sweep(task, GRID, backend="dask", client=client, store=tmp_path / "s.zarr")
    assert executions(log) == counts


def test_dask_task_errors(client):
    def bad(lr):
        raise ValueError(f"bad lr {lr}")

    with pytest.raises(RuntimeError, match="failed for") as info:
        ir.sweep(bad, {"lr": [0.1]}, backend="dask", client=client, retries=0)
    assert "bad lr 0.1" in str(info.value.__cause__)
    with pytest.raises(ValueError, match="workers="):
        ir.sweep(TASK, GRID, backend="dask", client=client, workers=2)
    with pytest.raises(ValueError, match="client= needs"):
        ir.sweep(TASK, GRID, client=client)


def test_local_worker_death_rebuilds_the_pool(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    task = functools.partial(logged, str(log), marker=str(tmp_path / "killed"))
    grid = {"lr": [0.01], "seed": [0, 1]}
    with pytest.warns(RuntimeWarning, match="worker process died"):
        ds = ir.sweep(task, grid, workers=2, store=tmp_path / "s.zarr")
    assert sum(executions(log).values()) >= 3
    np.testing.assert_array_equal(ds["theta"].values[0, 1], direct(0.01, 1).theta)


# -- store: resume, exactly once ------------------------------------------------------------------
def test_partly_filled_store_resumes(local_result, tmp_path):
    log, fail, store = tmp_path / "log", tmp_path / "fail", tmp_path / "s.zarr"
    log.mkdir()
    fail.touch()
    task = functools.partial(logged, str(log), fail=str(fail))
    with pytest.warns(RuntimeWarning, match="2 of 6 configurations failed"):
        part = ir.sweep(task, GRID, store=store, errors="warn", workers=2)
    assert np.isnan(part["loss"].sel(seed=2)).all() and not np.isnan(part["loss"].sel(seed=1)).any()
    assert part["diverged_at"].dtype == np.float64  # padded with NaN
    assert len(Store(store).done()) == 4
    (store / "staging" / "deadbeef-0123").mkdir()  # debris of a killed writer
    fail.unlink()
    full = ir.sweep(task, GRID, store=store, workers=2)
    assert executions(log) == {(lr, s): 1 + (s == 2) for lr in GRID["lr"] for s in GRID["seed"]}
    assert not (store / "staging" / "deadbeef-0123").exists()
    xr.testing.assert_equal(full, local_result[1])
    # The store belongs to its task, and to one sweep at a time.
    with pytest.raises(ValueError, match="different task"):
        ir.sweep(TASK, GRID, store=store)
    locked = Store(store)
    locked.open(locked.meta()["task"], locked.meta()["grid"])
    try:
        with pytest.raises(RuntimeError, match="another sweep"):
            ir.sweep(task, GRID, store=store)
    finally:
        locked.close()


def test_user_function_list_grid_padding_and_threads(tmp_path):
    def stats(n, scale, threads):
        blas = int(os.environ["OPENBLAS_NUM_THREADS"])  # set before the worker started
        return {
            "x": np.arange(n) * scale,
            "threads": threads,
            "blas": blas,
            "pair": (("two",), [n, -n]),
            "fit": {"label": f"n{n}"},  # nested (a JSON summary): variable "fit.label"
        }

    grid = [{"n": 2, "scale": 1.0}, {"n": 3, "scale": 0.5}]
    ds = ir.sweep(stats, grid, workers=2, store=tmp_path / "s.zarr")
    assert ds["x"].dims == ("config", "x_dim_0") and list(ds["n"].values) == [2, 3]
    np.testing.assert_array_equal(ds["x"].values, [[0, 1, np.nan], [0, 0.5, 1]])
    assert ds["pair"].dtype == np.int64 and ds["pair"].values.tolist() == [[2, -2], [3, -3]]
    assert ir.open_sweep(tmp_path / "s.zarr")["fit.label"].values.tolist() == ["n2", "n3"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert (ds["threads"] * 2 <= max(cores, 2)).all() and (ds["blas"] == 1).all()


def test_command_line_runs_a_toml_sweep(tmp_path, monkeypatch, capsys):
    from implicitreg.__main__ import main

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "study_problem.py").write_text(
        textwrap.dedent("""
        import numpy as np, implicitreg as ir

        def problem(width):
            net = ir.MLP([1, width, 1])
            X = np.linspace(-1, 1, 6)[:, None]
            return net, net.init(seed=0), X, np.sin(3 * X[:, 0])
    """)
    )
    (tmp_path / "study.toml").write_text(
        textwrap.dedent(f"""
        [task]
        problem = "study_problem:problem"
        dynamics = "LabelNoiseSGD"
        sigma = {SIGMA}
        steps = {STEPS}
        record_every = {EVERY}
        replicas = {REPLICAS}

        [grid]
        lr = [0.02]
        width = [4, 8]
        seed = [1]

        [sweep]
        store = "out.zarr"
        workers = 2
    """)
    )
    assert main(["sweep", str(tmp_path / "study.toml"), "--no-progress"]) == 0
    monkeypatch.delitem(sys.modules, "study_problem", raising=False)
    assert "out.zarr" in capsys.readouterr().out
    ds = ir.open_sweep(tmp_path / "out.zarr")
    assert ds["theta"].sizes["param"] == problem(8)[0].n_params  # width 4 padded with NaN
    np.testing.assert_array_equal(
        ds["loss"].sel(lr=0.02, width=4, seed=1), direct(0.02, 1).trace["loss"]
    )
