"""Live XCCA of rasters on the real simulated IOC, stored in a real Tiled server.

What is checked (docs/results.md: "replay gives the same numbers as live", "a live callback must
never abort a scan", the ``results``/``replay`` command contracts):

* a coarse raster (9 x 13 points, 1.6 µm, the seed area) analysed live: the live result,
  the result stored in Tiled and a replay from Tiled are equal EXACTLY (dict equality, no
  tolerance); the structure found is the simulator's (bct, c/a within 0.03 of 1.22); the
  derived run in Tiled names the raw run and holds readable ``ccf``, ``frames``, ``maps``
  streams; the live figure is written;
* ``mc-beamline results`` and ``mc-beamline replay`` in subprocesses write identical JSON,
  while this module's own Tiled server on the same data directory keeps running (two
  servers on one SQLite catalog); an unknown uid fails with one line and no file;
* faults injected into the analysis (exceptions on some frames, an analysis that cannot
  be built) leave the scan and the raw run in Tiled untouched and are recorded;
* (slow) the full seed raster, 35 x 51 points, recovers the simulator's truth.

Everything is real: the caproto IOC over Channel Access, uvicorn-served Tiled, HDF5 files.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from mc_beamline.analysis.xcca.pipeline import XccaAnalysis
from mc_beamline.callbacks.live_xcca import LiveXcca, analysis_for_start, xcca_router
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.physics.mesocrystal import raster_truth_summary
from mc_beamline.plans import RasterSpec, nanodiffraction_raster
from mc_beamline.storage import read_stream_array, tiled_writer
from tests.seed_truth import assert_recovers_the_seed_truth, run_seed_demo

COARSE = {"ny": 9, "nx": 13, "step_um": 1.6}
"""The seed area (12.8 x 19.2 µm) at four times the seed step: 117 points, ~28 in [110] zones."""
ANALYSIS_WAIT_S = 300.0


# --------------------------------------------------------------------------- helpers
def run_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m mc_beamline.cli ARGS`` (no EPICS settings inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def derived_runs(client, raw_uid: str) -> list:
    """The derived (analysis) runs in Tiled that name raw run ``raw_uid``."""
    from tiled.queries import Key

    found = client.search(Key("mc_beamline.raw_uid") == raw_uid)
    return [found[key] for key in found]


def run_raster(RE, beamline, **kwargs) -> str:
    """Run a raster with zero wall-clock exposure wait; return its uid."""
    det = beamline.detector
    det.time_scale.set(0).wait(5)
    try:
        (uid,) = RE(nanodiffraction_raster(det, beamline.stage, exposure_s=0.01, **kwargs))
    finally:
        det.time_scale.set(1).wait(5)
    return uid


class FaultyXcca(XccaAnalysis):
    """An analysis whose ``add_frame`` fails on chosen raster indices."""

    faults = {5: RuntimeError("injected fault at frame 5"), 7: ZeroDivisionError("injected fault at frame 7")}

    def add_frame(self, index, frame):
        if index in self.faults:
            raise self.faults[index]
        return super().add_frame(index, frame)


def faulty_analysis(start_doc: dict) -> XccaAnalysis:
    """The analysis the live callback would build, as a :class:`FaultyXcca`."""
    ana = analysis_for_start(start_doc)
    return FaultyXcca.from_state(ana.to_state(), ana.geometry, ana.mask)


def unbuildable_analysis(start_doc: dict) -> XccaAnalysis:
    """The analysis of a run whose detector geometry (PONI) does not parse."""
    broken = {**start_doc, "mc_beamline": {**start_doc["mc_beamline"], "detector_poni": "this is not a PONI file"}}
    return analysis_for_start(broken)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def live_raster(beamline, tiled, tmp_path_factory):
    """The coarse raster with the TiledWriter and the live XCCA router subscribed.

    Returns (uid, LiveXcca, figure directory, raw documents).
    """
    from bluesky import RunEngine

    figure_dir = tmp_path_factory.mktemp("figures")
    live_runs: list[LiveXcca] = []
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    RE.subscribe(xcca_router(publish=tiled_writer(tiled), figure_dir=figure_dir, on_run=live_runs.append))
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    uid = run_raster(RE, beamline, **COARSE)
    assert len(live_runs) == 1
    live = live_runs[0]
    assert live.wait(ANALYSIS_WAIT_S), "the live analysis did not finish"
    return uid, live, figure_dir, docs


# --------------------------------------------------------------- 1. live raster on the IOC
def test_live_result_equals_stored_result_and_replay_exactly(live_raster, tiled):
    """Tolerance: exact. Live, stored and replayed results are the same dict, float for float."""
    uid, live, _, _ = live_raster
    assert live.errors == []
    stored = stored_results(tiled, uid)
    replayed = replay(tiled, uid)
    assert stored == live.result
    assert replayed == stored


def test_live_result_finds_the_bct_superlattice(live_raster, simulator):
    uid, live, _, docs = live_raster
    result = live.result
    spec = RasterSpec(**COARSE)
    truth = raster_truth_summary(simulator, spec.y_um, spec.x_um)
    assert result["n_frames"] == spec.ny * spec.nx == 117
    assert [f["index"] for f in result["frames"]] == list(range(117))
    assert result["superlattice"]["lattice"] == "bct"
    assert abs(result["superlattice"]["c_over_a"] - 1.22) <= 0.03
    # ~28 positions of the coarse raster lie in [110]-zone grains; the selection finds them.
    assert truth["n_zone_positions"] > 15
    assert abs(result["n_selected"] - truth["n_zone_positions"]) <= max(3, 0.2 * truth["n_zone_positions"])
    assert sum(f["selected"] for f in result["frames"]) == result["n_selected"]
    # every frame that reached the analysis was handed over by the callback at most seconds before
    assert len(live.frame_latency_s) == 117
    assert [name for name, _ in docs].count("event") == 117


def test_derived_run_in_tiled_names_the_raw_run_and_holds_arrays(live_raster, tiled):
    uid, live, _, _ = live_raster
    result = live.result
    (derived,) = derived_runs(tiled, uid)
    start, stop = derived.metadata["start"], derived.metadata["stop"]
    assert start["mc_beamline"]["raw_uid"] == uid
    assert start["mc_beamline"]["analysis"] == "xcca"
    assert stop["exit_status"] == "success"
    assert list(stop["analysis_errors"]) == []
    assert stop["num_events"] == {"ccf": 1, "frames": 117, "maps": 1}
    duid = start["uid"]

    delta = read_stream_array(tiled, duid, "delta_deg", stream="ccf")
    value = read_stream_array(tiled, duid, "value", stream="ccf")
    assert delta.shape == value.shape == (1, len(result["ccf"]["delta_deg"]))
    assert delta[0].tolist() == result["ccf"]["delta_deg"]
    assert [None if np.isnan(v) else float(v) for v in value[0]] == result["ccf"]["value"]

    index = read_stream_array(tiled, duid, "index", stream="frames")
    selected = read_stream_array(tiled, duid, "selected", stream="frames")
    psi = read_stream_array(tiled, duid, "psi_deg", stream="frames")
    assert index.tolist() == [f["index"] for f in result["frames"]]
    assert selected.astype(bool).tolist() == [f["selected"] for f in result["frames"]]
    assert [None if np.isnan(v) else float(v) for v in psi] == [f["psi_deg"] for f in result["frames"]]

    orientation = read_stream_array(tiled, duid, "orientation_deg", stream="maps")
    domain = read_stream_array(tiled, duid, "domain", stream="maps")
    assert orientation.shape == domain.shape == (1, COARSE["ny"], COARSE["nx"])
    assert np.issubdtype(domain.dtype, np.integer)
    # the map puts each frame's domain where the snake raster measured it
    for f in result["frames"]:
        row, col = live.analysis.position(f["index"])
        assert domain[0, row, col] == (-1 if f["domain"] is None else f["domain"])
        assert np.isfinite(orientation[0, row, col]) or not f["selected"]
    assert len({f["domain"] for f in result["frames"] if f["domain"] is not None}) == result["domains"]["count"]


def test_live_figure_is_written(live_raster):
    uid, live, figure_dir, _ = live_raster
    path = live.figure_path
    assert path is not None and path.parent == figure_dir and uid[:8] in path.name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


# ------------------------------------------------------------ 2. results / replay commands
def test_results_and_replay_commands_write_identical_json(live_raster, sim_ioc, tmp_path):
    """Both commands start their own embedded Tiled server on the data directory while this
    module's server keeps running on it: SQLite lets three servers read one catalog."""
    uid, live, _, _ = live_raster
    data_dir = str(sim_ioc.data_dir)
    unknown = str(uuid.uuid4())
    procs = {
        "results": run_cli("results", uid, "--data-dir", data_dir, "--out", "r.json", cwd=tmp_path),
        "replay": run_cli("replay", uid, "--data-dir", data_dir, "--out", "p.json", cwd=tmp_path),
        "unknown": run_cli("results", unknown, "--data-dir", data_dir, "--out", "u.json", cwd=tmp_path),
    }
    done = {name: (proc, *proc.communicate(timeout=300)) for name, proc in procs.items()}
    for name in ("results", "replay"):
        proc, out, err = done[name]
        assert proc.returncode == 0, f"{name}: {err}"
        assert "Traceback" not in err
    results_text = (tmp_path / "r.json").read_text()
    assert results_text == (tmp_path / "p.json").read_text()
    assert json.loads(results_text) == live.result

    proc, out, err = done["unknown"]
    assert proc.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and unknown in lines[0], err
    assert "Traceback" not in err
    assert not any(p.name.startswith(("u.json", ".u.json")) for p in tmp_path.iterdir())


# ----------------------------------------------------------------- 3. faults never abort
@pytest.fixture(scope="module")
def faulty_raster(beamline, tiled):
    """A 3 x 5 raster whose live analysis fails on frames 5 (RuntimeError) and 7 (ZeroDivisionError)."""
    from bluesky import RunEngine

    live_runs: list[LiveXcca] = []
    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    RE.subscribe(xcca_router(publish=tiled_writer(tiled), on_run=live_runs.append, analysis_factory=faulty_analysis))
    uid = run_raster(RE, beamline, ny=3, nx=5, step_um=1.6)
    (live,) = live_runs
    assert live.wait(ANALYSIS_WAIT_S)
    return uid, live, RE


def test_failing_frames_do_not_stop_the_scan(faulty_raster, tiled):
    uid, live, RE = faulty_raster
    assert RE.state == "idle"
    raw = tiled[uid]
    assert raw.metadata["stop"]["exit_status"] == "success"
    assert raw.metadata["stop"]["num_events"] == {"primary": 15}
    frames = read_stream_array(tiled, uid, "det_image")
    assert frames.shape == (15, *raw.metadata["start"]["mc_beamline"]["detector_shape"])
    assert all(frame.max() > 0 for frame in frames)  # every frame was written and is readable


def test_failing_frames_are_recorded_next_to_the_result(faulty_raster, tiled):
    uid, live, _ = faulty_raster
    expected = [(6, "RuntimeError: injected fault at frame 5"), (8, "ZeroDivisionError: injected fault at frame 7")]
    assert [(e["seq_num"], e["message"]) for e in live.errors] == expected
    (derived,) = derived_runs(tiled, uid)
    stop = derived.metadata["stop"]
    assert [(e["seq_num"], e["message"]) for e in stop["analysis_errors"]] == expected
    assert stop["exit_status"] == "fail" and "2 analysis error(s)" in stop["reason"]
    # the other 13 frames still make a result, and it is the one `results` exports
    result = stored_results(tiled, uid)
    assert result == live.result
    assert result["n_frames"] == 13
    assert [f["index"] for f in result["frames"]] == [i for i in range(15) if i not in (5, 7)]
    assert derived.metadata["stop"]["num_events"]["frames"] == 13


@pytest.fixture(scope="module")
def unbuildable_raster(beamline, tiled):
    """A 2 x 3 raster whose live analysis cannot even be built (its PONI does not parse)."""
    from bluesky import RunEngine

    live_runs: list[LiveXcca] = []
    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    RE.subscribe(xcca_router(publish=tiled_writer(tiled), on_run=live_runs.append, analysis_factory=unbuildable_analysis))
    uid = run_raster(RE, beamline, ny=2, nx=3, step_um=1.6)
    (live,) = live_runs
    assert live.wait(ANALYSIS_WAIT_S)
    return uid, live


def test_analysis_that_cannot_be_built_does_not_stop_the_scan(unbuildable_raster, tiled):
    uid, live = unbuildable_raster
    raw = tiled[uid]
    assert raw.metadata["stop"]["exit_status"] == "success"
    assert raw.metadata["stop"]["num_events"] == {"primary": 6}
    assert read_stream_array(tiled, uid, "det_image").shape[0] == 6
    assert live.analysis is None and live.result is None
    (error,) = live.errors
    assert error["where"] == "setup" and error["seq_num"] is None and error["message"]


def test_analysis_that_cannot_be_built_is_logged(beamline, tiled, caplog):
    from bluesky import RunEngine

    live_runs: list[LiveXcca] = []
    RE = RunEngine({})
    RE.subscribe(xcca_router(publish=None, on_run=live_runs.append, analysis_factory=unbuildable_analysis))
    with caplog.at_level(logging.ERROR, logger="mc_beamline.callbacks.live_xcca"):
        uid = run_raster(RE, beamline, ny=1, nx=2, step_um=1.6)
        assert live_runs[0].wait(ANALYSIS_WAIT_S)
    assert any(uid[:8] in rec.getMessage() and "setup" in rec.getMessage() for rec in caplog.records)


def test_analysis_that_cannot_be_built_is_recorded_in_tiled(unbuildable_raster, tiled):
    from mc_beamline.callbacks.replay import RunNotFoundError

    uid, live = unbuildable_raster
    (derived,) = derived_runs(tiled, uid)
    assert derived.metadata["stop"]["analysis_errors"][0]["where"] == "setup"
    with pytest.raises(RunNotFoundError, match="produced no result"):
        stored_results(tiled, uid)


# ------------------------------------------- 3b. frames read ahead (no IOC, no Tiled)
def test_frames_read_ahead_give_exactly_the_frame_by_frame_and_offline_result(tmp_path):
    """LiveXcca decompresses the next frames in threads while it analyses one (``prefetch``);
    the result equals, exactly, the one of reading each frame when it is analysed and the
    offline analysis of the file through h5py; frames whose chunk does not decode are
    recorded per frame, as an h5py read error is, and the others go on."""
    import h5py
    import hdf5plugin
    from event_model import compose_run

    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.devices.detector import DATASET, RESOURCE_SPEC
    from mc_beamline.physics.mesocrystal import (
        MesocrystalSimulator,
        seed_raster_positions,
    )

    sim = MesocrystalSimulator()
    ys, xs = seed_raster_positions()
    ny, nx = 6, 8
    rows = np.linspace(0, len(ys) - 1, ny).astype(int)
    cols = np.linspace(0, len(xs) - 1, nx).astype(int)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset(DATASET, shape=(ny * nx, *sim.geometry.shape), chunks=(1, *sim.geometry.shape),
                              dtype="<u4", **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        for k in range(ny * nx):
            row, col = divmod(k, nx)
            ds[k] = sim.frame(xs[cols[col]], ys[rows[row]], 0.01, noise_key=k)
    md = {"mc_beamline": {"experiment": "raster", "scan_shape": [ny, nx], "step_um": 1.6, "snake": False,
                          "image_key": "det_image", "detector_poni": sim.geometry.to_poni_text(),
                          "detector_mask": encode_mask(sim.mask)}}
    run = compose_run(metadata=md)
    resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(tmp_path), resource_path=path.name,
                                    resource_kwargs={"dataset": DATASET})
    descriptor = run.compose_descriptor(name="primary", data_keys={
        "det_image": {"source": "SIM", "dtype": "array", "shape": list(sim.geometry.shape), "external": "FILESTORE:"}})
    docs = [("descriptor", descriptor.descriptor_doc), ("resource", resource.resource_doc)]
    for k in range(ny * nx):
        datum = resource.compose_datum(datum_kwargs={"point_number": k})
        docs += [("datum", datum), ("event", descriptor.compose_event(data={"det_image": datum["datum_id"]},
                                                                       timestamps={"det_image": 0.0}))]
    docs.append(("stop", run.compose_stop()))

    def live_result(prefetch: int | None) -> LiveXcca:
        live = LiveXcca(run.start_doc, **({} if prefetch is None else {"prefetch": prefetch}))
        for name, doc in docs:
            live(name, doc)
        assert live.wait(ANALYSIS_WAIT_S)
        return live

    ahead, further, one_by_one = live_result(None), live_result(5), live_result(0)
    assert ahead.errors == [] and further.errors == [] and one_by_one.errors == []
    assert ahead.result["n_selected"] > 0
    assert ahead.result == one_by_one.result == further.result
    offline = analysis_for_start(run.start_doc)
    with h5py.File(path, "r") as f:
        for k in range(ny * nx):
            offline.add_frame(k, f[DATASET][k])
    from mc_beamline.io.result_json import json_ready

    assert ahead.result == json_ready(offline.result())

    with h5py.File(path, "r+") as f:  # frame 5 no longer decodes
        _, raw = f[DATASET].id.read_direct_chunk((5, 0, 0))
        f[DATASET].id.write_direct_chunk((5, 0, 0), raw[:12] + bytes([0xFF] * (len(raw) - 12)), 0)
    broken = live_result(None)
    assert [(e["where"], e["seq_num"]) for e in broken.errors] == [("frame", 6)]
    assert broken.result["n_frames"] == ny * nx - 1


# ------------------------------- 3c. corrections from the start metadata (no IOC, no Tiled)
def test_start_metadata_set_the_corrections_of_live_replay_and_offline_alike(tmp_path):
    """A run whose start metadata ask for a polarisation correction, no solid-angle
    correction and a hot-pixel search of the first 8 frames: the live analysis finds the
    planted hot pixel and gives exactly the offline result with the same options; without
    those keys, the defaults apply."""
    import h5py
    import hdf5plugin
    from event_model import compose_run

    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.devices.detector import DATASET, RESOURCE_SPEC
    from mc_beamline.io.result_json import json_ready
    from mc_beamline.physics.mesocrystal import MesocrystalSimulator, seed_raster_positions

    sim = MesocrystalSimulator()
    g = sim.geometry
    ys, xs = seed_raster_positions()
    n = 12
    hot = int(np.argmin(np.where(sim.mask, np.inf, (g.q_map - 18.3) ** 2 / 4e-4 + (g.phi_map - 30.0) ** 2)))
    frames = np.stack([sim.frame(xs[k], ys[2], noise_key=k) for k in range(n)])
    frames.reshape(n, -1)[:, hot] = 50_000
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, *g.shape), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    base = {"experiment": "raster", "scan_shape": [1, n], "step_um": 0.4, "snake": False, "image_key": "det_image",
            "detector_poni": g.to_poni_text(), "detector_mask": encode_mask(sim.mask)}
    options = {"polarization_factor": 0.99, "correct_solid_angle": False, "hot_pixel_frames": 8}
    run = compose_run(metadata={"mc_beamline": {**base, **options}})
    resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(tmp_path), resource_path=path.name,
                                    resource_kwargs={"dataset": DATASET})
    descriptor = run.compose_descriptor(name="primary", data_keys={
        "det_image": {"source": "SIM", "dtype": "array", "shape": list(g.shape), "external": "FILESTORE:"}})
    live = LiveXcca(run.start_doc)
    live("descriptor", descriptor.descriptor_doc)
    live("resource", resource.resource_doc)
    for k in range(n):
        datum = resource.compose_datum(datum_kwargs={"point_number": k})
        live("datum", datum)
        live("event", descriptor.compose_event(data={"det_image": datum["datum_id"]}, timestamps={"det_image": 0.0}))
    live("stop", run.compose_stop())
    assert live.wait(ANALYSIS_WAIT_S) and live.errors == []
    row, col = divmod(hot, g.shape[1])
    assert live.result["corrections"] == {"solid_angle": False, "polarization_factor": 0.99,
                                          "hot_pixels": {"count": 1, "pixels": [[row, col]]}}
    offline = XccaAnalysis(g, sim.mask, 1.72, 18.3, (1, n), 0.4, **options)  # what `mc-beamline xcca` builds
    offline.add_frames(list(range(n)), frames)
    assert live.result == json_ready(offline.result())
    plain = analysis_for_start(compose_run(metadata={"mc_beamline": base}).start_doc)
    assert (plain.settings.correct_solid_angle, plain.settings.polarization_factor,
            plain.settings.hot_pixel_frames) == (True, None, 32)


# ------------------------------------------------------- 4. the full seed raster vs truth
@pytest.mark.slow
def test_full_seed_raster_recovers_the_simulator_truth(tmp_path):
    """35 x 51 points at 0.4 µm (1785 frames) through `raster_demo` in its own process, with
    its own IOC and Tiled server."""
    assert_recovers_the_seed_truth(run_seed_demo(tmp_path / "data"))
