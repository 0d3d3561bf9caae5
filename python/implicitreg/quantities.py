"""Full-data quantities: the squared loss, its gradient and the implicit regularizer R.

Loss normalisations (``normalization=``), for residuals r_i = f(x_i) - y_i over n samples:

================  ==============================
``mean_half``     L = 1/(2n) sum_i ||r_i||^2  (default)
``mean``          L = 1/n    sum_i ||r_i||^2
``mean_quarter``  L = 1/(4n) sum_i ||r_i||^2
``sum_half``      L = 1/2    sum_i ||r_i||^2
``sum_sq``        L =        sum_i ||r_i||^2
================  ==============================

In a minibatch step the same convention applies with n replaced by the batch size.
"""

from __future__ import annotations

import numpy as np

from ._validate import choice, inputs, targets, theta_vector

# L = coef * (1/n if the name starts with "mean") * sum_i ||r_i||^2; the C++ twin is loss.hpp.
_COEF = {"mean_half": 0.5, "mean": 1.0, "mean_quarter": 0.25, "sum_half": 0.5, "sum_sq": 1.0}
NORMALIZATIONS = tuple(_COEF)


def loss_scale(normalization: str, m: int) -> float:
    """The factor c in L = c * sum ||r_i||^2 over m samples."""
    choice("normalization", normalization, NORMALIZATIONS)
    return _COEF[normalization] / (m if normalization.startswith("mean") else 1)


def _prepare(model, theta, X, y=None):
    theta = theta_vector(model, theta)
    X = inputs(model, X, theta.dtype)
    if y is None:
        return theta, X
    return theta, X, targets(model, y, X.shape[0], theta.dtype)


def loss(model, theta, X, y, normalization: str = "mean_half") -> float:
    """Squared loss of ``model`` at ``theta`` on ``(X, y)`` (see module docstring)."""
    choice("normalization", normalization, NORMALIZATIONS)
    theta, X, y = _prepare(model, theta, X, y)
    return model._core(theta.dtype).loss(theta, X, y, normalization)


def grad(model, theta, X, y, normalization: str = "mean_half") -> np.ndarray:
    """Gradient of :func:`loss` with respect to ``theta``, shape ``(n_params,)``."""
    choice("normalization", normalization, NORMALIZATIONS)
    theta, X, y = _prepare(model, theta, X, y)
    return model._core(theta.dtype).loss_grad(theta, X, y, normalization)[1]


def regularizer(model, theta, X, per_sample: bool = False):
    """Implicit regularizer R(theta) = sum_i sum_o ||d f_o(x_i) / d theta||^2.

    Summed (not averaged) over samples and outputs, computed by the per-layer norm trick
    without forming the Jacobian. With ``per_sample=True`` returns the ``(n,)`` terms R_i.
    Under the ``mean_half`` loss, R / n equals tr(Hessian of L) at a zero-loss point.
    """
    theta, X = _prepare(model, theta, X)
    core = model._core(theta.dtype)
    if per_sample:
        return core.regularizer_per_sample(theta, X)
    return float(core.regularizer_and_grad(theta, X, False)[0])  # cached workspace, no gradient
