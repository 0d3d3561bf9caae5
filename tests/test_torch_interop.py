"""MLP.from_torch / MLP.to_torch: round trips, training handed back and forth, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import implicitreg as ir

torch = pytest.importorskip("torch")
nn = torch.nn


def sequential(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 8),
        nn.Tanh(),
        nn.Linear(8, 6, bias=False),
        nn.ReLU(),
        nn.Linear(6, 6),
        nn.Linear(6, 2),
        nn.Softplus(),
    ).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_from_torch_matches_module(dtype):
    module = sequential(dtype)
    model, theta = ir.MLP.from_torch(module)
    assert model.sizes == (3, 8, 6, 6, 2)
    assert model.activation == ("tanh", "relu", "identity")
    assert model.output_activation == "softplus"
    assert model.bias == (True, False, True, True)
    assert theta.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    np.testing.assert_array_equal(
        theta, nn.utils.parameters_to_vector(module.parameters()).detach().numpy()
    )
    X = np.random.default_rng(1).standard_normal((7, 3)).astype(theta.dtype)
    want = module(torch.from_numpy(X)).detach().numpy()
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(model.predict(theta, X), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softplus", "identity"])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip(activation, bias):
    model = ir.MLP([2, 5, 4, 1], activation=activation, bias=bias)
    theta = model.init(seed=3)
    module = model.to_torch(theta)
    X = np.random.default_rng(2).standard_normal((6, 2))
    np.testing.assert_allclose(
        module(torch.from_numpy(X)).detach().numpy(),
        model.predict(theta, X),
        rtol=1e-13,
        atol=1e-14,
    )
    back, theta2 = ir.MLP.from_torch(module)
    assert back == model
    np.testing.assert_array_equal(theta2, theta)
    # The torch module owns its weights: editing it leaves theta alone.
    with torch.no_grad():
        next(module.parameters()).add_(1.0)
    np.testing.assert_array_equal(ir.MLP.from_torch(model.to_torch(theta))[1], theta)


def test_train_in_torch_simulate_here_continue_in_torch():
    X = np.linspace(-1, 1, 10)[:, None]
    y = np.sin(3 * X)
    module = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(50):
        opt.zero_grad()
        loss = 0.5 * ((module(Xt) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    model, theta = ir.MLP.from_torch(module)
    assert ir.loss(model, theta, X, y) == pytest.approx(
        0.5 * ((module(Xt) - yt) ** 2).mean().item(), rel=1e-12
    )
    res = ir.simulate(model, theta, X, y, ir.GD(lr=0.1), steps=50, progress=False)
    # GD here = the same GD in torch, step for step.
    for _ in range(50):
        opt.zero_grad()
        (0.5 * ((module(Xt) - yt) ** 2).mean()).backward()
        opt.step()
    np.testing.assert_allclose(ir.MLP.from_torch(module)[1], res.theta[0], rtol=1e-10, atol=1e-12)
    module2 = model.to_torch(res.theta[0])
    np.testing.assert_allclose(
        module2(Xt).detach().numpy(), model.predict(res.theta[0], X), rtol=1e-13
    )


def test_nested_sequential_and_identity_modules():
    module = nn.Sequential(
        nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Identity(), nn.Linear(3, 1)
    ).double()
    model, _ = ir.MLP.from_torch(module)
    assert model.sizes == (2, 3, 1) and model.activation == "relu"


@pytest.mark.parametrize(
    ("module", "error", "match"),
    [
        (
            nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(), nn.Linear(3, 1)),
            TypeError,
            r"unsupported module 1 \(LeakyReLU\).*supported: Linear",
        ),
        (nn.Sequential(nn.Linear(2, 3), nn.Dropout(), nn.Linear(3, 1)), TypeError, "Dropout"),
        (nn.Sequential(nn.Conv1d(1, 1, 1)), TypeError, "Conv1d"),
        (nn.Sequential(nn.ReLU(), nn.Linear(2, 1)), ValueError, "before the first Linear"),
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh(), nn.Linear(3, 1)),
            ValueError,
            "two activations in a row",
        ),
        (nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), ValueError, "expects 4 inputs"),
        (nn.Sequential(nn.Linear(2, 3), nn.Softplus(beta=2.0)), ValueError, "beta=2"),
        (nn.Sequential(), ValueError, "no Linear layer"),
        (nn.Linear(2, 1), TypeError, "must be a torch.nn.Sequential"),
        (nn.Sequential(nn.Linear(2, 1).half()), TypeError, "float32 or all float64"),
    ],
)
def test_unsupported_modules_raise_clear_errors(module, error, match):
    with pytest.raises(error, match=match):
        ir.MLP.from_torch(module)


def test_to_torch_validates_theta():
    with pytest.raises(ValueError, match="theta must have shape"):
        ir.MLP([2, 3, 1]).to_torch(np.zeros(5))
