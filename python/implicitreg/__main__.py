"""Command line: ``python -m implicitreg [demo]``."""

from __future__ import annotations

import argparse
import sys

from .sweep import add_sweep_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implicitreg", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="label-noise SGD on a 1-D ReLU net (the default)")
    demo.add_argument("--steps", type=int, default=2_000_000)
    demo.add_argument("--seed", type=int, default=0)
    add_sweep_command(sub)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return args.sweep_command(args)
    if args.command in (None, "demo"):
        from .demo import main as run_demo

        run_demo(steps=getattr(args, "steps", 2_000_000), seed=getattr(args, "seed", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
