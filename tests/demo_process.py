"""``mc-beamline demo --quick`` in a subprocess, for the tests that disturb it mid-run
(a killed IOC, Ctrl-C, a disk that fills)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

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
def demo_when(data_dir: Path, ready: Callable[[Path], bool], args: tuple[str, ...] = (), env: dict | None = None):
    """Start ``demo ARGS --quick`` on ``data_dir`` (with ``env`` added to a CA-free environment)
    and yield its process once ``ready(stdout_file)`` is true (the demo's standard output
    goes to that file, unbuffered); a demo still running when the block ends is killed."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    full_env.update(env or {}, PYTHONUNBUFFERED="1")
    Path(data_dir).parent.mkdir(parents=True, exist_ok=True)
    stdout_file = Path(data_dir).with_name(Path(data_dir).name + "-stdout.txt")
    with open(stdout_file, "w") as stdout:
        demo = subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", "demo", *args, "--quick", "--data-dir",
                                 str(data_dir)], stdout=stdout, stderr=subprocess.PIPE, text=True, env=full_env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(stdout_file):
            assert demo.poll() is None and time.monotonic() < deadline, "the demo did not reach the point"
            time.sleep(0.02)
        yield demo
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()


def enough_frames(data_dir: Path, n_frames: int) -> Callable[[Path], bool]:
    """A ``ready`` for :func:`demo_when`: the detector files under ``data_dir`` hold ``n_frames``."""
    def ready(_stdout: Path) -> bool:
        try:
            return frames_in(Path(data_dir) / "detector") >= n_frames
        except (OSError, KeyError):  # a file being created
            return False
    return ready


def demo_after_frames(data_dir: Path, n_frames: int, env: dict | None = None):
    """:func:`demo_when` for the raster demo, once its detector files hold ``n_frames``."""
    return demo_when(data_dir, enough_frames(data_dir, n_frames), env=env)
