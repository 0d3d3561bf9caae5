"""Label noise simplifies a two-layer ReLU net on 1-D data: R falls and the kinks go away.

Setting (papers.md §2.3(b), test B5): f(x) = Σ_j a_j relu(w_j x + b_j), width 100, no output
bias, the initialisation of tml-epfl/sgd-sparse-features (``init_blanc_et_al``: w_j = ±2.5,
b_j ~ N(0, 2.5²), a_j ~ N(0, 4²)) and its 12 points X = [−5.5, …, 5.5]/4 + 0.07,
Y = 0.345 + [−2, 1.5, 0, 0, 2, 1, 0, −1, 0, 1, 2, −1]. Full-batch GD first reaches an exact
interpolant (loss ~1e-26), which is kernel-like: dozens of kinks with large cancelling slope
changes. From there SGD runs with one sample per step (mean_half loss) at η = 3e-4, so that
η·max_i‖∇f(x_i)‖² ≈ 1.3 < 1.5 (papers.md pitfall: larger steps catapult instead), with Gaussian
label noise σ = 1, and without noise as the control. The time scale of the drift is
1/(η²σ²) ≈ 1.1e7 steps.

Measured: R = Σ_i‖∇_θ f(x_i)‖², the number of kinks of f inside the data range (slope changes
larger than 0.5, merging kinks closer than the 0.001 grid) and the total variation of the slope
∫|f''| there. Any interpolant has ∫|f''| ≥ that of the piecewise-linear interpolation of the
data (by the mean value theorem its slope takes each secant slope in turn), which has 6 kinks.
Early in the run the stationary loss is compared with the OU prediction and the initial rate of
decrease of R with the predicted drift (small-η: ``ir.theory.drift``; finite η: the same
third-derivative term with the linearised covariance that includes the sampling noise, see
blanc-ou) — at η·‖g‖² ≈ 1.3 the finite-step corrections are large, so that is the reference.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..dynamics import GD, SGD, LabelNoiseSGD
from ..models import MLP
from ..quantities import loss, regularizer
from ..second_order import regularizer_grad
from ..simulate import simulate
from .blanc_ou import finite_lr_drift, linearised_cov

NAME = "blanc-relu1d"
TITLE = "width-100 ReLU net on 12 points: label noise removes kinks and lowers R"

TAU = 0.5  # slope change that counts as a kink


def problem():
    net = MLP([1, 100, 1], activation="relu", bias=(True, False))
    rng = np.random.default_rng(0)
    w = 2.5 * rng.choice([-1.0, 1.0], 100)
    b = 2.5 * rng.standard_normal(100)
    a = 4.0 * rng.standard_normal(100)
    theta = net.flatten([(w[:, None], b), (a[None, :], None)])
    X = (np.arange(-5.5, 6, 1.0) / 4 + 0.07)[:, None]
    y = 0.345 + np.array([-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1.0])
    return net, theta, X, y


def kinks(f, grid, tau=TAU):
    """(number of kinks with |slope change| > tau, total variation of the slope) of the
    piecewise-linear samples f on grid; adjacent nonzero slope changes are one kink."""
    d = np.diff(np.diff(f) / np.diff(grid))
    nz = np.abs(d) > 1e-8 * max(1.0, np.abs(d).max())
    starts = np.flatnonzero(nz & ~np.r_[False, nz[:-1]])
    sizes = np.abs(np.add.reduceat(np.where(nz, d, 0.0), starts)) if starts.size else d[:0]
    return int(np.sum(sizes > tau)), float(np.sum(np.abs(d)))


def run(ctx) -> None:
    net, theta0, X, y = problem()
    n = len(X)
    lam = np.linalg.eigvalsh(theory.effective_hessian(net, theta0, X, "full"))[-1]
    ctx.log("GD to interpolation")
    fit = simulate(
        net, theta0, X, y, GD(1.5 / lam), steps=200_000, record_every=200_000, progress=ctx.progress
    )
    start = fit.theta[0]
    lr, sigma = 3e-4, 1.0
    steps, replicas = ctx.pick(12_000_000, 120_000_000), ctx.pick(2, 4)
    every = steps // 100
    g2 = regularizer(net, start, X, per_sample=True)
    grid = np.linspace(X[0, 0], X[-1, 0], 2751)
    xs = np.array([X[0, 0], X[-1, 0]])
    spline_kinks, spline_tv = kinks(np.interp(grid, X[:, 0], y), grid)
    ctx.params(
        model="MLP [1, 100, 1] relu, bias (True, False)",
        init="init_blanc_et_al",
        X=X[:, 0],
        y=y,
        gd_lr=1.5 / lam,
        gd_steps=200_000,
        loss_after_gd=loss(net, start, X, y),
        lr=lr,
        sigma=sigma,
        noise="gaussian",
        batch_size=1,
        loss="mean_half",
        lr_times_max_grad_norm2=lr * g2.max(),
        steps=steps,
        replicas=replicas,
        kink_threshold=TAU,
        kink_grid=[*xs, 2751],
        seed=ctx.seed,
    )

    ctx.log("short run: stationary loss and initial drift")
    short = simulate(
        net,
        start,
        X,
        y,
        LabelNoiseSGD(lr, sigma),
        steps=500_000,
        record_every=100,
        replicas=2,
        seed=ctx.seed + 100,
        progress=ctx.progress,
    )
    window = short.steps >= 20_000
    early_loss = short.trace["loss"][:, window].mean()
    slope = np.mean(
        [np.polyfit(short.steps[window], r[window], 1)[0] for r in short.trace["regularizer"]]
    )
    J = net.jacobian(start, X)
    S = linearised_cov(J, lr, sigma, 1)
    lin_loss = 0.5 * float(np.trace(J.T @ J / n @ S))
    lyap_loss = theory.ou_prediction(net, start, X, lr, sigma, 1).loss
    gR = regularizer_grad(net, start, X)
    rate_small = float(gR @ theory.drift(net, start, X, lr, sigma, 1))
    rate_finite = float(gR @ finite_lr_drift(net, start, X, lr, S))
    ctx.compare(
        "early stationary loss vs linearised OU (with sampling noise)",
        lin_loss,
        early_loss,
        "within 15%",
        abs(early_loss / lin_loss - 1) < 0.15,
    )
    ctx.compare(
        "early stationary loss vs Lyapunov OU",
        lyap_loss,
        early_loss,
        "within a factor 2 (B5)",
        0.5 < early_loss / lyap_loss < 2,
    )
    ctx.compare(
        "initial dR/dk vs finite-η drift",
        rate_finite,
        slope,
        "same sign, within a factor 2",
        0.5 < slope / rate_finite < 2,
    )
    ctx.note(
        f"small-η drift prediction of dR/dk: {rate_small:.3g} (finite-step effects at "
        f"η‖g‖² = {lr * g2.max():.2f} make it {rate_finite / rate_small:.2f}x larger)"
    )

    ctx.log(f"label noise: {steps:,} steps x {replicas} replicas")
    noisy = simulate(
        net,
        start,
        X,
        y,
        LabelNoiseSGD(lr, sigma),
        steps=steps,
        record_every=every // 10,
        snapshot_every=every,
        replicas=replicas,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    ctx.log(f"control without noise: {steps:,} steps")
    clean = simulate(
        net,
        start,
        X,
        y,
        SGD(lr),
        steps=steps,
        record_every=every // 10,
        snapshot_every=every,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    f_noisy = np.array(
        [[net.predict(t, grid[:, None])[:, 0] for t in snap] for snap in noisy.snapshots]
    )
    stats = np.array([[kinks(f, grid) for f in fr] for fr in f_noisy])  # (marks, replicas, 2)
    k0, tv0 = int(stats[0, 0, 0]), stats[0, 0, 1]
    k1, tv1 = stats[-1, :, 0].mean(), stats[-1, :, 1].mean()
    R = noisy.trace["regularizer"].mean(0)
    R_clean = clean.trace["regularizer"][0]
    blocks = R[: len(R) // 20 * 20].reshape(20, -1).mean(1)
    ctx.compare(
        "R: end / start with label noise",
        "falls",
        R[-1] / R[0],
        ctx.pick("< 0.5", "< 0.05"),
        R[-1] / R[0] < ctx.pick(0.5, 0.05),
    )
    ctx.compare(
        "R: block means fall monotonically",
        "yes",
        bool(np.all(blocks[1:] < 1.05 * blocks[:-1])),
        "5% jitter allowed (B5)",
        bool(np.all(blocks[1:] < 1.05 * blocks[:-1])),
    )
    change = np.max(np.abs(R_clean / R_clean[0] - 1))
    ctx.compare("control σ = 0: max relative change of R", 0.0, change, "< 1% (B5)", change < 0.01)
    ctx.compare(
        "kinks of f in the data range: start → end",
        k0,
        k1,
        ctx.pick("no more than at the start", "< ⅓ of the start"),
        k1 <= k0 if ctx.quick else k1 < k0 / 3,
    )
    ctx.compare(
        "∫|f''| in the data range, end (theory: min over interpolants)",
        spline_tv,
        tv1,
        ctx.pick("fallen by > 30% from the start", "within 25% of the minimum"),
        tv1 < 0.7 * tv0 if ctx.quick else tv1 < 1.25 * spline_tv,
    )
    ctx.note(
        f"start: {k0} kinks, ∫|f''| = {tv0:.0f}; the piecewise-linear interpolation has "
        f"{spline_kinks} kinks and ∫|f''| = {spline_tv:.0f}"
    )
    # The end point fluctuates (loss ~ lr sigma^2 R / 4n); GD takes it back to zero loss for the
    # figure, which moves it only in the normal directions.
    lam = np.linalg.eigvalsh(theory.effective_hessian(net, noisy.theta[0], X, "full"))[-1]
    relaxed = simulate(
        net,
        noisy.theta[0],
        X,
        y,
        GD(1.5 / lam),
        steps=100_000,
        record_every=100_000,
        progress=ctx.progress,
    )
    relaxed_loss, relaxed = relaxed.trace["loss"][0, -1], relaxed.theta[0]
    ctx.measure(
        R_label_noise=R,
        R_control=R_clean,
        steps=noisy.steps,
        snapshot_steps=noisy.snapshot_steps,
        kinks=stats[..., 0],
        slope_tv=stats[..., 1],
        early_loss=early_loss,
        linearised_loss=lin_loss,
        lyapunov_loss=lyap_loss,
        dRdk_measured=slope,
        dRdk_finite_lr=rate_finite,
        dRdk_small_lr=rate_small,
        spline_kinks=spline_kinks,
        spline_tv=spline_tv,
        final_loss=noisy.trace["loss"][:, -(len(R) // 10) :].mean(),
        relaxed_loss=relaxed_loss,
        relaxed_kinks=kinks(net.predict(relaxed, grid[:, None])[:, 0], grid),
    )

    def draw(fig):
        ax1, ax2, ax3 = fig.subplots(1, 3)
        wide = np.linspace(-1.6, 1.7, 600)[:, None]
        ax1.plot(wide, net.predict(start, wide), color="C3", lw=1, label="before (GD interpolant)")
        ax1.plot(wide, net.predict(clean.theta[0], wide), "k:", lw=1, label="after, no noise")
        ax1.plot(
            wide,
            net.predict(relaxed, wide),
            color="C0",
            label="after, label noise (+ GD to zero loss)",
        )
        ax1.plot(X, y, "ko", ms=4)
        ax1.set(xlabel="x", ylabel="f(x)", title="learned function", ylim=(-3, 4))
        ax1.legend(fontsize=7)
        ax2.plot(noisy.steps, R, color="C0", label="label noise")
        ax2.plot(clean.steps, R_clean, "k:", label="no noise")
        ax2.set(yscale="log", xlabel="step", ylabel="R = Σ‖∇f(xᵢ)‖²", title="implicit regularizer")
        ax2.legend(fontsize=7)
        s = noisy.snapshot_steps
        ax3.plot(s, stats[..., 0].mean(1), color="C0", label=f"kinks (|Δslope| > {TAU})")
        ax3.axhline(spline_kinks, color="C0", ls="--", lw=1, label="linear interpolation")
        ax3.set(
            xlabel="step",
            ylabel="kinks in the data range",
            title="kinks and ∫|f''|",
            ylim=(0, None),
        )
        ax3b = ax3.twinx()
        ax3b.plot(s, stats[..., 1].mean(1), color="C1", label="∫|f''|")
        ax3b.axhline(spline_tv, color="C1", ls="--", lw=1, label="min over interpolants")
        ax3b.set(yscale="log", ylabel="∫|f''|")
        ax3.legend(fontsize=7, loc="upper right")
        ax3b.legend(fontsize=7, loc="center right")

    ctx.figure(
        "relu1d.png",
        draw,
        "Width-100 ReLU net on 12 points: from the kinky GD "
        "interpolant, label-noise SGD lowers R and the number of kinks towards the "
        "piecewise-linear interpolation; without noise nothing changes.",
        size=(12, 3.8),
    )
