"""Gradient descent follows the modified flow of Barrett & Dherin's two-parameter model.

E(a, b) = ½(y − abx)² with x = 1, y = 0.6 (papers.md §3.2; the paper's own x and y are not
known), i.e. ``MLP([1, 1, 1], activation="identity", bias=False)``. Its minima form the
hyperbola ab = 0.6; the flattest (and smallest-norm) one is a = b = √0.6. Gradient flow
conserves a² − b², so it ends wherever the start's imbalance puts it. GD with step h shrinks the
imbalance exactly as a'² − b'² = (a² − b²)(1 − h²r²x²) (test I1) and, by backward error
analysis, follows the modified flow of Ẽ = E + (h/4)‖∇E‖² (rate λ = hm/4 = h/2 on
R_IG = ‖∇E‖²/m, m = 2) to O(h²) over a fixed time, the gradient flow only to O(h).

From four starts (the paper's (2.8, 3.5) among them) GD with a small step h_S = 0.003 and a
moderate one h_M = 0.03 (h_M·λ_max ≤ 1.05 at the starts) runs to time T = 6; the gradient flow
and the modified flow of h_M are integrated from the same starts (``ir.flow``, DOP853,
rtol 1e-10). The error orders (test I2) are measured at T = 1 from (2.8, 3.5) for a range of h.
"""

from __future__ import annotations

import numpy as np

from ..dynamics import GD
from ..flow import flow
from ..models import MLP
from ..simulate import simulate

NAME = "igr-two-param"
TITLE = "phase portrait of the two-parameter model: GD, gradient flow and the modified flow"

X, Y = np.array([[1.0]]), np.array([0.6])
STARTS = ((2.8, 3.5), (3.6, 1.2), (0.6, 3.8), (3.9, 3.0))


def gd_path(net, start, h, steps):
    res = simulate(
        net,
        np.array(start, float),
        X,
        Y,
        GD(h),
        steps=steps,
        snapshot_every=1,
        record_every=steps,
        progress=False,
        check_step_size=False,
    )
    return res.snapshots[:, 0]


def run(ctx) -> None:
    net = MLP([1, 1, 1], activation="identity", bias=False)
    h_small, h_mod, T = 0.003, 0.03, 6.0
    hs = ctx.pick((0.04, 0.02, 0.01, 0.005), (0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125))
    ctx.params(
        model="E = ½(y − abx)² (MLP [1,1,1], identity, no bias)",
        x=1.0,
        y=0.6,
        starts=STARTS,
        h_small=h_small,
        h_moderate=h_mod,
        T=T,
        order_T=1.0,
        order_start=STARTS[0],
        order_hs=hs,
        flow="ir.flow DOP853 rtol 1e-10 atol 1e-12",
    )
    paths = []
    for start in STARTS:
        ctx.log(f"start {start}")
        p = {"start": start}
        for key, h in (("small", h_small), ("moderate", h_mod)):
            steps = round(T / h)
            p[f"gd_{key}"] = gd_path(net, start, h, steps)
        times = np.linspace(0, T, 601)
        p["times"] = times
        p["gf"] = flow(net, np.array(start, float), X, Y, T, times=times)
        p["mf"] = flow(net, np.array(start, float), X, Y, T, h=h_mod, times=times)
        paths.append(p)

    # I1: the exact one-step identity along the moderate-h path from the paper's start.
    a, b = paths[0]["gd_moderate"].T
    r = a * b - Y[0]
    lhs = a[1:] ** 2 - b[1:] ** 2
    rhs = (a[:-1] ** 2 - b[:-1] ** 2) * (1 - h_mod**2 * r[:-1] ** 2)
    i1 = float(np.max(np.abs(lhs - rhs) / np.abs(rhs)))
    ctx.compare(
        "I1: a'² − b'² = (a² − b²)(1 − h²r²x²), max rel. error", 0.0, i1, "≤ 1e-12", i1 <= 1e-12
    )
    rows = []
    for p in paths:
        gd, gf, mf = p["gd_moderate"][-1], p["gf"][-1], p["mf"][-1]
        d_gf, d_mf = np.linalg.norm(gd - gf), np.linalg.norm(gd - mf)
        imb = [x[0] ** 2 - x[1] ** 2 for x in (p["start"], gd, gf, mf)]
        rows.append([str(p["start"]), *imb, d_gf, d_mf])
        ctx.compare(
            f"start {p['start']}, h_M: ‖GD − modified‖ / ‖GD − GF‖ at T",
            "< 1 (O(h²) vs O(h))",
            d_mf / d_gf,
            "< 0.7",
            d_mf / d_gf < 0.7,
        )
        ctx.compare(
            f"start {p['start']}, h_M: |a² − b²| at T, GD vs GF",
            abs(imb[2]),
            abs(imb[1]),
            "GD below GF (GD balances)",
            abs(imb[1]) < abs(imb[2]),
        )
    ctx.table(
        "End points at T = 6 (h_M = 0.03): imbalance a² − b² and distances",
        [
            "start",
            "start a²−b²",
            "GD a²−b²",
            "GF a²−b²",
            "modified a²−b²",
            "‖GD−GF‖",
            "‖GD−modified‖",
        ],
        rows,
    )
    small = max(
        np.max(
            np.linalg.norm(
                p["gd_small"]
                - flow(
                    net,
                    np.array(p["start"], float),
                    X,
                    Y,
                    T,
                    times=np.arange(len(p["gd_small"])) * h_small,
                ),
                axis=1,
            )
        )
        for p in paths
    )
    ctx.compare("h_S: max ‖GD − GF‖ along all paths", "O(h_S)", small, "< 0.05", small < 0.05)

    # I2: backward-error orders at T = 1.
    ctx.log("error orders")
    start = np.array(STARTS[0], float)
    err_gf, err_mf = [], []
    gf1 = flow(net, start, X, Y, 1.0, rtol=1e-12, atol=1e-14)[0]
    for h in hs:
        end = gd_path(net, start, h, round(1.0 / h))[-1]
        err_gf.append(np.linalg.norm(end - gf1))
        err_mf.append(
            np.linalg.norm(end - flow(net, start, X, Y, 1.0, h=h, rtol=1e-12, atol=1e-14)[0])
        )
    ratio_gf = np.array(err_gf[:-1]) / np.array(err_gf[1:])
    ratio_mf = np.array(err_mf[:-1]) / np.array(err_mf[1:])
    ctx.table(
        "Backward-error orders at T = 1 from (2.8, 3.5): halving h",
        ["h", "‖GD − GF‖", "ratio", "‖GD − modified‖", "ratio"],
        [
            [h, eg, rg, em, rm]
            for h, eg, rg, em, rm in zip(
                hs, err_gf, ["–", *ratio_gf], err_mf, ["–", *ratio_mf], strict=True
            )
        ],
    )
    for j, h in enumerate(hs[1:], start=1):
        if hs[j - 1] > 0.02:  # the asymptotic regime of test I2 starts at h = 0.02
            continue
        ctx.compare(
            f"I2: ‖GD − GF‖ ratio, h {hs[j - 1]} → {h}",
            2.0,
            ratio_gf[j - 1],
            "∈ [1.8, 2.2]",
            1.8 <= ratio_gf[j - 1] <= 2.2,
        )
        ctx.compare(
            f"I2: ‖GD − modified‖ ratio, h {hs[j - 1]} → {h}",
            4.0,
            ratio_mf[j - 1],
            "∈ [3.6, 4.4]",
            3.6 <= ratio_mf[j - 1] <= 4.4,
        )
    ctx.measure(
        hs=hs,
        err_gf=err_gf,
        err_modified=err_mf,
        i1_max_rel_error=i1,
        endpoints={
            str(p["start"]): {
                "gd_moderate": p["gd_moderate"][-1],
                "gd_small": p["gd_small"][-1],
                "gf": p["gf"][-1],
                "modified": p["mf"][-1],
            }
            for p in paths
        },
    )

    def draw(fig):
        from matplotlib.ticker import NullFormatter

        ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.6, 1))
        g = np.linspace(-0.3, 4.2, 300)
        A, B = np.meshgrid(g, g)
        ax1.contour(
            A,
            B,
            np.log10(0.5 * (A * B - 0.6) ** 2 + 1e-3),
            levels=12,
            colors="0.85",
            linewidths=0.6,
        )
        u = np.linspace(0.12, 4.2, 200)
        ax1.plot(u, 0.6 / u, "k--", lw=1, label="minima ab = 0.6")
        ax1.plot(np.sqrt(0.6), np.sqrt(0.6), "kx", ms=9, mew=2, label="flattest minimum")
        for j, p in enumerate(paths):
            lab = j == 0
            ax1.plot(*p["gf"].T, color="C2", lw=1.5, label="gradient flow" if lab else None)
            ax1.plot(
                *p["gd_small"][::10].T,
                ".",
                color="C2",
                ms=2,
                label=f"GD, h = {h_small}" if lab else None,
            )
            ax1.plot(
                *p["mf"].T,
                "--",
                color="C3",
                lw=1.2,
                label=f"modified flow, h = {h_mod}" if lab else None,
            )
            ax1.plot(
                *p["gd_moderate"].T,
                ".",
                color="C3",
                ms=3,
                label=f"GD, h = {h_mod}" if lab else None,
            )
            ax1.plot(*p["start"], "ko", ms=4)
        ax1.set(
            xlim=(-0.3, 4.2),
            ylim=(-0.3, 4.2),
            aspect="equal",
            xlabel="a",
            ylabel="b",
            title="E = ½(0.6 − ab)²",
        )
        ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
        ax2.loglog(hs, err_gf, "o-", color="C2", label="‖GD − gradient flow‖")
        ax2.loglog(hs, err_mf, "s-", color="C3", label="‖GD − modified flow‖")
        h = np.array(hs)
        ax2.loglog(h, err_gf[-1] * h / h[-1], "k:", lw=0.8, label="slopes 1 and 2")
        ax2.loglog(h, err_mf[-1] * (h / h[-1]) ** 2, "k:", lw=0.8)
        ax2.set(xlabel="step size h", ylabel="distance at T = 1", title="backward-error orders")
        ax2.xaxis.set_minor_formatter(NullFormatter())
        ax2.legend(fontsize=7)

    ctx.figure(
        "two_param.png",
        draw,
        "Two-parameter model: GD with a moderate step (red dots) "
        "leaves the gradient flow (green) and follows the modified flow of "
        "E + (h/4)‖∇E‖² (red dashed) toward the flatter, balanced minima; the distances "
        "shrink as h and h².",
        size=(11, 4.6),
    )
