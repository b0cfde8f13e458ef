"""Assembly series on the real IOC with live phase and symmetry analysis stored in Tiled.

Against the real simulated cell (100x faster than real time) and the real Tiled server:

* gentle and rapid flocculant additions give the one-step and the two-step pathway, the
  lattice (fcc, hcp) and its constant within 1 % and phase fractions within 0.05 of the
  simulator's truth;
* the hexagonal → square attachment of a PbSe monolayer is found within one frame of the
  truth, the binary quasicrystal is reported 12-fold;
* the live result, the stored result and a replay from Tiled are equal, and the
  ``results``/``replay`` commands write identical JSON;
* the frames are in the camera's HDF5 file, not in Tiled's event arrays: events hold datum
  ids, Tiled serves the file's frames, and a replay reads the file (or, where it cannot,
  Tiled) and gives the live result;
* bad plan arguments are refused before anything moves, and a series that fails half-way
  stops the pump and keeps its frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest

from mc_beamline.callbacks.live_assembly import LiveAssembly, assembly_router
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.commands.demo import assembly_truth
from mc_beamline.physics.assembly_cell import MONOLAYER_TRANSITION_S
from mc_beamline.plans import PlanArgumentError, assembly_series
from mc_beamline.storage import DataDir, tiled_writer
from mc_beamline.storage.runs import plain, run_documents

FRAME_WALL_S = 0.25
"""Wall-clock seconds per frame: the cell runs interval_s / 0.25 times faster than real time."""
SERIES = {
    "one-step": dict(sample="colloid", flocculant_mm=50.0, addition_time_s=60.0, n_frames=15, interval_s=30.0),
    "two-step": dict(sample="colloid", flocculant_mm=110.0, addition_time_s=5.0, n_frames=15, interval_s=30.0),
    "hcp": dict(sample="colloid", lattice="hcp", flocculant_mm=110.0, addition_time_s=5.0, n_frames=10,
                interval_s=40.0),
    "monolayer": dict(sample="monolayer", flocculant_mm=20.0, addition_time_s=2.0, n_frames=25, interval_s=2.0),
    "binary": dict(sample="binary", flocculant_mm=20.0, addition_time_s=2.0, n_frames=6, interval_s=8.0),
}


@pytest.fixture(scope="module")
def cell(beamline):
    cell = beamline.assembly
    saved = cell.time_scale.get()
    cell.time_scale.set(0.01).wait(5)
    yield cell
    cell.time_scale.set(saved).wait(5)


@pytest.fixture(scope="module")
def emitted():
    """The documents the RunEngine emitted for each run of :func:`series`: run uid -> [(name, doc)]."""
    return defaultdict(list)


@pytest.fixture(scope="module")
def series(cell, tiled, emitted):
    """Every series of :data:`SERIES` run once: name -> (uid, live analysis, truth)."""
    from bluesky import RunEngine

    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    current = []

    def record(name, doc):
        if name == "start":
            current[:] = [doc["uid"]]
        emitted[current[0]].append((name, doc))

    RE.subscribe(record)
    runs: list[LiveAssembly] = []
    RE.subscribe(assembly_router(publish=tiled_writer(tiled), on_run=runs.append))
    out = {}
    for name, kwargs in SERIES.items():
        cell.time_scale.set(FRAME_WALL_S / kwargs["interval_s"]).wait(5)
        (uid,) = RE(assembly_series(cell, **kwargs))
        live = runs[-1]
        assert live.wait(120)
        md = tiled[uid].metadata["start"]["mc_beamline"]
        times = np.asarray(tiled[uid]["primary"][md["keys"]["elapsed"]].read(), dtype=float)
        out[name] = (uid, live, assembly_truth(kwargs["sample"], kwargs, times, md["colloid_volume_ul"],
                                               md["stock_mm"], kwargs.get("lattice", "fcc")), times)
    return out


@pytest.mark.parametrize("name, pathway, lattice", [("one-step", "one-step", "fcc"), ("two-step", "two-step", "fcc"),
                                                    ("hcp", "two-step", "hcp")])
def test_colloid_series_follow_the_truth(series, name, pathway, lattice):
    uid, live, truth, times = series[name]
    assert live.errors == []
    result = live.result
    assert times[0] < 0 and len(times) == 1 + SERIES[name]["n_frames"]
    assert result["series"]["pathway"] == pathway == truth["pathway"]
    assert result["crystal"]["lattice"] == lattice == truth["lattice"]
    assert result["crystal"]["a_nm"] == pytest.approx(truth["a_nm"], rel=0.01)
    fitted = np.array([result["series"][k] for k in ("dilute", "dense", "crystal")]).T
    expected = np.array([[f[k] for k in ("dilute", "dense", "crystal")] for f in truth["fractions"]])
    assert np.max(np.abs(fitted - expected)) < 0.05
    # powder rings of a 3D supercrystal have no angular order
    assert result["symmetry"] is None or result["symmetry"]["final_order"] == 0


def test_monolayer_transition_is_found_within_one_frame(series):
    uid, live, truth, times = series["monolayer"]
    assert live.errors == []
    symmetry = live.result["symmetry"]
    change = symmetry["change"]
    assert (change["from_order"], change["to_order"]) == (6, 4)
    # within one frame: the frames are as far apart as the plan could take them
    after = int(np.searchsorted(times, MONOLAYER_TRANSITION_S))
    frame_s = times[after] - times[after - 1]
    assert frame_s < 2.5 * SERIES["monolayer"]["interval_s"]
    assert abs(change["time_s"] - MONOLAYER_TRANSITION_S) <= frame_s
    assert symmetry["order"][0] == 6 and symmetry["final_order"] == 4
    assert live.result["series"] is None


def test_binary_quasicrystal_is_twelve_fold(series):
    uid, live, truth, times = series["binary"]
    assert live.errors == []
    symmetry = live.result["symmetry"]
    assert symmetry["final_order"] == 12 == truth["order"]
    assert symmetry["c12"][-1] > 10 * max(symmetry["c4"][-1], symmetry["c6"][-1])


def test_live_result_equals_stored_result_and_replay(series, tiled):
    for name in ("two-step", "monolayer"):
        uid, live, _, _ = series[name]
        stored = stored_results(tiled, uid)
        assert stored == live.result
        assert replay(tiled, uid) == stored


def test_results_and_replay_commands_write_identical_json(series, sim_ioc, tmp_path):
    uid, live, _, _ = series["binary"]
    outputs = {}
    for command in ("results", "replay"):
        proc = subprocess.run([sys.executable, "-m", "mc_beamline.cli", command, uid, "--data-dir",
                               str(sim_ioc.data_dir), "--out", f"{command}.json"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs[command] = (tmp_path / f"{command}.json").read_text()
    assert outputs["results"] == outputs["replay"]
    result = json.loads(outputs["results"])
    assert result == live.result
    assert set(result) >= {"crystal", "fluid", "size_distribution", "mesophase", "series", "symmetry"}


@pytest.mark.parametrize("kwargs, words", [
    (dict(sample="gel"), "sample must be one of"),
    (dict(lattice="diamond"), "lattice must be one of"),
    (dict(flocculant_mm=600.0), "cannot be reached with a 500 mM stock"),
    (dict(flocculant_mm=110.0, addition_time_s=0.01), "outside the pump's"),
    (dict(exposure_s=20.0, interval_s=10.0), "frames would overlap"),
    (dict(n_frames=0), "n_frames must be at least 1"),
    (dict(addition_time_s=float("nan")), "addition_time_s must be finite"),
])
def test_bad_arguments_are_refused_before_anything_moves(cell, kwargs, words):
    from bluesky import RunEngine

    RE = RunEngine({})
    before = (cell.floc.dispensed.get(), cell.sample.get())
    documents = []
    with pytest.raises(PlanArgumentError, match=words):
        RE(assembly_series(cell, **kwargs), lambda name, doc: documents.append(name))
    assert documents == []
    assert (cell.floc.dispensed.get(), cell.sample.get()) == before


def test_a_failing_series_stops_the_pump_and_keeps_its_frames(cell, tiled):
    from bluesky import RunEngine

    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    uids = []

    def fail_on_third_event(name, doc):
        if name == "start":
            uids.append(doc["uid"])
        if name == "event" and doc["seq_num"] == 3:
            raise RuntimeError("analysis host lost")

    RE.subscribe(fail_on_third_event)
    with pytest.raises(RuntimeError, match="analysis host lost"):
        RE(assembly_series(cell, sample="colloid", flocculant_mm=50.0, addition_time_s=900.0, n_frames=10,
                           interval_s=30.0))
    deadline = time.monotonic() + 5.0
    while cell.floc.dispensing.get() and time.monotonic() < deadline:  # the readback's monitor follows
        time.sleep(0.05)
    assert cell.floc.dispensing.get() == 0
    assert cell.floc.dispensed.get() < cell.floc.volume.get()
    assert cell.status_message.get().startswith("Addition ended")
    run = tiled[uids[0]]
    assert run.metadata["stop"]["exit_status"] == "fail"
    assert run.metadata["stop"]["num_events"]["primary"] >= 2


def test_frames_are_in_the_camera_file_and_tiled_serves_them(series, tiled, emitted, sim_ioc):
    uid, live, _, times = series["two-step"]
    key = tiled[uid].metadata["start"]["mc_beamline"]["keys"]["image"]
    docs = emitted[uid]
    (descriptor,) = [doc for name, doc in docs if name == "descriptor"]
    data_key = descriptor["data_keys"][key]
    assert data_key["external"] == "FILESTORE:" and data_key["shape"] == [512, 512]
    assert data_key["dtype_numpy"] == "<i4"
    # live: each event's image is a datum id, the datum names the frame's index in one file
    events = [doc for name, doc in docs if name == "event"]
    datums = {doc["datum_id"]: doc for name, doc in docs if name == "datum"}
    (resource,) = [doc for name, doc in docs if name == "resource"]
    assert len(events) == len(times) == len(datums)
    for event in events:
        datum = datums[event["data"][key]]
        assert datum["resource"] == resource["uid"] and datum["datum_kwargs"]["point_number"] == event["seq_num"] - 1
    path = Path(resource["root"]) / resource["resource_path"]
    assert path.is_relative_to(DataDir(sim_ioc.data_dir).detector)
    with h5py.File(path, "r", swmr=True) as f:
        frames = f["/entry/data/data"][()]
        elapsed = f["/entry/instrument/NDAttributes/Elapsed"][()]
    assert frames.shape == (len(times), 512, 512) and frames.dtype == np.dtype("<i4")
    np.testing.assert_array_equal(elapsed, times)  # frame i is the frame of event i + 1
    # stored: Tiled serves the image from the file (external data source), not from its own storage
    node = tiled[uid]["primary"][key]
    (source,) = node.data_sources()
    assert source.management == "external" and source.mimetype == "application/x-hdf5"
    assert [Path(urlparse(asset.data_uri).path) for asset in source.assets] == [path]
    served = np.asarray(node.read())
    assert served.dtype == frames.dtype
    np.testing.assert_array_equal(served, frames)
    np.testing.assert_array_equal(np.asarray(node[3]), frames[3])
    (curve_source,) = tiled[uid]["primary"][tiled[uid].metadata["start"]["mc_beamline"]["keys"]["intensity"]
                                           ].data_sources()
    assert curve_source.management != "external"  # the curves stay event data


def _replay_documents(start: dict, docs, array_fallback) -> LiveAssembly:
    live = LiveAssembly(start, array_fallback=array_fallback)
    for name, doc in docs:
        if name != "start":
            live(name, doc)
    assert live.wait(120)
    return live


def test_replay_reads_the_file_and_falls_back_to_tiled_where_it_cannot(series, tiled):
    uid, live, _, times = series["binary"]
    start = plain(tiled[uid].metadata["start"])
    key = start["mc_beamline"]["keys"]["image"]
    asked = []

    def from_tiled(field, seq_num):
        asked.append((field, seq_num))
        return np.asarray(tiled[uid]["primary"][field][seq_num - 1])

    docs = list(run_documents(tiled, uid))
    assert any(name == "stream_resource" and doc["data_key"] == key for name, doc in docs)
    from_file = _replay_documents(start, docs, from_tiled)
    assert from_file.errors == [] and asked == []  # every frame came from the camera's file
    assert from_file.result == live.result
    # replayed where the file's path does not exist (another host): Tiled serves every frame
    elsewhere = [(name, {**doc, "uri": "file://localhost/nonexistent" + urlparse(doc["uri"]).path})
                 if name == "stream_resource" else (name, doc) for name, doc in docs]
    from_tiled_only = _replay_documents(start, elsewhere, from_tiled)
    assert from_tiled_only.errors == []
    assert asked == [(key, seq_num) for seq_num in range(1, len(times) + 1)]
    assert from_tiled_only.result == live.result
