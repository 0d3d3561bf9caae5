"""Continuous-time references for gradient descent, integrated with error control.

Gradient flow  d theta/dt = -grad L(theta), and the implicit-gradient-regularization (IGR)
modified flow of Barrett & Dherin,  d theta/dt = -grad [L + (h/4) ||grad L||^2]
= -(g + (h/2) H g), which GD with step h follows to O(h^2) over a fixed time (GD follows the
plain gradient flow only to O(h)). Integrated by scipy's adaptive DOP853 (8th-order
Dormand-Prince); H g is an exact Hessian-vector product from the C++ core.
"""

from __future__ import annotations

import numpy as np

from ._validate import inputs, positive, targets, theta_vector
from .quantities import NORMALIZATIONS, grad


def flow(
    model,
    theta,
    X,
    y,
    t_end,
    h=None,
    times=None,
    rtol=1e-10,
    atol=1e-12,
    normalization: str = "mean_half",
    method: str = "DOP853",
) -> np.ndarray:
    """Integrate gradient flow (``h=None``) or the IGR modified flow of step ``h``.

    Parameters
    ----------
    theta : (p,) start at t = 0.
    t_end : final time; GD with step h after k steps sits at time t = k h.
    times : increasing times in [0, t_end] at which to return the state (default ``[t_end]``).
    rtol, atol : error tolerances of the adaptive integrator.

    Returns
    -------
    (len(times), p) float64 array of the flow's states.
    """
    from scipy.integrate import solve_ivp

    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}")
    theta = theta_vector(model, theta).astype(np.float64)
    X = (
        inputs(model, X, np.float64)
        if np.asarray(X).dtype == np.float64
        else inputs(model, np.asarray(X, dtype=np.float64), np.float64)
    )
    y = targets(model, np.asarray(y, dtype=np.float64), X.shape[0], np.float64)
    t_end = positive("t_end", t_end)
    times = np.array([t_end], dtype=float) if times is None else np.asarray(times, dtype=float)
    if times.ndim != 1 or np.any(np.diff(times) < 0) or times[0] < 0 or times[-1] > t_end:
        raise ValueError("times must be increasing and inside [0, t_end]")
    if h is not None:
        h = positive("h", h)

    def velocity(_t, th):
        g = grad(model, th, X, y, normalization)
        if h is None:
            return -g
        from .second_order import hvp

        return -(g + 0.5 * h * hvp(model, th, X, y, g, normalization=normalization))

    sol = solve_ivp(
        velocity, (0.0, t_end), theta, method=method, t_eval=times, rtol=rtol, atol=atol
    )
    if not sol.success:
        raise RuntimeError(f"flow integration failed: {sol.message}")
    return sol.y.T.copy()
