"""``mc-beamline demo --quick`` in a subprocess, for the tests that disturb it mid-raster
(a killed IOC, Ctrl-C, a disk that fills)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py

START_TIMEOUT_S = 240
"""Longest wait (s) for the demo's raster to write the frames a test waits for."""


def frames_in(directory: Path, swmr: bool = True) -> int:
    """Frames in every detector file under ``directory`` (SWMR: files still being written)."""
    total = 0
    for path in Path(directory).rglob("*.h5"):
        with h5py.File(path, "r", swmr=swmr) as f:
            total += f["/entry/data/data"].shape[0]
    return total


@contextmanager
def demo_after_frames(data_dir: Path, n_frames: int, env: dict | None = None):
    """Start ``demo --quick`` on ``data_dir`` (with ``env`` added to a CA-free environment) and
    yield its process once its detector files hold ``n_frames``; a demo still running when the
    block ends is killed."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    full_env.update(env or {})
    demo = subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", "demo", "--quick", "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if frames_in(Path(data_dir) / "detector") >= n_frames:
                    break
            except (OSError, KeyError):  # a file being created
                pass
            assert demo.poll() is None and time.monotonic() < deadline, "the raster did not start"
            time.sleep(0.02)
        yield demo
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
