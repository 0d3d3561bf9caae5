"""Sweeps: run a task over a grid of configurations, in parallel on one machine or on a Dask
cluster, into an xarray Dataset and a resumable Zarr store.

>>> import implicitreg as ir
>>> task = ir.SimulateTask(problem=my_problem, dynamics=ir.LabelNoiseSGD, steps=10**5,
...                        record_every=10**3, replicas=8)             # doctest: +SKIP
>>> ds = ir.sweep(task, {"lr": [0.01, 0.02], "sigma": [0.5, 1.0], "seed": [0, 1]},
...               store="study.zarr")                                 # doctest: +SKIP
>>> ds["regularizer"].mean("replica")     # dims (lr, sigma, seed, record)   # doctest: +SKIP

See ``docs/sweeps.md`` for the store layout, the Dask backend and clusters (SLURM, PBS).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._sweep_exec import available_cores, plan, run_dask, run_local
from ._sweep_store import Store, assemble, canonical, run_dataset
from ._validate import integer
from .dynamics import Dynamics
from .simulate import simulate

__all__ = ["SimulateTask", "add_sweep_command", "expand_grid", "load_config", "open_sweep", "sweep"]

RESERVED = ("threads",)


# -- grids --------------------------------------------------------------------------------------
def _plain(v):
    """A grid value as JSON data (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
        return {k: _plain(x) for k, x in v.items()}
    raise TypeError(
        "grid values must be JSON data (numbers, strings, booleans, None, lists, "
        f"dicts with string keys), got {type(v).__name__}"
    )


def config_key(config: Mapping) -> str:
    """The stable key of a configuration: SHA-256 of its canonical JSON (first 32 hex digits)."""
    try:
        text = json.dumps(
            _plain(dict(config)), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except ValueError:
        raise ValueError(f"configuration {config} holds NaN or infinity") from None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _label(v):
    return v if isinstance(v, (bool, int, float, str)) else canonical(v)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"grid names must be non-empty strings, got {name!r}")
    if name in RESERVED:
        raise ValueError(f"{name!r} is set by sweep itself and cannot be a grid key")
    return name


@dataclass(frozen=True)
class Grid:
    """An expanded grid: ``configs`` and their ``keys`` in C order over ``shape``."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict
    configs: list
    keys: list
    spec: dict


def expand_grid(grid) -> Grid:
    """Expand ``grid``: a dict of lists (the Cartesian product; one dimension per key, in order)
    or a list of configuration dicts (one dimension, ``config``; every dict with the same keys).
    """
    if isinstance(grid, Mapping):
        dims, axes = tuple(_check_name(k) for k in grid), []
        for name, values in grid.items():
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(
                values, (Sequence, np.ndarray)
            ):
                raise TypeError(f"grid[{name!r}] must be a list of values, got {values!r}")
            values = [_plain(v) for v in values]
            if not values:
                raise ValueError(f"grid[{name!r}] is empty")
            if len({canonical(v) for v in values}) != len(values):
                raise ValueError(f"grid[{name!r}] repeats a value")
            axes.append(values)
        configs = [dict(zip(dims, combo, strict=True)) for combo in itertools.product(*axes)]
        coords = {
            d: (d, np.asarray([_label(v) for v in a])) for d, a in zip(dims, axes, strict=True)
        }
        shape = tuple(len(a) for a in axes)
        spec = {"axes": [[d, a] for d, a in zip(dims, axes, strict=True)]}
    elif isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if not grid:
            raise ValueError("the grid is empty")
        configs = []
        for c in grid:
            if not isinstance(c, Mapping):
                raise TypeError(f"a list grid holds configuration dicts, got {c!r}")
            configs.append({_check_name(k): _plain(v) for k, v in c.items()})
        names = list(configs[0])
        for c in configs:
            if set(c) != set(names):
                raise ValueError(f"every configuration needs the same keys: {names} vs {list(c)}")
        dims, shape, spec = ("config",), (len(configs),), {"configs": configs}
        coords = {n: ("config", np.asarray([_label(c[n]) for c in configs])) for n in names}
    else:
        raise TypeError(
            f"grid must be a dict of lists or a list of dicts, got {type(grid).__name__}"
        )
    keys = [config_key(c) for c in configs]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid repeats a configuration")
    return Grid(dims, shape, coords, configs, keys, spec)


def _grid_from_spec(spec: dict) -> Grid:
    return expand_grid(dict(spec["axes"]) if "axes" in spec else spec["configs"])


# -- tasks --------------------------------------------------------------------------------------
def describe(obj):
    """JSON description of a task (the store refuses to mix results of different tasks)."""
    if hasattr(obj, "describe") and not isinstance(obj, type) and not inspect.isroutine(obj):
        return obj.describe()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return {"array": list(obj.shape), "dtype": str(obj.dtype), "sha256": digest}
    if isinstance(obj, Mapping):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [describe(v) for v in obj]
    if isinstance(obj, Dynamics):
        return {"Dynamics": describe(obj.to_dict())}
    if isinstance(obj, functools.partial):
        return {
            "partial": describe(obj.func),
            "args": describe(obj.args),
            "keywords": describe(obj.keywords),
        }
    if isinstance(obj, type) or inspect.isroutine(obj):
        return f"{obj.__module__}:{obj.__qualname__}"
    if hasattr(obj, "_spec"):  # a model
        return obj._spec()
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _signature(fn) -> tuple[set, bool, set]:
    """Keyword parameters of ``fn``, whether it takes ``**kwargs``, and the required ones."""
    params = inspect.signature(fn).parameters.values()
    kw = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in params if p.kind in kw}
    required = {p.name for p in params if p.kind in kw and p.default is inspect.Parameter.empty}
    return names, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params), required


_SIMULATE = _signature(simulate)
_SIMULATE_OPTIONS = _SIMULATE[0] - {
    "model",
    "theta",
    "X",
    "y",
    "dynamics",
    "threads",
    "progress",
    "checkpoint",
    "checkpoint_every",
}


class SimulateTask:
    """A sweep task that builds one :func:`~implicitreg.simulate` call from a configuration.

    Parameters
    ----------
    problem : ``(model, theta, X, y)``, or a function of configuration keys returning it
        (e.g. ``lambda width, seed: ...``).
    dynamics : a :class:`~implicitreg.Dynamics`, or a function of configuration keys returning
        one (``ir.LabelNoiseSGD`` itself, or ``lambda lr, sigma: ir.LabelNoiseSGD(lr, sigma)``).
    model, theta, X, y : alternatively to ``problem``, the fixed model, start and data.
    **settings : fixed values, routed like the grid's keys.

    Notes
    -----
    Each key of a configuration (grid keys and ``settings``) goes to every part that names it as
    a parameter: ``problem``, ``dynamics``, and :func:`simulate` (``steps``, ``record_every``,
    ``record``, ``seed``, ``replicas``, ``snapshot_every``, ``probes``, ``moments``, ...). A
    key named by none of them goes to the parts that take ``**kwargs`` (``LabelNoiseSGD``
    forwards them to ``Dynamics``: ``momentum``, ``weight_decay``...); a key no part takes is
    an error, raised before anything runs. ``threads`` is chosen by the sweep, and the run's
    progress bar is off.
    """

    def __init__(
        self, problem=None, dynamics=None, *, model=None, theta=None, X=None, y=None, **settings
    ):
        given = [v is not None for v in (model, theta, X, y)]
        if problem is None:
            if not all(given):
                raise TypeError(
                    "give problem= ((model, theta, X, y) or a function returning "
                    "it) or all of model=, theta=, X=, y="
                )
            problem = (model, theta, X, y)
        elif any(given):
            raise TypeError("give problem= or model=, theta=, X=, y=, not both")
        if not callable(problem):
            problem = tuple(problem)
            if len(problem) != 4:
                raise ValueError("problem must be (model, theta, X, y)")
        if not (isinstance(dynamics, Dynamics) or callable(dynamics)):
            raise TypeError(
                f"dynamics must be a Dynamics or a function returning one, got {dynamics!r}"
            )
        self.problem, self.dynamics, self.settings = problem, dynamics, dict(settings)
        self._route(self.settings, complete=False)

    def _parts(self) -> dict:
        parts = {
            name: _signature(fn)
            for name, fn in (("problem", self.problem), ("dynamics", self.dynamics))
            if callable(fn)
        }
        parts["simulate"] = (_SIMULATE_OPTIONS, False, {"steps"})
        return parts

    def _route(self, values: dict, complete: bool = True) -> dict:
        parts = self._parts()
        routed = {name: {} for name in parts}
        for key, value in values.items():
            to = [n for n, (names, _, _) in parts.items() if key in names]
            to = to or [n for n, (_, var_kw, _) in parts.items() if var_kw]
            if not to:
                takes_ = "; ".join(f"{n} takes {sorted(p[0])}" for n, p in parts.items())
                raise TypeError(f"no part of the task takes {key!r} ({takes_})")
            for n in to:
                routed[n][key] = value
        for n, (_, _, required) in parts.items():
            if complete and required - set(routed[n]):
                raise TypeError(
                    f"{n} needs {sorted(required - set(routed[n]))}: set them in "
                    "the task or the grid"
                )
        return routed

    def check(self, config: Mapping) -> dict:
        """Raise if ``config`` does not fit the task (called by :func:`sweep` before it runs);
        return the keyword arguments of each part."""
        clash = set(config) & set(self.settings)
        if clash:
            raise TypeError(f"{sorted(clash)} are fixed in the task and also set by the grid")
        return self._route({**self.settings, **config})

    def __call__(self, *, threads: int | None = None, **config):
        routed = self.check(config)
        model, theta, X, y = (
            self.problem(**routed["problem"]) if "problem" in routed else self.problem
        )
        dyn = self.dynamics(**routed["dynamics"]) if "dynamics" in routed else self.dynamics
        return simulate(
            model, theta, X, y, dyn, threads=threads, progress=False, **routed["simulate"]
        )

    def describe(self) -> dict:
        return {
            "SimulateTask": {
                "problem": describe(self.problem),
                "dynamics": describe(self.dynamics),
                "settings": describe(self.settings),
            }
        }

    def __repr__(self) -> str:
        parts = [
            f"{n}={describe(v) if callable(v) else type(v).__name__}"
            for n, v in (("problem", self.problem), ("dynamics", self.dynamics))
        ]
        parts += [f"{k}={v!r}" for k, v in self.settings.items()]
        return f"SimulateTask({', '.join(parts)})"


def _check_task(task, config: dict) -> None:
    if not callable(task):
        raise TypeError(f"task must be callable, got {task!r}")
    if hasattr(task, "check"):
        task.check(config)
        return
    try:
        sig = inspect.signature(task)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(**config, **({"threads": 1} if "threads" in sig.parameters else {}))
    except TypeError as exc:
        raise TypeError(
            f"the task cannot be called with the grid's keys {list(config)}: {exc}"
        ) from None


# -- the sweep ----------------------------------------------------------------------------------
def sweep(
    task,
    grid,
    backend: str = "local",
    client=None,
    store=None,
    *,
    workers: int | None = None,
    threads: int | None = None,
    retries: int = 2,
    errors: str = "raise",
    progress: bool | None = None,
):
    """Run ``task(**config)`` for every configuration of ``grid``; gather an xarray Dataset.

    Parameters
    ----------
    task : a picklable callable returning a :class:`~implicitreg.SimulationResult` or a dict of
        arrays (``name -> array``, or ``name -> (dims, array)``): a :class:`SimulateTask`, or
        any function (``functools.partial`` for fixed arguments), or the name of one,
        ``"package.module:function"`` (an experiment preset). If it has a ``threads`` parameter,
        it receives the threads it may use.
    grid : dict of lists (Cartesian product, one dimension per key) or list of configuration
        dicts (one dimension, ``config``). Values are JSON data; each configuration's key is the
        SHA-256 of its canonical JSON.
    backend : "local" (processes started with spawn on this machine) or "dask".
    client : a ``distributed.Client`` (backend "dask"); None starts a LocalCluster of
        ``workers`` processes for the sweep and closes it at the end.
    store : directory of a Zarr store; each result is written there as it finishes, and a sweep
        run again with the same store (and task) skips the finished configurations. None keeps
        results in memory only.
    workers, threads : concurrent tasks and OpenMP threads per task. By default as many tasks as
        cores (or configurations) and the cores shared out between them, so that ``workers *
        threads`` is at most the number of cores. With ``client=``, the cluster's worker slots
        set the concurrency and ``threads`` defaults to 1.
    retries : times a failed task is retried (Dask), or the process pool rebuilt after a worker
        died (local). A task whose Dask worker dies is always rescheduled (up to the
        scheduler's ``allowed-failures``).
    errors : "raise" (stop at the first failed task; finished results stay in the store) or
        "warn" (leave failed configurations out, as NaN, and warn).
    progress : one bar for the sweep (configurations done, ETA); None shows it on a terminal.

    Returns
    -------
    xarray.Dataset
        The grid's dimensions (with their values as coordinates; a ``key`` coordinate names
        each configuration's group ``runs/<key>`` in the store), then each result's own: for a
        SimulationResult ``replica``, ``record`` (coordinate ``step``), ``param``. Results of
        different shapes are padded with NaN. With a store it is also written to its group
        ``dataset``.
    """
    if backend not in ("local", "dask"):
        raise ValueError(f"backend must be 'local' or 'dask', got {backend!r}")
    if client is not None and backend != "dask":
        raise ValueError("client= needs backend='dask'")
    if errors not in ("raise", "warn"):
        raise ValueError(f"errors must be 'raise' or 'warn', got {errors!r}")
    retries = integer("retries", retries, minimum=0)
    workers = None if workers is None else integer("workers", workers, minimum=1)
    threads = None if threads is None else integer("threads", threads, minimum=1)
    if isinstance(task, str):
        task = _resolve(task, "task")
    g = expand_grid(grid)
    _check_task(task, g.configs[0])
    if backend == "dask":
        _require("distributed")
    _require("xarray")
    task_text = canonical(describe(task))
    st = None if store is None else Store(store)
    try:
        if st is not None:
            _require("zarr")
            st.open(task_text, g.spec)
        done = set() if st is None else st.done() & set(g.keys)
        pending = {k: c for k, c in zip(g.keys, g.configs, strict=True) if k not in done}
        if client is not None:
            if workers is not None:
                raise ValueError(
                    "with client=, the cluster's workers set the concurrency; "
                    "workers= is for the local backend and sweep's own LocalCluster"
                )
            threads = threads or 1
        else:
            workers, threads = plan(len(pending), workers, threads, available_cores())
        bar = tqdm(
            total=len(g.keys),
            initial=len(done),
            unit="run",
            desc="sweep",
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
        )
        runs, failed = {}, {}
        if pending:
            if backend == "local":
                outcomes = run_local(task, pending, workers, threads, retries)
            else:
                outcomes = run_dask(task, pending, client, workers, threads, retries)
            with bar, contextlib.closing(outcomes):
                runs, failed = _gather(outcomes, pending, [*g.dims, *g.coords], st, errors, bar)
        bar.close()
        if failed:
            first = next(iter(failed))
            warnings.warn(
                f"{len(failed)} of {len(pending)} configurations failed (they are NaN), "
                f"e.g. {pending[first]}: {failed[first]!r}",
                RuntimeWarning,
                stacklevel=2,
            )
        if st is not None:
            runs.update({k: st.read(k) for k in done})
        result = assemble(g, runs, {"implicitreg_sweep_task": task_text})
        if st is not None:
            st.write_dataset(result)
        return result
    finally:
        if st is not None:
            st.close()


def _gather(outcomes, pending, names, st: Store | None, errors: str, bar) -> tuple[dict, dict]:
    """Store each result as it comes; return the results and the failures, by key. ``names``
    are the grid's dimensions and coordinates, which results must not reuse."""
    runs, failed = {}, {}
    for key, outcome in outcomes:
        if isinstance(outcome, BaseException):
            if errors == "raise":
                where = "; the finished results are in the store" if st is not None else ""
                raise RuntimeError(f"the sweep task failed for {pending[key]}{where}") from outcome
            failed[key] = outcome
            bar.set_postfix(failed=len(failed))
        else:
            runs[key] = run_dataset(outcome, key, pending[key])
            clash = (set(runs[key].variables) | set(runs[key].dims)) & (set(names) | {"key"})
            if clash:
                raise ValueError(
                    f"the task's results {sorted(clash)} have the names of grid axes or "
                    "coordinates; rename the grid axis or the result"
                )
            if st is not None:
                st.write(runs[key])
        bar.update()
    return runs, failed


def open_sweep(store):
    """The Dataset of a sweep store, rebuilt from its finished runs (also while the sweep runs,
    or after it was stopped: configurations not finished are NaN)."""
    _require("xarray")
    st = Store(store)
    meta = st.meta()
    if meta is None:
        raise FileNotFoundError(f"{store} is not an implicitreg sweep store")
    g = _grid_from_spec(meta["grid"])
    runs = {k: st.read(k) for k in st.done() & set(g.keys)}
    return assemble(g, runs, {"implicitreg_sweep_task": meta["task"]})


def _require(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(f"sweeps need {module}: pip install 'implicitreg[sweep]'") from None


# -- configuration files and the command line ---------------------------------------------------
SWEEP_OPTIONS = ("store", "backend", "scheduler", "workers", "threads", "retries", "errors")


def _resolve(name: str, what: str):
    """``"package.module:attr"``, or the name of an implicitreg object (``"LabelNoiseSGD"``)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string 'module:name', got {name!r}")
    module, _, attr = name.rpartition(":")
    obj = importlib.import_module(module or "implicitreg")
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_config(path):
    """Read a sweep file (TOML): returns ``(task, grid, options)``.

    ``[task]`` has ``function = "module:name"`` (called with the configuration; its other keys
    are fixed arguments) or ``problem = "module:name"`` and ``dynamics = "LabelNoiseSGD"`` (or
    ``"module:name"``) with :class:`SimulateTask` settings (``steps = ...``). ``[grid]`` is a
    table of lists, or ``[[grid]]`` a list of configurations. ``[sweep]`` holds options of
    :func:`sweep` (``store`` relative to the file) and ``scheduler``, a Dask scheduler address.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    unknown = set(cfg) - {"task", "grid", "sweep"}
    if unknown or "task" not in cfg:
        raise ValueError(
            f"{path}: needs a [task] table, and only [task], [grid], [sweep]"
            + (f" (found {sorted(unknown)})" if unknown else "")
        )
    spec = dict(cfg["task"])
    if "function" in spec:
        fn = _resolve(spec.pop("function"), "task.function")
        task = functools.partial(fn, **spec) if spec else fn
    else:
        if "problem" not in spec or "dynamics" not in spec:
            raise ValueError(
                f"{path}: [task] needs function = ..., or problem = ... and dynamics = ..."
            )
        problem = _resolve(spec.pop("problem"), "task.problem")
        task = SimulateTask(problem, _resolve(spec.pop("dynamics"), "task.dynamics"), **spec)
    options = dict(cfg.get("sweep", {}))
    unknown = set(options) - set(SWEEP_OPTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown [sweep] options {sorted(unknown)}")
    if "store" in options:
        options["store"] = str(path.parent / options["store"])
    return task, cfg.get("grid", {}), options


def add_sweep_command(subparsers) -> None:
    """Add ``sweep CONFIG.toml`` to the command line's subcommands."""
    p = subparsers.add_parser(
        "sweep",
        help="run a sweep described by a TOML file",
        description="Run the sweep of a TOML file (see docs/sweeps.md).",
    )
    p.add_argument("config", help="the sweep file (TOML)")
    p.add_argument("--store", help="Zarr store (overrides [sweep] store)")
    p.add_argument("--backend", choices=("local", "dask"))
    p.add_argument("--scheduler", help="address of a Dask scheduler (implies --backend dask)")
    p.add_argument("--workers", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--retries", type=int)
    p.add_argument("--errors", choices=("raise", "warn"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(sweep_command=_command)


def _command(args) -> int:
    config_dir = str(Path(args.config).resolve().parent)
    if config_dir not in sys.path:  # "study:problem" next to the file
        sys.path.insert(0, config_dir)
    task, grid, options = load_config(args.config)
    with contextlib.suppress(ImportError):  # ship modules next to the file by value: Dask
        import cloudpickle  # workers and schedulers elsewhere need not import them

        for module in list(sys.modules.values()):
            if str(getattr(module, "__file__", None) or "").startswith(config_dir + os.sep):
                cloudpickle.register_pickle_by_value(module)
    options.update({k: getattr(args, k) for k in SWEEP_OPTIONS if getattr(args, k) is not None})
    scheduler = options.pop("scheduler", None)
    client = None
    if scheduler is not None:
        from distributed import Client

        client, options["backend"] = Client(scheduler), "dask"
    try:
        ds = sweep(
            task, grid, client=client, progress=False if args.no_progress else None, **options
        )
    finally:
        if client is not None:
            client.close()
    print(ds)
    if options.get("store"):
        print(f"\nstored in {options['store']}; reopen with implicitreg.open_sweep(store)")
    return 0
