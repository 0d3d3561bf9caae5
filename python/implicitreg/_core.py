"""The compiled core, chosen for this CPU at import time.

The package ships a portable baseline build and, on x86-64, an x86-64-v3 build (AVX2, FMA) and
an x86-64-v4 build (AVX-512) of the same C++ sources. The highest level the CPU supports is used;
set ``IMPLICITREG_CPU=baseline`` (or ``x86-64-v3``) to force a lower one (e.g. to compare).
Results of the builds agree to floating-point round-off, not bit for bit (vector widths change
the order of sums); each build is bit-reproducible on its own, whatever the thread count.
"""

from __future__ import annotations

import importlib
import os

from . import _core_baseline

#: The instruction-set levels, lowest first, with the baseline module's check for each.
LEVELS = ("baseline", "x86-64-v3", "x86-64-v4")
_CHECKS = {
    "x86-64-v3": _core_baseline._cpu_has_x86_64_v3,
    "x86-64-v4": lambda: (
        _core_baseline._cpu_has_x86_64_v3() and _core_baseline._cpu_has_x86_64_v4()
    ),
}


def cpu_supports(level: str) -> bool:
    """Whether this CPU (and OS) runs the build of instruction-set ``level``."""
    return level == "baseline" or _CHECKS[level]()


def load(level: str):
    """The compiled module of ``level`` (ImportError where this platform has no such build)."""
    if level == "baseline":
        return _core_baseline
    return importlib.import_module(f"{__package__}._core_{level.replace('-', '_')}")


def _select():
    want = os.environ.get("IMPLICITREG_CPU", "auto")
    if want not in ("auto", *LEVELS):
        raise ImportError(
            f"IMPLICITREG_CPU must be auto or one of {', '.join(LEVELS)}, got {want!r}"
        )
    if want != "auto":
        if not cpu_supports(want):
            raise ImportError(f"IMPLICITREG_CPU={want}: this CPU cannot run that build")
        return load(want)
    for level in reversed(LEVELS):
        if cpu_supports(level):
            try:
                return load(level)
            except ImportError:  # a build left out at compile time (not x86-64)
                continue
    return _core_baseline


_module = _select()
globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
__version__ = _module.__version__
