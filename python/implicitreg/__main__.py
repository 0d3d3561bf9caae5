"""Command line: ``python -m implicitreg [demo | list | reproduce NAME | sweep CONFIG]``."""

from __future__ import annotations

import argparse
import sys

from .sweep import add_sweep_command


def add_experiment_commands(sub) -> None:
    """``list`` and ``reproduce NAME... [--quick] [--out DIR] [--seed S]``."""
    sub.add_parser("list", help="list the paper reproductions")
    rep = sub.add_parser(
        "reproduce",
        help="run paper reproductions: summary.json, report.md and figures in DIR/NAME",
        description="Run one or more experiments (or 'all'); each writes DIR/NAME/summary.json, "
        "report.md and PNG figures (figures need matplotlib).",
    )
    rep.add_argument("names", nargs="+", metavar="NAME", help="experiment names, or 'all'")
    rep.add_argument("--quick", action="store_true", help="the short setting (< 1 min each)")
    rep.add_argument("--out", default="results", help="output directory (default: results)")
    rep.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the noise streams (igr-mlp: also its data split and init)",
    )
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_experiment_command(args) -> int:
    from . import experiments

    titles = experiments.titles()
    if args.command == "list":
        width = max(map(len, titles))
        for name, title in titles.items():
            print(f"{name:<{width}}  {title}")
        return 0
    names = list(titles) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in titles]
    if unknown:
        print(
            f"unknown experiment(s) {', '.join(unknown)}; choose from: {', '.join(titles)}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for name in names:
        s = experiments.reproduce(
            name,
            quick=args.quick,
            out=args.out,
            seed=args.seed,
            progress=False if args.no_progress else None,
        )
        checks = s["comparisons"]
        passed = sum(c["pass"] for c in checks)
        print(
            f"{name}: {passed}/{len(checks)} checks pass, {s['runtime_s']:.1f} s -> "
            f"{args.out}/{name}/report.md"
        )
        if passed < len(checks):
            failed.append(name)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implicitreg", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="label-noise SGD on a 1-D ReLU net (the default)")
    demo.add_argument("--steps", type=int, default=2_000_000)
    demo.add_argument("--seed", type=int, default=0)
    add_experiment_commands(sub)
    add_sweep_command(sub)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return args.sweep_command(args)
    if args.command in ("list", "reproduce"):
        return run_experiment_command(args)
    if args.command in (None, "demo"):
        from .demo import main as run_demo

        run_demo(steps=getattr(args, "steps", 2_000_000), seed=getattr(args, "seed", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
