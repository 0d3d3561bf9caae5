"""Running sweep tasks: the worker-side call and the two backends (process pool, Dask).

Each backend is a generator of ``(key, outcome)`` pairs in completion order, where ``outcome`` is
the task's output converted by :func:`to_record` or the exception it raised. Closing the
generator early (an error, Ctrl-C) cancels everything still queued.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import inspect
import json
import multiprocessing
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping

import numpy as np

from .result import SimulationResult

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan(n_tasks: int, workers: int | None, threads: int | None, cores: int) -> tuple[int, int]:
    """Task slots and threads per task such that ``workers * threads <= cores``.

    Unset values are filled in: as many workers as tasks or cores allow, then the cores shared
    out between them. An explicit choice that oversubscribes the cores is honoured with a
    warning.
    """
    if workers is None:
        workers = max(1, min(n_tasks, cores // (threads or 1)))
    if threads is None:
        threads = max(1, cores // workers)
    if workers * threads > cores:
        warnings.warn(
            f"{workers} workers x {threads} threads oversubscribe the {cores} available cores",
            RuntimeWarning,
            stacklevel=3,
        )
    return workers, threads


def takes(fn, name: str) -> bool:
    """Whether ``fn`` has a parameter called ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def to_record(out) -> dict:
    """A task's output as plain arrays: ``{"vars": {name: (dims, array)}, "coords": [...],
    "attrs": {...}}``."""
    if isinstance(out, SimulationResult):
        return _result_record(out)
    if not isinstance(out, Mapping):
        raise TypeError(
            "a sweep task must return a SimulationResult or a dict of arrays, "
            f"got {type(out).__name__}"
        )
    variables = {}
    for name, value in _flatten(out):
        if isinstance(value, tuple) and len(value) == 2 and _are_dims(value[0]):
            dims = (value[0],) if isinstance(value[0], str) else tuple(value[0])
            value = np.asarray(value[1])
        else:
            value = _array(value)
            dims = tuple(f"{name}_dim_{i}" for i in range(value.ndim))
        if len(dims) != value.ndim:
            raise ValueError(f"result {name!r} has {value.ndim} dimensions but names {dims}")
        variables[name] = (dims, value)
    return {"vars": variables, "coords": [], "attrs": {}}


def _flatten(out: Mapping, prefix: str = ""):
    """``(name, value)`` pairs; nested dicts (e.g. a JSON summary) become ``outer.inner`` names."""
    for name, value in out.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _array(x) -> np.ndarray:
    """``x`` as an array; ragged or mixed data (not an array) as its JSON text."""
    try:
        a = np.asarray(x)
    except ValueError:  # ragged nested lists
        a = None
    if a is None or a.dtype == object:
        a = np.asarray(json.dumps(_jsonable(x)))
    return a


def _jsonable(x):
    """``x`` with numpy scalars and arrays as Python numbers and lists (for JSON)."""
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x.tolist() if isinstance(x, (np.ndarray, np.generic)) else x


def _are_dims(x) -> bool:
    return isinstance(x, str) or (
        isinstance(x, (tuple, list)) and all(isinstance(d, str) for d in x)
    )


def _result_record(r: SimulationResult) -> dict:
    v = {name: (("replica", "record"), a) for name, a in r.trace.items()}
    v["step"] = (("record",), r.steps)
    v["theta"] = (("replica", "param"), r.theta)
    v["diverged_at"] = (("replica",), r.diverged_at)
    coords = ["step"]
    if r.snapshots is not None:
        v["snapshots"] = (("snapshot", "replica", "param"), r.snapshots)
        v["snapshot_step"] = (("snapshot",), r.snapshot_steps)
        coords.append("snapshot_step")
    if r.probe_outputs is not None:
        v["probe_outputs"] = (("probe_record", "replica", "probe", "output"), r.probe_outputs)
        v["probe_step"] = (("probe_record",), r.probe_steps)
        coords.append("probe_step")
    if r.moments is not None:
        v["moment_mean"] = (("replica", "param"), r.moments.mean)
        cov_dims = (
            ("replica", "param") if r.moments.cov.ndim == 2 else ("replica", "param", "param2")
        )
        v["moment_cov"] = (cov_dims, r.moments.cov)
        v["moment_count"] = (("replica",), r.moments.count)
    attrs = {"result_config": r.config, "completed_steps": int(r.completed_steps)}
    return {"vars": v, "coords": coords, "attrs": attrs}


def run_task(task, config: dict, threads: int) -> dict:
    """Call ``task(**config)`` (plus ``threads=`` when the task takes it) and convert the output."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    kwargs = dict(config)
    if takes(task, "threads"):
        kwargs["threads"] = threads
    return to_record(task(**kwargs))


def dumps(task) -> bytes:
    """The task pickled once, with cloudpickle where installed: lambdas, functions defined in
    ``__main__`` or a notebook, and modules registered with ``register_pickle_by_value``
    travel by value."""
    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps(task)
    return cloudpickle.dumps(task)


@functools.lru_cache(maxsize=4)
def _loads(payload: bytes):
    return pickle.loads(payload)


def run_payload(payload: bytes, config: dict, threads: int) -> dict:
    """:func:`run_task` for a pickled task (unpickled once per worker process)."""
    return run_task(_loads(payload), config, threads)


# -- local backend: a spawn process pool --------------------------------------------------------
@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables while worker processes are started (they inherit them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_local(task, pending: dict, workers: int, threads: int, retries: int) -> Iterator[tuple]:
    """Run ``pending`` ({key: config}) on ``workers`` spawned processes.

    Worker processes are started with ``spawn`` (forking a process that has started OpenMP
    threads is unsafe) and with ``OMP_NUM_THREADS=threads`` and single-threaded BLAS. The task is
    pickled once, and unpickled once per worker. If a worker dies (segfault, out of memory) the
    pool is rebuilt and the unfinished configurations resubmitted, at most ``retries`` times.
    """
    payload = dumps(task)
    todo, broken = dict(pending), 0
    env = dict.fromkeys(THREAD_VARIABLES, "1") | {"OMP_NUM_THREADS": str(threads)}
    while todo:
        pool = cf.ProcessPoolExecutor(
            min(workers, len(todo)),
            mp_context=multiprocessing.get_context("spawn"),
        )
        finished = False
        try:
            with _environ(env):  # workers are started while the tasks are submitted
                futures = {
                    pool.submit(run_payload, payload, config, threads): key
                    for key, config in todo.items()
                }
            for fut in cf.as_completed(futures):
                key = futures[fut]
                try:
                    outcome = fut.result()
                except cf.process.BrokenProcessPool:
                    raise
                except Exception as exc:  # noqa: BLE001 -- the task's error, reported per config
                    outcome = exc
                del todo[key]
                yield key, outcome
            finished = True
        except cf.process.BrokenProcessPool:
            broken += 1
            if broken > retries:
                raise
            warnings.warn(
                f"a sweep worker process died; restarting the pool ({len(todo)} "
                f"configurations left)",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            if not finished:  # stop the tasks in flight too, before shutdown forgets them
                if hasattr(pool, "terminate_workers"):  # Python >= 3.14
                    pool.terminate_workers()
                else:
                    for proc in list((getattr(pool, "_processes", None) or {}).values()):
                        proc.terminate()
            pool.shutdown(wait=finished, cancel_futures=True)


# -- Dask backend -------------------------------------------------------------------------------
def run_dask(
    task, pending: dict, client, workers: int, threads: int, retries: int
) -> Iterator[tuple]:
    """Run ``pending`` on a Dask cluster: ``client``'s, or a LocalCluster of ``workers``
    single-slot worker processes started here and closed at the end.

    A task whose worker dies is rescheduled by the scheduler (up to its
    ``distributed.scheduler.allowed-failures``); a task that raises is retried ``retries``
    times. Results are gathered as they finish and released at once.
    """
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if client is None:
        env = dict.fromkeys(THREAD_VARIABLES, "1") | {"OMP_NUM_THREADS": str(threads)}
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, env=env, dashboard_address=":0"
        )
        client = Client(cluster)
    keys, configs = list(pending), list(pending.values())
    futures = {}
    try:
        payload = dumps(task)
        mapped = client.map(
            run_payload,
            [payload] * len(configs),
            configs,
            threads=threads,
            retries=retries,
            pure=False,
        )
        futures = dict(zip(mapped, keys, strict=True))
        for fut in as_completed(list(futures)):
            key = futures.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 -- the task's error, reported per config
                outcome = exc
            fut.release()
            yield key, outcome
    finally:
        if futures:
            client.cancel(list(futures))
        if cluster is not None:
            client.close()
            cluster.close()
