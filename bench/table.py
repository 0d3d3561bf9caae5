"""Render the README's benchmark table from the JSON that ``run.py --json`` writes.

    python bench/table.py RESULTS.json [--readme README.md]

Prints a Markdown block (one row per workload: implicitreg's µs and share of the GEMM peak, then
every peer's µs and its time relative to implicitreg's; the machine and run line; the replica
scaling); with ``--readme`` it replaces the text between the lines ``<!-- bench-table:start -->``
and ``<!-- bench-table:end -->`` of that file instead. Like ``run.py``, this file imports neither
numpy, torch nor jax.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def markers(name: str = "") -> tuple[str, str]:
    """The marker lines of a README block: ``bench-table`` or ``bench-table-NAME``."""
    tag = f"bench-table-{name}" if name else "bench-table"
    return f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"


START, END = markers()
MISSING = "—"
DESCRIPTION = {  # the workloads of shared/workloads.md, in a few words
    "W1": "1-D ReLU net, 1 sample/step",
    "W1b": "same, full batch",
    "W2": "MLP 20-256-256-1, batch 32",
    "W3": "matrix sensing, full batch",
    "W4-R": "R on 256 samples",
    "W4-RgR": "R and ∇R",
    "W5": "EGR step",
}


def _load_run():
    """``bench/run.py`` as a module (stdlib only; importing it runs nothing)."""
    spec = importlib.util.spec_from_file_location("_bench_run", os.path.join(HERE, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load_run()


def _us(r: dict | None) -> str:
    if not run.ok(r):
        return MISSING
    return run.fmt_us(r["us_per_step"]) + (" (!)" if r.get("trains") is False else "")


def _pair(cells: list[str]) -> str:
    return MISSING if all(c == MISSING for c in cells) else " / ".join(cells)


def _peak_share(row: dict, peaks: dict, gemm: list) -> str:
    """implicitreg's FLOP rate as a share of the GEMM peak, as ``run.table`` computes it."""
    top = peaks.get(row["dtype"]) or run.peak(gemm, row["dtype"])
    return run.share(run.ir_rate(row), top) or MISSING


def _shape_share(row: dict, gemm: list) -> str:
    """The same rate as a share of the best GEMM rate measured at the workload's main shape."""
    top = run.shape_rate(gemm, row["workload"], row["dtype"])
    return run.share(run.ir_rate(row), top) or MISSING


def main_table(data: dict) -> str:
    rows, gemm = data["rows"], data.get("gemm", [])
    peaks = data.get("gemm_peak_gflops") or {}
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    seen = dict.fromkeys(p for r in rows for p in r["results"])  # run.py's order, then others
    peers = [p for p in [*run.PEERS, *seen] if p in seen and p != "implicitreg"]
    peers = list(dict.fromkeys(peers))
    by = {(r["workload"], r["dtype"]): r for r in rows}
    head = ["workload", "implicitreg", "% of GEMM peak", "% of GEMM at its shape", *peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl in workloads:
        sub = [by.get((wl, d), {"workload": wl, "dtype": d, "results": {}}) for d in dtypes]
        label = f"{wl} ({DESCRIPTION[wl]})" if wl in DESCRIPTION else wl
        cells = [label, _pair([_us(r["results"].get("implicitreg")) for r in sub])]
        cells.append(_pair([_peak_share(r, peaks, gemm) for r in sub]))
        cells.append(_pair([_shape_share(r, gemm) for r in sub]))
        for p in peers:
            s = _pair([_us(r["results"].get(p)) for r in sub])
            first, base = sub[0]["results"].get(p), sub[0]["results"].get("implicitreg")
            if run.ok(first) and run.ok(base):
                s += f" ({run.sig(first['us_per_step'] / base['us_per_step'])}×)"
            cells.append(s)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gflops(x: float | None) -> str:
    return f"{x:.1f}" if x else MISSING


def run_line(data: dict) -> str:
    """GEMM peak rates, machine, date, threads and kind of run."""
    meta, rows = data.get("meta", {}), data["rows"]
    info = meta.get("run", {})
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    peaks = data.get("gemm_peak_gflops") or {}
    rates = " / ".join(_gflops(peaks.get(d) or run.peak(data.get("gemm", []), d)) for d in dtypes)
    parts = [f"GEMM peak {rates} GFLOP/s ({' / '.join(dtypes)}, best of numpy and torch)"]
    gemm = data.get("gemm", [])
    if any(g["lib"] == "implicitreg" for g in gemm):
        own = " / ".join(_gflops(run.peak(gemm, d, ("implicitreg",))) for d in dtypes)
        parts.append(f"implicitreg's own GEMM (Eigen) at best {own}")
    cpu = meta.get("cpu", {})
    machine = cpu.get("model name", "unknown CPU")
    if cpu.get("cpu family") and cpu.get("model"):
        # The model name of a VM's CPU is often just the brand; family and model tell the core.
        machine += f" (family {cpu['cpu family']}, model {cpu['model']})"
    if cpu.get("cpus"):
        machine += f", {cpu['cpus']} CPUs"
    build = meta.get("build_info")
    if isinstance(build, dict) and build.get("isa"):
        machine += f", {build['isa']} build"
    parts.append(machine)
    if info.get("date"):
        parts.append(info["date"])
    threads = info.get("threads")
    if threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''} per job")
    if "quick" in info:
        parts.append("`--quick` run" if info["quick"] else "full run")
    load = info.get("loadavg")
    if load and len(load) == 2:
        parts.append(f"load average {load[0][0]:.2f} before / {load[1][0]:.2f} after")
    if meta.get("git"):
        parts.append(f"commit {meta['git'][:10]}{' (dirty)' if 'dirty' in meta['git'] else ''}")
    return "; ".join(parts) + "."


def replica_block(rep: dict) -> str:
    """The replica-scaling table of ``run.replica_table``, or "" if there is none."""
    if not rep or "error" in rep:
        return ""
    counts = {r["replicas"] for d, r in rep.items() if d != "affinity" and run.ok(r)}
    if not counts:
        return ""
    n = "/".join(str(c) for c in sorted(counts))
    title = (
        f"Replica scaling: W1, {n} replicas in one `simulate` call, threads=1 against threads=2:"
    )
    return title + "\n\n" + run.replica_table(rep)


def render(data: dict) -> str:
    """The Markdown block: main table, run line, problems if any, replica scaling."""
    dtypes = list(dict.fromkeys(r["dtype"] for r in data["rows"]))
    legend = (
        f"µs per step (W4: per evaluation), {' / '.join(dtypes)}, median of repeats, each "
        f"implementation in its own process; `(r×)` = peer time / implicitreg time in {dtypes[0]} "
        f"(above 1: implicitreg is faster); `(!)` = the loss did not go down; {MISSING} = failed "
        "or not implemented; % of GEMM peak = implicitreg's FLOP rate (the workload's floor FLOP "
        "count / its time) / the GEMM peak below; % of GEMM at its shape = the same / the best "
        "rate of any library, implicitreg's Eigen included, at the workload's main product shape ("
        + run.shape_legend()
        + ")."
    )
    parts = [legend, main_table(data), run_line(data)]
    flagged = run.problems(data["rows"])
    if flagged:
        parts.append("Problems: " + "; ".join(flagged) + ".")
    elif any(r["workload"] in ("W4-R", "W4-RgR", "W5") for r in data["rows"]):
        parts.append("Every W4/W5 result matches the float64 NumPy reference to round-off.")
    rep = replica_block(data.get("replicas") or {})
    if rep:
        parts.append(rep)
    return "\n\n".join(parts) + "\n"


def replace_block(text: str, block: str, path: str = "README", name: str = "") -> str:
    """``text`` with everything between the marker lines (of block ``name``) replaced."""
    START, END = markers(name)
    lines = text.splitlines(keepends=True)
    starts = [i for i, s in enumerate(lines) if s.strip() == START]
    ends = [i for i, s in enumerate(lines) if s.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        sys.exit(
            f"{path}: needs exactly one line {START} followed by one line {END} "
            f"(found {len(starts)} start and {len(ends)} end marker lines)"
        )
    body = block if block.endswith("\n") else block + "\n"
    return "".join([*lines[: starts[0] + 1], "\n", body, "\n", *lines[ends[0] :]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="the JSON written by run.py --json")
    ap.add_argument("--readme", help="replace the marked block of this file instead of printing")
    ap.add_argument(
        "--block",
        default="",
        help="which block: NAME uses the markers <!-- bench-table-NAME:start/end --> "
        "(e.g. a second table for another thread count)",
    )
    args = ap.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        data = json.load(f)
    if not data.get("rows"):
        sys.exit(f"{args.results}: no rows (not the output of run.py --json?)")
    block = render(data)
    if not args.readme:
        sys.stdout.write(block)
        return 0
    with open(args.readme, encoding="utf-8") as f:
        text = f.read()
    new = replace_block(text, block, args.readme, args.block)
    with open(args.readme, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"{args.readme}: benchmark table updated from {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
