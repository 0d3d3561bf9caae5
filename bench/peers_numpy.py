"""Peer: hand-written NumPy backprop (one Python step at a time, in-place updates)."""

from __future__ import annotations

import numpy as np
import workloads
from harness import Runner, measure, options, rel_err

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


def flat(layers) -> np.ndarray:
    """``[(W, b), ...]`` as one vector in implicitreg's order (W row-major, then b, per layer)."""
    return np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)]) for W, b in layers])


def _tanh_inputs(layers: workloads.Layers, X: np.ndarray) -> list[np.ndarray]:
    """Input ``a_k`` of every layer of a tanh MLP: ``a_0 = X``, ``a_k = tanh(z_{k-1})``."""
    a = [X]
    for W, b in layers[:-1]:
        a.append(np.tanh(a[-1] @ W.T + b))
    return a


def regularizer(layers: workloads.Layers, X: np.ndarray, with_grad: bool = True):
    """``R = sum_i ||grad_theta f(x_i)||^2`` of a one-output tanh MLP by the per-layer norm trick
    ``sum_k (||a_{k,i}||^2 + 1) ||delta_{k,i}||^2`` (``delta_k = df/dz_k``), and with ``with_grad``
    its gradient by the manual reverse of that computation: ``(R, [(gW, gb), ...])``."""
    L = len(layers)
    a = _tanh_inputs(layers, X)
    s = [None] + [1 - ak * ak for ak in a[1:]]  # s_k = tanh'(z_{k-1})
    d = [None] * (L - 1) + [np.ones((X.shape[0], 1), X.dtype)]
    u = [None] * L  # u_{k+1} = delta_{k+1} @ W_{k+1}, so that delta_k = u_{k+1} * s_{k+1}
    for k in range(L - 2, -1, -1):
        u[k + 1] = d[k + 1] @ layers[k + 1][0]
        d[k] = u[k + 1] * s[k + 1]
    q = [(ak * ak).sum(axis=1) + 1 for ak in a]
    p = [(dk * dk).sum(axis=1) for dk in d]
    R = sum(float(qk @ pk) for qk, pk in zip(q, p, strict=True))
    if not with_grad:
        return R, None
    gW = [np.zeros_like(W) for W, _ in layers]
    gb = [np.zeros_like(b) for _, b in layers]
    ga = [None] + [2 * ak * pk[:, None] for ak, pk in zip(a[1:], p[1:], strict=True)]  # dR/da_k
    gd = 2 * q[0][:, None] * d[0]  # dR/ddelta_k, reversing the delta recurrence upwards
    for k in range(L - 1):
        U = gd * s[k + 1]  # dR/du_{k+1}
        gW[k + 1] += d[k + 1].T @ U
        ga[k + 1] -= 2 * a[k + 1] * (gd * u[k + 1])  # through s_{k+1} = 1 - a_{k+1}^2
        if k + 1 < L - 1:
            gd = U @ layers[k + 1][0].T + 2 * q[k + 1][:, None] * d[k + 1]
    for k in range(L - 2, -1, -1):  # reverse of the forward pass a_{k+1} = tanh(z_k)
        gz = ga[k + 1] * s[k + 1]
        gW[k] += gz.T @ a[k]
        gb[k] += gz.sum(axis=0)
        if k > 0:
            ga[k] += gz @ layers[k][0]
    return R, list(zip(gW, gb, strict=True))


def egr_direction(layers: workloads.Layers, X: np.ndarray, yt: np.ndarray, mu: float) -> list:
    """``g + 2 mu H g`` of ``L = (1/2n) sum_i (f(x_i) - yt_i)^2`` (one-output tanh MLP): backprop
    for ``g``, then Pearlmutter's R-op (forward tangent along ``g``, then its backprop)."""
    L, n = len(layers), X.shape[0]
    a = _tanh_inputs(layers, X)
    f = a[-1] @ layers[-1][0].T + layers[-1][1]
    s = [None] + [1 - ak * ak for ak in a[1:]]
    e = [None] * (L - 1) + [(f - yt[:, None]) / n]  # e_k = dL/dz_k
    ew = [None] * L  # e_k @ W_k
    for k in range(L - 1, 0, -1):
        ew[k] = e[k] @ layers[k][0]
        e[k - 1] = ew[k] * s[k]
    g = [(ek.T @ ak, ek.sum(axis=0)) for ek, ak in zip(e, a, strict=True)]
    Ra, Rz = [np.zeros_like(X)], []  # tangents of a_k and z_k along V = g
    for k, ((W, _), (V, vb)) in enumerate(zip(layers, g, strict=True)):
        Rz.append(Ra[k] @ W.T + a[k] @ V.T + vb)
        if k < L - 1:
            Ra.append(s[k + 1] * Rz[k])
    Re = Rz[-1] / n
    out = [None] * L
    for k in range(L - 1, -1, -1):
        (W, _), (V, _) = layers[k], g[k]
        hW, hb = Re.T @ a[k] + e[k].T @ Ra[k], Re.sum(axis=0)
        out[k] = (g[k][0] + 2 * mu * hW, g[k][1] + 2 * mu * hb)
        if k > 0:
            Re = (Re @ W + e[k] @ V) * s[k] - 2 * ew[k] * a[k] * s[k] * Rz[k - 1]
    return out


_REF: dict = {}


def reference(name: str) -> np.ndarray | tuple[float, np.ndarray]:
    """Float64 references: W4 ``(R, grad R)`` flat; W5 the step direction at the initial weights
    with noise-free labels, flat."""
    if name not in _REF:
        wl = workloads.get(name)
        if name.startswith("W4"):
            R, gR = regularizer(wl.layers, wl.X)
            _REF[name] = (R, flat(gR))
        else:
            _REF[name] = flat(egr_direction(wl.layers, wl.X, wl.y, wl.extra["mu"]))
    return _REF[name]


def check_W4(R: float, gR=None) -> dict:
    """Relative errors of ``R`` (and ``grad R``, flat) against the float64 reference."""
    R_ref, g_ref = reference("W4-RgR")
    out = {"rel_err_R": rel_err(R, R_ref)}
    if gR is not None:
        out["rel_err_grad"] = rel_err(gR, g_ref)
    out["rel_err"] = max(out.values())
    return out


def check_W5(direction) -> dict:
    """Relative error of a step direction (flat) against the float64 reference."""
    return {"rel_err": rel_err(direction, reference("W5"))}


def regularizer_runner(wl: workloads.Workload) -> Runner:
    """W4: ``run(n)`` evaluates R (W4-R) or R and grad R (W4-RgR) ``n`` times."""
    with_grad = wl.name == "W4-RgR"

    def run(n: int) -> None:
        for _ in range(n):
            regularizer(wl.layers, wl.X, with_grad)

    R, gR = regularizer(wl.layers, wl.X, with_grad)
    return Runner(run, None, check=check_W4(R, flat(gR) if with_grad else None))


def egr_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """W5: full-batch EGR steps on fresh noisy labels, updated in place."""
    layers = [(W.copy(), b.copy()) for W, b in wl.layers]
    X, y, dt, mu, lr = wl.X, wl.y, wl.X.dtype, wl.extra["mu"], wl.lr
    rng = np.random.default_rng(seed)

    def run(nsteps: int) -> None:
        eps = (wl.sigma * rng.standard_normal((nsteps, wl.n))).astype(dt)
        for s in range(nsteps):
            for (W, b), (dW, db) in zip(
                layers, egr_direction(layers, X, y + eps[s], mu), strict=True
            ):
                W -= lr * dW
                b -= lr * db

    check = check_W5(flat(egr_direction(wl.layers, X, y, mu)))
    return Runner(run, lambda: workloads.clean_loss(layers, X, y, "tanh"), check=check)


def _time(name: str, dtype: str, **kw) -> dict:
    wl = workloads.get(name, dtype)
    make = {
        "W1": shallow_runner,
        "W1b": shallow_runner,
        "W3": sensing_runner,
        "W4-R": regularizer_runner,
        "W4-RgR": regularizer_runner,
        "W5": egr_runner,
    }.get(name, mlp_runner)
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


def time_numpy_W4_R(dtype: str = "float64", **kw) -> dict:
    return _time("W4-R", dtype, **kw)


def time_numpy_W4_RgR(dtype: str = "float64", **kw) -> dict:
    return _time("W4-RgR", dtype, **kw)


def time_numpy_W5(dtype: str = "float64", **kw) -> dict:
    return _time("W5", dtype, **kw)
