"""Peer: BackPACK's ``BatchL2Grad`` (per-sample squared gradient norms in one backward pass).

W4-R only: BackPACK gives R but not its gradient. Install it without its torchvision dependency,
which would replace the CPU torch: ``pip install --no-deps backpack-for-pytorch einops unfoldNd``.
"""

from __future__ import annotations

import warnings

import backpack
import peers_numpy
import torch
import workloads
from harness import Runner, measure, options
from peers_torch import _model

# BackPACK's hooks fire on module outputs when the input needs no gradient, as intended here.
warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)


def regularizer_runner(wl: workloads.Workload) -> Runner:
    """``R = sum over parameters of batch_l2`` after ``backward`` of ``sum_i f(x_i)``."""
    model = backpack.extend(_model(wl, getattr(torch, str(wl.X.dtype)))[:-1])  # no Flatten
    params = list(model.parameters())
    X = torch.from_numpy(wl.X)

    def evaluate() -> float:
        with backpack.backpack(backpack.extensions.BatchL2Grad()):
            model(X).sum().backward()
        R = sum(p.batch_l2.sum() for p in params)
        for p in params:
            p.grad = None
        return R

    def run(n: int) -> None:
        for _ in range(n):
            evaluate()

    return Runner(run, None, check=peers_numpy.check_W4(float(evaluate())))


def time_backpack_W4_R(dtype: str = "float64", **kw) -> dict:
    return measure(regularizer_runner(workloads.get("W4-R", dtype)), **options("W4-R", **kw))
