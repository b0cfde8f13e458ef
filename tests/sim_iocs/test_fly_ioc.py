"""The stage controller's fly mode and the detector's gated frames, over Channel Access."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from tests.sim_iocs.test_sim_iocs import get, get_value, put, wait_until

FLY = "MC:STAGE:FLY:"


def _row(ctx, first, step, n, gate, velocity):
    put(ctx, FLY + "FirstCenter", first)
    put(ctx, FLY + "Step", step)
    put(ctx, FLY + "NumPulses", n)
    put(ctx, FLY + "GateTime", gate)
    put(ctx, FLY + "Velocity", velocity)


def test_gated_row_writes_one_integrated_frame_per_gate(ca_context, sim_ioc, simulator):
    put(ca_context, "MC:STAGE:Y", 1.2)
    put(ca_context, "MC:DET:FilePath", "fly-tests")
    put(ca_context, "MC:DET:FileName", "row")
    put(ca_context, "MC:DET:TriggerMode", 1)
    put(ca_context, "MC:DET:NumImages", 8)
    try:
        put(ca_context, "MC:DET:Capture", 1)
        path = Path(get_value(ca_context, "MC:DET:FullFileName_RBV"))
        before = get_value(ca_context, "MC:DET:ArrayCounter_RBV")
        put(ca_context, "MC:DET:Acquire", 1, wait=False)  # armed: waits for gates
        assert wait_until(lambda: get_value(ca_context, "MC:DET:DetectorState_RBV") == 7)  # Waiting
        # two rows of 4 pixels, snake: 0.4 µm pixels at 40 µm/s, 10 ms gates
        _row(ca_context, -2.0, 0.4, 4, 0.01, 40.0)
        put(ca_context, FLY + "Go", 1)  # put-completion at the end of the row
        assert get_value(ca_context, FLY + "PulseCount_RBV") == 4
        first_x = get(ca_context, FLY + "EncoderXOpen_RBV")[:4]
        _row(ca_context, -0.8, -0.4, 4, 0.01, 40.0)
        put(ca_context, FLY + "Go", 1)
        assert "done" in get_value(ca_context, FLY + "Message_RBV")
        assert wait_until(lambda: get_value(ca_context, "MC:DET:Acquire_RBV") == 0, timeout=20)
        assert get_value(ca_context, "MC:DET:NumCaptured_RBV") == 8
        x_open = np.concatenate([first_x, get(ca_context, FLY + "EncoderXOpen_RBV")[:4]])
        with h5py.File(path, "r", swmr=True) as f:
            attrs = {k: f[f"/entry/instrument/NDAttributes/{k}"][:] for k in
                     ("NDArrayUniqueId", "SampleX", "SampleXStart", "SampleXEnd", "SampleY", "AcquireTime")}
            frames = f["/entry/data/data"][:]
    finally:
        put(ca_context, "MC:DET:Capture", 0)
        put(ca_context, "MC:DET:NumImages", 1)
        put(ca_context, "MC:DET:TriggerMode", 0)
        put(ca_context, "MC:DET:FilePath", ".")
    np.testing.assert_array_equal(attrs["SampleXStart"], x_open)  # the file holds the latched encoder
    centers = np.array([-2.0, -1.6, -1.2, -0.8, -0.8, -1.2, -1.6, -2.0])
    np.testing.assert_allclose(attrs["SampleX"], centers, atol=0.005)
    np.testing.assert_allclose(attrs["SampleXEnd"] - attrs["SampleXStart"], [0.4] * 4 + [-0.4] * 4, atol=2e-4)
    np.testing.assert_allclose(attrs["SampleY"], 1.2, atol=1e-4)
    assert list(attrs["NDArrayUniqueId"]) == list(range(before + 1, before + 9))
    for i in (0, 5):  # each frame is the simulator's integral over its gate's travel
        expected = simulator.frame(attrs["SampleXStart"][i], attrs["SampleY"][i], attrs["AcquireTime"][i],
                                   noise_key=int(attrs["NDArrayUniqueId"][i]), x_end_um=attrs["SampleXEnd"][i])
        np.testing.assert_array_equal(frames[i], expected)


@pytest.mark.parametrize("first, velocity, why", [(-49.9, 40.0, "outside the x limits"),
                                                   (0.0, 5000.0, "above the x axis' maximum")])
def test_row_refused_before_anything_moves(ca_context, first, velocity, why):
    put(ca_context, "MC:STAGE:X", 3.0)
    _row(ca_context, first, 0.4 if velocity < 1000 else 200.0, 3, 0.01, velocity)
    put(ca_context, FLY + "Go", 1)
    assert why in get_value(ca_context, FLY + "Message_RBV")
    assert get_value(ca_context, FLY + "PulseCount_RBV") == 0
    assert get_value(ca_context, "MC:STAGE:X.RBV") == pytest.approx(3.0)
