"""Around a zero-loss point, label-noise SGD is an Ornstein–Uhlenbeck process.

A tanh network 1–4–1 (13 parameters) interpolates 4 points exactly at θ* (Gauss–Newton to
machine precision). From θ*, label-noise SGD with noise ±σ on the labels runs with one sample,
a minibatch of 2 (drawn with replacement) or the full batch per step, at the same step size η.
The theory (papers.md §1, test B4; ``ir.theory.ou_prediction``) linearises the step,
Δ' = (I − ηH)Δ − ηξ with Cov ξ = κH, κ = σ²/B, and predicts the stationary covariance from the
discrete Lyapunov equation S = (I − ηH)S(I − ηH) + η²κH and the excess loss ½ tr(HS). That
equation neglects the sampling noise of the minibatch Hessian, which vanishes at θ* but not at
θ* + Δ: for B < n it adds a term of relative order η‖g_i‖². The table therefore also shows the
exact second moment of the linearised recursion including that term,
S = E[A S Aᵀ] + η²κH with A = I − (η/B) Σ_b g_b g_bᵀ (for full batch both are the same).
The measured covariance is the time covariance of θ after a burn-in, projected on the normal
space span{g_i}, averaged over replicas. σ = 0.001 is small on purpose: the covariance scales as
ησ², while the slow drift along the curved manifold (∝ η²σ² per step) contaminates the measured
covariance in proportion to σ⁴ (at σ = 0.01 and 10⁷ steps it already dominates the one-sample
covariance).
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..dynamics import LabelNoiseSGD
from ..models import MLP
from ..quantities import loss
from ..simulate import simulate

NAME = "blanc-ou"
TITLE = "stationary covariance and loss of label-noise SGD against the Lyapunov prediction"

MODES = {"single sample": 1, "minibatch B = 2": 2, "full batch": "full"}


def problem():
    """A 1-4-1 tanh net and an exactly interpolating theta* on 4 points."""
    net = MLP([1, 4, 1], activation="tanh")
    X = np.array([[-1.0], [-1 / 3], [1 / 3], [1.0]])
    y = np.array([0.5, -0.2, 0.3, -0.4])
    theta = net.init(seed=0, scheme="normal")
    for _ in range(50):  # Gauss-Newton (least-norm steps): quadratic convergence to zero loss
        r = net.predict(theta, X)[:, 0] - y
        theta = theta - np.linalg.lstsq(net.jacobian(theta, X), r, rcond=None)[0]
    return net, theta, X, y


def linearised_cov(J, lr, sigma, batch):
    """Exact stationary covariance of the linearised label-noise recursion, sampling noise
    included: S = E[A S A^T] + lr^2 sigma^2 / B * H, A = I - lr/B sum_b g_b g_b^T, batches drawn
    with replacement (mean_half loss); ``batch="full"`` gives the Lyapunov equation."""
    n = J.shape[0]
    lam, U = np.linalg.eigh(J.T @ J / n)
    U = U[:, lam > 1e-10 * lam[-1]]  # the normal space
    G = J @ U
    H = G.T @ G / n
    r = H.shape[0]
    eye = np.eye(r)
    if batch == "full":
        A = eye - lr * H
        T, Q = np.kron(A, A), lr**2 * sigma**2 / n * H
    else:
        T = np.kron(eye, eye) - lr * (np.kron(H, eye) + np.kron(eye, H))
        T += lr**2 * (batch - 1) / batch * np.kron(H, H)
        T += lr**2 / batch * sum(np.kron(np.outer(g, g), np.outer(g, g)) for g in G) / n
        Q = lr**2 * sigma**2 / batch * H
    s = np.linalg.solve(np.eye(r * r) - T, Q.ravel()).reshape(r, r)
    return U @ s @ U.T


def finite_lr_drift(net, theta, X, lr, S, eps=1e-6):
    """Mean drift per step along the manifold for a given stationary covariance S:
    -(lr/2) P grad_theta [tr(J(theta) S J(theta)^T) / n] (mean_half loss; the third-derivative
    term of papers.md §1 item 4 without the small-lr replacement S = (lr kappa / 2) Pi).
    With S from :func:`linearised_cov` it includes the finite-step and sampling corrections.
    The gradient is by central differences of exact Jacobians."""
    n = len(X)

    def F(t):
        J = net.jacobian(t, X)
        return np.einsum("ip,pq,iq->", J, S, J) / n

    grad = np.array(
        [(F(theta + eps * e) - F(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)]
    )
    return -(lr / 2) * theory.tangent_projector(net, theta, X) @ grad


def run(ctx) -> None:
    net, theta_star, X, y = problem()
    n = len(X)
    J = net.jacobian(theta_star, X)
    g2 = np.sum(J**2, axis=1)
    sigma = 1e-3  # small: the drift along the manifold (its effect on Cov ~ sigma^4) stays tiny
    lr = 0.2 / g2.max()
    lam = np.linalg.eigvalsh(J.T @ J / n)[-n:]
    burn_in = int(10 / (lr * lam[0]))
    steps, replicas = ctx.pick(1_000_000, 4_000_000), ctx.pick(4, 8)
    ctx.params(
        model="MLP [1, 4, 1] tanh with biases",
        X=X[:, 0],
        y=y,
        theta_star=theta_star,
        loss_at_theta_star=loss(net, theta_star, X, y),
        per_sample_grad_norm2=g2,
        hessian_eigenvalues=lam,
        lr=lr,
        lr_times_max_grad_norm2=lr * g2.max(),
        sigma=sigma,
        noise="sign (±σ)",
        loss="mean_half",
        modes=MODES,
        steps=steps,
        burn_in=burn_in,
        replicas=replicas,
        seed=ctx.seed,
    )
    P = np.eye(net.n_params) - theory.tangent_projector(net, theta_star, X)
    out = {}
    for j, (mode, batch) in enumerate(MODES.items()):
        ctx.log(f"{mode}: {steps:,} steps x {replicas} replicas")
        res = simulate(
            net,
            theta_star,
            X,
            y,
            LabelNoiseSGD(lr, sigma, noise="sign", batch_size=batch),
            steps=steps,
            record_every=100,
            replicas=replicas,
            seed=ctx.seed + j,
            moments=True,
            burn_in=burn_in,
            progress=ctx.progress,
        )
        pred = theory.ou_prediction(net, theta_star, X, lr, sigma, batch_size=batch)
        exact = linearised_cov(J, lr, sigma, batch)
        exact_loss = 0.5 * float(np.trace(J.T @ J / n @ exact))
        cov = np.mean([P @ c @ P for c in res.moments.cov], axis=0)
        per_replica = res.trace["loss"][:, res.steps > burn_in].mean(axis=1)
        mean, se = per_replica.mean(), per_replica.std(ddof=1) / np.sqrt(replicas)
        err_lyap = np.linalg.norm(cov - pred.cov) / np.linalg.norm(pred.cov)
        err_exact = np.linalg.norm(cov - exact) / np.linalg.norm(exact)
        ctx.compare(
            f"{mode}: stationary loss, Lyapunov ½tr(HS)",
            pred.loss,
            mean,
            "within 10%",
            abs(mean / pred.loss - 1) < 0.1,
            stderr=se,
        )
        ctx.compare(
            f"{mode}: stationary loss, linearised incl. sampling noise",
            exact_loss,
            mean,
            "within 3%",
            abs(mean / exact_loss - 1) < 0.03,
            stderr=se,
        )
        ctx.compare(
            f"{mode}: covariance, rel. Frobenius error vs Lyapunov S",
            0.0,
            err_lyap,
            "< 0.10 (B4)",
            err_lyap < 0.1,
        )
        ctx.compare(
            f"{mode}: covariance, rel. Frobenius error vs linearised S",
            0.0,
            err_exact,
            "< 0.05",
            err_exact < 0.05,
        )
        k = res.steps[res.steps > burn_in]
        running = np.cumsum(res.trace["loss"][:, res.steps > burn_in].mean(0)) / np.arange(
            1, len(k) + 1
        )
        out[mode] = {
            "batch": batch,
            "kappa": pred.kappa,
            "predicted_loss": pred.loss,
            "linearised_loss": exact_loss,
            "measured_loss": mean,
            "loss_stderr": se,
            "cov_rel_error_lyapunov": err_lyap,
            "cov_rel_error_linearised": err_exact,
            "measured_cov": cov,
            "lyapunov_cov": pred.cov,
            "linearised_cov": exact,
            "steps": k,
            "running_loss": running,
        }
    ctx.measure(
        **{
            m: {k: v for k, v in o.items() if k not in ("steps", "running_loss")}
            for m, o in out.items()
        }
    )

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        scale = lr * sigma**2
        for (mode, o), c in zip(out.items(), ("C0", "C1", "C2"), strict=True):
            iu = np.triu_indices(net.n_params)
            ax1.plot(
                o["lyapunov_cov"][iu] / scale,
                o["measured_cov"][iu] / scale,
                ".",
                color=c,
                ms=4,
                label=f"{mode} (κ = σ²/{n if o['batch'] == 'full' else o['batch']})",
            )
            ax2.plot(o["steps"], o["running_loss"], color=c, label=f"{mode}: measured")
            ax2.axhline(o["predicted_loss"], color=c, ls="--", lw=1)
            ax2.axhline(o["linearised_loss"], color=c, ls=":", lw=1)
        lim = ax1.get_xlim()
        ax1.plot(lim, lim, "k-", lw=0.7, label="measured = predicted")
        ax1.set(
            xlabel="Lyapunov prediction S_ij / (ησ²)",
            ylabel="measured Cov_ij / (ησ²)",
            title="covariance of θ − θ* (normal space)",
        )
        ax1.legend(fontsize=7)
        ax2.set(
            xscale="log",
            yscale="log",
            xlabel="step",
            ylabel="running mean of the loss",
            title="loss: -- Lyapunov, ·· linearised with sampling noise",
        )
        ax2.legend(fontsize=7)

    ctx.figure(
        "ou.png",
        draw,
        "Label-noise SGD around an interpolating θ* of a small tanh net: "
        "the measured covariance and stationary loss match the OU (Lyapunov) prediction "
        "for one-sample, minibatch and full-batch noise.",
        size=(10, 4),
    )
