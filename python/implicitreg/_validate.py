"""Argument checks shared by the public API: each error names the offending argument."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def float_array(name: str, value, dtype=None) -> np.ndarray:
    """Return `value` as a C-contiguous float32/float64 array, finite, of the required dtype.

    No conversion between float types happens silently: a float32 array where float64 is
    required (or the reverse) raises TypeError.
    """
    arr = np.asarray(value)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float64 or float32 array, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {arr.dtype} but theta has dtype {np.dtype(dtype)}; "
            "cast explicitly, implicitreg never converts silently"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return np.ascontiguousarray(arr)


def theta_vector(model, theta) -> np.ndarray:
    arr = float_array("theta", theta)
    if arr.shape != (model.n_params,):
        raise ValueError(f"theta must have shape ({model.n_params},), got {arr.shape}")
    return arr


def inputs(model, X, dtype) -> np.ndarray:
    prepare = getattr(model, "_prepare_inputs", None)
    if prepare is not None:  # a model whose samples are not plain rows (matrix sensing)
        return prepare(X, dtype)
    arr = float_array("X", X, dtype)
    if arr.ndim == 1 and model.n_in == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != model.n_in:
        raise ValueError(f"X must have shape (n, {model.n_in}), got {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError("X must contain at least one sample")
    return np.ascontiguousarray(arr)


def targets(model, y, n: int, dtype) -> np.ndarray:
    arr = float_array("y", y, dtype)
    if arr.ndim == 1 and model.n_out == 1:
        arr = arr[:, None]
    if arr.shape != (n, model.n_out):
        want = f"({n},) or ({n}, 1)" if model.n_out == 1 else f"({n}, {model.n_out})"
        raise ValueError(f"y must have shape {want}, got {np.shape(y)}")
    return np.ascontiguousarray(arr)


def positive(name: str, value, *, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (strict and value == 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def integer(name: str, value, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, options))}")
    return value
