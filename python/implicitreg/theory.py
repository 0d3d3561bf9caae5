"""Closed-form predictions to set beside simulations (papers.md §1 and §3).

Label noise near a zero-loss point theta* (the Ornstein-Uhlenbeck picture of Blanc et al.).
A step on a batch of B samples with loss L_B = c_B * sum_{i in B} ||r_i||^2 is, to first order
in Delta = theta - theta*,

    Delta' = (I - eta H) Delta - eta xi,    H = 2 c_B (B / n) J^T J,    Cov xi = kappa H,
    kappa = 2 c_B sigma^2,

with J the (n*out, p) Jacobian at theta*. For the default mean_half loss kappa is sigma^2 (one
sample per step), sigma^2 / B (batch B) and sigma^2 / n (full batch); for sum_sq, full batch, it
is 2 sigma^2 -- the table of papers.md §1. The noise type (gaussian, uniform, sign) does not
enter: only its variance sigma^2 does. The stationary covariance solves the discrete Lyapunov
equation S = (I - eta H) S (I - eta H) + eta^2 kappa H on the span of J's rows:
S = sum_k eta kappa / (2 - eta lambda_k) u_k u_k^T over H's nonzero eigenpairs. The
approximation ignores the sampling noise that vanishes at theta* (exact for full batch on a
linear model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import inputs, positive, theta_vector
from .quantities import grad, loss, loss_scale


def _batch(batch_size, n):
    if batch_size == "full":
        return n
    if not isinstance(batch_size, (int, np.integer)) or not batch_size >= 1:
        raise ValueError(f"batch_size must be a positive integer or 'full', got {batch_size!r}")
    return int(batch_size)


def noise_scale(sigma: float, batch_size, n: int, normalization: str = "mean_half") -> float:
    """kappa in Cov(xi) = kappa * H for label noise of standard deviation sigma."""
    B = _batch(batch_size, n)
    return 2 * loss_scale(normalization, B) * positive("sigma", sigma, strict=False) ** 2


def effective_hessian(model, theta_star, X, batch_size=1, normalization="mean_half"):
    """H = 2 c_B (B/n) J^T J: the Hessian the expected batch step linearises to at theta*."""
    theta_star = theta_vector(model, theta_star)
    X = inputs(model, X, theta_star.dtype)
    n = X.shape[0]
    B = _batch(batch_size, n)
    J = model.jacobian(theta_star, X).astype(np.float64)
    return 2 * loss_scale(normalization, B) * (B / n) * (J.T @ J)


@dataclass
class OUPrediction:
    """The stationary Ornstein-Uhlenbeck picture at a zero-loss point."""

    cov: np.ndarray  # (p, p) stationary covariance of theta - theta*
    hessian: np.ndarray  # (p, p) effective H
    kappa: float
    eigenvalues: np.ndarray  # nonzero eigenvalues of H
    loss: float  # predicted stationary excess (clean, full-data) loss


def ou_prediction(
    model,
    theta_star,
    X,
    lr,
    sigma,
    batch_size=1,
    normalization="mean_half",
    rtol=1e-10,
    sampling_noise=False,
) -> OUPrediction:
    """Stationary covariance and excess loss of label-noise SGD around a zero-loss theta*.

    With ``sampling_noise=True`` the linearised recursion is solved exactly, including the
    multiplicative noise of drawing the batch (with replacement):
    S = E[A S A^T] + eta^2 a^2 sigma^2 B Hbar, A = I - eta a sum_{b in batch} J_b^T J_b,
    a = 2 c_B, Hbar = mean_i J_i^T J_i; this is exact for a linear model and matters at
    practical step sizes (the plain Lyapunov form is then a few percent off for small batches).
    It solves an r^2 x r^2 system, r = rank of J (at most 60).
    """
    lr = positive("lr", lr)
    theta_star = theta_vector(model, theta_star)
    X = inputs(model, X, theta_star.dtype)
    n = X.shape[0]
    H = effective_hessian(model, theta_star, X, batch_size, normalization)
    kappa = noise_scale(sigma, batch_size, n, normalization)
    lam, U = np.linalg.eigh(H)
    keep = lam > rtol * max(lam[-1], 0.0)
    lam, U = lam[keep], U[:, keep]
    if np.any(lr * lam >= 2):
        raise ValueError(f"lr * lambda_max(H) = {lr * lam.max():.3g} >= 2: no stationary state")
    if sampling_noise and batch_size != "full":
        S = _sampled_covariance(
            model, theta_star, X, lr, sigma, _batch(batch_size, n), normalization, U
        )
    else:
        S = (U * (lr * kappa / (2 - lr * lam))) @ U.T
    H_full = effective_hessian(model, theta_star, X, "full", normalization)
    return OUPrediction(
        cov=S, hessian=H, kappa=kappa, eigenvalues=lam, loss=0.5 * float(np.trace(H_full @ S))
    )


def _sampled_covariance(model, theta_star, X, lr, sigma, B, normalization, U):
    """Exact stationary second moment of the linearised minibatch recursion (see above)."""
    r = U.shape[1]
    if r > 60:
        raise ValueError(f"sampling_noise=True needs rank(J) <= 60 (here {r}); use False")
    n, out = X.shape[0], model.n_out
    G = (model.jacobian(theta_star, X).astype(np.float64) @ U).reshape(n, out, r)
    M = np.einsum("iok,iol->ikl", G, G)  # per-sample J_i^T J_i in the normal space
    Hbar = M.mean(axis=0)
    a = 2 * loss_scale(normalization, B)
    eye = np.eye(r)
    MM = sum(np.kron(m, m) for m in M) / n
    T = (
        np.kron(eye, eye)
        - lr * a * B * (np.kron(Hbar, eye) + np.kron(eye, Hbar))
        + (lr * a) ** 2 * (B * (B - 1) * np.kron(Hbar, Hbar) + B * MM)
    )
    Q = (lr * a) ** 2 * sigma**2 * B * Hbar
    s = np.linalg.solve(np.eye(r * r) - T, Q.ravel()).reshape(r, r)
    return U @ (0.5 * (s + s.T)) @ U.T


def ou_covariance(
    model, theta_star, X, lr, sigma, batch_size=1, normalization="mean_half", sampling_noise=False
):
    """Stationary covariance S of theta - theta* (see :func:`ou_prediction`)."""
    return ou_prediction(
        model, theta_star, X, lr, sigma, batch_size, normalization, sampling_noise=sampling_noise
    ).cov


def stationary_loss(
    model, theta_star, X, lr, sigma, batch_size=1, normalization="mean_half", sampling_noise=False
):
    """Predicted time-averaged clean loss tr(H_n S)/2; without sampling noise and for
    mean-normalised losses, sum_k eta kappa lambda_k / (2 (2 - eta lambda_k))."""
    return ou_prediction(
        model, theta_star, X, lr, sigma, batch_size, normalization, sampling_noise=sampling_noise
    ).loss


def tangent_projector(model, theta_star, X, rtol=1e-10) -> np.ndarray:
    """Projector on the tangent space of the zero-loss manifold at theta*: the null space of J."""
    theta_star = theta_vector(model, theta_star)
    J = model.jacobian(theta_star, inputs(model, X, theta_star.dtype)).astype(np.float64)
    _, s, Vt = np.linalg.svd(J, full_matrices=True)
    rank = int(np.sum(s > rtol * (s[0] if s.size else 0)))
    N = Vt[rank:]
    return N.T @ N


def drift(model, theta_star, X, lr, sigma, batch_size=1, normalization="mean_half"):
    """Predicted mean displacement per step along the zero-loss manifold (small-lr limit):

    -(eta^2 kappa / 4) P_Gamma grad tr(H),  tr(H) = 2 c_B (B/n) R(theta),

    the implicit regularizer's drift (papers.md §1, item 4). Its norm is the drift speed.
    """
    from .second_order import regularizer_grad

    theta_star = theta_vector(model, theta_star)
    X = inputs(model, X, theta_star.dtype)
    n = X.shape[0]
    B = _batch(batch_size, n)
    kappa = noise_scale(sigma, batch_size, n, normalization)
    factor = 2 * loss_scale(normalization, B) * (B / n)
    gR = regularizer_grad(model, theta_star, X).astype(np.float64)
    P = tangent_projector(model, theta_star, X)
    return -(lr**2) * kappa / 4 * factor * (P @ gR)


def igr_modified_loss(model, theta, X, y, h, normalization="mean_half") -> float:
    """Barrett & Dherin's modified loss L + (h/4) ||grad L||^2 that GD with step h follows."""
    h = positive("h", h)
    g = grad(model, theta, X, y, normalization)
    return loss(model, theta, X, y, normalization) + h / 4 * float(np.dot(g, g))


def igr_rate(h, n_params: int) -> float:
    """lambda = h m / 4 in L + lambda R_IG with R_IG = ||grad L||^2 / m (m parameters)."""
    return positive("h", h) * n_params / 4


def igr_regularizer(model, theta, X, y, normalization="mean_half") -> float:
    """R_IG = ||grad L||^2 / m."""
    g = grad(model, theta, X, y, normalization)
    return float(np.dot(g, g)) / model.n_params


__all__ = [
    "OUPrediction",
    "drift",
    "effective_hessian",
    "igr_modified_loss",
    "igr_rate",
    "igr_regularizer",
    "noise_scale",
    "ou_covariance",
    "ou_prediction",
    "stationary_loss",
    "tangent_projector",
]
