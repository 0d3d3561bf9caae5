"""Peer: JAX, the whole run of ``n`` steps jitted as one ``lax.scan`` (jax.random in the loop).

Importing this module turns on float64 (``jax_enable_x64``); XLA_FLAGS must be set before it.
W4 (one jitted call per evaluation): ``jax`` = per-layer norm trick (deltas by their recurrence,
grad R by ``jax.grad`` of it); ``jax_vmap`` = ``vmap(grad)`` per-sample gradients (and
``value_and_grad`` of their squared norm). W5: ``H g`` as ``jvp`` of ``grad`` inside the scan.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import peers_numpy
import workloads
from harness import Runner, measure, options

jax.config.update("jax_enable_x64", True)

_ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh}  # jax.nn.relu has derivative 0 at 0


def _model(wl: workloads.Workload):
    """(initial parameters, forward(params, inputs) -> (batch,)) of the workload."""
    if wl.name == "W3":
        return jnp.asarray(wl.extra["U0"]), lambda U, A: A @ (U @ U.T).reshape(-1)
    act = _ACT[wl.activation]

    def forward(params, X):
        h = X
        for k, (W, b) in enumerate(params):
            h = h @ W.T + b
            if k < len(params) - 1:
                h = act(h)
        return h[:, 0]

    return [(jnp.asarray(W), jnp.asarray(b)) for W, b in wl.layers], forward


def runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    params0, forward = _model(wl)
    X, y = jnp.asarray(wl.X), jnp.asarray(wl.y)
    dt = X.dtype
    full = wl.batch_size == "full"
    B = wl.n if full else wl.batch_size
    lr, sigma = wl.lr, wl.sigma

    def batch_loss(params, xb, yt):
        r = forward(params, xb) - yt
        return 0.5 * jnp.mean(r * r)

    g_fn = jax.grad(batch_loss)
    mu = wl.extra.get("mu", 0.0)

    def direction(params, xb, yt):
        """The gradient; for W5 ``g + 2 mu H g`` with ``H g`` by forward-over-reverse."""
        g = g_fn(params, xb, yt)
        if not mu:
            return g
        hg = jax.jvp(lambda p: g_fn(p, xb, yt), (params,), (g,))[1]
        return jax.tree_util.tree_map(lambda a, b: a + 2 * mu * b, g, hg)

    def step(carry, _):
        params, key = carry
        key, k_idx, k_eps = jax.random.split(key, 3)
        eps = jax.random.normal(k_eps, (B,), dtype=dt)
        if full:
            xb, yt = X, y + sigma * eps
        else:
            i = jax.random.randint(k_idx, (B,), 0, wl.n)
            xb, yt = X[i], y[i] + sigma * eps
        g = direction(params, xb, yt)
        params = jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g)
        return (params, key), None

    def many(carry, n):
        return jax.lax.scan(step, carry, None, length=n)[0]

    state = {"carry": (params0, jax.random.key(seed))}
    compiled: dict[int, object] = {}

    def prepare(n: int) -> None:
        if n not in compiled:
            fn = jax.jit(many, static_argnums=1)
            compiled[n] = fn.lower(state["carry"], n).compile()

    def run(n: int) -> None:
        prepare(n)
        state["carry"] = jax.block_until_ready(compiled[n](state["carry"]))

    loss_fn = jax.jit(lambda p: batch_loss(p, X, y))

    def loss() -> float:
        return float(np.asarray(loss_fn(state["carry"][0])))

    check = peers_numpy.check_W5(_flat(jax.jit(direction)(params0, X, y))) if mu else {}
    return Runner(run, loss, prepare, check)


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)])


def regularizer_runner(wl: workloads.Workload, vmapped: bool = False) -> Runner:
    """W4: ``run(n)`` makes ``n`` calls of the jitted R (W4-R) or ``value_and_grad`` of R
    (W4-RgR), each waited for (compiled beforehand, its time reported as ``compile_s``)."""
    params, forward = _model(wl)
    X = jnp.asarray(wl.X)

    def R_trick(params):
        a = [X]
        for W, b in params[:-1]:
            a.append(jnp.tanh(a[-1] @ W.T + b))
        d = [jnp.ones((X.shape[0], 1), X.dtype)]  # delta_k = df/dz_k, from the output down
        for k in range(len(params) - 1, 0, -1):
            d.insert(0, (d[0] @ params[k][0]) * (1 - a[k] * a[k]))
        return sum(((ak * ak).sum(1) + 1) @ (dk * dk).sum(1) for ak, dk in zip(a, d, strict=True))

    def R_vmap(params):
        per_sample = jax.vmap(jax.grad(lambda p, x: forward(p, x[None])[0]), in_axes=(None, 0))
        leaves = jax.tree_util.tree_leaves(per_sample(params, X))
        return sum((g * g).sum() for g in leaves)

    R_fn = R_vmap if vmapped else R_trick
    with_grad = wl.name == "W4-RgR"
    t0 = time.perf_counter()
    fn = jax.jit(jax.value_and_grad(R_fn) if with_grad else R_fn).lower(params).compile()
    compile_s = time.perf_counter() - t0

    def run(n: int) -> None:
        for _ in range(n):
            jax.block_until_ready(fn(params))

    out = fn(params)
    R, gR = out if with_grad else (out, None)
    check = peers_numpy.check_W4(float(R), gR and _flat(gR))
    return Runner(run, None, check={**check, "compile_s": compile_s})


def _time(name: str, dtype: str, vmapped: bool = False, **kw) -> dict:
    wl = workloads.get(name, dtype)
    r = regularizer_runner(wl, vmapped) if name.startswith("W4") else runner(wl)
    return measure(r, **options(name, **kw))


def time_jax_W1(dtype: str = "float64", **kw) -> dict:
    return _time("W1", dtype, **kw)


def time_jax_W1b(dtype: str = "float64", **kw) -> dict:
    return _time("W1b", dtype, **kw)


def time_jax_W2(dtype: str = "float64", **kw) -> dict:
    return _time("W2", dtype, **kw)


def time_jax_W3(dtype: str = "float64", **kw) -> dict:
    return _time("W3", dtype, **kw)


def time_jax_W4_R(dtype: str = "float64", **kw) -> dict:
    return _time("W4-R", dtype, **kw)


def time_jax_W4_RgR(dtype: str = "float64", **kw) -> dict:
    return _time("W4-RgR", dtype, **kw)


def time_jax_W5(dtype: str = "float64", **kw) -> dict:
    return _time("W5", dtype, **kw)


def time_jax_vmap_W4_R(dtype: str = "float64", **kw) -> dict:
    return _time("W4-R", dtype, vmapped=True, **kw)


def time_jax_vmap_W4_RgR(dtype: str = "float64", **kw) -> dict:
    return _time("W4-RgR", dtype, vmapped=True, **kw)
