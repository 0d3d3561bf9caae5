"""implicitreg itself: one ``ir.simulate`` call runs all the steps of a repeat in C++.

The time of a repeat is that of the whole ``simulate`` call (setup and the two loss records
included) divided by its number of steps. Each call continues from the previous call's weights,
with seed 0, 1, 2, ... so that the noise stream is not replayed.
"""

from __future__ import annotations

import numpy as np
import peers_numpy
import workloads
from harness import Runner, measure, options

import implicitreg as ir


def _model(wl: workloads.Workload):
    """The workload's model and initial theta: an MLP, or for W3 ``ir.MatrixSensing(d)`` from
    U0 (its X holds the A_i as rows ``(n, d*d)``)."""
    if wl.name == "W3":
        U0 = wl.extra["U0"]
        model = ir.MatrixSensing(U0.shape[0], U0.shape[1])
        return model, model.flatten(U0)
    net = ir.MLP(wl.sizes, activation=wl.activation)
    return net, net.flatten([(W, b) for W, b in wl.layers])


def mlp_runner(
    wl: workloads.Workload, threads: int = 1, trace: list | None = None, replicas: int = 1
) -> Runner:
    """``trace`` (if given) receives the (first, last) loss record of every simulate call.

    W5 adds ``egr_mu`` (the EGR term, fused in the C++ step). With ``replicas`` > 1 every call
    runs that many independent chains (the loss is that of the first).
    """
    net, theta = _model(wl)
    dyn = ir.LabelNoiseSGD(
        lr=wl.lr,
        sigma=wl.sigma,
        noise="gaussian",
        batch_size=wl.batch_size,
        egr_mu=wl.extra.get("mu", 0.0),
    )
    X, y = wl.X, wl.y
    state = {"theta": np.tile(theta, (replicas, 1)), "seed": 0}
    trace = [] if trace is None else trace

    def run(n: int) -> None:
        res = ir.simulate(
            net,
            state["theta"],
            X,
            y,
            dyn,
            steps=n,
            record_every=n,
            record=("loss",),
            seed=state["seed"],
            replicas=replicas,
            threads=threads,
            progress=False,
            check_step_size=False,  # a one-time setup check, not part of a step
        )
        state["theta"] = np.ascontiguousarray(res.theta)
        state["seed"] += 1
        trace.append((float(res.trace["loss"][0, 0]), float(res.trace["loss"][0, -1])))

    def loss() -> float:
        return float(ir.loss(net, state["theta"][0], X, y))

    return Runner(run, loss)


def _time(name: str, dtype: str, threads: int = 1, **kw) -> dict:
    wl = workloads.get(name, dtype)
    if name in ("W1", "W1b"):  # a simulate call costs more than a step: probe many steps
        kw["probe_steps"] = max(kw.get("probe_steps") or 0, 10_000)
    trace: list[tuple[float, float]] = []
    res = measure(mlp_runner(wl, threads, trace), **options(name, **kw))
    res["trace_loss"] = [trace[0][0], trace[-1][1]]  # res.trace["loss"]: first and last record
    return res


def time_implicitreg_W1(dtype: str = "float64", **kw) -> dict:
    return _time("W1", dtype, **kw)


def time_implicitreg_W1b(dtype: str = "float64", **kw) -> dict:
    return _time("W1b", dtype, **kw)


def time_implicitreg_W2(dtype: str = "float64", **kw) -> dict:
    return _time("W2", dtype, **kw)


def regularizer_runner(wl: workloads.Workload) -> Runner:
    """W4: ``run(n)`` makes ``n`` calls of ``ir.regularizer`` (W4-R) or of
    ``ir.regularizer_grad(..., return_value=True)`` (W4-RgR)."""
    net = ir.MLP(wl.sizes, activation=wl.activation)
    theta, X = net.flatten(wl.layers), wl.X
    if wl.name == "W4-RgR":

        def evaluate():
            return ir.regularizer_grad(net, theta, X, return_value=True)

        check = peers_numpy.check_W4(*evaluate())
    else:

        def evaluate():
            return ir.regularizer(net, theta, X)

        check = peers_numpy.check_W4(evaluate())

    def run(n: int) -> None:
        for _ in range(n):
            evaluate()

    return Runner(run, None, check=check)


def egr_check(wl: workloads.Workload) -> dict:
    """W5 direction of the timed code path: one ``simulate`` step of ``GD(1, egr_mu=mu)`` on the
    clean labels from the initial weights, ``theta0 - theta1``."""
    net = ir.MLP(wl.sizes, activation=wl.activation)
    theta = net.flatten(wl.layers)
    dyn = ir.GD(1.0, egr_mu=wl.extra["mu"])
    res = ir.simulate(
        net, theta, wl.X, wl.y, dyn, steps=1, record=(), progress=False, check_step_size=False
    )
    return peers_numpy.check_W5(theta - res.theta[0])


# ``threads``: ir.regularizer(_grad) take none; the worker's OMP_NUM_THREADS and affinity rule.
def time_implicitreg_W4_R(dtype: str = "float64", threads: int = 1, **kw) -> dict:
    return measure(regularizer_runner(workloads.get("W4-R", dtype)), **options("W4-R", **kw))


def time_implicitreg_W4_RgR(dtype: str = "float64", threads: int = 1, **kw) -> dict:
    runner = regularizer_runner(workloads.get("W4-RgR", dtype))
    return measure(runner, **options("W4-RgR", **kw))


def time_implicitreg_W5(dtype: str = "float64", **kw) -> dict:
    return {**_time("W5", dtype, **kw), **egr_check(workloads.get("W5", dtype))}


def time_replicas(dtype: str = "float64", replicas: int = 32, **kw) -> dict:
    """W1 on ``replicas`` chains at ``threads=1`` and ``threads=2`` (simulate's own OpenMP):
    µs per replica-step of each, and the speed-up."""
    wl = workloads.get("W1", dtype)
    kw.setdefault("probe_steps", 1_000)
    out: dict = {"replicas": replicas}
    for t in (1, 2):
        res = measure(mlp_runner(wl, t, replicas=replicas), **options("W1", **kw))
        res["us_per_replica_step"] = res["us_per_step"] / replicas
        out[f"threads={t}"] = res
    out["speedup"] = out["threads=1"]["us_per_step"] / out["threads=2"]["us_per_step"]
    return out


def time_implicitreg_W3(dtype: str = "float64", **kw) -> dict:
    return _time("W3", dtype, **kw)
