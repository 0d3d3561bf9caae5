"""Shared machinery of the experiments: parameters, comparisons, summary.json, report.md, figures.

An experiment is a module with ``NAME``, ``TITLE``, a docstring (the report's introduction) and
``run(ctx)``. ``run`` records what it used with ``ctx.params(...)``, what it measured with
``ctx.measure(...)``, each prediction beside its measurement with ``ctx.compare(...)``, and
draws figures with ``ctx.figure(...)``; :func:`execute` writes ``summary.json`` and
``report.md``. Figures need matplotlib (optional): without it they are skipped and the rest of
the output is written as usual.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__


def jsonable(x):
    """numpy scalars and arrays (and nested containers of them) as plain JSON values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def fmt(x) -> str:
    """A number for the report table: 4 significant digits; strings pass through."""
    if isinstance(x, str):
        return x
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.3e}"


@dataclass
class Context:
    """What an experiment sees: its settings, and where its results go."""

    name: str
    out: Path
    quick: bool = False
    seed: int = 0
    progress: bool | None = None
    parameters: dict = field(default_factory=dict)
    measurements: dict = field(default_factory=dict)
    comparisons: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    tables: list = field(default_factory=list)

    def pick(self, quick, full):
        """``quick`` in --quick mode, ``full`` otherwise."""
        return quick if self.quick else full

    def params(self, **kw) -> None:
        self.parameters.update(jsonable(kw))

    def measure(self, **kw) -> None:
        self.measurements.update(jsonable(kw))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self, title: str, columns: list, rows: list) -> None:
        """An extra table for the report (and summary.json)."""
        self.tables.append(jsonable({"title": title, "columns": columns, "rows": rows}))

    def log(self, text: str) -> None:
        if self.progress is not False:
            from tqdm.auto import tqdm

            tqdm.write(f"[{self.name}] {text}", file=sys.stderr)

    def compare(
        self, quantity: str, theory, measured, criterion: str, ok: bool, stderr=None
    ) -> bool:
        """One row of the report: the prediction, the measurement, the pass criterion."""
        self.comparisons.append(
            jsonable(
                {
                    "quantity": quantity,
                    "theory": theory,
                    "measured": measured,
                    "stderr": stderr,
                    "criterion": criterion,
                    "pass": bool(ok),
                }
            )
        )
        return bool(ok)

    def figure(self, filename: str, draw, caption: str, size=(9, 3.6)) -> Path | None:
        """Call ``draw(fig)`` on a new matplotlib figure and save it as ``out/filename``.

        Returns the path, or None (and records why) when matplotlib is not installed.
        """
        plt = pyplot()
        if plt is None:
            return None
        fig = plt.figure(figsize=size, layout="constrained")
        try:
            draw(fig)
            path = self.out / filename
            fig.savefig(path, dpi=90)
        finally:
            plt.close(fig)
        self.figures.append({"file": filename, "caption": caption})
        return path


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def execute(module, out="results", quick=False, seed=0, progress=None) -> dict:
    """Run one experiment module; write ``out/NAME/summary.json`` and ``report.md``."""
    ctx = Context(module.NAME, Path(out) / module.NAME, quick=quick, seed=seed, progress=progress)
    ctx.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    module.run(ctx)
    runtime = time.perf_counter() - start
    from .. import build_info

    summary = {
        "experiment": module.NAME,
        "title": module.TITLE,
        "mode": "quick" if quick else "full",
        "seed": seed,
        "implicitreg_version": __version__,
        "build": build_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime_s": round(runtime, 2),
        "all_pass": all(c["pass"] for c in ctx.comparisons),
        "parameters": ctx.parameters,
        "comparisons": ctx.comparisons,
        "measurements": ctx.measurements,
        "figures": ctx.figures,
        "notes": ctx.notes,
        "tables": ctx.tables,
    }
    (ctx.out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    (ctx.out / "report.md").write_text(report(module, summary))
    return summary


def report(module, summary: dict) -> str:
    """The short markdown report: introduction, the comparison table, figures, settings."""
    doc = (module.__doc__ or "").strip()
    status = (
        f"Mode **{summary['mode']}**, seed {summary['seed']}, implicitreg "
        f"{summary['implicitreg_version']}, {summary['runtime_s']:.1f} s. "
        f"All checks pass: **{fmt(summary['all_pass'])}**."
    )
    lines = [
        f"# {summary['experiment']}: {summary['title']}",
        "",
        doc,
        "",
        status,
        "",
        "| quantity | theory | measured | criterion | pass |",
        "|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        measured = fmt(c["measured"])
        if c.get("stderr") is not None:
            measured += f" ± {fmt(c['stderr'])}"
        cells = [c["quantity"], fmt(c["theory"]), measured, c["criterion"], fmt(c["pass"])]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    lines.append("")
    for t in summary["tables"]:
        lines += [
            f"**{t['title']}**",
            "",
            "| " + " | ".join(t["columns"]) + " |",
            "|" + "---|" * len(t["columns"]),
        ]
        lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in t["rows"]]
        lines.append("")
    lines += [f"- {n}" for n in summary["notes"]]
    if summary["notes"]:
        lines.append("")
    for f in summary["figures"]:
        lines += [f"![{f['caption']}]({f['file']})", "", f"*{f['caption']}*", ""]
    lines += [
        "## Parameters",
        "",
        "```json",
        json.dumps(summary["parameters"], indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
