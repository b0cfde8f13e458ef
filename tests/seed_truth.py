"""The seed raster demo in its own process, and the XCCA tolerances (SCIENCE.md) its result
must meet: shared by the step, fly and adaptive raster tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SEED_DEMO = """
import io, json, sys
from pathlib import Path
from mc_beamline.commands.demo import raster_demo

out = io.StringIO()
demo = raster_demo(Path(sys.argv[1]), quick=False, out=out, **json.loads(sys.argv[2]))
json.dump({"uid": demo.uid, "n_points": demo.n_points, "scan_s": demo.scan_s, "lag_s": demo.analysis_lag_s,
           "result": demo.result, "truth": demo.truth, "errors": [e["message"] for e in demo.analysis_errors],
           "summary": out.getvalue()}, sys.stdout)
"""


def run_seed_demo(data_dir: Path, **options) -> dict:
    """``raster_demo(data_dir, quick=False, **options)`` (``fly``, ``adaptive``) in its own
    process, with its own IOC and Tiled server (a CA client reads its EPICS settings once per
    process); returns what it printed: ``uid``, ``n_points``, ``scan_s``, ``lag_s``, ``result``,
    ``truth``, ``errors`` and the printed ``summary``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    proc = subprocess.run([sys.executable, "-c", SEED_DEMO, str(data_dir), json.dumps(options)],
                          capture_output=True, text=True, timeout=900, env=env, stdin=subprocess.DEVNULL,
                          cwd=Path(data_dir).parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    demo = json.loads(proc.stdout)
    print(demo["summary"])  # live results next to the truth, for -rP / -s
    return demo


def assert_structure_within_tolerances(result: dict, truth: dict, summary: str) -> None:
    """bct, c/a within 0.02, ΔΦ within 2° and ψ std within 1° of the simulator's truth."""
    assert result["superlattice"]["lattice"] == "bct"
    assert abs(result["superlattice"]["c_over_a"] - truth["c_over_a"]) <= 0.02, summary
    assert abs(result["orientational_disorder_fwhm_deg"] - truth["disorder_fwhm_deg"]) <= 2.0, summary
    assert abs(result["misorientation_deg"]["std"] - truth["psi_std_deg"]) <= 1.0, summary


def assert_recovers_the_seed_truth(demo: dict) -> None:
    """``demo``: what :func:`run_seed_demo` returns for a full (step or fly) raster. Every
    point measured and analysed, the structure within tolerances, grains within 20 %."""
    result, truth, summary = demo["result"], demo["truth"], demo["summary"]
    assert demo["n_points"] == 35 * 51
    assert demo["errors"] == [], summary
    assert result["n_frames"] == 35 * 51
    assert_structure_within_tolerances(result, truth, summary)
    assert abs(result["domains"]["count"] - truth["grains"]) <= 0.2 * truth["grains"], summary
    assert f"uid: {demo['uid']}" in summary
