"""What a simulation returns, and how it is saved and loaded (``.npz`` with JSON metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Moments:
    """Streaming moments of theta over the steps after ``burn_in`` (Welford, float64).

    ``mean`` is ``(replicas, p)``; ``cov`` is the sample covariance (ddof = 1), ``(replicas, p,
    p)``, or its diagonal ``(replicas, p)`` when run with ``moments="diagonal"``; ``count`` is
    the number of steps averaged per replica.
    """

    mean: np.ndarray
    cov: np.ndarray
    count: np.ndarray


@dataclass
class SimulationResult:
    """Output of :func:`implicitreg.simulate`.

    Attributes
    ----------
    theta : (replicas, p) final parameters (NaN-containing for a diverged replica).
    trace : dict name -> (replicas, records) scalar records (NaN after a divergence).
    steps : (records,) step numbers of the records.
    diverged_at : (replicas,) step at which a replica stopped, -1 if it did not.
    snapshots, snapshot_steps : (k, replicas, p) parameters every ``snapshot_every`` steps.
    probe_outputs, probe_steps : (k, replicas, m, n_out) model outputs on the probe inputs.
    moments : :class:`Moments` or None.
    config : everything needed to rerun: model, dynamics, run settings, versions.
    """

    theta: np.ndarray
    trace: dict[str, np.ndarray]
    steps: np.ndarray
    diverged_at: np.ndarray
    snapshots: np.ndarray | None = None
    snapshot_steps: np.ndarray | None = None
    probe_outputs: np.ndarray | None = None
    probe_steps: np.ndarray | None = None
    moments: Moments | None = None
    config: dict = field(default_factory=dict)
    completed_steps: int = 0

    def save(self, path) -> None:
        """Write the result to ``path`` (numpy ``.npz``; metadata as JSON)."""
        arrays = {"theta": self.theta, "steps": self.steps, "diverged_at": self.diverged_at}
        for name, values in self.trace.items():
            arrays[f"trace/{name}"] = values
        for name in ("snapshots", "snapshot_steps", "probe_outputs", "probe_steps"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        if self.moments is not None:
            arrays.update(
                {
                    "moments/mean": self.moments.mean,
                    "moments/cov": self.moments.cov,
                    "moments/count": self.moments.count,
                }
            )
        meta = {
            "config": self.config,
            "completed_steps": self.completed_steps,
            "trace_names": list(self.trace),
        }
        with open(path, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)

    def to_pandas(self):
        """Scalar traces as a long pandas DataFrame (columns replica, step, and one per trace)."""
        import pandas as pd

        R, K = self.theta.shape[0], len(self.steps)
        data = {"replica": np.repeat(np.arange(R), K), "step": np.tile(self.steps, R)}
        data.update({k: v.reshape(-1) for k, v in self.trace.items()})
        return pd.DataFrame(data)

    def to_xarray(self):
        """Scalar traces as an xarray Dataset with dimensions (replica, step)."""
        import xarray as xr

        return xr.Dataset(
            {k: (("replica", "step"), v) for k, v in self.trace.items()},
            coords={"replica": np.arange(self.theta.shape[0]), "step": self.steps},
            attrs={"config": json.dumps(self.config)},
        )


def load(path) -> SimulationResult:
    """Read a result written by :meth:`SimulationResult.save`."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        get = lambda k: z[k] if k in z.files else None
        moments = None
        if "moments/mean" in z.files:
            moments = Moments(z["moments/mean"], z["moments/cov"], z["moments/count"])
        return SimulationResult(
            theta=z["theta"],
            trace={k: z[f"trace/{k}"] for k in meta["trace_names"]},
            steps=z["steps"],
            diverged_at=z["diverged_at"],
            snapshots=get("snapshots"),
            snapshot_steps=get("snapshot_steps"),
            probe_outputs=get("probe_outputs"),
            probe_steps=get("probe_steps"),
            moments=moments,
            config=meta["config"],
            completed_steps=meta["completed_steps"],
        )
