"""Timing harness shared by every peer: warm-up, calibration, median over repeats."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Runner:
    """One implementation of one workload, holding its training state.

    ``run(n)`` advances ``n`` steps (drawing the step's random numbers included) and returns when
    they are done; ``loss()`` is the clean full-data loss of the current state (None for a
    workload that does not train, W4); ``prepare(n)`` compiles whatever ``run(n)`` needs (timed
    separately, excluded from the step time). ``check`` holds correctness figures (relative
    errors against the float64 reference, W4/W5), copied into the result of :func:`measure`.
    """

    run: Callable[[int], object]
    loss: Callable[[], float] | None
    prepare: Callable[[int], object] | None = None
    check: dict = field(default_factory=dict)


def measure(
    runner: Runner,
    *,
    min_steps: int,
    seconds: float,
    repeats: int = 5,
    probe_steps: int = 20,
) -> dict:
    """Median microseconds per step over ``repeats`` repeats of ``n`` steps each.

    ``n`` is the larger of ``min_steps`` and the number of steps that last about ``seconds``
    (estimated from a probe of ``probe_steps`` steps after a warm-up). The loss must go down
    (``trains``; None when the runner has no loss).
    """
    compile_s = 0.0

    def prepare(n: int) -> None:
        nonlocal compile_s
        if runner.prepare is not None:
            t0 = time.perf_counter()
            runner.prepare(n)
            compile_s += time.perf_counter() - t0

    loss_before = runner.loss() if runner.loss else None
    prepare(probe_steps)
    runner.run(probe_steps)  # warm-up
    t0 = time.perf_counter()
    runner.run(probe_steps)
    t_probe = (time.perf_counter() - t0) / probe_steps
    n = max(min_steps, math.ceil(seconds / max(t_probe, 1e-9)))
    prepare(n)
    if runner.prepare is not None:
        runner.run(n)  # first call of a freshly compiled function
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run(n)
        times.append(time.perf_counter() - t0)
    loss_after = runner.loss() if runner.loss else None
    us = [t / n * 1e6 for t in times]
    return {
        "us_per_step": statistics.median(us),
        "us_min": min(us),
        "us_max": max(us),
        "steps_per_repeat": n,
        "repeats": repeats,
        "compile_s": compile_s,
        "loss_before": loss_before,
        "loss_after": loss_after,
        "trains": None if loss_after is None else bool(loss_after < loss_before),
        **runner.check,
    }


# Default repeat lengths per workload (the full, non-quick run).
DEFAULTS = {
    "W1": {"min_steps": 10_000, "seconds": 0.5, "probe_steps": 200},
    "W1b": {"min_steps": 10_000, "seconds": 0.5, "probe_steps": 200},
    "W2": {"min_steps": 20, "seconds": 1.5},
    "W3": {"min_steps": 20, "seconds": 1.5},
    "W4-R": {"min_steps": 20, "seconds": 1.5, "probe_steps": 3},
    "W4-RgR": {"min_steps": 20, "seconds": 1.5, "probe_steps": 3},
    "W5": {"min_steps": 20, "seconds": 1.5, "probe_steps": 3},
}


def rel_err(value, ref) -> float:
    """Relative error ``|value - ref| / |ref|`` (2-norm for arrays), computed in float64."""
    v, r = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(v - r) / np.linalg.norm(r))


def options(workload: str, **overrides) -> dict:
    """Keyword arguments of :func:`measure` for ``workload``, with ``overrides`` applied."""
    opts = dict(DEFAULTS[workload])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return opts
