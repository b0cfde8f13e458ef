"""Ophyd devices against the real simulated IOC: stage, detector documents, beam."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from event_model import DocumentNames, schema_validators
from ophyd import EpicsSignalRO
from ophyd.utils.errors import LimitError

from mc_beamline.devices import (
    AssemblyCell,
    BeamlineConnectionError,
    BeamMonitor,
    FlowReactor,
    PixelDetector,
    SimAssemblyCell,
    SimBeamMonitor,
    SimFlowReactor,
    SimPixelDetector,
    make_devices,
)
from mc_beamline.io.frames import read_frame


def _frames_attrs(path):
    with h5py.File(path, "r", swmr=True) as f:
        attrs = f["/entry/instrument/NDAttributes"]
        return {key: attrs[key][:] for key in attrs}


# ------------------------------------------------------------------------------ stage
def test_stage_moves_to_position(beamline):
    x = beamline.stage.x
    x.set(3.2).wait(timeout=5)
    assert abs(x.position - 3.2) < 1e-3  # 1 nm
    assert abs(x.user_readback.get(use_monitor=False) - 3.2) < 1e-3
    assert x.motor_done_move.get(use_monitor=False) == 1
    assert x.egu == "um"
    assert beamline.stage.position[0] == x.position
    x.set(0.0).wait(timeout=5)


def test_stage_refuses_move_beyond_limit(beamline):
    y = beamline.stage.y
    y.set(0.8).wait(timeout=5)
    assert y.limits == (-50.0, 50.0)
    with pytest.raises(LimitError):
        y.set(50.5)
    assert y.position == 0.8 and y.user_readback.get(use_monitor=False) == 0.8


def test_ioc_refusal_fails_the_move_status(beamline, monkeypatch):
    """Even if the client does not check the limits, the record refuses and ophyd reports failure."""
    z = beamline.stage.z
    monkeypatch.setattr(z, "check_value", lambda value: None)
    monkeypatch.setattr(z.user_setpoint, "check_value", lambda value: None)
    status = z.set(900.0)
    with pytest.raises(Exception):
        status.wait(timeout=5)
    assert not status.success
    assert z.position == 0.0
    monkeypatch.undo()
    z.set(0.0).wait(timeout=5)  # a good move clears the violation and succeeds


# --------------------------------------------------------------------------- detector
def test_trigger_requires_stage(beamline):
    with pytest.raises(RuntimeError, match="not staged"):
        beamline.detector.trigger()


def test_frame_equals_simulator(beamline, fast_detector, simulator):
    stage, det = beamline.stage, fast_detector
    stage.x.set(1.6).wait(5)
    stage.y.set(-2.4).wait(5)
    det.stage()
    try:
        det.trigger().wait(timeout=10)
        reading = det.read()[det.image_key]
        docs = list(det.collect_asset_docs())
        path = det.current_file
    finally:
        det.unstage()
    assert [name for name, _ in docs] == ["resource", "datum"]
    resource, datum = docs[0][1], docs[1][1]
    assert reading["value"] == datum["datum_id"]
    assert os.path.join(resource["root"], resource["resource_path"]) == path
    index = datum["datum_kwargs"]["point_number"]
    attrs = _frames_attrs(path)
    counter = int(attrs["NDArrayUniqueId"][index])
    assert counter == det.array_counter.get(use_monitor=False)
    assert (attrs["SampleX"][index], attrs["SampleY"][index]) == (stage.x.position, stage.y.position)
    expected = simulator.frame(stage.x.position, stage.y.position, 0.05, noise_key=counter)
    assert np.array_equal(read_frame(path, index), expected)


def test_grid_scan_documents_and_frames(beamline, fast_detector, simulator, RE):
    import bluesky.plans as bp

    stage, det = beamline.stage, fast_detector
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(bp.grid_scan([det], stage.y, -0.4, 0.4, 2, stage.x, -0.4, 0.4, 3), sample="seed000")

    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    counts = Counter(name for name, _ in docs)
    assert counts == {"start": 1, "descriptor": 1, "resource": 1, "datum": 6, "event": 6, "stop": 1}
    by_name = defaultdict(list)
    for name, doc in docs:
        by_name[name].append(doc)
    key = by_name["descriptor"][0]["data_keys"]["det_image"]
    assert key["shape"] == [1065, 1030] and key["dtype_numpy"] == "<u4" and key["external"] == "FILESTORE:"
    resource = by_name["resource"][0]
    assert resource["spec"] == "AD_HDF5_SWMR" and resource["run_start"] == by_name["start"][0]["uid"]
    assert resource["resource_kwargs"] == {"dataset": "/entry/data/data", "chunk_shape": [1, 1065, 1030],
                                           "swmr": True}
    path = Path(resource["root"]) / resource["resource_path"]
    datums = {d["datum_id"]: d for d in by_name["datum"]}
    attrs = _frames_attrs(path)
    with h5py.File(path, "r") as f:
        frames = f["/entry/data/data"]
        assert frames.shape == (6, 1065, 1030)
        for event in by_name["event"]:
            datum = datums[event["data"]["det_image"]]
            assert datum["resource"] == resource["uid"]
            index = datum["datum_kwargs"]["point_number"]
            assert index == event["seq_num"] - 1
            x, y = event["data"]["stage_x"], event["data"]["stage_y"]
            assert (attrs["SampleX"][index], attrs["SampleY"][index]) == (x, y)
            expected = simulator.frame(x, y, 0.05, noise_key=int(attrs["NDArrayUniqueId"][index]))
            assert np.array_equal(frames[index], expected)
            # the hinted total: the frame's counts without the module gaps
            assert event["data"]["det_total"] == float(expected[~simulator.gap_mask].sum(dtype=np.uint64))
    assert by_name["stop"][0]["exit_status"] == "success"
    assert "det_total" in by_name["descriptor"][0]["hints"]["det"]["fields"]


# ------------------------------------------------------------------------------- beam
def test_beam_current_and_shutter(beamline):
    beam = beamline.beam
    beam.ring_current.set(55.0).wait(5)
    try:
        assert beam.ring_current.get(use_monitor=False) == 55.0
        assert beam.read()["beam_ring_current"]["value"] == 55.0
        beam.shutter.set(0).wait(5)
        assert beam.shutter.get(use_monitor=False) == 0
    finally:
        beam.shutter.set(1).wait(5)
        beam.ring_current.set(100.0).wait(5)
    assert beam.energy.get() == pytest.approx(12.4)


def test_connect_all_names_the_missing_ioc(sim_ioc):
    missing = make_devices("NOSUCH:")
    with pytest.raises(BeamlineConnectionError) as info:
        missing.connect_all(timeout=0.5)
    message = str(info.value)
    assert "NOSUCH:" in message and "\n" not in message and "mc-beamline iocs" in message


SIM_ONLY_PVS = {"TimeScale", "SimTime_RBV", "SimSeed_RBV", "Geometry_RBV", "TimeConstant", "Lattice"}
"""PV names (after the last ``:``) that only the simulated IOC serves."""


def _pv_names(beamline):
    return [walk.item.pvname for device in beamline for walk in device.walk_signals(include_lazy=True)
            if hasattr(walk.item, "pvname")]


def test_simulated_beamline_uses_the_sim_classes(beamline):
    assert beamline.sim
    assert [type(device) for device in beamline][1:] == [SimPixelDetector, SimBeamMonitor, SimFlowReactor,
                                                         SimAssemblyCell]
    assert SIM_ONLY_PVS == {pv.rsplit(":", 1)[-1] for pv in _pv_names(beamline)} & SIM_ONLY_PVS


def test_real_hardware_classes_need_no_simulator_pvs(sim_ioc):
    """``make_devices(sim=False)``: no simulator-only PV, signal or method; connect_all needs only real PVs."""
    real = make_devices(sim_ioc.prefix, sim=False)
    assert not real.sim
    assert [type(device) for device in real][1:] == [PixelDetector, BeamMonitor, FlowReactor, AssemblyCell]
    assert not [pv for pv in _pv_names(real) if pv.rsplit(":", 1)[-1] in SIM_ONLY_PVS]
    assert not hasattr(real.reactor, "run_simulation_fast") and not hasattr(real.reactor, "time_scale")
    assert isinstance(real.beam.ring_current, EpicsSignalRO)
    real.connect_all(timeout=30)
    assert real.reactor.flush.time_scale_signal is None and real.detector.time_scale_signal is None


def test_connect_all_on_real_hardware_does_not_suggest_the_simulator(sim_ioc):
    with pytest.raises(BeamlineConnectionError) as info:
        make_devices("NOSUCH:", sim=False).connect_all(timeout=0.5)
    message = str(info.value)
    assert "NOSUCH:" in message and "\n" not in message and "mc-beamline iocs" not in message


def _eventually(predicate, timeout=2.0):
    """Monitors arrive shortly after a put-completion; wait for them."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_set_current_position_and_home(beamline):
    """SET mode redefines the user position through OFF; homing returns to dial 0."""
    z = beamline.stage.z
    z.set(5.0).wait(5)
    z.set_current_position(12.5)
    try:
        assert z.user_readback.get(use_monitor=False) == 12.5
        assert z.user_offset.get(use_monitor=False) == 7.5
        assert _eventually(lambda: z.position == 12.5 and z.limits == (-492.5, 507.5))
        z.home("forward", timeout=5)
        assert z.position == 7.5  # dial 0 in user coordinates
    finally:
        z.user_offset.put(0.0, wait=True)
    assert _eventually(lambda: z.limits == (-500.0, 500.0))
    z.set(0.0).wait(5)
    assert z.position == 0.0
