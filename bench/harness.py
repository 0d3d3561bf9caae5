"""Timing harness shared by every peer: warm-up, calibration, median over repeats."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Runner:
    """One implementation of one workload, holding its training state.

    ``run(n)`` advances ``n`` steps (drawing the step's random numbers included) and returns when
    they are done; ``loss()`` is the clean full-data loss of the current state; ``prepare(n)``
    compiles whatever ``run(n)`` needs (timed separately, excluded from the step time).
    """

    run: Callable[[int], object]
    loss: Callable[[], float]
    prepare: Callable[[int], object] | None = None


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
    (estimated from a probe of ``probe_steps`` steps after a warm-up). The loss must go down.
    """
    compile_s = 0.0

    def prepare(n: int) -> None:
        nonlocal compile_s
        if runner.prepare is not None:
            t0 = time.perf_counter()
            runner.prepare(n)
            compile_s += time.perf_counter() - t0

    loss_before = runner.loss()
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
    loss_after = runner.loss()
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
        "trains": bool(loss_after < loss_before),
    }


# Default repeat lengths per workload (the full, non-quick run).
DEFAULTS = {
    "W1": {"min_steps": 10_000, "seconds": 0.5},
    "W1b": {"min_steps": 10_000, "seconds": 0.5},
    "W2": {"min_steps": 20, "seconds": 1.5},
    "W3": {"min_steps": 20, "seconds": 1.5},
    "W5": {"min_steps": 20, "seconds": 1.5},
}


def options(workload: str, **overrides) -> dict:
    """Keyword arguments of :func:`measure` for ``workload``, with ``overrides`` applied."""
    opts = dict(DEFAULTS[workload])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return opts
