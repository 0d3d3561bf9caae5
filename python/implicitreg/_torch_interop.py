"""Conversion between :class:`implicitreg.MLP` and ``torch.nn.Sequential`` (torch imported lazily).

The flat layout of ``theta`` is the order of ``Sequential.parameters()`` (per layer W, then b), so
a conversion is a copy of the weights; the activations map one to one.
"""

from __future__ import annotations

import numpy as np

SUPPORTED = "Linear, ReLU, Tanh, Sigmoid, Softplus (beta=1), Identity and nested Sequential"


def _activation_name(mod, nn) -> str | None:
    """The implicitreg name of an activation module; None if it is not one."""
    if isinstance(mod, nn.ReLU):
        return "relu"
    if isinstance(mod, nn.Tanh):
        return "tanh"
    if isinstance(mod, nn.Sigmoid):
        return "sigmoid"
    if isinstance(mod, nn.Softplus):
        if mod.beta != 1:
            raise ValueError(f"Softplus with beta={mod.beta} is not supported (only beta=1)")
        return "softplus"
    return None


def _leaves(module, nn, path=""):
    """(path, module) of the non-Sequential modules, in order."""
    for name, child in module.named_children():
        where = f"{path}.{name}" if path else name
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, nn, where)
        else:
            yield where, child


def mlp_from_torch(cls, module):
    import torch
    from torch import nn

    if not isinstance(module, nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    linears, acts = [], []  # acts[k]: activation after linears[k] ("identity" if none)
    for where, mod in _leaves(module, nn):
        if isinstance(mod, nn.Identity):
            continue
        if isinstance(mod, nn.Linear):
            if linears and mod.in_features != linears[-1].out_features:
                raise ValueError(
                    f"module {where}: Linear expects {mod.in_features} inputs but the "
                    f"previous layer has {linears[-1].out_features} outputs"
                )
            linears.append(mod)
            acts.append("identity")
            continue
        name = _activation_name(mod, nn)
        if name is None:
            raise TypeError(
                f"unsupported module {where} ({type(mod).__name__}); supported: {SUPPORTED}"
            )
        if not linears:
            raise ValueError(f"module {where}: an activation before the first Linear layer")
        if acts[-1] != "identity":
            raise ValueError(f"module {where}: two activations in a row after one Linear layer")
        acts[-1] = name
    if not linears:
        raise ValueError("the Sequential holds no Linear layer")
    dtypes = {p.dtype for p in module.parameters()}
    if len(dtypes) != 1 or dtypes.pop() not in (torch.float32, torch.float64):
        raise TypeError("all parameters must be float32 or all float64")
    sizes = [linears[0].in_features] + [lin.out_features for lin in linears]
    hidden = tuple(acts[:-1])  # one name when all agree, as for bias below
    activation = hidden[0] if hidden and len(set(hidden)) == 1 else hidden if hidden else "relu"
    flags = tuple(lin.bias is not None for lin in linears)
    bias = flags[0] if len(set(flags)) == 1 else flags  # the plain form, as a user would write it
    model = cls(sizes, activation=activation, bias=bias, output_activation=acts[-1])

    def array(t):
        return None if t is None else t.detach().cpu().numpy().copy()

    theta = model.flatten([(array(lin.weight), array(lin.bias)) for lin in linears])
    return model, theta


def mlp_to_torch(model, theta: np.ndarray):
    import torch
    from torch import nn

    dtype = torch.float64 if theta.dtype == np.float64 else torch.float32
    modules = []
    for (W, b), act in zip(model.unflatten(theta), model._acts, strict=True):
        lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(W)))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(np.array(b)))
        modules.append(lin)
        if act == "relu":
            modules.append(nn.ReLU())
        elif act == "tanh":
            modules.append(nn.Tanh())
        elif act == "sigmoid":
            modules.append(nn.Sigmoid())
        elif act == "softplus":
            # implicitreg's softplus is exact; torch's default threshold=20 switches to the
            # identity with an error of 2e-9, at 40 the error (4e-18) is below float64 round-off.
            modules.append(nn.Softplus(beta=1.0, threshold=40.0))
    return nn.Sequential(*modules)
