"""The nanodiffraction raster plan on the real simulated IOC, stored in a real Tiled server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from event_model import DocumentNames, schema_validators

from mc_beamline.analysis.detector.masks import decode_mask
from mc_beamline.callbacks.frame_locator import FrameLocator
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.plans import PlanArgumentError, RasterSpec, nanodiffraction_raster
from mc_beamline.storage import read_stream_array, run_documents, tiled_writer


@pytest.fixture(scope="module")
def stored_raster(beamline, simulator, tiled, sim_ioc):
    """A 3 x 4 snake raster at 50 ms exposures, written to Tiled; (uid, documents)."""
    from bluesky import RunEngine

    det = beamline.detector
    det.time_scale.set(0).wait(5)
    try:
        RE = RunEngine({})
        RE.subscribe(tiled_writer(tiled))
        docs: list[tuple[str, dict]] = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        (uid,) = RE(nanodiffraction_raster(det, beamline.stage, ny=3, nx=4, step_um=0.4,
                                           center_x_um=1.0, center_y_um=-2.0, exposure_s=0.05))
    finally:
        det.time_scale.set(1).wait(5)
        det.acquire_time.set(0.01).wait(5)
    return uid, docs


def _by_name(docs, name):
    return [doc for n, doc in docs if n == name]


def test_raster_emits_valid_documents_for_every_point(stored_raster):
    _, docs = stored_raster
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    assert Counter(n for n, _ in docs) == {"start": 1, "descriptor": 1, "resource": 1, "datum": 12, "event": 12, "stop": 1}
    assert _by_name(docs, "stop")[0]["exit_status"] == "success"


def test_raster_positions_snake_through_the_grid(stored_raster):
    _, docs = stored_raster
    spec = RasterSpec(3, 4, 0.4, 1.0, -2.0, True)
    positions = [(e["data"]["stage_y"], e["data"]["stage_x"]) for e in _by_name(docs, "event")]
    expected = []
    for row, y in enumerate(spec.y_um):
        xs = spec.x_um if row % 2 == 0 else spec.x_um[::-1]
        expected += [(y, x) for x in xs]
    np.testing.assert_allclose(positions, expected, atol=1e-9)


def test_start_metadata_make_the_run_self_contained(stored_raster, simulator):
    _, docs = stored_raster
    md = _by_name(docs, "start")[0]["mc_beamline"]
    assert md["experiment"] == "raster" and md["scan_shape"] == [3, 4] and md["step_um"] == 0.4
    assert md["snake"] is True and md["exposure_s"] == 0.05 and md["image_key"] == "det_image"
    geometry = DetectorGeometry.from_poni_text(md["detector_poni"])
    np.testing.assert_allclose(geometry.q_map, simulator.geometry.q_map, rtol=1e-6)
    assert np.array_equal(decode_mask(md["detector_mask"], geometry.shape), simulator.mask)


def test_stored_frames_read_back_from_tiled_and_equal_the_model(stored_raster, tiled, simulator):
    uid, docs = stored_raster
    run = tiled[uid]
    assert run.metadata["stop"]["num_events"] == {"primary": 12}
    frames = read_stream_array(tiled, uid, "det_image")
    assert frames.shape == (12, 1065, 1030) and frames.dtype == np.uint32
    resource = _by_name(docs, "resource")[0]
    path = Path(resource["root"]) / resource["resource_path"]
    with h5py.File(path, "r", swmr=True) as f:
        counters = f["/entry/instrument/NDAttributes/NDArrayUniqueId"][:]
    xs = read_stream_array(tiled, uid, "stage_x")
    ys = read_stream_array(tiled, uid, "stage_y")
    for i in (0, 5, 11):
        expected = simulator.frame(xs[i], ys[i], 0.05, noise_key=int(counters[i]))
        assert np.array_equal(frames[i], expected)


def test_replayed_documents_give_the_same_frames(stored_raster, tiled):
    uid, _ = stored_raster
    frames = read_stream_array(tiled, uid, "det_image")
    replayed = list(run_documents(tiled, uid))
    names = [n for n, _ in replayed]
    assert names[0] == "start" and names[-1] == "stop"
    for name, doc in replayed:
        schema_validators[DocumentNames[name]].validate(doc)
    locator = FrameLocator("det_image")
    got = {}
    for name, doc in replayed:
        for seq_num, frame in locator(name, doc):
            got[seq_num] = frame
    locator.close()
    assert sorted(got) == list(range(1, 13))
    for seq_num, frame in got.items():
        assert np.array_equal(frame, frames[seq_num - 1])


def test_md_entries_under_mc_beamline_join_the_plans_own(beamline, RE):
    """Extra ``mc_beamline`` metadata (e.g. the live analysis's corrections) are added to the
    plan's, which stay; other extra keys go to the top level."""
    det = beamline.detector
    starts = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    det.time_scale.set(0).wait(5)
    try:
        RE(nanodiffraction_raster(det, beamline.stage, ny=1, nx=2, step_um=0.4, exposure_s=0.01,
                                  md={"mc_beamline": {"polarization_factor": 0.99}, "operator": "test"}))
    finally:
        det.time_scale.set(1).wait(5)
    (start,) = starts
    md = start["mc_beamline"]
    assert md["polarization_factor"] == 0.99 and md["scan_shape"] == [1, 2] and md["detector_poni"]
    assert start["operator"] == "test"


def test_raster_beyond_the_stage_limits_is_refused_before_anything_moves(beamline, RE):
    stage = beamline.stage
    before = (stage.x.position, stage.y.position)
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(PlanArgumentError, match=r"stage x would travel .* outside its limits .*nothing was moved"):
        RE(nanodiffraction_raster(beamline.detector, stage, ny=3, nx=11, step_um=20.0))
    assert docs == []
    assert (stage.x.position, stage.y.position) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ny": 0}, "ny .* at least 1"),
        ({"nx": 2.5}, "nx .* whole number"),
        ({"step_um": -0.4}, "step_um must be positive"),
        ({"center_x_um": float("nan")}, "center_x_um must be finite"),
        ({"exposure_s": 0}, "exposure_s must be positive"),
    ],
)
def test_bad_raster_arguments_are_refused_with_one_sentence(beamline, RE, kwargs, message):
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(PlanArgumentError, match=message):
        RE(nanodiffraction_raster(beamline.detector, beamline.stage, **kwargs))
    assert docs == []


def test_raster_waits_for_devices_and_fails_with_one_sentence_if_they_never_answer(sim_ioc, RE, monkeypatch):
    from mc_beamline.devices import make_devices
    from mc_beamline.plans import raster
    from mc_beamline.plans.readiness import BeamlineNotReadyError

    monkeypatch.setattr(raster, "DEVICE_WAIT_S", 0.5)
    absent = make_devices("NOSUCHIOC:")
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(BeamlineNotReadyError, match=r"det, stage did not answer within 0.5 s; is the IOC running\?"):
        RE(nanodiffraction_raster(absent.detector, absent.stage, ny=2, nx=2))
    assert docs == []

