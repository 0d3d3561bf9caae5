"""One benchmark job in a process of its own; ``run.py`` starts one per peer and workload.

    python bench/worker.py JOB_JSON OUT_JSON

``JOB_JSON`` is a dict with ``kind`` ("time", "gemm", "replicas" or "meta"), ``threads`` and
``pin`` (default true) and the kind's fields; the result is written to ``OUT_JSON``. The CPU
affinity and the thread variables are set before numpy, torch or jax is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def pin_threads(threads: int, pin: bool = True) -> None:
    """Affinity to ``threads`` CPUs (if ``pin``) and BLAS/OpenMP/XLA pools of that size."""
    if pin:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )


def set_torch_threads(threads: int) -> None:
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def job_time(job: dict) -> dict:
    """``time_<peer>_<workload>(dtype, **opts)`` for every dtype; a failure is recorded."""
    peer, wl = job["peer"], job["workload"]
    mod = importlib.import_module(job["module"])
    set_torch_threads(job["threads"])
    fn = getattr(mod, f"time_{peer}_{wl.replace('-', '_')}")
    opts = dict(job.get("opts", {}))
    if peer == "implicitreg":
        opts["threads"] = job["threads"]
    out = {}
    for dtype in job["dtypes"]:
        try:
            out[dtype] = fn(dtype, **opts)
        except Exception as e:  # noqa: BLE001  (reported, the other dtype goes on)
            traceback.print_exc()
            out[dtype] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _rate(matmul, A, B, seconds: float, repeats: int) -> float:
    """GFLOP/s of ``matmul(A, B)``: median over repeats of calls lasting about ``seconds``
    (the first call, timed, is the warm-up)."""
    t0 = time.perf_counter()
    matmul(A, B)
    calls = max(1, math.ceil(seconds / (time.perf_counter() - t0)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            matmul(A, B)
        times.append((time.perf_counter() - t0) / calls)
    (m, k), n = A.shape, B.shape[1]
    return 2 * m * k * n / statistics.median(times) / 1e9


def job_gemm(job: dict) -> list[dict]:
    """``C = A @ B`` with numpy (OpenBLAS), torch and implicitreg's own GEMM (Eigen, as its models
    call it), every shape and dtype: GFLOP/s."""
    import numpy as np

    libs = {"numpy": (np.asarray, np.matmul)}
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(job["threads"])
        libs["torch"] = (torch.from_numpy, torch.mm)
    with contextlib.suppress(ImportError):
        from implicitreg import _core

        def eigen_mm(A, B):  # one product, timed in C++ (the harness times the call around it)
            suffix = "f64" if A.dtype == np.float64 else "f32"
            return getattr(_core, f"_gemm_seconds_{suffix}")(A, B, 1, 1)

        libs["implicitreg"] = (np.asarray, eigen_mm)
    rng = np.random.default_rng(0)
    out = []
    for lib, (convert, matmul) in libs.items():
        for dtype in job["dtypes"]:
            for m, k, n in job["shapes"]:
                A = convert(rng.standard_normal((m, k)).astype(dtype))
                B = convert(rng.standard_normal((k, n)).astype(dtype))
                rate = _rate(matmul, A, B, job["seconds"], job["repeats"])
                out.append({"lib": lib, "dtype": dtype, "shape": [m, k, n], "gflops": rate})
    return out


def job_replicas(job: dict) -> dict:
    import peers_implicitreg

    out = {"affinity": sorted(os.sched_getaffinity(0))}
    for dtype in job["dtypes"]:
        out[dtype] = peers_implicitreg.time_replicas(dtype, job["replicas"], **job["opts"])
    return out


def _cpuinfo() -> dict:
    info: dict = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "cpu family", "model", "flags") and key not in info:
                info[key] = value
    flags = set(info.pop("flags", "").split())
    info["simd"] = [x for x in ("avx", "avx2", "fma", "avx512f") if x in flags]
    info["cpus"] = os.cpu_count()
    return info


def job_meta(job: dict) -> dict:
    versions = {"python": platform.python_version()}
    for dist in ("numpy", "torch", "jax", "jaxlib", "backpack-for-pytorch", "matplotlib"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    meta = {"cpu": _cpuinfo(), "platform": platform.platform(), "versions": versions}
    try:
        import implicitreg

        meta["build_info"] = implicitreg.build_info()
    except Exception as e:  # noqa: BLE001
        meta["build_info"] = f"{type(e).__name__}: {e}"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", HERE]
        head = subprocess.check_output([*git, "rev-parse", "HEAD"], text=True).strip()
        dirty = subprocess.check_output([*git, "status", "--porcelain"], text=True).strip()
        meta["git"] = head + (" (dirty)" if dirty else "")
    return meta


JOBS = {"time": job_time, "gemm": job_gemm, "replicas": job_replicas, "meta": job_meta}


def main() -> int:
    job = json.loads(sys.argv[1])
    if job["kind"] == "gemm":  # OpenBLAS picks its own kernel and cache sizes
        for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            os.environ.pop(var, None)
    pin_threads(job["threads"], job.get("pin", True))
    sys.path.insert(0, HERE)
    result = JOBS[job["kind"]](job)
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
