"""Peers: a typical PyTorch eager loop; the same with torch.func; torch.func under torch.compile.

All do one Python step at a time (``torch.set_num_threads`` is the caller's: the worker sets it).
W4 (regularizer): eager = per-layer norm trick, per-sample deltas by autograd and grad R by double
backprop; torch.func = ``vmap(grad)`` per-sample gradients (and ``grad`` of that for grad R).
W5 (EGR step): eager = double backprop ``H g = autograd.grad(g, params, g)``; torch.func =
``jvp`` of ``grad`` (forward-over-reverse HVP).
"""

from __future__ import annotations

import numpy as np
import peers_numpy
import torch
import workloads
from harness import Runner, measure, options
from torch import nn
from torch.func import functional_call, grad, grad_and_value, jvp, vmap

_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


class Sensing(nn.Module):
    """W3: ``f_i(U) = <A_i, U U^T>`` with the A_i as rows of the input (n, d*d)."""

    def __init__(self, U0: torch.Tensor) -> None:
        super().__init__()
        self.U = nn.Parameter(U0.clone())

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        return A @ (self.U @ self.U.T).reshape(-1)


def _model(wl: workloads.Workload, dtype: torch.dtype) -> nn.Module:
    """The workload's model; its output is (batch,)."""
    if wl.name == "W3":
        return Sensing(torch.from_numpy(wl.extra["U0"]))
    mods: list[nn.Module] = []
    for k, (W, b) in enumerate(wl.layers):
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if k < len(wl.layers) - 1:
            mods.append(_ACT[wl.activation]())
    return nn.Sequential(*mods, nn.Flatten(0))


def _setup(wl: workloads.Workload, seed: int):
    dtype = getattr(torch, str(wl.X.dtype))
    X, y = torch.from_numpy(wl.X), torch.from_numpy(wl.y)
    gen = torch.Generator().manual_seed(seed)
    full = wl.batch_size == "full"
    B = wl.n if full else wl.batch_size

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and noisy labels of one step (fresh indices and noise)."""
        eps = torch.randn(B, generator=gen, dtype=dtype)
        if full:
            return X, y + wl.sigma * eps
        i = torch.randint(0, wl.n, (B,), generator=gen)
        return X[i], y[i] + wl.sigma * eps

    return _model(wl, dtype), X, y, batch


def eager_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """The typical loop: forward, ``loss.backward()``, manual SGD under ``torch.no_grad``."""
    model, X, y, batch = _setup(wl, seed)
    params = list(model.parameters())

    def run(nsteps: int) -> None:
        for _ in range(nsteps):
            xb, yt = batch()
            loss = 0.5 * ((model(xb) - yt) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= wl.lr * p.grad
                    p.grad = None

    def loss() -> float:
        with torch.no_grad():
            return 0.5 * ((model(X) - y) ** 2).mean().item()

    return Runner(run, loss)


def func_runner(wl: workloads.Workload, seed: int = 0, compile: bool = False) -> Runner:
    """torch.func: ``grad`` of a functional loss, new parameters each step.

    With ``compile`` the whole update (gradient and SGD step, not the random draws) goes through
    ``torch.compile``; its first call compiles, in ``prepare``.
    """
    model, X, y, batch = _setup(wl, seed)
    state = {k: v.detach() for k, v in model.named_parameters()}

    def loss_fn(p: dict, xb: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((functional_call(model, p, (xb,)) - yt) ** 2).mean()

    g_fn = grad(loss_fn)

    def update(p: dict, xb: torch.Tensor, yt: torch.Tensor) -> dict:
        g = g_fn(p, xb, yt)
        return {k: v - wl.lr * g[k] for k, v in p.items()}

    if compile:
        torch._dynamo.reset()  # each runner compiles afresh (no recompile-limit fallback)
        update = torch.compile(update)

    def run(nsteps: int) -> None:
        p = dict(state)
        for _ in range(nsteps):
            p = update(p, *batch())
        state.update(p)

    def loss() -> float:
        with torch.no_grad():
            return loss_fn(state, X, y).item()

    def prepare(n: int) -> None:
        if not warm:
            run(1)  # the first call compiles
            warm.append(True)

    warm: list[bool] = []
    return Runner(run, loss, prepare if compile else None)


def compile_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    return func_runner(wl, seed, compile=True)


def _time(make, name: str, dtype: str, **kw) -> dict:
    return measure(make(workloads.get(name, dtype)), **options(name, **kw))


def time_torch_W1(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W1", dtype, **kw)


def time_torch_W1b(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W1b", dtype, **kw)


def time_torch_W2(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W2", dtype, **kw)


def time_torch_W3(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W3", dtype, **kw)


def time_torch_func_W1(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W1", dtype, **kw)


def time_torch_func_W1b(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W1b", dtype, **kw)


def time_torch_func_W2(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W2", dtype, **kw)


def time_torch_func_W3(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W3", dtype, **kw)


def time_torch_compile_W1(dtype: str = "float64", **kw) -> dict:
    return _time(compile_runner, "W1", dtype, **kw)


def time_torch_compile_W1b(dtype: str = "float64", **kw) -> dict:
    return _time(compile_runner, "W1b", dtype, **kw)


def time_torch_compile_W2(dtype: str = "float64", **kw) -> dict:
    return _time(compile_runner, "W2", dtype, **kw)


def time_torch_compile_W3(dtype: str = "float64", **kw) -> dict:
    return _time(compile_runner, "W3", dtype, **kw)


def _flat(tensors) -> np.ndarray:
    return np.concatenate([t.detach().numpy().ravel() for t in tensors])


def norm_trick_runner(wl: workloads.Workload) -> Runner:
    """W4, eager: forward with autograd, per-sample ``delta_k = df/dz_k`` as the gradient of
    ``sum_i f(x_i)`` w.r.t. the pre-activations, ``R = sum_k (||a_k||^2 + 1) . ||delta_k||^2``;
    W4-RgR builds the deltas with ``create_graph`` and backpropagates R through them."""
    model, X, _, _ = _setup(wl, 0)
    params = list(model.parameters())
    layers = [m for m in model if isinstance(m, nn.Linear)]
    with_grad = wl.name == "W4-RgR"

    def evaluate():
        a, zs = [X], []
        for k, lin in enumerate(layers):
            zs.append(lin(a[-1]))
            if k < len(layers) - 1:
                a.append(torch.tanh(zs[-1]))
        deltas = torch.autograd.grad(zs[-1].sum(), zs, create_graph=with_grad)
        with torch.set_grad_enabled(with_grad):
            R = sum(
                ((ak * ak).sum(1) + 1) @ (d * d).sum(1) for ak, d in zip(a, deltas, strict=True)
            )
        if not with_grad:
            return R, None
        return R, torch.autograd.grad(R, params, allow_unused=True, materialize_grads=True)

    def run(n: int) -> None:
        for _ in range(n):
            evaluate()

    R, gR = evaluate()
    return Runner(run, None, check=peers_numpy.check_W4(R.item(), gR and _flat(gR)))


def vmap_runner(wl: workloads.Workload) -> Runner:
    """W4, torch.func: per-sample gradients ``vmap(grad(f))``, R the sum of their squares;
    W4-RgR: ``grad_and_value`` of that."""
    model, X, _, _ = _setup(wl, 0)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x[None],))[0]

    per_sample = vmap(grad(f), in_dims=(None, 0))

    def R_fn(p: dict) -> torch.Tensor:
        return sum((g * g).sum() for g in per_sample(p, X).values())

    if wl.name == "W4-RgR":
        rgr = grad_and_value(R_fn)

        def evaluate():
            gR, R = rgr(params)
            return R, gR.values()
    else:

        def evaluate():
            return R_fn(params), None

    def run(n: int) -> None:
        for _ in range(n):
            evaluate()

    R, gR = evaluate()
    return Runner(run, None, check=peers_numpy.check_W4(R.item(), gR and _flat(gR)))


def egr_eager_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """W5, eager: ``g`` with ``create_graph``, ``H g`` by a second ``autograd.grad``."""
    model, X, y, batch = _setup(wl, seed)
    params = list(model.parameters())
    mu = wl.extra["mu"]

    def direction(xb: torch.Tensor, yt: torch.Tensor) -> list[torch.Tensor]:
        loss = 0.5 * ((model(xb) - yt) ** 2).mean()
        g = torch.autograd.grad(loss, params, create_graph=True)
        hg = torch.autograd.grad(g, params, grad_outputs=[gi.detach() for gi in g])
        return [gi.detach() + 2 * mu * hi for gi, hi in zip(g, hg, strict=True)]

    def run(nsteps: int) -> None:
        for _ in range(nsteps):
            d = direction(*batch())
            with torch.no_grad():
                for p, dp in zip(params, d, strict=True):
                    p -= wl.lr * dp

    check = peers_numpy.check_W5(_flat(direction(X, y)))

    def loss() -> float:
        with torch.no_grad():
            return 0.5 * ((model(X) - y) ** 2).mean().item()

    return Runner(run, loss, check=check)


def egr_func_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    """W5, torch.func: ``g = grad(L)``, ``H g = jvp(grad(L), (p,), (g,))``."""
    model, X, y, batch = _setup(wl, seed)
    state = {k: v.detach() for k, v in model.named_parameters()}
    mu = wl.extra["mu"]

    def loss_fn(p: dict, xb: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((functional_call(model, p, (xb,)) - yt) ** 2).mean()

    g_fn = grad(loss_fn)

    def direction(p: dict, xb: torch.Tensor, yt: torch.Tensor) -> dict:
        g = g_fn(p, xb, yt)
        hg = jvp(lambda q: g_fn(q, xb, yt), (p,), (g,))[1]
        return {k: g[k] + 2 * mu * hg[k] for k in p}

    def run(nsteps: int) -> None:
        p = dict(state)
        for _ in range(nsteps):
            d = direction(p, *batch())
            p = {k: v - wl.lr * d[k] for k, v in p.items()}
        state.update(p)

    check = peers_numpy.check_W5(_flat(direction(state, X, y).values()))

    def loss() -> float:
        with torch.no_grad():
            return loss_fn(state, X, y).item()

    return Runner(run, loss, check=check)


def time_torch_W4_R(dtype: str = "float64", **kw) -> dict:
    return _time(norm_trick_runner, "W4-R", dtype, **kw)


def time_torch_W4_RgR(dtype: str = "float64", **kw) -> dict:
    return _time(norm_trick_runner, "W4-RgR", dtype, **kw)


def time_torch_W5(dtype: str = "float64", **kw) -> dict:
    return _time(egr_eager_runner, "W5", dtype, **kw)


def time_torch_func_W4_R(dtype: str = "float64", **kw) -> dict:
    return _time(vmap_runner, "W4-R", dtype, **kw)


def time_torch_func_W4_RgR(dtype: str = "float64", **kw) -> dict:
    return _time(vmap_runner, "W4-RgR", dtype, **kw)


def time_torch_func_W5(dtype: str = "float64", **kw) -> dict:
    return _time(egr_func_runner, "W5", dtype, **kw)
