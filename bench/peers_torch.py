"""Peers: a typical PyTorch eager loop, and the same loop written with torch.func.

Both do one Python step at a time (``torch.set_num_threads`` is the caller's: run.py sets it).
"""

from __future__ import annotations

import torch
import workloads
from harness import Runner, measure, options
from torch import nn
from torch.func import functional_call, grad

_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _model(wl: workloads.Workload, dtype: torch.dtype) -> nn.Sequential:
    mods: list[nn.Module] = []
    for k, (W, b) in enumerate(wl.layers):
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if k < len(wl.layers) - 1:
            mods.append(_ACT[wl.activation]())
    return nn.Sequential(*mods)


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
    model, X, y, batch = _setup(wl, seed)
    params = list(model.parameters())

    def run(nsteps: int) -> None:
        for _ in range(nsteps):
            xb, yt = batch()
            loss = 0.5 * ((model(xb).squeeze(1) - yt) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= wl.lr * p.grad
                    p.grad = None

    def loss() -> float:
        with torch.no_grad():
            return 0.5 * ((model(X).squeeze(1) - y) ** 2).mean().item()

    return Runner(run, loss)


def func_runner(wl: workloads.Workload, seed: int = 0) -> Runner:
    model, X, y, batch = _setup(wl, seed)
    state = {k: v.detach() for k, v in model.named_parameters()}

    def loss_fn(p: dict, xb: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((functional_call(model, p, (xb,)).squeeze(1) - yt) ** 2).mean()

    g_fn = grad(loss_fn)

    def run(nsteps: int) -> None:
        p = state
        for _ in range(nsteps):
            xb, yt = batch()
            g = g_fn(p, xb, yt)
            p = {k: v - wl.lr * g[k] for k, v in p.items()}
        state.update(p)

    def loss() -> float:
        with torch.no_grad():
            return loss_fn(state, X, y).item()

    return Runner(run, loss)


def _time(make, name: str, dtype: str, **kw) -> dict:
    return measure(make(workloads.get(name, dtype)), **options(name, **kw))


def time_torch_W1(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W1", dtype, **kw)


def time_torch_W1b(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W1b", dtype, **kw)


def time_torch_W2(dtype: str = "float64", **kw) -> dict:
    return _time(eager_runner, "W2", dtype, **kw)


def time_torch_func_W1(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W1", dtype, **kw)


def time_torch_func_W1b(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W1b", dtype, **kw)


def time_torch_func_W2(dtype: str = "float64", **kw) -> dict:
    return _time(func_runner, "W2", dtype, **kw)
