"""Every paper reproduction in --quick mode (fixed seeds): its files, and its outcome.

Each experiment checks its own predictions (the rows of report.md, with tolerances from its
statistics); these tests require all of them to pass and re-assert the direction and rough
size of each effect from the measurements in summary.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from implicitreg import experiments
from implicitreg.__main__ import main
from implicitreg.experiments import _common

pytest.importorskip("scipy")


def reproduce(name, tmp_path):
    summary = experiments.reproduce(name, quick=True, out=tmp_path, progress=False)
    out = tmp_path / name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["experiment"] == name and on_disk["mode"] == "quick" and on_disk["seed"] == 0
    assert on_disk["implicitreg_version"] and on_disk["parameters"] and on_disk["comparisons"]
    report = (out / "report.md").read_text()
    assert "| quantity | theory | measured | criterion | pass |" in report
    if _common.pyplot() is not None:
        for fig in summary["figures"]:
            path = out / fig["file"]
            assert path.stat().st_size < 150_000, path
        assert summary["figures"]
    failed = [c["quantity"] for c in summary["comparisons"] if not c["pass"]]
    assert not failed, failed
    return summary


def row(summary, start):
    (match,) = [c for c in summary["comparisons"] if c["quantity"].startswith(start)]
    return match


def test_blanc_ou(tmp_path):
    s = reproduce("blanc-ou", tmp_path)
    m = s["measurements"]
    for mode in ("single sample", "minibatch B = 2", "full batch"):
        assert m[mode]["cov_rel_error_lyapunov"] < 0.1
        assert m[mode]["cov_rel_error_linearised"] < 0.05
    # kappa = sigma^2 / B: the stationary loss halves from one to two samples per step and is
    # four times smaller again for the full batch (n = 4), up to the O(lr |g|^2) sampling term.
    single, full = m["single sample"]["measured_loss"], m["full batch"]["measured_loss"]
    assert 3.6 < single / full < 4.6


def test_blanc_drift(tmp_path):
    s = reproduce("blanc-drift", tmp_path)
    c = row(s, "s at k = 10,000")
    assert abs(c["measured"] / c["theory"] - 1) < 0.05
    assert row(s, "control σ = 0")["measured"] < 1e-10
    lr = s["measurements"]["lr_0.01"]
    assert lr["mean"][0] > 0.69 and lr["mean"][-1] < 0.01  # from s = ln 2 to the balanced point


@pytest.mark.skipif(
    "blanc-matrix-sensing" not in experiments.names(), reason="MatrixSensing is not in this build"
)
def test_blanc_matrix_sensing(tmp_path):
    s = reproduce("blanc-matrix-sensing", tmp_path)
    m = s["measurements"]
    assert m["error_label_noise_end"] < 0.1
    assert m["error_control_end"] > 0.5
    assert m["trace_end"] < 0.5 * m["trace_start"]


def test_blanc_relu1d(tmp_path):
    s = reproduce("blanc-relu1d", tmp_path)
    m = s["measurements"]
    R = np.array(m["R_label_noise"])  # mean over replicas
    assert R[-1] < 0.5 * R[0]
    assert np.max(np.abs(np.array(m["R_control"]) / m["R_control"][0] - 1)) < 0.01
    tv = np.array(m["slope_tv"])
    assert tv[-1].mean() < 0.7 * tv[0].mean()
    assert np.array(m["kinks"])[-1].mean() <= np.array(m["kinks"])[0].mean()
    assert 0.5 < m["dRdk_measured"] / m["dRdk_finite_lr"] < 2


def test_blanc_sigmoid(tmp_path):
    s = reproduce("blanc-sigmoid", tmp_path)
    m = s["measurements"]
    sparse, dense = m["y = 5, label noise"], m["y = 1, label noise"]
    assert np.all(np.array(sparse["participation_start"]) > 8)
    assert np.all(np.array(sparse["participation_end"]) < 1.2)  # one unit carries the output
    assert np.all(np.array(dense["participation_end"]) > 9.5)  # small target: spread evenly
    control = m["y = 5, no noise"]
    np.testing.assert_allclose(control["participation_end"], control["participation_start"])


def test_igr_two_param(tmp_path):
    s = reproduce("igr-two-param", tmp_path)
    m = s["measurements"]
    hs, gf, mf = np.array(m["hs"]), np.array(m["err_gf"]), np.array(m["err_modified"])
    small = hs <= 0.02
    assert np.all(np.abs(gf[small][:-1] / gf[small][1:] - 2) < 0.2)
    assert np.all(np.abs(mf[small][:-1] / mf[small][1:] - 4) < 0.4)
    assert np.all(mf < gf)


def test_igr_mlp(tmp_path):
    pytest.importorskip("sklearn")
    s = reproduce("igr-mlp", tmp_path)
    m = s["measurements"]
    gd = [v for k, v in m.items() if k.startswith("GD ")]
    sharp = np.array([r["sharpness"] for r in gd])
    assert sharp[-1] < 0.5 * sharp[0]  # the largest step ends much flatter than the smallest
    assert np.all(sharp <= 1.25 * 2 / np.array([r["h"] for r in gd]))  # stability edge
    assert all(r["train_acc"] > 0.99 for r in gd)


def test_cli_list_and_reproduce(tmp_path, capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in experiments.names():
        assert name in listed
    assert (
        main(
            [
                "reproduce",
                "blanc-drift",
                "--quick",
                "--out",
                str(tmp_path),
                "--seed",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "blanc-drift" / "summary.json").read_text())["seed"] == 3
    assert main(["reproduce", "no-such-experiment", "--out", str(tmp_path)]) == 2


def test_outputs_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "pyplot", lambda: None)
    s = experiments.reproduce("blanc-drift", quick=True, out=tmp_path, progress=False)
    assert s["figures"] == []
    assert (tmp_path / "blanc-drift" / "summary.json").exists()
    assert (tmp_path / "blanc-drift" / "report.md").exists()
    assert not list((tmp_path / "blanc-drift").glob("*.png"))
