"""The fly-scan raster on the real simulated IOC, stored in a real Tiled server, analysed live."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from event_model import DocumentNames, schema_validators

from mc_beamline.callbacks.live_xcca import LiveXcca, xcca_router
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.plans import PlanArgumentError, RasterSpec, nanodiffraction_fly_raster
from mc_beamline.storage import read_stream_array, tiled_writer
from tests.seed_truth import assert_recovers_the_seed_truth, run_seed_demo

SMALL = {"ny": 3, "nx": 5, "step_um": 0.4, "center_x_um": 1.0, "center_y_um": -2.0, "exposure_s": 0.01}


@pytest.fixture(scope="module")
def fly_run(beamline, tiled):
    """A 3 x 5 snake fly raster at 10 ms exposures with TiledWriter and live XCCA; (uid, docs, live)."""
    from bluesky import RunEngine

    live_runs: list[LiveXcca] = []
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    RE.subscribe(xcca_router(publish=tiled_writer(tiled), on_run=live_runs.append))
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    (uid,) = RE(nanodiffraction_fly_raster(beamline.detector, beamline.stage, **SMALL))
    (live,) = live_runs
    assert live.wait(300), "the live analysis did not finish"
    return uid, docs, live


def _by_name(docs, name):
    return [doc for n, doc in docs if n == name]


def _file_attributes(docs) -> dict[str, np.ndarray]:
    resource = _by_name(docs, "resource")[0]
    with h5py.File(Path(resource["root"]) / resource["resource_path"], "r", swmr=True) as f:
        group = f["/entry/instrument/NDAttributes"]
        return {key: group[key][:] for key in group}


def test_one_frame_per_pixel_with_its_measured_position(fly_run, tiled):
    uid, docs, _ = fly_run
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    counts = Counter(n for n, _ in docs)
    assert counts["resource"] == 1 and counts["datum"] == 15 and counts["descriptor"] == 1
    assert _by_name(docs, "stop")[0]["exit_status"] == "success"
    start = _by_name(docs, "start")[0]
    assert start["plan_name"] == "nanodiffraction_fly_raster"
    assert start["mc_beamline"]["fly"]["velocity_um_s"] == pytest.approx(40.0)
    assert tiled[uid].metadata["stop"]["num_events"] == {"primary": 15}
    xs, ys = read_stream_array(tiled, uid, "stage_x"), read_stream_array(tiled, uid, "stage_y")
    spec = RasterSpec(3, 5, 0.4, 1.0, -2.0, True)
    expected = [(y, x) for row, y in enumerate(spec.y_um) for x in (spec.x_um if row % 2 == 0 else spec.x_um[::-1])]
    np.testing.assert_allclose(np.c_[ys, xs], expected, atol=0.005)  # within the servo tick's travel
    attrs = _file_attributes(docs)
    # the events carry the encoder values the controller latched, as the detector file does
    np.testing.assert_array_equal(xs, attrs["SampleX"])
    np.testing.assert_array_equal(ys, attrs["SampleY"])
    assert not np.array_equal(xs, np.array(expected)[:, 1])  # measured, not the set points


def test_frames_are_the_simulators_integral_over_each_exposure(fly_run, tiled, simulator):
    uid, docs, _ = fly_run
    frames = read_stream_array(tiled, uid, "det_image")
    assert frames.shape == (15, 1065, 1030)
    attrs = _file_attributes(docs)
    for i in (0, 7, 14):
        expected = simulator.frame(attrs["SampleXStart"][i], attrs["SampleY"][i], 0.01,
                                   noise_key=int(attrs["NDArrayUniqueId"][i]), x_end_um=attrs["SampleXEnd"][i])
        np.testing.assert_array_equal(frames[i], expected)
        assert abs(attrs["SampleXEnd"][i] - attrs["SampleXStart"][i]) == pytest.approx(0.4, abs=2e-4)


def test_live_result_equals_stored_result_and_replay(fly_run, tiled):
    uid, _, live = fly_run
    assert live.errors == []
    assert live.result["n_frames"] == 15
    stored = stored_results(tiled, uid)
    assert stored == live.result
    assert replay(tiled, uid) == stored


def test_maps_are_placed_at_the_measured_positions(fly_run, tiled):
    uid, _, live = fly_run
    maps = live._maps
    xs, ys = read_stream_array(tiled, uid, "stage_x"), read_stream_array(tiled, uid, "stage_y")
    for seq_num in (1, 7, 15):  # frame 7: the third pixel of the reversed second row
        row, col = live.analysis.position(seq_num - 1)
        assert (maps["x_um"][row, col], maps["y_um"][row, col]) == (xs[seq_num - 1], ys[seq_num - 1])
    assert np.all(np.diff(maps["x_um"], axis=1) > 0.39)  # the snake is undone: x grows along every row


@pytest.mark.parametrize("kwargs, message", [
    ({"center_x_um": 49.0}, "outside its limits"),  # the map itself
    ({"nx": 5, "center_x_um": 49.0 - 0.2}, "fly turnarounds"),  # the map fits, its run-up does not
    ({"exposure_s": 0.0001}, "faster than the x axis' maximum"),  # 4000 µm/s
    ({"ny": 0}, "must be at least 1"),
])
def test_out_of_limit_or_too_fast_requests_are_refused_before_anything_moves(beamline, RE, kwargs, message):
    stage = beamline.stage
    stage.x.set(0.8).wait(10)
    stage.y.set(0.4).wait(10)
    docs = []
    with pytest.raises(PlanArgumentError, match=message):
        RE(nanodiffraction_fly_raster(beamline.detector, stage, **{**SMALL, **kwargs}), lambda n, d: docs.append(n))
    assert docs == []
    assert stage.x.position == pytest.approx(0.8) and stage.y.position == pytest.approx(0.4)


@pytest.mark.slow
def test_seed_fly_raster_recovers_the_simulator_truth(tmp_path):
    """The 35 x 51 seed raster flown at 10 ms per point (`demo raster --fly`) in its own process
    with its own IOC and Tiled server: the live XCCA finds the truth within the tolerances of
    the step raster's test (tests/callbacks/test_live_xcca.py)."""
    demo = run_seed_demo(tmp_path / "data", fly=True)
    assert "Stored 1785 frames in" in demo["summary"]
    assert_recovers_the_seed_truth(demo)
