"""Exact second-order quantities: Hessian-vector products, the Hessian, its spectrum and trace,
the gradient of the implicit regularizer, and the neural tangent kernel.

All are computed in the C++ core by hand-coded forward and reverse passes (Pearlmutter's R-op for
H v), without forming per-sample Jacobians; ``hessian``, ``sharpness`` and ``hessian_trace`` are
built from those products here. ``L`` is the squared loss of :mod:`implicitreg.quantities` with
the chosen ``normalization``, L = c * sum_i ||f(x_i) - y_i||^2, and ``H`` its Hessian in theta.
Results have the dtype of ``theta`` (eigenvalues and traces are Python/NumPy float64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import choice, float_array, integer, positive
from .quantities import NORMALIZATIONS, _prepare

# Largest p for which the dense p x p Hessian is formed (p HVPs; 5000^2 float64 is 200 MB).
MAX_P_DENSE = 5000
# Below this p, dense eigvalsh / the exact trace are cheaper and more accurate than iterating.
SMALL_P = 500


class TraceEstimate(NamedTuple):
    """Estimate of tr H; ``stderr`` is 0 for the exact method."""

    value: float
    stderr: float
    method: str
    samples: int


def _loss_args(model, theta, X, y, normalization):
    choice("normalization", normalization, NORMALIZATIONS)
    theta, X, y = _prepare(model, theta, X, y)
    return model._core(theta.dtype), theta, X, y


def _direction(model, v, dtype) -> np.ndarray:
    v = float_array("v", v, dtype)
    if v.shape != (model.n_params,):
        raise ValueError(f"v must have shape ({model.n_params},), got {v.shape}")
    return v


def regularizer_grad(model, theta, X, return_value: bool = False):
    """Gradient of R(theta) = sum_i sum_o ||d f_o(x_i) / d theta||^2 (see ``regularizer``).

    Exact reverse mode through the per-layer norm trick: about 3x the cost of R itself, no
    per-sample gradients. With ``return_value=True`` returns ``(R, grad R)``.
    """
    theta, X = _prepare(model, theta, X)
    value, g = model._core(theta.dtype).regularizer_and_grad(theta, X)
    return (float(value), g) if return_value else g


def hvp(model, theta, X, y, v, normalization: str = "mean_half") -> np.ndarray:
    """Exact Hessian-vector product H v of the loss (R-op; costs about two gradients)."""
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    return core.hvp(theta, X, y, _direction(model, v, theta.dtype), normalization)


def gnvp(model, theta, X, y, v, normalization: str = "mean_half") -> np.ndarray:
    """Gauss-Newton-vector product G v = 2c J^T (J v), J the per-sample Jacobian.

    G is H without the residual term; it does not depend on ``y`` (validated only).
    """
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    return core.gnvp(theta, X, y, _direction(model, v, theta.dtype), normalization)


def egr_direction(model, theta, X, y, mu: float, normalization: str = "mean_half"):
    """``(L, g + 2 mu H g)``: the gradient of L + mu ||grad L||^2 (explicit gradient
    regularization), in one forward-backward plus one R-op pass."""
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    value, d = core.egr_direction(theta, X, y, positive("mu", mu, strict=False), normalization)
    return float(value), d


def _hessian_columns(core, theta, X, y, normalization):
    """Yields (j, H e_j) for j = 0..p-1."""
    e = np.zeros_like(theta)
    for j in range(theta.size):
        e[j] = 1
        yield j, core.hvp(theta, X, y, e, normalization)
        e[j] = 0


def _dense_hessian(core, theta, X, y, normalization) -> np.ndarray:
    p = theta.size
    if p > MAX_P_DENSE:
        raise ValueError(
            f"the model has p = {p} parameters; the dense Hessian is limited to p <= "
            f"{MAX_P_DENSE}. Use hvp, sharpness or hessian_trace instead"
        )
    H = np.empty((p, p), dtype=theta.dtype)
    for j, col in _hessian_columns(core, theta, X, y, normalization):
        H[:, j] = col
    # Columns are exact up to round-off; symmetrising removes that asymmetry.
    return (H + H.T) / 2


def hessian(model, theta, X, y, normalization: str = "mean_half") -> np.ndarray:
    """Dense Hessian of the loss, shape ``(p, p)``, from p exact HVPs. Refuses p > 5000."""
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    return _dense_hessian(core, theta, X, y, normalization)


def sharpness(model, theta, X, y, k: int = 1, normalization: str = "mean_half") -> np.ndarray:
    """The k largest eigenvalues of the loss Hessian, descending, shape ``(k,)`` (float64).

    ``sharpness(...)[0]`` is lambda_max. For p <= 500 (or k >= p) from the dense Hessian
    (``numpy.linalg.eigvalsh``); otherwise Lanczos (``scipy.sparse.linalg.eigsh``,
    ``which="LA"``) on exact HVPs, started from a fixed vector so results are reproducible.
    """
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    p = theta.size
    k = integer("k", k, minimum=1)
    if k > p:
        raise ValueError(f"k must be <= the number of parameters {p}, got {k}")
    if p <= SMALL_P or k >= p:
        w = np.linalg.eigvalsh(_dense_hessian(core, theta, X, y, normalization).astype(np.float64))
        return w[::-1][:k].copy()
    from scipy.sparse.linalg import LinearOperator, eigsh

    def matvec(v):
        v = np.ascontiguousarray(np.ravel(v), dtype=theta.dtype)
        return core.hvp(theta, X, y, v, normalization).astype(np.float64)

    op = LinearOperator((p, p), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(p)
    # float32 products are accurate to ~1e-7 relative: ask Lanczos for no more than that.
    tol = 0.0 if theta.dtype == np.float64 else 1e-5
    w = eigsh(op, k=k, which="LA", v0=v0, tol=tol, return_eigenvectors=False)
    return np.sort(w)[::-1].copy()


def hessian_trace(
    model,
    theta,
    X,
    y,
    normalization: str = "mean_half",
    method: str = "auto",
    samples: int = 100,
    seed: int = 0,
) -> TraceEstimate:
    """tr H of the loss Hessian.

    ``method="exact"``: sum of e_j^T H e_j over all p coordinates (p HVPs; p <= 5000).
    ``"hutchinson"``: mean of z^T H z over ``samples`` Rademacher vectors z drawn with
    ``numpy.random.default_rng(seed)``; ``stderr`` is the sample standard deviation / sqrt(samples).
    ``"auto"``: exact for p <= 500, Hutchinson otherwise. Returns a :class:`TraceEstimate`
    ``(value, stderr, method, samples)``.
    """
    choice("method", method, ("auto", "exact", "hutchinson"))
    core, theta, X, y = _loss_args(model, theta, X, y, normalization)
    p = theta.size
    if method == "auto":
        method = "exact" if p <= SMALL_P else "hutchinson"
    if method == "exact":
        if p > MAX_P_DENSE:
            raise ValueError(
                f"exact trace needs p HVPs; p = {p} > {MAX_P_DENSE}: use method='hutchinson'"
            )
        diag = [col[j] for j, col in _hessian_columns(core, theta, X, y, normalization)]
        return TraceEstimate(float(np.sum(diag, dtype=np.float64)), 0.0, "exact", p)
    samples = integer("samples", samples, minimum=2)
    rng = np.random.default_rng(integer("seed", seed))
    vals = np.empty(samples)
    for s in range(samples):
        z = (2.0 * rng.integers(0, 2, size=p) - 1.0).astype(theta.dtype)
        vals[s] = np.dot(z.astype(np.float64), core.hvp(theta, X, y, z, normalization))
    stderr = float(np.std(vals, ddof=1) / np.sqrt(samples))
    return TraceEstimate(float(np.mean(vals)), stderr, "hutchinson", samples)


def ntk(model, theta, X) -> np.ndarray:
    """Empirical neural tangent kernel J J^T, shape ``(n * n_out, n * n_out)``.

    Entry ``[i * n_out + o, j * n_out + q]`` is <d f_o(x_i)/d theta, d f_q(x_j)/d theta>.
    """
    theta, X = _prepare(model, theta, X)
    J = model._core(theta.dtype).jacobian(theta, X)
    return J @ J.T
