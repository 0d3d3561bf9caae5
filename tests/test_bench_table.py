"""bench/table.py: the README's benchmark table rendered from run.py's JSON (no implicitreg import)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_table():
    spec = importlib.util.spec_from_file_location("_bench_table", BENCH / "table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(us: float, trains: bool | None = True) -> dict:
    return {"us_per_step": us, "repeats": 3, "steps_per_repeat": 10, "trains": trains}


def results_json(tmp_path: Path) -> Path:
    rows = [
        {  # W1: numpy 20x slower in float64, fails in float32
            "workload": "W1",
            "dtype": "float64",
            "flops": 1_000,
            "results": {"implicitreg": result(0.5), "numpy": result(10.0)},
        },
        {
            "workload": "W1",
            "dtype": "float32",
            "flops": 1_000,
            "results": {"implicitreg": result(0.25), "numpy": {"error": "RuntimeError: boom"}},
        },
        {  # W2: numpy failed in float64 and is missing in float32
            "workload": "W2",
            "dtype": "float64",
            "flops": 2_000_000,
            "results": {"implicitreg": result(2_000.0), "numpy": {"error": "ImportError: x"}},
        },
        {
            "workload": "W2",
            "dtype": "float32",
            "flops": 2_000_000,
            "results": {"implicitreg": result(1_000.0)},
        },
    ]
    data = {
        "meta": {
            "cpu": {"model name": "Test CPU", "cpus": 2},
            "run": {"threads": 1, "quick": True, "date": "2030-01-02 03:04:05"},
        },
        "gemm": [  # W2's main shape: the best library counts (implicitreg's own included)
            {"lib": lib, "dtype": dt, "shape": [32, 256, 256], "gflops": r, "gflops_runs": [r]}
            for lib, dt, r in [
                ("numpy", "float64", 1.0),
                ("implicitreg", "float64", 2.0),
                ("torch", "float32", 4.0),
                ("numpy", "float32", 8.0),
            ]
        ],
        "gemm_peak_gflops": {"float64": 10.0, "float32": 20.0},
        "replicas": {},
        "rows": rows,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_table_cells(tmp_path, capsys):
    table = load_table()
    assert table.main([str(results_json(tmp_path))]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0]: line for line in out.splitlines() if line.startswith("| W")}
    assert set(lines) == {"| W1 (1-D ReLU net, 1 sample/step)", "| W2 (MLP 20-256-256-1, batch 32)"}
    w1, w2 = lines.values()
    # implicitreg µs; share of the GEMM peak: 1e3 FLOP / 0.5 µs = 2 GFLOP/s = 20% of 10 GFLOP/s
    assert "| 0.50 / 0.25 | 20% / 20% | — |" in w1  # W1: no product shape that dominates
    assert "| 10.00 / — (20×) |" in w1  # numpy: float64 time and ratio, float32 failed
    # 2e6 FLOP / 2,000 µs = 1 GFLOP/s = 10% of float64's peak; 2 GFLOP/s = 10% of float32's
    # numpy failed / missing: a single dash; at W2's shape 1 GFLOP/s is 50% of 2, 2 is 25% of 8
    assert "| 2,000 / 1,000 | 10% / 10% | 50% / 25% | — |" in w2
    assert "numpy" in out.splitlines()[2]  # the header names the peer
    assert "GEMM peak 10.0 / 20.0 GFLOP/s" in out
    assert "Test CPU" in out and "2030-01-02 03:04:05" in out and "`--quick` run" in out
    assert "Problems:" in out and "RuntimeError: boom" in out
    assert "Replica scaling" not in out


def test_readme_replacement(tmp_path):
    table = load_table()
    path = results_json(tmp_path)
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro text.\n\n", "\n## Next\n\nMore text.\n"
    readme.write_text(f"{before}{table.START}\nold table\n{table.END}\n{after}")
    assert table.main([str(path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(before + table.START + "\n") and text.endswith(table.END + "\n" + after)
    assert "old table" not in text and "| 0.50 / 0.25 |" in text
    assert table.main([str(path), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent

    readme.write_text("# No markers here\n")
    with pytest.raises(SystemExit, match="bench-table:start"):
        table.main([str(path), "--readme", str(readme)])
    assert readme.read_text() == "# No markers here\n"


def test_named_block_leaves_the_main_block_alone(tmp_path):
    table = load_table()
    path = results_json(tmp_path)
    readme = tmp_path / "README.md"
    start2, end2 = table.markers("2threads")
    readme.write_text(f"{table.START}\nmain\n{table.END}\n\n{start2}\nold\n{end2}\n")
    assert table.main([str(path), "--readme", str(readme), "--block", "2threads"]) == 0
    text = readme.read_text()
    assert f"{table.START}\nmain\n{table.END}" in text and "old" not in text
    assert "| 0.50 / 0.25 |" in text.split(start2)[1]
