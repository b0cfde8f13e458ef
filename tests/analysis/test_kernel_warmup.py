"""Numba's start-up in a background thread while the main thread already calls kernels.

Each case runs in a fresh interpreter, where numba is not yet initialised, so that the
warm-up thread and the first kernel call really meet: the kernel's sums must equal those
of a process without warm-up, and the warm-up thread must end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CODE = """
import json, sys
import numpy as np
from mc_beamline.analysis.detector.ring_gather import RingGather
from mc_beamline.analysis.kernel_warmup import start_kernel_warmup

warm = sys.argv[1] == "warm"
thread = start_kernel_warmup() if warm else None
rng = np.random.default_rng(3)
pixels = rng.permutation(50_000)[:20_000]
segments = rng.integers(0, 64, pixels.size)
frames = rng.integers(0, 1000, (4, 50_000)).astype(np.uint32)
sums, _ = RingGather(pixels, segments, 64).sums(frames)
if thread is not None:
    thread.join(timeout=120)
print(json.dumps({"sums": np.asarray(sums).tolist(),
                  "warmup_alive": None if thread is None else thread.is_alive(),
                  "warmup_name": None if thread is None else thread.name}))
"""


def run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cold():
    return run("cold")


def test_kernel_called_during_the_warmup_gives_the_same_sums(cold):
    warm = run("warm")
    assert warm["sums"] == cold["sums"]
    assert warm["warmup_alive"] is False and warm["warmup_name"] == "mc-numba-warmup"
