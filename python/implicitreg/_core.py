"""The compiled core, chosen for this CPU at import time.

The package ships a portable baseline build and, on x86-64, an x86-64-v3 build (AVX2, FMA)
of the same C++ sources. The faster one is used when the CPU supports it; set
``IMPLICITREG_CPU=baseline`` to force the portable one (e.g. to compare). Results of the two
builds agree to floating-point round-off, not bit for bit (vector widths change the order of
sums); each build is bit-reproducible on its own, whatever the thread count.
"""

from __future__ import annotations

import importlib
import os

from . import _core_baseline


def _select():
    want = os.environ.get("IMPLICITREG_CPU", "auto")
    if want not in ("auto", "baseline", "x86-64-v3"):
        raise ImportError(f"IMPLICITREG_CPU must be auto, baseline or x86-64-v3, got {want!r}")
    if want == "baseline" or not _core_baseline._cpu_has_x86_64_v3():
        return _core_baseline
    try:
        return importlib.import_module(f"{__package__}._core_x86_64_v3")
    except ImportError:
        if want == "x86-64-v3":
            raise
        return _core_baseline


_module = _select()
globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
__version__ = _module.__version__
