"""Benchmark implicitreg against its peers on the anchor workloads (see bench/README.md).

    python bench/run.py [--quick] [--workloads W1,W1b,W2,W3,W4-R,W4-RgR,W5]
                        [--dtypes float64,float32] [--peers implicitreg,numpy,torch,...]
                        [--threads 1] [--repeats N] [--json out.json] [--png out.png]
                        [--no-gemm] [--no-replicas]

Every peer x workload runs in its own process (``worker.py``), pinned to ``--threads`` CPUs with
the thread variables set before anything is imported; so do the GEMM rates. The replica-scaling
job (W1, 32 replicas, simulate's threads=1 vs 2) runs unpinned. This file imports neither numpy,
torch nor jax.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = {  # peer name -> module holding time_<peer>_<workload>(dtype, **opts)
    "implicitreg": "peers_implicitreg",
    "numpy": "peers_numpy",
    "torch": "peers_torch",
    "torch_func": "peers_torch",
    "torch_compile": "peers_torch",
    "jax": "peers_jax",
    "jax_vmap": "peers_jax",
    "backpack": "peers_backpack",
}
SLOW_PEERS = {"torch_compile"}  # left out of --quick unless named in --peers (compiles ~20 s each)
WORKLOADS = ["W1", "W1b", "W2", "W3", "W4-R", "W4-RgR", "W5"]
FLOPS = {  # per step (W4: per evaluation), the floor counts of shared/workloads.md
    "W1": 1_708,
    "W1b": 11_662,
    "W2": 13_512_386,
    "W3": 225_680,
    "W4-R": 70.8e6,
    "W4-RgR": 209.2e6,
    "W5": 316.3e6,
}
QUICK = {  # shorter repeats for --quick (the full run uses harness.DEFAULTS, 5 repeats)
    "W1": {"min_steps": 500, "seconds": 0.15, "repeats": 3, "probe_steps": 200},
    "W1b": {"min_steps": 500, "seconds": 0.15, "repeats": 3, "probe_steps": 200},
    "W2": {"min_steps": 5, "seconds": 0.15, "repeats": 3},
    "W3": {"min_steps": 5, "seconds": 0.15, "repeats": 3},
    "W4-R": {"min_steps": 1, "seconds": 0.15, "repeats": 3, "probe_steps": 1},
    "W4-RgR": {"min_steps": 1, "seconds": 0.15, "repeats": 3, "probe_steps": 1},
    "W5": {"min_steps": 3, "seconds": 0.15, "repeats": 3, "probe_steps": 2},
}
GEMM_SHAPES = [(2048, 2048, 2048), (256, 256, 256), (32, 256, 256)]
REPLICAS = 32
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}  # relative error that counts as round-off


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short repeats (under 3 minutes)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--peers", help=f"comma-separated subset of {','.join(PEERS)} (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="CPUs per job (1 or 2)")
    ap.add_argument("--repeats", type=int, help="override the number of repeats")
    ap.add_argument("--json", help="write all results and the machine info to this JSON file")
    ap.add_argument("--png", help="write a bar chart (matplotlib) to this PNG file")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM rates")
    ap.add_argument("--no-replicas", action="store_true", help="skip the replica scaling")
    return ap.parse_args(argv)


def defined(module: str) -> set[str]:
    """Top-level function names of a peers module (read, not imported: no torch/jax here)."""
    with open(os.path.join(HERE, module + ".py")) as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def launch(job: dict, timeout: float) -> dict | list:
    """Run ``job`` in a fresh ``worker.py`` process; an error becomes ``{"error": ...}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [sys.executable, os.path.join(HERE, "worker.py"), json.dumps(job), out]
        try:
            proc = subprocess.run(
                cmd, check=False, timeout=timeout, stdout=subprocess.PIPE, text=True
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            return {"error": f"worker exited with {proc.returncode}"}
        with open(out) as f:
            return json.load(f)


def sig(x: float, digits: int = 3) -> str:
    """``digits`` significant digits, never in exponent form (1,234 rather than 1.23e+03)."""
    return f"{x:,.0f}" if x >= 10 ** (digits - 1) else f"{x:.{digits}g}"


def shape_label(shape) -> str:
    return "x".join(map(str, shape))


def fmt_us(us: float) -> str:
    return f"{us:,.2f}" if us < 100 else f"{us:,.0f}"


def ok(r: dict | None) -> bool:
    return r is not None and "error" not in r


def cell(r: dict | None, base: dict | None) -> str:
    if r is None:
        return "n/a"
    if "error" in r:
        return "error"
    s = fmt_us(r["us_per_step"]) + (" (!)" if r["trains"] is False else "")
    if ok(base) and r is not base:
        s += f" ({sig(r['us_per_step'] / base['us_per_step'])}×)"
    return s


def gemm_job(base: dict, quick: bool, timeout: float) -> list:
    """GFLOP/s of every library, dtype and shape (median of repeats); [] if the job failed."""
    seconds, repeats = (0.05, 2) if quick else (0.5, 5)
    job = {**base, "kind": "gemm", "shapes": GEMM_SHAPES, "seconds": seconds, "repeats": repeats}
    out = launch(job, timeout)
    if not isinstance(out, list):
        print(f"GEMM job failed: {out['error']}", file=sys.stderr)
        return []
    return out


def merge_gemm(runs: list[list]) -> list[dict]:
    """One entry per library, dtype and shape: ``gflops_runs`` (each run) and ``gflops`` (best)."""
    merged: dict = {}
    for run in runs:
        for g in run:
            key = (g["lib"], g["dtype"], tuple(g["shape"]))
            entry = merged.setdefault(key, {**g, "gflops_runs": []})
            entry["gflops_runs"].append(g["gflops"])
            entry["gflops"] = max(entry["gflops_runs"])
    return list(merged.values())


#: The libraries whose GEMM rate is the machine's peak (implicitreg's own, Eigen's, is shown too).
PEAK_LIBS = ("numpy", "torch")


def peak(gemm: list, dtype: str, libs: tuple = PEAK_LIBS) -> float | None:
    """The machine's GEMM rate for ``dtype``: the best over ``libs``, shapes and runs."""
    rates = [g["gflops"] for g in gemm if g["dtype"] == dtype and g["lib"] in libs]
    return max(rates) if rates else None


#: The product shape (m, k, n) of a workload's main GEMMs (W1, W1b, W3 have none that dominates).
GEMM_SHAPE = {
    "W2": (32, 256, 256),
    "W4-R": (256, 256, 256),
    "W4-RgR": (256, 256, 256),
    "W5": (256, 256, 256),
}


def shape_rate(gemm: list, workload: str, dtype: str) -> float | None:
    """The best GEMM rate measured at ``workload``'s main product shape, over every library
    (implicitreg's own Eigen included: the fastest product this machine was seen to run there)."""
    shape = GEMM_SHAPE.get(workload)
    rates = [g["gflops"] for g in gemm if g["dtype"] == dtype and tuple(g["shape"]) == shape]
    return max(rates) if shape and rates else None


def shape_legend() -> str:
    """``W2 32x256x256; W4-R, W4-RgR, W5 256x256x256``: the workloads of each main shape."""
    by: dict[tuple, list[str]] = {}
    for w, s in GEMM_SHAPE.items():
        by.setdefault(s, []).append(w)
    return "; ".join(f"{', '.join(ws)} {shape_label(s)}" for s, ws in by.items())


def ir_rate(row: dict) -> float | None:
    """implicitreg's FLOP rate in GFLOP/s (the workload's floor FLOP count / its time)."""
    base = row["results"].get("implicitreg")
    if not ok(base):
        return None
    return (row.get("flops") or FLOPS[row["workload"]]) / base["us_per_step"] / 1e3


def share(rate: float | None, top: float | None) -> str | None:
    """``rate`` as a percentage of ``top`` (None if either is missing)."""
    return f"{sig(100 * rate / top, 2)}%" if rate and top else None


def table(rows: list[dict], peers: list[str], gemm: list) -> str:
    """µs per step of every peer (and peer/implicitreg), implicitreg's GFLOP/s and GEMM shares."""
    head = ["workload", "dtype", *(f"{p} µs" for p in peers), "ir GFLOP/s", "ir % GEMM peak"]
    head += ["ir % GEMM at shape"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        res, base = row["results"], row["results"].get("implicitreg")
        cells = [row["workload"], row["dtype"], *(cell(res.get(p), base) for p in peers)]
        rate = ir_rate(row)
        cells.append(f"{rate:.3g}" if rate else "")
        cells.append(share(rate, peak(gemm, row["dtype"])) or "")
        cells.append(share(rate, shape_rate(gemm, row["workload"], row["dtype"])) or "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def err_cell(r: dict | None, tol: float) -> str:
    if not ok(r) or "rel_err" not in r:
        return "n/a" if r is None else ("error" if "error" in r else "")
    parts = [r["rel_err_R"], r["rel_err_grad"]] if "rel_err_grad" in r else [r["rel_err"]]
    s = " / ".join(f"{e:.1e}" for e in parts)
    return s + (" (!)" if r["rel_err"] > tol else "")


def error_table(rows: list[dict], peers: list[str]) -> str:
    head = ["workload", "dtype", *peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row["workload"] not in ("W4-R", "W4-RgR", "W5"):
            continue
        tol = TOLERANCE[row["dtype"]]
        cells = [err_cell(row["results"].get(p), tol) for p in peers]
        lines.append("| " + " | ".join([row["workload"], row["dtype"], *cells]) + " |")
    return "\n".join(lines)


def gemm_table(gemm: list) -> str:
    lines = ["| lib | dtype | m x k x n | GFLOP/s (start / end of the run) |", "|---|---|---|---|"]
    for g in gemm:
        shape = shape_label(g["shape"])
        rates = " / ".join(f"{r:.1f}" for r in g["gflops_runs"])
        lines.append(f"| {g['lib']} | {g['dtype']} | {shape} | {rates} |")
    return "\n".join(lines)


def replica_table(rep: dict) -> str:
    lines = [
        "| dtype | threads=1 µs/replica-step | threads=2 µs/replica-step | speed-up |",
        "|---|---|---|---|",
    ]
    for dtype, r in rep.items():
        if dtype == "affinity" or not ok(r):
            continue
        t1, t2 = r["threads=1"]["us_per_replica_step"], r["threads=2"]["us_per_replica_step"]
        lines.append(f"| {dtype} | {t1:.3f} | {t2:.3f} | {r['speedup']:.2f}× |")
    return "\n".join(lines)


def plot(rows: list[dict], peers: list[str], path: str, threads: int) -> None:
    """Grouped log-scale bars: µs per step of every peer on every workload, one panel per dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(12, 4 * len(dtypes)), squeeze=False)
    width = 0.8 / len(peers)
    for ax, dtype in zip(axes[:, 0], dtypes, strict=True):
        sub = [r for r in rows if r["dtype"] == dtype]
        for j, p in enumerate(peers):
            xs = [i for i, r in enumerate(sub) if ok(r["results"].get(p))]
            us = [sub[i]["results"][p]["us_per_step"] for i in xs]
            ax.bar([x + (j - (len(peers) - 1) / 2) * width for x in xs], us, width, label=p)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sub)), [r["workload"] for r in sub])
        ax.set_ylabel("µs per step (log)")
        ax.set_title(f"{dtype}, {threads} thread(s), median of repeats (lower is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=4, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def problems(rows: list[dict]) -> list[str]:
    """Failed runs, losses that did not go down, errors above round-off."""
    out = []
    for row in rows:
        for peer, r in row["results"].items():
            what = f"{row['workload']} {row['dtype']} {peer}: "
            if "error" in r:
                out.append(what + r["error"])
            elif r["trains"] is False:
                out.append(what + "the loss did not go down")
            elif r.get("rel_err", 0) > TOLERANCE[row["dtype"]]:
                out.append(what + f"relative error {r['rel_err']:.1e} (above round-off)")
    return out


def log(t_start: float, msg: str) -> None:
    print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)


def summary(res: dict) -> str:
    if "error" in res:
        return res["error"]
    s = f"{res['us_per_step']:.3f} µs/step, {res['steps_per_repeat']} x {res['repeats']}"
    if res["trains"] is not None:
        s += f", loss {res['loss_before']:.4g} -> {res['loss_after']:.4g}"
    if "rel_err" in res:
        s += f", rel err {res['rel_err']:.1e}"
    return s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        names = [p for p in args.peers.split(",") if p]
    else:
        names = [p for p in PEERS if not (args.quick and p in SLOW_PEERS)]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        sys.exit(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    wls, dtypes = args.workloads.split(","), args.dtypes.split(",")
    bad = [w for w in wls if w not in FLOPS]
    if bad:
        sys.exit(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    peers = sorted(names, key=lambda p: p != "implicitreg")
    fns = {m: defined(m) for m in set(PEERS.values())}
    timeout = 240 if args.quick else 1800
    base = {"threads": args.threads, "dtypes": dtypes}
    t_start = time.perf_counter()
    load = [os.getloadavg()]

    meta = launch({**base, "kind": "meta"}, timeout)
    if load[0][0] > 0.5:
        print(
            f"warning: load average {load[0][0]:.2f} before the run: the machine is busy, "
            "timings and GEMM rates will be low and noisy",
            file=sys.stderr,
        )
    gemm_runs = []
    if not args.no_gemm:
        gemm_runs.append(gemm_job(base, args.quick, timeout))
        log(t_start, "GEMM (start) done")

    rows = [
        {"workload": w, "dtype": d, "flops": FLOPS[w], "results": {}} for w in wls for d in dtypes
    ]
    for wl in wls:
        for peer in peers:
            if f"time_{peer}_{wl.replace('-', '_')}" not in fns[PEERS[peer]]:
                continue
            opts = dict(QUICK[wl]) if args.quick else {}
            if args.repeats:
                opts["repeats"] = args.repeats
            job = {**base, "kind": "time", "peer": peer, "module": PEERS[peer]}
            out = launch({**job, "workload": wl, "opts": opts}, timeout)
            for row in rows:
                if row["workload"] == wl:
                    res = out.get(row["dtype"], out) if "error" not in out else out
                    row["results"][peer] = res
                    log(t_start, f"{wl} {row['dtype']} {peer}: {summary(res)}")

    replicas: dict = {}
    if not args.no_replicas:
        opts = {"min_steps": 2_000, "seconds": 0.2} if args.quick else {"min_steps": 10_000}
        if args.quick or args.repeats:
            opts["repeats"] = args.repeats or 3
        ncpu = len(os.sched_getaffinity(0))
        job = {"kind": "replicas", "threads": ncpu, "pin": False, "dtypes": dtypes}
        replicas = launch({**job, "replicas": REPLICAS, "opts": opts}, timeout)
        log(t_start, f"replicas: {replicas.get('error', 'done')}")
    if not args.no_gemm:
        gemm_runs.append(gemm_job(base, args.quick, timeout))
        log(t_start, "GEMM (end) done")
    gemm = merge_gemm(gemm_runs)
    load.append(os.getloadavg())

    present = [p for p in peers if any(p in r["results"] for r in rows)]
    print(
        f"\nµs per step (W4: per evaluation), median of repeats; {args.threads} thread(s); "
        "(r×) = peer time / implicitreg time; (!) = loss did not go down; "
        "ir % GEMM peak = implicitreg's FLOP rate / the best numpy or torch GEMM rate below; "
        "ir % GEMM at shape = the same / the best rate below at the workload's main product shape "
        f"({shape_legend()})\n"
    )
    print(table(rows, present, gemm))
    if any(r["workload"] in ("W4-R", "W4-RgR", "W5") for r in rows):
        print("\nRelative error against the float64 NumPy reference (W4-RgR: R / grad R)\n")
        print(error_table(rows, present))
    if gemm:
        print(f"\nGEMM C = A @ B, {args.threads} thread(s)\n")
        print(gemm_table(gemm))
    if replicas and "error" not in replicas:
        print(f"\nReplica scaling: W1, {REPLICAS} replicas, one simulate call, unpinned\n")
        print(replica_table(replicas))
    flagged = problems(rows)
    if flagged:
        print("\nPROBLEMS:\n" + "\n".join(flagged))
    print(f"\nload average before/after: {load[0][0]:.2f} / {load[1][0]:.2f}")

    if args.json:
        run = {
            "threads": args.threads,
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": time.perf_counter() - t_start,
            "loadavg": load,
        }
        peaks = {d: peak(gemm, d) for d in dtypes}
        out = {
            "meta": {**meta, "run": run},
            "gemm": gemm,
            "gemm_peak_gflops": peaks,
            "replicas": replicas,
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.png:
        try:
            plot(rows, present, args.png, args.threads)
        except ImportError:
            print("matplotlib is not installed: no PNG", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
