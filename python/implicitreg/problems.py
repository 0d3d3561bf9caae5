"""Standard problems for the non-MLP models: matrix sensing and sparse regression.

Every random helper takes ``seed``: an int (for ``numpy.random.default_rng(seed)``) or a
``numpy.random.Generator`` (to draw several objects from one stream, in a chosen order). Arrays
are float64; cast them for float32 runs.

>>> import implicitreg as ir
>>> X_star, _ = ir.problems.low_rank_ground_truth(20, 2, seed=0)
>>> A = ir.problems.symmetric_gaussian_measurements(100, 20, seed=1)
>>> y = ir.problems.sensing_labels(A, X_star)
>>> model = ir.MatrixSensing(20)
>>> theta = model.init(seed=2, scale=0.1)
>>> err = ir.problems.recovery_error(model, theta, X_star)
"""

from __future__ import annotations

import numpy as np

from ._validate import float_array, integer, positive


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(integer("seed", seed))


def gaussian_measurements(n: int, d: int, seed=0) -> np.ndarray:
    """``(n, d, d)`` measurement matrices with i.i.d. N(0, 1) entries."""
    return _rng(seed).standard_normal((integer("n", n, minimum=1), integer("d", d, minimum=1), d))


def symmetric_gaussian_measurements(n: int, d: int, seed=0) -> np.ndarray:
    """``(n, d, d)`` symmetric matrices ``(G_i + G_i^T) / 2``, G_i i.i.d. N(0, 1) (as workload W3)."""
    G = gaussian_measurements(n, d, seed)
    return (G + np.swapaxes(G, 1, 2)) / 2


def low_rank_ground_truth(d: int, r: int, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``(X_star, U_star)``: X* = U* U*^T of rank r, U* ``(d, r)`` with entries N(0, 1) / sqrt(d)."""
    d = integer("d", d, minimum=1)
    r = integer("r", r, minimum=1)
    if r > d:
        raise ValueError(f"r must be <= d = {d}, got {r}")
    U = _rng(seed).standard_normal((d, r)) / np.sqrt(d)
    return U @ U.T, U


def sensing_labels(A, X_star) -> np.ndarray:
    """Labels ``y_i = <A_i, X*>`` (Frobenius), ``(n,)``; ``A`` is ``(n, d, d)`` or ``(n, d*d)``."""
    X_star = float_array("X_star", X_star)
    if X_star.ndim != 2 or X_star.shape[0] != X_star.shape[1]:
        raise ValueError(f"X_star must be a square matrix, got shape {X_star.shape}")
    A = float_array("A", A, X_star.dtype)
    d = X_star.shape[0]
    if A.shape[1:] not in ((d, d), (d * d,)):
        raise ValueError(f"A must have shape (n, {d}, {d}) or (n, {d * d}), got {A.shape}")
    return A.reshape(A.shape[0], d * d) @ X_star.ravel()


def recovery_error(model, theta, X_star):
    """``||U U^T - X*||_F / ||X*||_F`` for a :class:`~implicitreg.MatrixSensing` model (U V^T if
    asymmetric); a float for ``theta`` ``(p,)``, an array for ``(replicas, p)``."""
    X_star = float_array("X_star", X_star)
    if X_star.shape != (model.d, model.d):
        raise ValueError(f"X_star must have shape {(model.d, model.d)}, got {X_star.shape}")
    M = model.product(theta).astype(np.float64)
    err = np.linalg.norm(M - X_star, axis=(-2, -1)) / np.linalg.norm(X_star)
    return float(err) if np.ndim(err) == 0 else err


def sparse_regression(
    n: int, d: int, k: int, seed=0, noise: float = 0.0, signs: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, beta_star)`` of sparse linear regression, for :class:`~implicitreg.DiagonalLinear`.

    ``X`` ``(n, d)`` i.i.d. N(0, 1); ``beta_star`` is 1 on the first ``k`` coordinates and 0
    elsewhere (the HaoChen et al. setting), with random signs if ``signs=True`` (drawn after X);
    ``y = X beta_star + noise * N(0, 1)`` (the noise drawn last).
    """
    n, d = integer("n", n, minimum=1), integer("d", d, minimum=1)
    k = integer("k", k, minimum=0)
    if k > d:
        raise ValueError(f"k must be <= d = {d}, got {k}")
    noise = positive("noise", noise, strict=False)
    rng = _rng(seed)
    X = rng.standard_normal((n, d))
    beta = np.zeros(d)
    beta[:k] = rng.choice([-1.0, 1.0], size=k) if signs else 1.0
    y = X @ beta
    if noise:
        y = y + noise * rng.standard_normal(n)
    return X, y, beta
