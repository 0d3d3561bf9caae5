"""The sweep store (a Zarr v3 directory) and the assembly of per-configuration results into one
xarray Dataset over the grid.

Layout::

    STORE/zarr.json             root group; attrs["implicitreg_sweep"]: format, task, grid
    STORE/runs/<key>/           one finished configuration (its variables; attrs key, config)
    STORE/staging/<key>-<id>/   a result being written, moved into runs/ once complete
    STORE/dataset/              the consolidated view over the grid, rewritten by each sweep

A result is written in full under ``staging/`` and then renamed to ``runs/<key>`` (an atomic
rename on a POSIX file system): ``runs/<key>`` is the finished marker, and it never exists half
written.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

FORMAT = 1
META = "implicitreg_sweep"


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def run_dataset(record: dict, key: str, config: dict):
    """One configuration's result as an xarray Dataset (what ``runs/<key>`` holds)."""
    import xarray as xr

    coords = {n: record["vars"][n] for n in record["coords"]}
    data = {n: v for n, v in record["vars"].items() if n not in coords}
    attrs = {"key": key, "config": canonical(config)}
    attrs.update(
        {k: canonical(v) if isinstance(v, dict) else v for k, v in record["attrs"].items()}
    )
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _zarr_ready(ds):
    """Fixed-width numpy strings as object arrays (Zarr v3's specified variable-length string)."""
    for name, var in ds.variables.items():
        if var.dtype.kind in "US":
            ds[name] = var.astype(object)
    return ds


class Store:
    """A sweep store on a (shared) file system; one writing sweep at a time (a lock enforces it
    where the file system supports ``flock``)."""

    def __init__(self, path):
        if "://" in str(path):
            raise ValueError(f"store must be a directory path, got {path!r}")
        self.path = Path(path)
        self._lock_fd = None

    # -- opening ------------------------------------------------------------------------------
    def meta(self) -> dict | None:
        import zarr

        if not (self.path / "zarr.json").exists():
            return None
        return zarr.open_group(self.path, mode="r").attrs.get(META)

    def open(self, task: str, grid: dict) -> None:
        """Create or reopen the store for ``task`` (its description), recording ``grid``."""
        import zarr

        if self.path.exists() and any(self.path.iterdir()) and self.meta() is None:
            raise ValueError(f"{self.path} exists and is not an implicitreg sweep store")
        meta = self.meta()
        if meta is not None and meta["task"] != task:
            raise ValueError(
                f"the store {self.path} holds results of a different task:\n  stored: "
                f"{meta['task']}\n  this:   {task}\nuse another store, or delete this one"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        root = zarr.open_group(self.path, mode="a", zarr_format=3)
        root.attrs[META] = {"format": FORMAT, "task": task, "grid": grid}
        for name in ("runs", "staging"):
            root.require_group(name)
        for leftover in (self.path / "staging").iterdir():  # from a sweep that was killed
            if leftover.is_dir():
                shutil.rmtree(leftover)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"another sweep is writing to {self.path}") from None
        except OSError:  # a file system without flock on directories: go on unlocked
            os.close(fd)
            return
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- runs ---------------------------------------------------------------------------------
    def done(self) -> set[str]:
        """Keys of the finished configurations."""
        runs = self.path / "runs"
        if not runs.is_dir():
            return set()
        return {p.name for p in runs.iterdir() if (p / "zarr.json").exists()}

    def write(self, ds) -> bool:
        """Write one configuration's result; False (and nothing written) if it is already there."""
        key = ds.attrs["key"]
        final = self.path / "runs" / key
        if final.exists():
            return False
        tmp = self.path / "staging" / f"{key}-{uuid.uuid4().hex[:8]}"
        _zarr_ready(ds.copy()).to_zarr(tmp, mode="w-", consolidated=False, zarr_format=3)
        try:
            os.rename(tmp, final)  # atomic: the run appears complete or not at all
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():
                return False
            raise
        return True

    def read(self, key: str):
        import xarray as xr

        path = self.path / "runs" / key
        return xr.open_zarr(path, consolidated=False, chunks=None).load()

    def write_dataset(self, ds) -> None:
        _zarr_ready(ds.copy()).to_zarr(
            self.path, group="dataset", mode="w", consolidated=False, zarr_format=3
        )


# -- assembly -----------------------------------------------------------------------------------
def _fill(dtype: np.dtype):
    if dtype.kind in "fc":
        return dtype, np.nan
    if dtype.kind in "biu":
        return np.dtype(np.float64), np.nan
    return np.dtype(object), None


def assemble(grid, runs: dict, attrs: dict):
    """One Dataset over the grid from ``runs`` ({key: run Dataset}); missing configurations and
    shorter arrays (a grid axis that changes ``steps``, ``replicas``...) are padded with NaN
    (integers become float64 then), or None for strings.

    A per-run coordinate such as ``step`` that is the same in every run becomes a plain
    coordinate on its own dimension (``record``); otherwise it spans the grid dimensions too.
    """
    import xarray as xr

    index = dict(zip(grid.keys, np.ndindex(*grid.shape), strict=True))
    present = {k: ds for k, ds in runs.items() if k in index}
    names = list(dict.fromkeys(n for ds in present.values() for n in ds.variables))
    coords = dict(grid.coords)
    coords["key"] = (grid.dims, np.array(grid.keys, dtype=object).reshape(grid.shape))
    data = {}
    for name in names:
        entries = [(index[k], ds[name]) for k, ds in present.items() if name in ds.variables]
        dims = entries[0][1].dims
        for _, v in entries:
            if v.dims != dims:
                raise ValueError(
                    f"result {name!r} has dimensions {dims} in one configuration "
                    f"and {v.dims} in another"
                )
        if set(dims) & set(grid.dims) or name in coords:
            raise ValueError(
                f"result {name!r} (dimensions {dims}) clashes with the grid's "
                f"names {grid.dims}; rename the grid axis"
            )
        arrays = [v.values for _, v in entries]
        is_coord = name in entries[0][1].coords
        first = arrays[0]
        if is_coord and all(a.shape == first.shape and np.array_equal(a, first) for a in arrays):
            coords[name] = (dims, first)
            continue
        shape = tuple(max(a.shape[i] for a in arrays) for i in range(len(dims)))
        dtype = np.result_type(*{a.dtype for a in arrays})
        if len(arrays) == len(grid.keys) and all(a.shape == shape for a in arrays):
            out = np.empty(grid.shape + shape, dtype)
        else:
            dtype, fill = _fill(dtype)
            out = np.full(grid.shape + shape, fill, dtype)
        for (idx, _), a in zip(entries, arrays, strict=True):
            out[idx + tuple(slice(0, s) for s in a.shape)] = a
        (coords if is_coord else data)[name] = (grid.dims + dims, out)
    return xr.Dataset(data, coords=coords, attrs=attrs)
