"""The compiled core: both instruction-set builds load and agree to round-off."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import implicitreg as ir


def test_build_info():
    info = ir.build_info()
    assert info["version"] == ir.__version__
    assert info["isa"] in ("baseline", "x86-64-v3")


def test_builds_agree_to_round_off():
    base = importlib.import_module("implicitreg._core_baseline")
    try:
        fast = importlib.import_module("implicitreg._core_x86_64_v3")
    except ImportError:
        pytest.skip("no x86-64-v3 build on this platform")
    if not base._cpu_has_x86_64_v3():
        pytest.skip("this CPU cannot run the x86-64-v3 build")
    net = ir.MLP([3, 32, 32, 2], activation="tanh")
    theta = net.init(seed=0)
    X = np.random.default_rng(0).standard_normal((17, 3))
    args = [list(net.sizes), ["tanh", "tanh", "identity"], [True, True, True]]
    a, b = base.MLP_f64(*args), fast.MLP_f64(*args)
    np.testing.assert_allclose(a.predict(theta, X), b.predict(theta, X), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        a.regularizer_per_sample(theta, X), b.regularizer_per_sample(theta, X), rtol=1e-12
    )
