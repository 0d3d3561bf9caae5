"""Peer: hand-written NumPy backprop (one Python step at a time, in-place updates)."""

from __future__ import annotations

import numpy as np
import workloads
from harness import Runner, measure, options

_ACT = {
    "relu": (lambda z: np.maximum(z, 0), lambda z, h: z > 0),  # relu'(0) = 0
    "tanh": (np.tanh, lambda z, h: 1 - h * h),
}


def mlp_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """Label-noise (S)GD on a one-output MLP; random numbers drawn in blocks per ``run`` call."""
    layers = [(W.copy(), b.copy()) for W, b in wl.layers]
    X, y, dt, lr, sigma = wl.X, wl.y, wl.X.dtype, wl.lr, wl.sigma
    act, dact = _ACT[wl.activation]
    full = wl.batch_size == "full"
    B = wl.n if full else wl.batch_size
    rng = np.random.default_rng(seed)
    last = len(layers) - 1

    def step(xb: np.ndarray, yt: np.ndarray) -> None:
        hs, zs = [xb], []
        for k, (W, b) in enumerate(layers):
            z = hs[-1] @ W.T + b
            zs.append(z)
            hs.append(act(z) if k < last else z)
        delta = (hs[-1] - yt[:, None]) * (1.0 / B)  # dL/dz of the output layer
        for k in range(last, -1, -1):
            W, b = layers[k]
            gW = delta.T @ hs[k]
            gb = delta.sum(axis=0)
            if k > 0:
                delta = (delta @ W) * dact(zs[k - 1], hs[k])
            W -= lr * gW
            b -= lr * gb

    def run(nsteps: int) -> None:
        eps = (sigma * rng.standard_normal((nsteps, B))).astype(dt)
        if full:
            for s in range(nsteps):
                step(X, y + eps[s])
        else:
            idx = rng.integers(0, wl.n, size=(nsteps, B))
            for s in range(nsteps):
                i = idx[s]
                step(X[i], y[i] + eps[s])

    return Runner(run, lambda: workloads.clean_loss(layers, X, y, wl.activation))


def shallow_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """W1/W1b: ``f(x) = a . relu(w x + b) + c`` on vectors, the cheapest NumPy form."""
    (W1, b1), (W2, b2) = wl.layers
    w, b, a, c = W1[:, 0].copy(), b1.copy(), W2[0].copy(), b2.copy()
    x, y, dt, lr, sigma = wl.X[:, 0], wl.y, wl.X.dtype, wl.lr, wl.sigma
    rng = np.random.default_rng(seed)

    def run(nsteps: int) -> None:
        nonlocal w, b, a, c  # updated in place (``-=`` on arrays), names rebound to themselves
        if wl.batch_size == "full":
            eps = (sigma * rng.standard_normal((nsteps, wl.n))).astype(dt)
            xc, scale = x[:, None], 1.0 / wl.n
            for s in range(nsteps):
                z = xc * w + b  # (n, m)
                h = np.maximum(z, 0)
                r = (h @ a + c - (y + eps[s])) * scale
                gz = np.outer(r, a)
                gz *= z > 0
                a -= lr * (r @ h)
                c -= lr * r.sum()
                w -= lr * (x @ gz)
                b -= lr * gz.sum(axis=0)
            return
        idx = rng.integers(0, wl.n, size=nsteps)
        xs = x[idx]
        yt = y[idx] + (sigma * rng.standard_normal(nsteps)).astype(dt)
        for s in range(nsteps):
            xi = xs[s]
            z = w * xi + b
            h = np.maximum(z, 0)
            r = a @ h + c - yt[s]
            gz = (r * a) * (z > 0)
            a -= lr * r * h
            c -= lr * r
            w -= lr * xi * gz
            b -= lr * gz

    layers = [(w[:, None], b), (a[None, :], c)]  # views: the loss sees the updates
    return Runner(run, lambda: workloads.clean_loss(layers, wl.X, y, "relu"))


def sensing_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """W3: ``grad_U L = (2/n) (sum_i r_i A_i) U`` with A stored as an (n, d*d) matrix."""
    A, y, U, dt = wl.X, wl.y, wl.extra["U0"].copy(), wl.X.dtype
    n, d = wl.n, wl.extra["U0"].shape[0]
    rng = np.random.default_rng(seed)
    scale = 2.0 * wl.lr / n

    def run(nsteps: int) -> None:
        nonlocal U  # updated in place
        eps = (wl.sigma * rng.standard_normal((nsteps, n))).astype(dt)
        for s in range(nsteps):
            r = A @ (U @ U.T).ravel() - (y + eps[s])
            U -= scale * ((r @ A).reshape(d, d) @ U)

    def loss() -> float:
        r = A @ (U @ U.T).ravel() - y
        return float(0.5 * np.mean(r * r))

    return Runner(run, loss)


def _time(name: str, dtype: str, **kw) -> dict:
    wl = workloads.get(name, dtype)
    make = {"W1": shallow_runner, "W1b": shallow_runner, "W3": sensing_runner}.get(name, mlp_runner)
    runner = make(wl)
    return measure(runner, **options(name, **kw))


def time_numpy_W1(dtype: str = "float64", **kw) -> dict:
    return _time("W1", dtype, **kw)


def time_numpy_W1b(dtype: str = "float64", **kw) -> dict:
    return _time("W1b", dtype, **kw)


def time_numpy_W2(dtype: str = "float64", **kw) -> dict:
    return _time("W2", dtype, **kw)


def time_numpy_W3(dtype: str = "float64", **kw) -> dict:
    return _time("W3", dtype, **kw)
