"""Label noise makes the hidden representation of a sigmoid net on one data point sparse.

Model f(x) = Σ_j a_j s(w_j x + b_j), s the logistic sigmoid, m = 10 hidden units, no output bias;
one data point x = 1. On the zero-loss manifold Σ_j c_j = y with unit contributions
c_j = a_j s_j, and the implicit regularizer is R = Σ_j [s_j² + c_j² (1 − s_j)² (x² + 1)]
(papers.md §2.3(c)). For a fixed contribution c the best activation is s* = Ac²/(1 + Ac²),
A = x² + 1, leaving φ(c) = Ac²/(1 + Ac²) per unit: a cost that is convex for Ac² < ⅓ and
concave, saturating at 1, above. Label noise therefore concentrates the output in few saturated
units (s ≈ 1) and switches the others off (s → 0, c → 0) when the per-unit share y/m is in the
concave range — the sparse representation of Blanc et al.; when it is in the convex range
(small y) the same drift spreads the output evenly instead. Both are shown: y = 5 (sparse:
the predicted minimiser of Σφ(c_j) is one active unit) and y = 1 (dense: ten equal units).

The start is on the manifold: w_j, b_j ~ N(0, 1), all a_j equal with Σ a_j s_j = y. Label-noise
GD (n = 1, so one sample is the full batch), Gaussian noise σ = 0.5, η = 0.1 (time scale
1/(η²σ²) = 400 steps), and the same without noise as the control. Sparsity is measured by the
participation ratio (Σ_j c_j)² / Σ_j c_j², the effective number of units carrying the output.
"""

from __future__ import annotations

import numpy as np

from ..dynamics import GD, LabelNoiseSGD
from ..models import MLP
from ..quantities import regularizer
from ..simulate import simulate

NAME = "blanc-sigmoid"
TITLE = "two-layer sigmoid net on one point: label noise makes the representation sparse"

M, XV = 10, 1.0


def start(net, y):
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal(M), rng.standard_normal(M)
    s = 1 / (1 + np.exp(-(w * XV + b)))
    a = np.full(M, y / s.sum())
    return net.flatten([(w[:, None], b), (a[None, :], None)])


def units(net, thetas):
    """(contributions c_j, activations s_j) for parameter vectors of shape (..., p)."""
    p = thetas.reshape(-1, net.n_params)
    w, b, a = p[:, :M], p[:, M : 2 * M], p[:, 2 * M :]
    s = 1 / (1 + np.exp(-(w * XV + b)))
    shape = (*thetas.shape[:-1], M)
    return (a * s).reshape(shape), s.reshape(shape)


def participation(c):
    return c.sum(-1) ** 2 / (c**2).sum(-1)


def prediction(y):
    """Minimum over k of k phi(y/k): (k, R on the manifold, activation of an active unit)."""
    A = XV**2 + 1
    c = y / np.arange(1, M + 1)  # k units sharing y equally, k = 1..M
    cost = np.arange(1, M + 1) * A * c**2 / (1 + A * c**2)
    k = 1 + int(np.argmin(cost))
    return k, cost[k - 1], A * c[k - 1] ** 2 / (1 + A * c[k - 1] ** 2)


def run(ctx) -> None:
    net = MLP([1, M, 1], activation="sigmoid", bias=(True, False))
    X = np.array([[XV]])
    lr, sigma = 0.1, 0.5
    steps, replicas = ctx.pick(200_000, 1_000_000), ctx.pick(4, 16)
    every = steps // 5000
    ctx.params(
        model=f"MLP [1, {M}, 1] sigmoid, bias (True, False)",
        x=XV,
        ys=[5.0, 1.0],
        init="w, b ~ N(0, 1) (seed 0), equal a on the manifold",
        lr=lr,
        sigma=sigma,
        noise="gaussian",
        loss="mean_half",
        steps=steps,
        replicas=replicas,
        seed=ctx.seed,
    )
    runs = {}
    for j, (label, yv, dyn) in enumerate(
        [
            ("y = 5, label noise", 5.0, LabelNoiseSGD(lr, sigma)),
            ("y = 5, no noise", 5.0, GD(lr)),
            ("y = 1, label noise", 1.0, LabelNoiseSGD(lr, sigma)),
        ]
    ):
        ctx.log(f"{label}: {steps:,} steps x {replicas} replicas")
        theta = start(net, yv)
        ctx.measure(**{f"lr_times_R_at_start, y = {yv}": lr * regularizer(net, theta, X)})
        res = simulate(
            net,
            theta,
            X,
            np.array([yv]),
            dyn,
            steps=steps,
            record_every=every,
            snapshot_every=every,
            replicas=replicas,
            seed=ctx.seed + j,
            progress=ctx.progress,
        )
        c, s = units(net, res.snapshots)
        # R of the end points back on the manifold (GD removes the normal fluctuations, whose
        # second-order contribution to the time-averaged R is of order lr sigma^2).
        back = simulate(
            net,
            res.theta,
            X,
            np.array([yv]),
            GD(lr),
            steps=5_000,
            record_every=5_000,
            replicas=replicas,
            progress=False,
        )
        runs[label] = {
            "y": yv,
            "k": res.snapshot_steps,
            "c": c,
            "s": s,
            "pr": participation(c),
            "R": res.trace["regularizer"],
            "R_end": back.trace["regularizer"][:, -1],
            "loss_back": back.trace["loss"][:, -1],
        }
    sparse, control, dense = runs.values()
    k5, R5, s5 = prediction(5.0)
    k1, R1, _ = prediction(1.0)
    pr = sparse["pr"][-1]
    ctx.compare(
        "y = 5: participation ratio at the end (active units)",
        k5,
        pr.mean(),
        "within 0.2 in every replica",
        bool(np.all(np.abs(pr - k5) < 0.2)),
        stderr=pr.std(ddof=1) / np.sqrt(replicas),
    )
    ctx.compare(
        "y = 5: R at the end (returned to the manifold by GD)",
        R5,
        sparse["R_end"].mean(),
        "within 5%",
        abs(sparse["R_end"].mean() / R5 - 1) < 0.05,
    )
    top = sparse["s"][-1][np.arange(replicas), np.argmax(sparse["c"][-1], axis=1)]
    ctx.compare(
        "y = 5: activation of the active unit, s* = Ac²/(1 + Ac²)",
        s5,
        top.mean(),
        "within 0.03",
        abs(top.mean() - s5) < 0.03,
    )
    drift = np.max(np.abs(control["pr"] - control["pr"][0]))
    ctx.compare(
        "y = 5, no noise: change of the participation ratio", 0.0, drift, "< 1e-6", drift < 1e-6
    )
    ctx.note(
        f"start: participation ratio {sparse['pr'][0, 0]:.2f} (y = 5) and "
        f"{dense['pr'][0, 0]:.2f} (y = 1), R = {sparse['R'][0, 0]:.3g} and "
        f"{dense['R'][0, 0]:.3g}"
    )
    pr1 = dense["pr"][-1]
    ctx.compare(
        "y = 1: participation ratio at the end (dense)",
        k1,
        pr1.mean(),
        "> 9.5 in every replica",
        bool(np.all(pr1 > 9.5)),
    )
    # The switched-off activations decay slowly (s -> s* is a saturation): the shorter quick run
    # is still converging, hence its looser tolerance.
    tol = ctx.pick(0.15, 0.05)
    ctx.compare(
        "y = 1: R at the end (returned to the manifold by GD)",
        R1,
        dense["R_end"].mean(),
        f"within {tol:.0%}",
        abs(dense["R_end"].mean() / R1 - 1) < tol,
    )
    ctx.measure(
        **{
            label: {
                "participation_start": r["pr"][0],
                "participation_end": r["pr"][-1],
                "R_end": r["R_end"],
                "loss_after_gd": r["loss_back"],
                "c_end": r["c"][-1],
                "s_end": r["s"][-1],
            }
            for label, r in runs.items()
        }
    )

    def draw(fig):
        ax1, ax2, ax3 = fig.subplots(1, 3)
        k = sparse["k"][1:]  # log time axis: from the first mark after the start
        ax1.plot(k, sparse["c"][1:, 0], lw=1)
        ax1.plot(k, control["c"][1:, 0], "k:", lw=0.8)
        ax1.set(
            xscale="log",
            xlabel="step",
            ylabel="contribution c_j = a_j s_j",
            title="y = 5: units' contributions (replica 0)",
        )
        ax1.text(0.02, 0.95, "dotted: no noise", transform=ax1.transAxes, fontsize=7, va="top")
        ax2.plot(k, sparse["s"][1:, 0], lw=1)
        ax2.axhline(s5, color="k", ls="--", lw=0.8)
        ax2.set(
            xscale="log",
            xlabel="step",
            ylabel="activation s_j",
            title="y = 5: activations (-- predicted s*)",
        )
        for (label, r), color in zip(runs.items(), ("C0", "k", "C1"), strict=True):
            ax3.plot(k, r["pr"][1:].mean(1), color=color, label=label)
        ax3.axhline(k5, color="C0", ls="--", lw=0.8, label="predicted")
        ax3.axhline(k1, color="C1", ls="--", lw=0.8)
        ax3.set(
            xscale="log",
            xlabel="step",
            ylabel="(Σc_j)² / Σc_j²",
            ylim=(0, M + 0.5),
            title="participation ratio (mean over replicas)",
        )
        ax3.legend(fontsize=7)

    ctx.figure(
        "sigmoid.png",
        draw,
        "Sigmoid net (10 units) on one point: with label noise one "
        "unit saturates and carries the whole output while the others switch off (y = 5); "
        "for a small target (y = 1) the same drift spreads the output evenly instead.",
        size=(12, 3.8),
    )
