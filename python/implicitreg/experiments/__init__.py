"""End-to-end reproductions of Blanc et al. (COLT 2020) and Barrett & Dherin (ICLR 2021).

``python -m implicitreg list`` names them; ``python -m implicitreg reproduce NAME [--quick]
[--out DIR] [--seed S]`` runs one and writes ``DIR/NAME/summary.json`` (parameters, seed,
version, measurements and predictions side by side), ``report.md`` and PNG figures.

>>> from implicitreg import experiments
>>> summary = experiments.reproduce("blanc-drift", quick=True, out="results")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from ._common import Context, execute

_MODULES = (
    "blanc_ou",
    "blanc_drift",
    "blanc_matrix_sensing",
    "blanc_relu1d",
    "blanc_sigmoid",
    "igr_two_param",
    "igr_mlp",
)


def _load() -> dict:
    found = {}
    for mod_name in _MODULES:
        module = importlib.import_module(f".{mod_name}", __name__)
        if getattr(module, "AVAILABLE", True):
            found[module.NAME] = module
    return found


def names() -> list[str]:
    """Names of the experiments that can run with this build."""
    return list(_load())


def titles() -> dict[str, str]:
    """Name -> one-line description."""
    return {name: m.TITLE for name, m in _load().items()}


def reproduce(
    name: str, quick: bool = False, out="results", seed: int = 0, progress: bool | None = None
) -> dict:
    """Run experiment ``name``; returns the summary written to ``out/name/summary.json``."""
    registry = _load()
    if name not in registry:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(registry)}")
    return execute(registry[name], out=out, quick=quick, seed=seed, progress=progress)


__all__ = ["Context", "names", "reproduce", "titles"]
