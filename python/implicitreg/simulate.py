"""The long-horizon run: Python drives the C++ engine in chunks of about 0.1 s of work, so that
the progress bar, Ctrl-C and checkpoints cost nothing per step.

Ctrl-C (KeyboardInterrupt) stops a run at the end of the chunk in flight (well under half a
second). If a checkpoint path was given, the state is written first. Then
:class:`SimulationInterrupted` (a KeyboardInterrupt) is raised; its ``result`` attribute holds
everything recorded up to the last completed step.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from . import _core
from . import checkpoint as _checkpoint
from ._validate import float_array, inputs, integer, positive, targets, theta_vector
from .dynamics import Dynamics
from .result import Moments, SimulationResult

RECORDS = ("loss", "regularizer", "grad_norm2", "param_norm", "distance")
CHUNK_SECONDS = 0.1


class SimulationInterrupted(KeyboardInterrupt):
    """Raised on Ctrl-C; ``.result`` holds what was recorded up to the interruption."""

    def __init__(self, result: SimulationResult):
        super().__init__(f"simulation interrupted at step {result.completed_steps}")
        self.result = result


class DivergenceWarning(RuntimeWarning):
    """A replica diverged, or the step size leaves the small-step regime."""


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def simulate(
    model,
    theta,
    X,
    y,
    dynamics: Dynamics,
    steps: int,
    record_every: int | None = None,
    record=("loss", "regularizer"),
    seed: int = 0,
    replicas: int = 1,
    threads: int | None = None,
    progress: bool | None = None,
    *,
    snapshot_every: int = 0,
    probes=None,
    probe_every: int | None = None,
    moments: bool | str = False,
    burn_in: int = 0,
    divergence_bound: float | None = None,
    reference=None,
    checkpoint=None,
    checkpoint_every: float = 60.0,
    check_step_size: bool = True,
) -> SimulationResult:
    """Run ``dynamics`` for ``steps`` steps on ``replicas`` independent chains, in C++.

    Parameters
    ----------
    model, theta : the model and its start, ``(p,)`` (every replica) or ``(replicas, p)``.
    X, y : data, ``(n, n_in)`` and ``(n,)`` or ``(n, n_out)``, of theta's dtype.
    dynamics : a :class:`~implicitreg.Dynamics` (e.g. ``LabelNoiseSGD(lr, sigma)``).
    steps : number of steps.
    record_every : record the scalars in ``record`` at steps 0, k, 2k, ... (default
        ``max(1, steps // 100)``). Scalars: "loss" (clean full-data loss), "regularizer"
        (R), "grad_norm2" (||grad L||^2), "param_norm" (||theta||), "distance"
        (||theta - reference||).
    seed : the run's random streams are keyed by (seed, replica, step): the same seed gives
        bit-identical results on any number of threads and after a resume.
    replicas, threads : independent chains, run on ``threads`` OpenMP threads (default: all).
    progress : tqdm bar; None shows it only on a terminal.
    snapshot_every : store theta every so many steps (0: never).
    probes, probe_every : inputs ``(m, n_in)`` on which the outputs are stored every
        ``probe_every`` steps (default: ``record_every``).
    moments : True for the mean and full covariance of theta over the steps after
        ``burn_in``, "diagonal" for variances only.
    divergence_bound : a replica whose recorded loss exceeds this (or whose parameters become
        non-finite) stops; its records after that step are NaN.
    reference : ``(p,)`` point for the "distance" record.
    checkpoint, checkpoint_every : path of a checkpoint written every ``checkpoint_every``
        seconds, on Ctrl-C and at the end; calling ``simulate`` again with the same
        arguments and path resumes from it, bit for bit.
    check_step_size : warn (DivergenceWarning) when the step size at the start is outside the
        small-step regime; costs about 20 gradient evaluations for large models.
    """
    if not isinstance(dynamics, Dynamics):
        raise TypeError(f"dynamics must be an implicitreg Dynamics, got {type(dynamics).__name__}")
    steps = integer("steps", steps, minimum=0)
    record_every = max(1, steps // 100) if record_every is None else record_every
    record_every = integer("record_every", record_every, minimum=1)
    replicas = integer("replicas", replicas, minimum=1)
    seed = integer("seed", seed, minimum=0)
    threads = _core.max_threads() if threads is None else integer("threads", threads, minimum=1)
    snapshot_every = integer("snapshot_every", snapshot_every, minimum=0)
    burn_in = integer("burn_in", burn_in, minimum=0)
    record = (record,) if isinstance(record, str) else tuple(record)
    for name in record:
        if name not in RECORDS:
            raise ValueError(f"unknown record {name!r}; choose from {', '.join(RECORDS)}")
    if moments not in (False, True, "diagonal"):
        raise ValueError(f"moments must be False, True or 'diagonal', got {moments!r}")
    bound = np.inf if divergence_bound is None else positive("divergence_bound", divergence_bound)

    theta = float_array("theta", theta)
    dtype = theta.dtype
    if theta.shape == (model.n_params,):
        theta0 = np.tile(theta, (replicas, 1))
    elif theta.shape == (replicas, model.n_params):
        theta0 = theta
    else:
        raise ValueError(
            f"theta must have shape ({model.n_params},) or ({replicas}, {model.n_params}), "
            f"got {theta.shape}"
        )
    X = inputs(model, X, dtype)
    y = targets(model, y, X.shape[0], dtype)
    dyn = dynamics._core_config(X.shape[0], steps)
    if probes is None:
        probes_arr = np.zeros((0, model.n_in), dtype=dtype)
        probe_every = 0
    else:
        probes_arr = inputs(model, probes, dtype)
        probe_every = (
            record_every if probe_every is None else integer("probe_every", probe_every, minimum=1)
        )
    if "distance" in record and reference is None:
        raise ValueError("record 'distance' needs reference=")
    ref = np.zeros(model.n_params, dtype) if reference is None else theta_vector(model, reference)
    if ref.dtype != dtype:
        raise TypeError(f"reference has dtype {ref.dtype} but theta has dtype {dtype}")

    spec = {
        "total_steps": steps,
        "record_every": record_every,
        "records": [RECORDS.index(r) for r in record],
        "seed": seed,
        "snapshot_every": snapshot_every,
        "probe_every": probe_every,
        "moments": bool(moments),
        "moments_diagonal": moments == "diagonal",
        "burn_in": burn_in,
        "divergence_bound": float(bound),
    }
    config = {
        "model": model._spec(),
        "dynamics": dynamics.to_dict(),
        "run": {
            **spec,
            "records": list(record),
            "replicas": replicas,
            "divergence_bound": divergence_bound,
        },
        "dtype": str(dtype),
        "data": {"n": int(X.shape[0]), "sha256": _digest(X, y)},
        "theta0_sha256": _digest(theta0),
        "probes_sha256": _digest(probes_arr, ref),
        "version": _core.__version__,
    }
    sim = model._simulation_class(dtype)(
        model._core(dtype), X, y, dyn, spec, np.ascontiguousarray(theta0), probes_arr, ref
    )
    if checkpoint is not None and os.path.exists(checkpoint):
        sim.set_state(_checkpoint.load(checkpoint, config))
    elif sim.step == 0 and check_step_size:
        _warn_if_large_step(model, theta0[0], X, dynamics, dyn["batch_size"])

    def save_checkpoint():
        if checkpoint is not None:
            _checkpoint.save(checkpoint, sim.get_state(), config)

    chunk, last_save = 1, time.monotonic()
    bar = tqdm(
        total=steps,
        initial=sim.step,
        unit="step",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        while sim.step < steps:
            start = time.perf_counter()
            sim.run(chunk, threads)
            elapsed = time.perf_counter() - start
            bar.update(sim.step - bar.n)
            # Aim each chunk at ~0.1 s: at most x10 growth per chunk, never below one step.
            chunk = max(1, min(chunk * 10, int(chunk * CHUNK_SECONDS / max(elapsed, 1e-6))))
            if checkpoint is not None and time.monotonic() - last_save >= checkpoint_every:
                save_checkpoint()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint()
        raise SimulationInterrupted(_result(sim, config, record, model, len(probes_arr))) from None
    bar.close()
    save_checkpoint()
    result = _result(sim, config, record, model, len(probes_arr))
    _warn_divergence(result)
    return result


def _result(sim, config, record, model, n_probes) -> SimulationResult:
    p = model.n_params
    st = sim.get_state()
    spec = config["run"]
    done = int(st["step"])
    marks = lambda every: np.arange(0, done + 1, every, dtype=np.int64) if every else None
    steps = marks(spec["record_every"])
    trace = {name: st["traces"][k, :, : len(steps)].copy() for k, name in enumerate(record)}
    R = st["theta"].shape[0]
    snapshots = snapshot_steps = probe_outputs = probe_steps = None
    if spec["snapshot_every"]:
        snapshot_steps = marks(spec["snapshot_every"])
        snapshots = st["snapshots"][: len(snapshot_steps)].copy()
    if spec["probe_every"]:
        probe_steps = marks(spec["probe_every"])
        full = st["probe_outputs"].reshape(-1, R, n_probes, model.n_out)
        probe_outputs = full[: len(probe_steps)].copy()
    moments = None
    if spec["moments"]:
        count = st["moment_count"]
        denom = np.maximum(count - 1, 1).astype(np.float64)
        if spec["moments_diagonal"]:
            cov = st["moment_m2"].reshape(R, p) / denom[:, None]
        else:
            cov = st["moment_m2"].reshape(R, p, p) / denom[:, None, None]
        cov[count < 2] = np.nan
        moments = Moments(mean=st["moment_mean"].copy(), cov=cov, count=count.copy())
    return SimulationResult(
        theta=st["theta"].copy(),
        trace=trace,
        steps=steps,
        diverged_at=st["diverged_at"].copy(),
        snapshots=snapshots,
        snapshot_steps=snapshot_steps,
        probe_outputs=probe_outputs,
        probe_steps=probe_steps,
        moments=moments,
        config=config,
        completed_steps=done,
    )


def _warn_divergence(result: SimulationResult) -> None:
    bad = np.flatnonzero(result.diverged_at >= 0)
    if bad.size:
        warnings.warn(
            f"{bad.size} of {len(result.diverged_at)} replicas diverged (replica {bad[0]} at step "
            f"{result.diverged_at[bad[0]]}); they stopped there, their later records are NaN",
            DivergenceWarning,
            stacklevel=3,
        )


def _warn_if_large_step(model, theta, X, dynamics: Dynamics, batch: int) -> None:
    """Warn when the run starts outside the small-step regime (papers.md, pitfalls).

    One sample per step: lr * 2c * max_i ||grad f(x_i)||^2 > 2. Larger batches: lr times the top
    eigenvalue of the expected batch Gauss-Newton Hessian 2 c_B (B/n) J^T J above 2, from the
    NTK when it is small, else from a Rayleigh quotient after power iterations on matrix-free
    Gauss-Newton products (a lower bound: the warning is never a false alarm).
    """
    from .quantities import loss_scale, regularizer
    from .second_order import gnvp

    n = X.shape[0]
    c = loss_scale(dynamics.loss, batch)
    if batch == 1:
        h = dynamics.lr * 2 * c * float(np.max(regularizer(model, theta, X, per_sample=True)))
        what = "lr * max_i ||grad f(x_i)||^2"
    else:
        if n * model.n_out * model.n_params <= 4_000_000:
            J = model.jacobian(theta, X).astype(np.float64)
            top = float(np.linalg.eigvalsh(J @ J.T)[-1])
        else:  # sum_half: G = J^T J
            y0 = np.zeros((n, model.n_out), dtype=theta.dtype)
            v = np.random.default_rng(0).standard_normal(model.n_params).astype(theta.dtype)
            for _ in range(20):
                v = v / np.linalg.norm(v)
                Gv = gnvp(model, theta, X, y0, v, normalization="sum_half")
                top = float(v @ Gv)
                v = Gv
        h = dynamics.lr * 2 * c * batch / n * top
        what = "lr * lambda_max(Gauss-Newton Hessian)"
    if h > 2:
        warnings.warn(
            f"{what} = {h:.3g} > 2 at the start: the run leaves the small-step regime "
            "(expect catapult / edge-of-stability behaviour rather than the label-noise OU picture)",
            DivergenceWarning,
            stacklevel=3,
        )
