"""The `mc-beamline` command as a user runs it: a subprocess, exit status, stdout, stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mc_beamline.storage import connect, read_stream_array


def run_cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return subprocess.run([sys.executable, "-m", "mc_beamline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def test_quick_demo_stores_a_raster_and_prints_its_uid(tmp_path):
    data_dir = tmp_path / "data"
    proc = run_cli("demo", "--quick", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    uids = re.findall(r"^uid: (\S+)$", proc.stdout, flags=re.M)
    assert len(uids) == 1
    figures = re.findall(r"^figure: (\S+)$", proc.stdout, flags=re.M)
    assert figures and all(os.path.getsize(f) > 1000 for f in figures)
    with connect(data_dir=data_dir) as client:
        run = client[uids[0]]
        assert run.metadata["start"]["mc_beamline"]["scan_shape"] == [9, 13]
        assert run.metadata["stop"]["exit_status"] == "success"
        frames = read_stream_array(client, uids[0], "det_image")
        assert frames.shape == (117, 1065, 1030)
    assert re.search(r"^  c/a\s+1\.2\d\d\s+1\.220$", proc.stdout, flags=re.M), proc.stdout


def test_quick_assembly_demo_reports_the_truth_for_its_four_series(tmp_path):
    data_dir = tmp_path / "data"
    proc = run_cli("demo", "assembly", "--quick", "--data-dir", str(data_dir), timeout=600)
    assert proc.returncode == 0, proc.stderr
    uids = re.findall(r"^uid: (\S+)$", proc.stdout, flags=re.M)
    assert len(uids) == 4
    out = proc.stdout
    assert re.search(r"gentle addition.*: pathway one-step \(truth one-step\); fcc", out), out
    assert re.search(r"rapid addition.*: pathway two-step \(truth two-step\); fcc", out), out
    assert re.search(r"monolayer.*: 6-fold → 4-fold at", out), out
    assert re.search(r"quasicrystal: ring order 12 \(truth 12\)", out), out
    for within in re.findall(r"phase fractions within (\S+) of truth", out):
        assert float(within) < 0.05
    with connect(data_dir=data_dir) as client:
        for uid in uids:
            assert client[uid].metadata["stop"]["exit_status"] == "success"
            assert client[uid].metadata["start"]["mc_beamline"]["experiment"] == "assembly"


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "nonsense"], "invalid choice"),
        (["serve", "--port", "notaport"], "invalid int"),
        (["demo", "flow", "--fly"], "--fly applies to the raster demo, not to flow."),
        (["demo", "assembly", "--adaptive"], "--adaptive applies to the raster and flow demos, not to assembly."),
        (["analysis", "serve", "--data-dir", "/nonexistent-mc-data"],
         "No document stream runs for /nonexistent-mc-data: start the queue"),
        (["analysis", "serve", "--data-dir", "/nonexistent-mc-data", "--stream", "127.0.0.1:9", "--sweep", "0"],
         "The sweep interval must be a positive number of seconds, got 0."),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    proc = run_cli(*args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
