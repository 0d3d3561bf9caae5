"""Peer: JAX, the whole run of ``n`` steps jitted as one ``lax.scan`` (jax.random in the loop).

Importing this module turns on float64 (``jax_enable_x64``); XLA_FLAGS must be set before it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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

    def step(carry, _):
        params, key = carry
        key, k_idx, k_eps = jax.random.split(key, 3)
        eps = jax.random.normal(k_eps, (B,), dtype=dt)
        if full:
            xb, yt = X, y + sigma * eps
        else:
            i = jax.random.randint(k_idx, (B,), 0, wl.n)
            xb, yt = X[i], y[i] + sigma * eps
        g = g_fn(params, xb, yt)
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

    return Runner(run, loss, prepare)


def _time(name: str, dtype: str, **kw) -> dict:
    return measure(runner(workloads.get(name, dtype)), **options(name, **kw))


def time_jax_W1(dtype: str = "float64", **kw) -> dict:
    return _time("W1", dtype, **kw)


def time_jax_W1b(dtype: str = "float64", **kw) -> dict:
    return _time("W1b", dtype, **kw)


def time_jax_W2(dtype: str = "float64", **kw) -> dict:
    return _time("W2", dtype, **kw)


def time_jax_W3(dtype: str = "float64", **kw) -> dict:
    return _time("W3", dtype, **kw)
