"""Benchmark implicitreg against its peers on the anchor workloads (see bench/README.md).

    python bench/run.py [--quick] [--workloads W1,W1b,W2] [--dtypes float64,float32]
                        [--peers implicitreg,numpy,torch,torch_func,torch_compile,jax]
                        [--json out.json] [--repeats N]
                        [--threads 1]

The thread environment and CPU affinity are set before numpy, torch or jax is imported, so this
file imports them only inside ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import sys
import time
import traceback

PEERS = {  # peer name -> module holding time_<peer>_<workload>(dtype, **opts)
    "implicitreg": "peers_implicitreg",
    "numpy": "peers_numpy",
    "torch": "peers_torch",
    "torch_func": "peers_torch",
    "torch_compile": "peers_torch",
    "jax": "peers_jax",
}
SLOW_PEERS = {"torch_compile"}  # left out of --quick unless named in --peers (compiles ~20 s each)
WORKLOADS = ["W1", "W1b", "W2"]
QUICK = {  # shorter repeats for --quick (the full run uses harness.DEFAULTS, 5 repeats)
    "W1": {"min_steps": 2_000, "seconds": 0.2, "repeats": 3},
    "W1b": {"min_steps": 2_000, "seconds": 0.2, "repeats": 3},
    "W2": {"min_steps": 20, "seconds": 0.3, "repeats": 3},
    "W3": {"min_steps": 20, "seconds": 0.3, "repeats": 3},
    "W5": {"min_steps": 20, "seconds": 0.3, "repeats": 3},
}


def pin_threads(threads: int) -> None:
    """One thread per CPU: affinity to ``threads`` CPUs, BLAS/OpenMP/XLA pools of that size."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short repeats (about 2 minutes)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--peers", help=f"comma-separated subset of {','.join(PEERS)} (default: all)")
    ap.add_argument("--json", help="write all results to this JSON file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, help="override the number of repeats")
    return ap.parse_args(argv)


def load_peers(names: list[str], threads: int) -> tuple[dict, dict]:
    """Import the peers' modules; a peer whose import fails is skipped with the reason."""
    mods, skipped = {}, {}
    for name in names:
        try:
            mods[name] = importlib.import_module(PEERS[name])
        except Exception as e:  # noqa: BLE001  (a peer that cannot load is skipped)
            skipped[name] = f"{type(e).__name__}: {e}"
    if any(m.__name__ == "peers_torch" for m in mods.values()):
        import torch

        torch.set_num_threads(threads)
    return mods, skipped


def versions() -> dict:
    out = {
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    for mod in ("numpy", "torch", "jax", "implicitreg"):
        with contextlib.suppress(ImportError, AttributeError):
            out[mod] = importlib.import_module(mod).__version__
    return out


def fmt_us(r: dict | None) -> str:
    if r is None:
        return "n/a"
    if "error" in r:
        return "error"
    us = r["us_per_step"]
    s = f"{us:,.2f}" if us < 100 else f"{us:,.0f}"
    return s if r["trains"] else s + " (!)"


def table(rows: list[dict], peers: list[str]) -> str:
    base = "implicitreg"
    others = [p for p in peers if p != base]
    head = ["workload", "dtype", *(f"{p} µs" for p in peers)]
    if base in peers:
        head += [f"{p}/ir" for p in others] + ["ir GFLOP/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        res = row["results"]
        cells = [row["workload"], row["dtype"], *(fmt_us(res.get(p)) for p in peers)]
        if base in peers:
            ir_res = res.get(base)
            ok = ir_res is not None and "error" not in ir_res
            for p in others:
                r = res.get(p)
                good = ok and r is not None and "error" not in r
                cells.append(f"{r['us_per_step'] / ir_res['us_per_step']:.3g}×" if good else "")
            cells.append(f"{row['flops'] / ir_res['us_per_step'] / 1e3:.2f}" if ok else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads

    if args.peers:
        names = [p for p in args.peers.split(",") if p]
    else:
        names = [p for p in PEERS if not (args.quick and p in SLOW_PEERS)]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        sys.exit(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    mods, skipped = load_peers(names, args.threads)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}", file=sys.stderr)
    peers = sorted((p for p in names if p in mods), key=lambda p: p != "implicitreg")

    rows = []
    t_start = time.perf_counter()
    for wl in args.workloads.split(","):
        for dtype in args.dtypes.split(","):
            row = {"workload": wl, "dtype": dtype, "flops": workloads.get(wl).flops, "results": {}}
            for peer in peers:
                fn = getattr(mods[peer], f"time_{peer}_{wl}", None)
                if fn is None:
                    continue
                opts = dict(QUICK[wl]) if args.quick else {}
                if args.repeats:
                    opts["repeats"] = args.repeats
                if peer == "implicitreg":
                    opts["threads"] = args.threads
                try:
                    res = fn(dtype, **opts)
                except Exception as e:  # noqa: BLE001  (reported, the others go on)
                    traceback.print_exc()
                    res = {"error": f"{type(e).__name__}: {e}"}
                row["results"][peer] = res
                msg = res.get("error") or (
                    f"{res['us_per_step']:.3f} µs/step, loss {res['loss_before']:.4g} -> "
                    f"{res['loss_after']:.4g}, {res['steps_per_repeat']} steps x "
                    f"{res['repeats']}, compile {res['compile_s']:.1f} s"
                )
                print(
                    f"[{time.perf_counter() - t_start:6.1f} s] {wl} {dtype} {peer}: {msg}",
                    file=sys.stderr,
                    flush=True,
                )
            rows.append(row)

    print(
        f"\nµs per step, median of repeats; {args.threads} thread(s); "
        f"peer/ir = peer time / implicitreg time; (!) = loss did not go down\n"
    )
    print(table(rows, peers))
    failed = [
        (r["workload"], r["dtype"], p)
        for r in rows
        for p, v in r["results"].items()
        if "error" not in v and not v["trains"]
    ]
    if failed:
        print(f"\nDID NOT TRAIN: {failed}")
    if args.json:
        meta = {
            "threads": args.threads,
            "quick": args.quick,
            "skipped": skipped,
            "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "affinity": sorted(os.sched_getaffinity(0)),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
