"""Checkpoints: SIGINT to a real subprocess, crash recovery, bit-exact resume, config checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import implicitreg as ir

STEPS = 3_000_000
SETUP = textwrap.dedent(
    """
    import numpy as np, implicitreg as ir
    net = ir.MLP([1, 16, 1], activation="relu")
    X = np.linspace(-1, 1, 10)[:, None]
    y = np.sin(3 * X[:, 0])
    theta = net.init(seed=0)
    dyn = ir.LabelNoiseSGD(lr=0.01, sigma=0.2, batch_size=2, momentum=0.5)
    kwargs = dict(steps=STEPS, record_every=STEPS // 40, snapshot_every=STEPS // 8, moments="diagonal",
                  burn_in=STEPS // 2, seed=5, replicas=3, threads=2, progress=False)
    """
).replace("STEPS", str(STEPS))


def setup():
    scope: dict = {}
    exec(SETUP, scope)  # noqa: S102 -- the same setup code runs in the child processes
    return scope


def assert_same(a, b):
    np.testing.assert_array_equal(a.theta, b.theta)
    for name in a.trace:
        np.testing.assert_array_equal(a.trace[name], b.trace[name])
    np.testing.assert_array_equal(a.snapshots, b.snapshots)
    np.testing.assert_array_equal(a.moments.mean, b.moments.mean)
    np.testing.assert_array_equal(a.moments.cov, b.moments.cov)


def start_child(script):
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(path, child, timeout=60):
    start = time.monotonic()
    while not os.path.exists(path):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() - start < timeout
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted():
    s = setup()
    return ir.simulate(s["net"], s["theta"], s["X"], s["y"], s["dyn"], **s["kwargs"])


def test_sigint_writes_checkpoint_and_resume_is_bit_exact(tmp_path, uninterrupted):
    path = tmp_path / "run.ckpt"
    ready = tmp_path / "ready"
    script = SETUP + textwrap.dedent(
        f"""
        import json, pathlib, signal
        # Ctrl-C as in a terminal, even when this suite runs where SIGINT is ignored (a shell's
        # background job, nohup): Python then leaves it ignored and KeyboardInterrupt never comes.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pathlib.Path({str(ready)!r}).touch()
        try:
            ir.simulate(net, theta, X, y, dyn, checkpoint={str(path)!r}, checkpoint_every=1e9,
                        **kwargs)
            print(json.dumps({{"finished": True}}))
        except ir.SimulationInterrupted as e:
            print(json.dumps({{"interrupted_at": e.result.completed_steps}}))
        """
    )
    child = start_child(script)
    wait_for_checkpoint(ready, child)
    time.sleep(0.3)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)  # a hang fails here
    latency = time.monotonic() - sent
    assert child.returncode == 0, err
    info = json.loads(out.strip().splitlines()[-1])
    assert "interrupted_at" in info, "the run finished before the signal; make it longer"
    assert 0 < info["interrupted_at"] < STEPS
    assert path.exists()
    print(f"Ctrl-C to exit: {latency:.3f} s")

    s = setup()
    resumed = ir.simulate(
        s["net"], s["theta"], s["X"], s["y"], s["dyn"], checkpoint=path, **s["kwargs"]
    )
    assert_same(resumed, uninterrupted)


def test_crash_resumes_from_periodic_checkpoint(tmp_path, uninterrupted):
    path = tmp_path / "run.ckpt"
    script = (
        SETUP + f"\nir.simulate(net, theta, X, y, dyn, checkpoint={str(path)!r}, "
        "checkpoint_every=0.0, **kwargs)\n"
    )
    child = start_child(script)
    wait_for_checkpoint(path, child)
    time.sleep(0.5)
    child.kill()  # no chance to clean up: the last periodic checkpoint must be intact
    child.communicate()
    s = setup()
    resumed = ir.simulate(
        s["net"], s["theta"], s["X"], s["y"], s["dyn"], checkpoint=path, **s["kwargs"]
    )
    assert_same(resumed, uninterrupted)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    s = setup()
    path = tmp_path / "run.ckpt"
    kw = dict(s["kwargs"], steps=1000, record_every=100, snapshot_every=0, burn_in=0)
    ir.simulate(s["net"], s["theta"], s["X"], s["y"], s["dyn"], checkpoint=path, **kw)
    other = ir.LabelNoiseSGD(lr=0.02, sigma=0.2, batch_size=2, momentum=0.5)
    with pytest.raises(ValueError, match=r"different configuration.*dynamics"):
        ir.simulate(s["net"], s["theta"], s["X"], s["y"], other, checkpoint=path, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*data"):
        ir.simulate(s["net"], s["theta"], s["X"], s["y"] + 1, s["dyn"], checkpoint=path, **kw)
    # A finished run's checkpoint resumes to the same result without running again.
    again = ir.simulate(s["net"], s["theta"], s["X"], s["y"], s["dyn"], checkpoint=path, **kw)
    fresh = ir.simulate(s["net"], s["theta"], s["X"], s["y"], s["dyn"], **kw)
    assert_same(again, fresh)


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler for the test (restored after): where the suite inherits an
    ignored SIGINT (a background job, nohup), a signal would otherwise change nothing and a
    10^9-step run would go on for half an hour."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupt_result_holds_records_so_far(sigint_raises):
    s = setup()
    net, theta, X, y, dyn = s["net"], s["theta"], s["X"], s["y"], s["dyn"]
    import threading

    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(ir.SimulationInterrupted) as info:
        ir.simulate(net, theta, X, y, dyn, **dict(s["kwargs"], steps=10**9, record_every=10**5))
    res = info.value.result
    done = res.completed_steps
    assert 0 < done < 10**9
    assert res.steps[-1] <= done and len(res.steps) == done // 10**5 + 1
    assert np.isfinite(res.trace["loss"]).all()
