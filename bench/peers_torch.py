"""Peers: a typical PyTorch eager loop; the same with torch.func; torch.func under torch.compile.

All do one Python step at a time (``torch.set_num_threads`` is the caller's: run.py sets it).
"""

from __future__ import annotations

import torch
import workloads
from harness import Runner, measure, options
from torch import nn
from torch.func import functional_call, grad

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
