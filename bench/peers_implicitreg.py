"""implicitreg itself: one ``ir.simulate`` call runs all the steps of a repeat in C++.

The time of a repeat is that of the whole ``simulate`` call (setup and the two loss records
included) divided by its number of steps. Each call continues from the previous call's weights,
with seed 0, 1, 2, ... so that the noise stream is not replayed.
"""

from __future__ import annotations

import implicitreg as ir
import numpy as np
import workloads
from harness import Runner, measure, options


def mlp_runner(wl: workloads.Workload, threads: int = 1, trace: list | None = None) -> Runner:
    """``trace`` (if given) receives the (first, last) loss record of every simulate call."""
    net = ir.MLP(wl.sizes, activation=wl.activation)
    theta = net.flatten([(W, b) for W, b in wl.layers])
    dyn = ir.LabelNoiseSGD(lr=wl.lr, sigma=wl.sigma, noise="gaussian", batch_size=wl.batch_size)
    X, y = wl.X, wl.y
    state = {"theta": theta, "seed": 0}
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
            threads=threads,
            progress=False,
            check_step_size=False,  # a one-time setup check, not part of a step
        )
        state["theta"] = np.ascontiguousarray(res.theta[0])
        state["seed"] += 1
        trace.append((float(res.trace["loss"][0, 0]), float(res.trace["loss"][0, -1])))

    def loss() -> float:
        return float(ir.loss(net, state["theta"], X, y))

    return Runner(run, loss)


def _time(name: str, dtype: str, threads: int = 1, **kw) -> dict:
    wl = workloads.get(name, dtype)
    kw.setdefault("probe_steps", 10_000 if name in ("W1", "W1b") else 20)
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
