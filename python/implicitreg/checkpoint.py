"""Atomic checkpoints of a running simulation: temporary file, fsync, rename.

A checkpoint holds the whole engine state (parameters, momenta, step counter, records so far,
moments) plus a fingerprint of the configuration; the random streams need no state because
they are keyed by (seed, replica, step). Resuming from a checkpoint of another configuration is
refused.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

# 2: normal variates by the ziggurat (format 1 runs drew them by Box-Muller: their streams differ,
# so a format-1 checkpoint cannot continue bit for bit).
FORMAT = 2


def save(path, state: dict, fingerprint: dict) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    meta = {"format": FORMAT, "fingerprint": fingerprint, "step": int(state["step"])}
    arrays = {k: np.asarray(v) for k, v in state.items() if k != "step"}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path, fingerprint: dict) -> dict:
    with np.load(os.fspath(path), allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"checkpoint {path} has format {meta.get('format')}, this version reads {FORMAT} "
                "(an older or newer implicitreg wrote it; its random streams differ)"
            )
        theirs = meta["fingerprint"]
        if theirs != fingerprint:
            keys = sorted(
                k for k in set(theirs) | set(fingerprint) if theirs.get(k) != fingerprint.get(k)
            )
            raise ValueError(
                f"checkpoint {path} was written by a different configuration "
                f"(differs in: {', '.join(keys)}); remove it or pass another checkpoint path"
            )
        state = {k: z[k] for k in z.files if k != "__meta__"}
    state["step"] = meta["step"]
    return state
