"""The compiled core: every instruction-set build this CPU runs loads and agrees to round-off."""

from __future__ import annotations

import os

import numpy as np
import pytest

import implicitreg as ir
from implicitreg import _core


def test_build_info():
    info = ir.build_info()
    assert info["version"] == ir.__version__
    assert info["isa"] in _core.LEVELS


def test_auto_picks_the_highest_level_this_cpu_runs():
    if os.environ.get("IMPLICITREG_CPU", "auto") != "auto":
        pytest.skip("IMPLICITREG_CPU forces a level in this run")
    available = []
    for level in _core.LEVELS:
        try:
            _core.load(level)
        except ImportError:
            continue
        if _core.cpu_supports(level):
            available.append(level)
    assert ir.build_info()["isa"] == available[-1]


@pytest.mark.parametrize("level", ["x86-64-v3", "x86-64-v4"])
def test_builds_agree_to_round_off(level):
    try:
        fast = _core.load(level)
    except ImportError:
        pytest.skip(f"no {level} build on this platform")
    if not _core.cpu_supports(level):
        pytest.skip(f"this CPU cannot run the {level} build")
    assert fast.isa == level
    base = _core.load("baseline")
    net = ir.MLP([3, 32, 32, 2], activation="tanh")
    theta = net.init(seed=0)
    X = np.random.default_rng(0).standard_normal((17, 3))
    args = [list(net.sizes), ["tanh", "tanh", "identity"], [True, True, True]]
    a, b = base.MLP_f64(*args), fast.MLP_f64(*args)
    np.testing.assert_allclose(a.predict(theta, X), b.predict(theta, X), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        a.regularizer_per_sample(theta, X), b.regularizer_per_sample(theta, X), rtol=1e-12
    )
