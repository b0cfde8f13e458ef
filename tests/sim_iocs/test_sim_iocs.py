"""The simulated beamline IOC, tested over Channel Access with a plain caproto client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from caproto import AlarmSeverity

from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.detector_model import detector_mask, offaxis_geometry

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers
def _pv(ctx, name):
    pv, = ctx.get_pvs(name, timeout=5)
    pv.wait_for_connection(timeout=10)
    return pv


def get(ctx, name, data_type=None):
    resp = _pv(ctx, name).read(data_type=data_type, timeout=5)
    return resp if data_type else resp.data


def get_value(ctx, name):
    """Scalar value, or the text of a char waveform / string PV."""
    data = get(ctx, name)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.tobytes().split(b"\0")[0].decode()
    value = data[0]
    return value.decode() if isinstance(value, bytes) else value


def put(ctx, name, value, wait=True):
    if isinstance(value, str):
        value = value.encode() + b"\0"
    elif not isinstance(value, (list, tuple, bytes)):
        value = [value]
    _pv(ctx, name).write(value, wait=wait, timeout=10)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# ------------------------------------------------------------------------------ CLI
def test_list_pvs_and_bad_data_dir(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mc_beamline.sim_iocs", "--prefix", "T:", "--data-dir", str(tmp_path), "--list-pvs"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "T:STAGE:X  (motor record)" in lines and "T:STAGE:Z  (motor record)" in lines
    for name in ("T:DET:Acquire", "T:DET:Capture", "T:DET:ArrayCounter_RBV", "T:DET:PoniFile_RBV",
                 "T:DET:MaskFile_RBV", "T:DET:FullFileName_RBV", "T:BEAM:RingCurrent", "T:BEAM:Shutter"):
        assert name in lines
    assert (tmp_path / "detector" / "geometry.poni").is_file()

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    run = subprocess.run(
        [sys.executable, "-m", "mc_beamline.sim_iocs", "--data-dir", str(blocker / "sub"), "--list-pvs"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


# ---------------------------------------------------------------------- geometry files
def test_geometry_and_mask_files(ca_context, sim_ioc):
    poni = Path(get_value(ca_context, "MC:DET:PoniFile_RBV"))
    mask = Path(get_value(ca_context, "MC:DET:MaskFile_RBV"))
    assert poni.parent == sim_ioc.data_dir / "detector" == mask.parent
    geom = DetectorGeometry.from_poni(poni)
    ref = offaxis_geometry()
    assert geom.shape == ref.shape
    assert geom.beam_center_px == pytest.approx(ref.beam_center_px)
    assert geom.dist_m == pytest.approx(ref.dist_m) and geom.wavelength_m == pytest.approx(ref.wavelength_m)
    loaded = np.load(mask)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded.astype(bool), detector_mask(ref))
    assert get_value(ca_context, "MC:DET:PoniText_RBV") == poni.read_text()
    assert get_value(ca_context, "MC:DET:ArraySizeY_RBV") == 1065
    assert get_value(ca_context, "MC:DET:ArraySizeX_RBV") == 1030


# ----------------------------------------------------------------------------- motors
def test_motor_record_refuses_put_beyond_soft_limit(ca_context):
    put(ca_context, "MC:STAGE:Y", 1.0)
    assert get_value(ca_context, "MC:STAGE:Y.LVIO") == 0
    ctrl = get(ca_context, "MC:STAGE:Y", data_type="control")
    assert (ctrl.metadata.lower_ctrl_limit, ctrl.metadata.upper_ctrl_limit) == (-50.0, 50.0)
    assert get_value(ca_context, "MC:STAGE:Y.EGU") == "um"

    put(ca_context, "MC:STAGE:Y", 75.0)  # bypasses ophyd's client-side check
    assert get_value(ca_context, "MC:STAGE:Y.LVIO") == 1
    assert get_value(ca_context, "MC:STAGE:Y") == 1.0  # VAL kept
    rbv = get(ca_context, "MC:STAGE:Y.RBV", data_type="time")
    assert rbv.data[0] == 1.0 and rbv.metadata.severity == AlarmSeverity.MINOR_ALARM
    assert get_value(ca_context, "MC:STAGE:Y.DMOV") == 1

    put(ca_context, "MC:STAGE:Y", 0.0)  # a good move clears the violation
    assert get_value(ca_context, "MC:STAGE:Y.LVIO") == 0
    rbv = get(ca_context, "MC:STAGE:Y.RBV", data_type="time")
    assert rbv.data[0] == 0.0 and rbv.metadata.severity == AlarmSeverity.NO_ALARM


def test_motor_moves_at_velocity_and_stops(ca_context):
    put(ca_context, "MC:STAGE:Z.VELO", 100.0)
    try:
        t0 = time.monotonic()
        put(ca_context, "MC:STAGE:Z", 10.0)  # put-completion when done: 0.1 s at 100 µm/s
        assert 0.09 < time.monotonic() - t0 < 1.0
        assert get_value(ca_context, "MC:STAGE:Z.RBV") == 10.0
        put(ca_context, "MC:STAGE:Z", 300.0, wait=False)
        assert wait_until(lambda: get_value(ca_context, "MC:STAGE:Z.MOVN") == 1)
        time.sleep(0.15)
        put(ca_context, "MC:STAGE:Z.STOP", 1)
        assert wait_until(lambda: get_value(ca_context, "MC:STAGE:Z.DMOV") == 1, timeout=1.0)
        stopped = get_value(ca_context, "MC:STAGE:Z.RBV")
        assert 12.0 < stopped < 100.0
        time.sleep(0.05)
        assert get_value(ca_context, "MC:STAGE:Z.RBV") == stopped
    finally:
        put(ca_context, "MC:STAGE:Z.VELO", 1000.0)
        put(ca_context, "MC:STAGE:Z", 0.0)
        put(ca_context, "MC:STAGE:Z.VELO", 200.0)


def test_soft_limits_follow_hlm(ca_context):
    put(ca_context, "MC:STAGE:X.HLM", 20.0)
    try:
        ctrl = get(ca_context, "MC:STAGE:X", data_type="control")
        assert ctrl.metadata.upper_ctrl_limit == 20.0
        assert get_value(ca_context, "MC:STAGE:X.DHLM") == 20.0
    finally:
        put(ca_context, "MC:STAGE:X.HLM", 50.0)
    assert get(ca_context, "MC:STAGE:X", data_type="control").metadata.upper_ctrl_limit == 50.0


# --------------------------------------------------------------------------- detector
def test_capture_refuses_paths_outside_data_dir(ca_context, tmp_path):
    try:
        for bad in (str(tmp_path), "../escape"):
            put(ca_context, "MC:DET:FilePath", bad)
            assert get_value(ca_context, "MC:DET:FilePathExists_RBV") == 0
            put(ca_context, "MC:DET:Capture", 1)
            assert get_value(ca_context, "MC:DET:Capture_RBV") == 0
            assert "outside" in get_value(ca_context, "MC:DET:StatusMessage_RBV")
        assert not any(tmp_path.iterdir())
    finally:
        put(ca_context, "MC:DET:FilePath", ".")  # caproto cannot take an empty char waveform


def test_acquire_writes_swmr_frames(ca_context, sim_ioc):
    put(ca_context, "MC:DET:FilePath", "ioc-tests")
    put(ca_context, "MC:DET:FileName", "swmr")
    put(ca_context, "MC:DET:AcquireTime", 0.002)
    put(ca_context, "MC:DET:TimeScale", 0.0)
    put(ca_context, "MC:DET:NumImages", 3)
    try:
        put(ca_context, "MC:DET:Capture", 1)
        assert get_value(ca_context, "MC:DET:Capture_RBV") == 1
        path = Path(get_value(ca_context, "MC:DET:FullFileName_RBV"))
        assert path.parent == sim_ioc.data_dir / "detector" / "ioc-tests" and path.name.startswith("swmr_")
        assert path.stat().st_mode & 0o777 == 0o600  # frames are the owner's: others go through Tiled's key
        before = get_value(ca_context, "MC:DET:ArrayCounter_RBV")
        put(ca_context, "MC:DET:Acquire", 1)  # put-completion after all 3 frames are written
        assert get_value(ca_context, "MC:DET:Acquire_RBV") == 0
        assert get_value(ca_context, "MC:DET:NumCaptured_RBV") == 3
        assert get_value(ca_context, "MC:DET:ArrayCounter_RBV") == before + 3
        with h5py.File(path, "r", swmr=True) as f:  # readable while the IOC still writes
            data = f["/entry/data/data"]
            assert data.shape == (3, 1065, 1030) and data.dtype == np.uint32 and data.chunks == (1, 1065, 1030)
            ids = f["/entry/instrument/NDAttributes/NDArrayUniqueId"][:]
            assert list(ids) == [before + 1, before + 2, before + 3]
            assert data[2][520, 100] == np.iinfo(np.uint32).max  # module gap
        put(ca_context, "MC:DET:Acquire", 1)
        with h5py.File(path, "r", swmr=True) as f:
            assert f["/entry/data/data"].shape[0] == 6
    finally:
        put(ca_context, "MC:DET:Capture", 0)
        put(ca_context, "MC:DET:NumImages", 1)
        put(ca_context, "MC:DET:FilePath", ".")  # caproto cannot take an empty char waveform
    assert get_value(ca_context, "MC:DET:Capture_RBV") == 0
    with h5py.File(path, "r") as f:
        assert f["/entry/data/data"].shape[0] == 6
        assert f["/entry/instrument/detector/pixel_mask"].shape == (1065, 1030)


# ------------------------------------------------------------------------------- beam
def test_beam_pvs(ca_context):
    put(ca_context, "MC:BEAM:RingCurrent", 42.5)
    try:
        assert get_value(ca_context, "MC:BEAM:RingCurrent") == 42.5
        assert get_value(ca_context, "MC:BEAM:BeamAvailable_RBV") == 1
        put(ca_context, "MC:BEAM:Shutter", 0)  # completes when the readback followed
        assert get_value(ca_context, "MC:BEAM:Shutter_RBV") == 0
        assert get_value(ca_context, "MC:BEAM:BeamAvailable_RBV") == 0
    finally:
        put(ca_context, "MC:BEAM:Shutter", 1)
        put(ca_context, "MC:BEAM:RingCurrent", 100.0)
    assert get_value(ca_context, "MC:BEAM:Energy_RBV") == pytest.approx(12.4)
