"""Label noise drifts along the zero-loss manifold toward a smaller implicit regularizer.

Model f(x) = u·v·x with one data point x = 1, y = 1 (``MLP([1, 1, 1], activation="identity",
bias=False)``), mean_half loss, one sample per step, label noise ±σ. The zero-loss manifold is
the hyperbola uv = 1, parametrised by s = ½ ln(u/v); the regularizer R = u² + v² = 2 cosh 2s is
smallest at the balanced point s = 0. Gradient descent does not move on the manifold; label-noise
SGD drifts along it (papers.md §1 item 4, test B2) as

    ds/dk = −(η²σ²/2) · tanh(2s) / (1 − η cosh 2s),

the finite-η form of the small-η flow −(η²σ²/4) P_Γ ∇ tr∇²L (``ir.theory.drift``; the factor
1/(1 − η cosh 2s) = 2/(2 − ηλ) is the finite-step OU variance). Two step sizes are run so that
the time scale 1/(η²σ²) can be seen: plotted against η²σ²k the curves collapse. Control:
σ = 0 from the same start (SGD without label noise does not move along Γ, test B3).
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..dynamics import SGD, LabelNoiseSGD
from ..models import MLP
from ..simulate import simulate

NAME = "blanc-drift"
TITLE = "drift along the zero-loss manifold of f = u·v·x against the predicted flow"

X, Y = np.array([[1.0]]), np.array([1.0])


def _s(theta):
    return 0.5 * np.log(theta[..., 0] / theta[..., 1])


def _on_manifold(s):
    return np.array([np.exp(s), np.exp(-s)])


def predicted_s(s0, lr, sigma, k, finite_lr=True):
    """Integrate the drift ODE in s; ``finite_lr=False`` uses ``ir.theory.drift`` (small η)."""
    from scipy.integrate import solve_ivp

    net = MLP([1, 1, 1], activation="identity", bias=False)

    def rate(_k, s):
        if finite_lr:
            return -(lr**2 * sigma**2 / 2) * np.tanh(2 * s) / (1 - lr * np.cosh(2 * s))
        theta = _on_manifold(s[0])
        d = theory.drift(net, theta, X, lr, sigma, batch_size=1)
        tangent = np.array([theta[0], -theta[1]])  # d theta / ds
        return [d @ tangent / (tangent @ tangent)]

    sol = solve_ivp(rate, (0, k[-1]), [s0], t_eval=k, rtol=1e-10, atol=1e-12)
    return sol.y[0]


def run(ctx) -> None:
    net = MLP([1, 1, 1], activation="identity", bias=False)
    s0, sigma, lrs = np.log(2.0), 1.0, (0.01, 0.005)
    replicas = ctx.pick(20, 200)
    span = 6.0  # run each step size for 6 / (lr^2 sigma^2) steps
    ctx.params(
        model="f = u v x (MLP [1,1,1], identity, no bias)",
        x=1.0,
        y=1.0,
        loss="mean_half",
        noise="sign (±σ)",
        batch_size=1,
        sigma=sigma,
        lrs=lrs,
        start_uv=_on_manifold(s0),
        s0=s0,
        replicas=replicas,
        steps={lr: int(span / (lr * sigma) ** 2) for lr in lrs},
        seed=ctx.seed,
    )
    curves = {}
    for j, lr in enumerate(lrs):
        steps = int(span / (lr * sigma) ** 2)
        every = steps // 120
        ctx.log(f"label noise, lr {lr}: {steps:,} steps x {replicas} replicas")
        res = simulate(
            net,
            _on_manifold(s0),
            X,
            Y,
            LabelNoiseSGD(lr, sigma, noise="sign"),
            steps=steps,
            record_every=every,
            snapshot_every=every,
            replicas=replicas,
            seed=ctx.seed + j,
            progress=ctx.progress,
        )
        s = _s(res.snapshots)
        k = res.snapshot_steps
        curves[lr] = {
            "k": k,
            "mean": s.mean(1),
            "se": s.std(1, ddof=1) / np.sqrt(replicas),
            "ode": predicted_s(s0, lr, sigma, k),
            "ode_small": predicted_s(s0, lr, sigma, k, finite_lr=False),
            "path": res.snapshots[:, 0],
            "R": res.trace["regularizer"].mean(0),
        }
    lr = lrs[0]
    c = curves[lr]
    for k_check in (10_000, 20_000):
        i = int(np.searchsorted(c["k"], k_check))
        ctx.compare(
            f"s at k = {c['k'][i]:,} (η = {lr})",
            c["ode"][i],
            c["mean"][i],
            "within ±5% of the finite-η ODE (B2)",
            abs(c["mean"][i] / c["ode"][i] - 1) < 0.05,
            stderr=c["se"][i],
        )
    i = int(np.searchsorted(c["k"], 50_000))
    ctx.compare(
        f"s at k = {c['k'][i]:,} (η = {lr})",
        c["ode"][i],
        c["mean"][i],
        "< 0.01 (B2)",
        c["mean"][i] < 0.01,
        stderr=c["se"][i],
    )
    # The time scale 1/(lr^2 sigma^2): at equal eta^2 sigma^2 k the two step sizes agree.
    t_half = 1.0
    at = [
        float(np.interp(t_half, curves[x]["k"] * (x * sigma) ** 2, curves[x]["mean"])) for x in lrs
    ]
    ode_at = [
        float(np.interp(t_half, curves[x]["k"] * (x * sigma) ** 2, curves[x]["ode"])) for x in lrs
    ]
    ctx.compare(
        f"s at η²σ²k = 1, η = {lrs[1]} (time-scale collapse)",
        ode_at[1],
        at[1],
        "within ±5% of the ODE",
        abs(at[1] / ode_at[1] - 1) < 0.05,
    )

    ctx.log("control: no noise from the same start")
    steps = int(span / (lr * sigma) ** 2)
    every = steps // 120
    clean = simulate(
        net,
        _on_manifold(s0),
        X,
        Y,
        SGD(lr),
        steps=steps,
        snapshot_every=every,
        record_every=every,
        progress=ctx.progress,
    )
    s_clean = _s(clean.snapshots[:, 0])
    ctx.compare(
        "control σ = 0: max |s − s0|",
        0.0,
        np.max(np.abs(s_clean - s0)),
        "< 1e-10 (B3)",
        np.max(np.abs(s_clean - s0)) < 1e-10,
    )
    ctx.measure(
        **{f"lr_{x}": {k: v for k, v in cv.items() if k != "path"} for x, cv in curves.items()},
        control_s=s_clean,
    )

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for (x, cv), color in zip(curves.items(), ("C0", "C1"), strict=True):
            t = cv["k"] * (x * sigma) ** 2
            ax1.plot(t, cv["mean"], color=color, label=f"label noise, η = {x}")
            ax1.fill_between(
                t, cv["mean"] - 2 * cv["se"], cv["mean"] + 2 * cv["se"], color=color, alpha=0.3
            )
            ax1.plot(t, cv["ode"], "k--", lw=1, label="finite-η drift ODE" if x == lr else None)
            ax1.plot(
                t,
                cv["ode_small"],
                ":",
                color=color,
                lw=1,
                label="small-η flow (ir.theory.drift)" if x == lr else None,
            )
        t = clean.snapshot_steps * (lr * sigma) ** 2
        ax1.plot(t, s_clean, color="C3", label="no noise (σ = 0)")
        ax1.set(
            xlabel="η²σ² · step",
            ylabel="s = ½ ln(u/v)  (mean over replicas)",
            title="position along the manifold uv = 1",
        )
        ax1.legend(fontsize=7)
        u = np.linspace(0.3, 2.3, 200)
        ax2.plot(u, 1 / u, "k--", lw=1, label="zero loss: uv = 1")
        path = curves[lr]["path"]
        ax2.plot(path[:, 0], path[:, 1], ".", ms=3, color="C0", label="one replica (η = 0.01)")
        ax2.plot(*_on_manifold(s0), "o", color="C3", label="start")
        ax2.plot(1, 1, "x", color="k", ms=9, label="min R on the manifold")
        ax2.set(
            xlabel="u",
            ylabel="v",
            xlim=(0.3, 2.3),
            ylim=(0.3, 2.3),
            aspect="equal",
            title="trajectory (u, v)",
        )
        ax2.legend(fontsize=7)

    ctx.figure(
        "drift.png",
        draw,
        "Label-noise SGD on f = u·v·x slides along uv = 1 to the "
        "balanced point, on the predicted drift ODE for two step sizes (time in units of "
        "1/(η²σ²)); without noise it does not move.",
        size=(10, 4),
    )
