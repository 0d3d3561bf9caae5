"""An independent pure-Python/numpy reference of the engine's random streams and update rules.

The random blocks come from numpy's own Philox4x64-10 (numpy.random.Philox), so the C++ generator
is checked against a known-answer implementation; the transforms (Lemire's multiply-shift,
the ziggurat for normals, Fisher-Yates) are written out again here from their definitions.
"""

from __future__ import annotations

import functools
import math

import numpy as np

MASK = (1 << 64) - 1
PURPOSE = {"batch": 1, "label_noise": 2, "param_noise": 3, "permutation": 4}


ZIG_R = 3.6541528853610087963519472518
ZIG_INV_R = 0.27366123732975827203338247596


@functools.cache
def ziggurat_tables():
    """Marsaglia & Tsang's 256 layers with 52-bit abscissae: bounds k, widths w, densities f."""
    m, v = 2.0**52, 0.004928673233974658  # r f(r) + sqrt(pi/2) erfc(r/sqrt 2)
    k, w, f = [0] * 256, [0.0] * 256, [0.0] * 256
    dn = tn = ZIG_R
    q = v / math.exp(-0.5 * dn * dn)
    k[0], k[1] = int((dn / q) * m), 0
    w[0], w[255] = q / m, dn / m
    f[0], f[255] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = int((dn / tn) * m)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w, f


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def key(seed: int) -> tuple[int, int]:
    return splitmix64(seed), splitmix64(seed ^ 0x6A09E667F3BCC909)


def philox_block(counter, k) -> list[int]:
    """Philox4x64-10 of a 4-word counter (numpy increments before it generates: pass c - 1)."""
    value = sum(int(c) << (64 * i) for i, c in enumerate(counter)) - 1
    value %= 1 << 256
    words = [(value >> (64 * i)) & MASK for i in range(4)]
    bitgen = np.random.Philox(
        counter=np.array(words, dtype=np.uint64), key=np.array(k, dtype=np.uint64)
    )
    return [int(v) for v in bitgen.random_raw(4)]


class Stream:
    """The draws of one (seed, replica, step, purpose): counter (step, replica, block, purpose)."""

    def __init__(self, seed, replica, step, purpose):
        self.k = key(seed)
        self.ctr = [step, replica, 0, PURPOSE[purpose]]
        self.buf: list[int] = []

    def u64(self) -> int:
        if not self.buf:
            self.buf = philox_block(self.ctr, self.k)
            self.ctr[2] += 1
        return self.buf.pop(0)

    def uniform(self) -> float:
        return (self.u64() >> 11) * 2.0**-53

    def below(self, n: int) -> int:
        return (self.u64() * n) >> 64

    def normal(self) -> float:
        """The 256-layer ziggurat, as numpy's Generator.standard_normal draws it."""
        k, w, f = ziggurat_tables()
        while True:
            bits = self.u64()
            layer = bits & 0xFF
            bits >>= 8
            abscissa = (bits >> 1) & 0x000FFFFFFFFFFFFF
            x = abscissa * w[layer]
            if bits & 1:
                x = -x
            if abscissa < k[layer]:
                return x
            if layer == 0:
                while True:
                    xx = -ZIG_INV_R * math.log1p(-self.uniform())
                    yy = -math.log1p(-self.uniform())
                    if yy + yy > xx * xx:
                        return -(ZIG_R + xx) if (abscissa >> 8) & 1 else ZIG_R + xx
            if (f[layer - 1] - f[layer]) * self.uniform() + f[layer] < math.exp(-0.5 * x * x):
                return x

    def sign(self) -> float:
        return 1.0 if self.u64() >> 63 else -1.0

    def label(self, kind: str) -> float:
        if kind == "gaussian":
            return self.normal()
        if kind == "uniform":
            return math.sqrt(3.0) * (2.0 * self.uniform() - 1.0)
        return self.sign()


def permutation(seed, replica, epoch, n):
    s = Stream(seed, replica, epoch, "permutation")
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = s.below(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def batch_indices(dyn, seed, replica, step, n):
    if dyn.batch_size == "full":
        return list(range(n))
    B = dyn.batch_size
    if dyn.sampling == "replacement":
        s = Stream(seed, replica, step, "batch")
        return [s.below(n) for _ in range(B)]
    out = []
    for j in range(B):
        q = step * B + j
        out.append(permutation(seed, replica, q // n, n)[q % n])
    return out


def lr_at(dyn, step, steps):
    import implicitreg as ir

    sched = dyn.lr_schedule
    if sched is None:
        return dyn.lr
    if isinstance(sched, tuple):
        return sched[step]
    if isinstance(sched, ir.StepDecay):
        k = sum(step >= round(a * steps) for a in sched.at)
        return dyn.lr * sched.factor**k
    k = sum(step >= b for b in sched.boundaries)
    return sched.values[k]


def trajectory(model, theta, X, y, dyn, steps, seed=0, replica=0):
    """Parameters after each step 0..steps of one replica, following the documented rule."""
    import implicitreg as ir

    Y = y.reshape(len(X), -1)
    theta = theta.astype(np.float64).copy()
    v = np.zeros_like(theta)
    out = [theta.copy()]
    for s in range(steps):
        idx = batch_indices(dyn, seed, replica, s, len(X))
        Xb, Yb = X[idx], Y[idx].copy()
        if dyn.label_noise != "none":
            noise = Stream(seed, replica, s, "label_noise")
            for j in range(Yb.shape[0]):
                for o in range(Yb.shape[1]):
                    Yb[j, o] += dyn.sigma * noise.label(dyn.label_noise)
        g = ir.grad(model, theta, Xb, Yb, normalization=dyn.loss)
        if dyn.egr_mu:
            g = g + 2 * dyn.egr_mu * ir.hvp(model, theta, Xb, Yb, g, normalization=dyn.loss)
        if dyn.reg_lambda:
            g = g + dyn.reg_lambda * len(X) / len(Xb) * ir.regularizer_grad(model, theta, Xb)
        g = g + dyn.weight_decay * theta
        lr = lr_at(dyn, s, steps)
        v = dyn.momentum * v + g
        theta = theta - lr * v
        if dyn.param_noise != "none":
            scale = (
                dyn.param_sigma
                if dyn.param_noise == "gaussian"
                else math.sqrt(2 * lr * dyn.temperature)
            )
            noise = Stream(seed, replica, s, "param_noise")
            theta = theta + scale * np.array([noise.normal() for _ in range(len(theta))])
        out.append(theta.copy())
    return np.array(out)
