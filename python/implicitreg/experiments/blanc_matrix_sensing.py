"""Label noise recovers the low-rank ground truth in overparametrised matrix sensing.

f(A; U) = ⟨A, UUᵀ⟩ with U ∈ ℝ^{d×d} (k = d, overparametrised), d = 20, ground truth
X* = u*u*ᵀ of rank r = 1, n = 5rd = 100 measurements A_i with i.i.d. N(0, 1) entries,
y_i = ⟨A_i, X*⟩ (papers.md §2.3(a), test B6). Since ∇_U f = (A_i + A_iᵀ)U and
E(A + Aᵀ)² = 2(d + 1)I, the implicit regularizer is R ≈ 2n(d + 1)·tr(UUᵀ): label noise
minimises the trace (the nuclear norm of the PSD matrix UUᵀ) among interpolants, and with
n = 5rd measurements the minimal-trace interpolant is X*.

A large start (U entries N(0, 1)/√d) is fitted by GD to an interpolant far from X*. From there
SGD runs with one sample per step (mean_half loss), η = 1/max_i‖∇f(A_i)‖² and Gaussian label
noise σ = 1, the step size divided by 10 at 50% and 75% of the run so that the fluctuations
around the manifold shrink at the end; the control is the same SGD without noise. Measured:
the recovery error ‖UUᵀ − X*‖_F/‖X*‖_F, tr(UUᵀ), R/(2n(d + 1)) and the spectrum of UUᵀ;
"on the manifold" values are taken after a short GD run returns the end point to zero loss.
"""

from __future__ import annotations

import numpy as np

from .. import problems, theory
from ..dynamics import GD, SGD, LabelNoiseSGD, StepDecay
from ..models import MatrixSensing
from ..quantities import loss, regularizer
from ..simulate import simulate

NAME = "blanc-matrix-sensing"
TITLE = "overparametrised matrix sensing: label noise recovers the rank-1 ground truth"

D, RANK, N = 20, 1, 100


def run(ctx) -> None:
    model = MatrixSensing(D)
    X_star, _ = problems.low_rank_ground_truth(D, RANK, seed=0)
    A = problems.gaussian_measurements(N, D, seed=1).reshape(N, D * D)
    y = problems.sensing_labels(A, X_star)
    theta0 = model.init(seed=2, scale=1.0)
    lam = np.linalg.eigvalsh(theory.effective_hessian(model, theta0, A, "full"))[-1]
    ctx.log("GD to an interpolant")
    fit = simulate(
        model, theta0, A, y, GD(1 / lam), steps=20_000, record_every=20_000, progress=ctx.progress
    )
    start = fit.theta[0]
    g2 = regularizer(model, start, A, per_sample=True)
    lr, sigma = 1 / g2.max(), 1.0
    steps, replicas = ctx.pick(1_000_000, 3_000_000), ctx.pick(2, 4)
    every = steps // 100
    scale = 2 * N * (D + 1)
    ctx.params(
        d=D,
        rank=RANK,
        n=N,
        k=D,
        measurements="i.i.d. N(0, 1) entries (seed 1)",
        ground_truth="U* entries N(0, 1)/sqrt(d) (seed 0)",
        init_scale=1.0,
        gd_lr=1 / lam,
        gd_steps=20_000,
        loss_after_gd=loss(model, start, A, y),
        lr=lr,
        sigma=sigma,
        noise="gaussian",
        batch_size=1,
        loss="mean_half",
        lr_schedule="x0.1 at 50% and 75%",
        steps=steps,
        replicas=replicas,
        seed=ctx.seed,
        time_scale_steps=1 / (lr * sigma) ** 2,
    )
    schedule = StepDecay(at=(0.5, 0.75), factor=0.1)
    ctx.log(f"label noise: {steps:,} steps x {replicas} replicas")
    noisy = simulate(
        model,
        start,
        A,
        y,
        LabelNoiseSGD(lr, sigma, lr_schedule=schedule),
        steps=steps,
        record_every=every,
        snapshot_every=every,
        replicas=replicas,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    ctx.log("control without noise")
    clean = simulate(
        model,
        start,
        A,
        y,
        SGD(lr, lr_schedule=schedule),
        steps=steps,
        record_every=every,
        snapshot_every=every,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    back = simulate(
        model,
        noisy.theta,
        A,
        y,
        GD(1 / lam),
        steps=20_000,
        record_every=20_000,
        replicas=replicas,
        progress=False,
    )
    err = problems.recovery_error(model, noisy.snapshots.reshape(-1, model.n_params), X_star)
    err = err.reshape(len(noisy.snapshot_steps), replicas)  # (marks, replicas)
    err_clean = problems.recovery_error(model, clean.snapshots[:, 0], X_star)
    err_back = problems.recovery_error(model, back.theta, X_star)
    flat = noisy.snapshots.reshape(-1, model.n_params)
    tr = np.trace(model.product(flat), axis1=-2, axis2=-1).reshape(err.shape)
    tr_clean = np.trace(model.product(clean.snapshots[:, 0]), axis1=-2, axis2=-1)
    eig_start = np.linalg.eigvalsh(model.product(start))[::-1]
    eig_end = np.linalg.eigvalsh(model.product(back.theta[0]))[::-1]
    tr_star = float(np.trace(X_star))

    ctx.compare(
        "recovery error at the end, label noise",
        0.0,
        err[-1].mean(),
        "< 0.05 (B6)",
        bool(np.all(err[-1] < 0.05)),
    )
    ctx.compare(
        "recovery error on the manifold (end + GD), label noise",
        0.0,
        err_back.mean(),
        "< 0.01",
        bool(np.all(err_back < 0.01)),
    )
    ctx.compare(
        f"recovery error at the end, no noise (starts at {err_clean[0]:.2f})",
        "stays",
        err_clean[-1],
        "> 0.9 × start (B6)",
        err_clean[-1] > 0.9 * err_clean[0],
    )
    ctx.compare(
        "tr(UUᵀ) at the end vs tr X* (minimal trace)",
        tr_star,
        tr[-1].mean(),
        "within 5%",
        abs(tr[-1].mean() / tr_star - 1) < 0.05,
    )
    R = noisy.trace["regularizer"].mean(0)
    ctx.compare(
        "R / (2n(d+1)) vs tr(UUᵀ) at the start",
        tr[0, 0],
        R[0] / scale,
        "within 5%",
        abs(R[0] / scale / tr[0, 0] - 1) < 0.05,
    )
    ctx.compare(
        "second eigenvalue of UUᵀ (end, on the manifold) / first",
        0.0,
        eig_end[1] / eig_end[0],
        "< 0.01 (rank 1)",
        eig_end[1] / eig_end[0] < 0.01,
    )
    ctx.measure(
        steps=noisy.snapshot_steps,
        error_label_noise=err,
        error_control=err_clean,
        error_label_noise_end=float(err[-1].mean()),
        error_on_manifold=err_back,
        error_control_end=float(err_clean[-1]),
        trace=tr,
        trace_control=tr_clean,
        trace_start=float(tr[0, 0]),
        trace_end=float(tr[-1].mean()),
        trace_star=tr_star,
        R=R,
        eigenvalues_start=eig_start,
        eigenvalues_end=eig_end,
        loss_end=noisy.trace["loss"][:, -1],
    )

    def draw(fig):
        ax1, ax2, ax3 = fig.subplots(1, 3)
        k = noisy.snapshot_steps
        ax1.semilogy(k, err, color="C0", lw=1)
        ax1.semilogy(k, err_clean, "k:", label="no noise")
        ax1.plot([], [], color="C0", label="label noise (replicas)")
        for frac in (0.5, 0.75):
            ax1.axvline(frac * steps, color="0.8", lw=0.8)
        ax1.set(xlabel="step", ylabel="‖UUᵀ − X*‖_F / ‖X*‖_F", title="recovery error")
        ax1.legend(fontsize=7)
        ax2.semilogy(k, tr.mean(1), color="C0", label="tr(UUᵀ), label noise")
        ax2.semilogy(noisy.steps, R / scale, color="C1", lw=1, label="R / (2n(d+1))")
        ax2.semilogy(k, tr_clean, "k:", label="tr(UUᵀ), no noise")
        ax2.axhline(tr_star, color="C0", ls="--", lw=0.8, label="tr X*")
        ax2.set(xlabel="step", title="trace and implicit regularizer")
        ax2.legend(fontsize=7)
        j = np.arange(1, D + 1)
        ax3.semilogy(
            j, np.maximum(eig_start, 1e-12), "o", color="C3", ms=4, label="after GD (start)"
        )
        ax3.semilogy(
            j, np.maximum(eig_end, 1e-12), "s", color="C0", ms=4, label="after label noise"
        )
        ax3.semilogy([1], [np.linalg.eigvalsh(X_star)[-1]], "kx", ms=9, label="X*")
        ax3.set(xlabel="index", ylabel="eigenvalue of UUᵀ", title="spectrum", ylim=(1e-8, 20))
        ax3.legend(fontsize=7)

    ctx.figure(
        "matrix_sensing.png",
        draw,
        "Overparametrised matrix sensing (d = 20, rank 1, "
        "n = 100): from a large interpolating start, label-noise SGD shrinks tr(UUᵀ) and "
        "recovers X*; SGD without noise stays at the wrong interpolant.",
        size=(12, 3.8),
    )
