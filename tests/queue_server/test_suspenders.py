"""Ring-current suspender of the startup session against the real IOC and Tiled.

A loss of ring current suspends the raster and the scan resumes when the current is back;
every raster point is measured and stored exactly once, and the frame Tiled serves for
each event is the one its datum names, also when the current falls while the detector is
exposing (the dangerous moment: a plain bluesky suspender would replay the trigger there
and the file would hold one frame more than the run has events).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mc_beamline.plans import RasterSpec
from mc_beamline.queue_server.plans import nanodiffraction_raster
from mc_beamline.queue_server.session import StartupConfig, start_session
from mc_beamline.storage import TiledService, read_stream_array

LOW_MA, RESUME_MA, SLEEP_S = 50.0, 90.0, 0.3


@pytest.fixture(scope="module")
def session(sim_ioc):
    """A startup session (suspender installed, runs to Tiled) on the session IOC."""
    with TiledService(sim_ioc.data_dir) as tiled:
        config = StartupConfig(prefix=sim_ioc.prefix, data_dir=Path(sim_ioc.data_dir), tiled_uri=tiled.uri,
                               tiled_api_key=tiled.api_key, ring_current_min_ma=LOW_MA,
                               ring_current_resume_ma=RESUME_MA, suspend_sleep_s=SLEEP_S, shutter_suspender=True)
        s = start_session(config)
        det = s.beamline.detector
        det.time_scale.set(8).wait(5)  # 0.01 s exposures take 80 ms: the current falls during one
        try:
            yield s
        finally:
            det.time_scale.set(1).wait(5)
            s.beamline.beam.ring_current.put(100.0)
            s.close()


def beam_loss(beam, after_s: float, duration_s: float, log: dict) -> threading.Thread:
    def run():
        time.sleep(after_s)
        log["lost"] = time.time()
        beam.ring_current.put(10.0)
        time.sleep(duration_s)
        log["back"] = time.time()
        beam.ring_current.put(100.0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def collect(RE):
    docs: list[tuple[str, dict]] = []
    token = RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs, token


def test_current_loss_during_an_exposure_suspends_and_every_point_is_stored_once(session):
    RE, bl = session.RE, session.beamline
    docs, token = collect(RE)
    log: dict = {}
    triggers = {"n": 0}

    def hook(msg):  # lose the beam while the 5th frame is being exposed
        if msg.command == "trigger" and msg.obj is bl.detector:
            triggers["n"] += 1
            if triggers["n"] == 5:
                beam_loss(bl.beam, 0.02, 1.0, log)

    RE.msg_hook = hook
    try:
        (uid,) = RE(nanodiffraction_raster(bl.detector, bl.stage, ny=3, nx=4, exposure_s=0.01))
    finally:
        RE.msg_hook = None
        RE.unsubscribe(token)

    events = [d for n, d in docs if n == "event" and d["descriptor"] == _descriptor(docs, "primary")]
    assert [e["seq_num"] for e in events] == list(range(1, 13))
    spec = RasterSpec(3, 4, 0.4)
    expected = [(y, x) for row, y in enumerate(spec.y_um) for x in (spec.x_um if row % 2 == 0 else spec.x_um[::-1])]
    np.testing.assert_allclose([(e["data"]["stage_y"], e["data"]["stage_x"]) for e in events], expected, atol=1e-9)
    # the 5th point was exposed when the current fell and was stored once, after the fall;
    # the 6th waited until the current had been back for the suspender's sleep
    assert events[4]["time"] > log["lost"]
    assert events[5]["time"] >= log["back"] + SLEEP_S
    interruptions = [d["data"]["interruption"] for d in _stream_events(docs, "interruptions")]
    assert len(interruptions) == 1 and "fell below 50" in interruptions[0]  # the run says it was suspended

    # exactly one frame per point in the file, and Tiled serves each event its own frame
    (resource,) = [d for n, d in docs if n == "resource"]
    datums = {d["datum_id"]: d["datum_kwargs"]["point_number"] for n, d in docs if n == "datum"}
    indices = [datums[e["data"]["det_image"]] for e in events]
    assert indices == list(range(12))
    with h5py.File(Path(resource["root"]) / resource["resource_path"], "r", swmr=True) as f:
        in_file = f["/entry/data/data"][:]
    assert in_file.shape[0] == 12
    stored = read_stream_array(session.client, uid, "det_image")
    for event_index, frame_index in enumerate(indices):
        assert np.array_equal(stored[event_index], in_file[frame_index])
    run = session.client[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.metadata["stop"]["num_events"]["primary"] == 12


def test_a_scan_started_without_beam_waits_for_it(session):
    RE, bl = session.RE, session.beamline
    bl.beam.ring_current.put(10.0)
    time.sleep(0.2)  # the monitor update reaches the suspender
    docs, token = collect(RE)
    log: dict = {}
    beam_loss_thread = threading.Thread(target=lambda: (time.sleep(1.0), log.update(back=time.time()),
                                                        bl.beam.ring_current.put(100.0)), daemon=True)
    beam_loss_thread.start()
    try:
        (uid,) = RE(nanodiffraction_raster(bl.detector, bl.stage, ny=2, nx=2, exposure_s=0.01))
    finally:
        RE.unsubscribe(token)
        bl.beam.ring_current.put(100.0)
    first_event = next(d for n, d in docs if n == "event")
    assert first_event["time"] >= log["back"]
    assert sum(1 for d in docs if d[0] == "event" and d[1]["descriptor"] == _descriptor(docs, "primary")) == 4
    assert session.client[uid].metadata["stop"]["exit_status"] == "success"


def test_the_suspender_follows_the_configured_thresholds(session):
    current, shutter = session.suspenders
    assert current._suspend_thresh == LOW_MA and current._resume_thresh == RESUME_MA
    assert shutter._sig is session.beamline.beam.shutter
    assert set(session.suspenders) <= set(session.RE.suspenders)


def test_a_scan_started_with_the_shutter_closed_waits_until_it_opens(session):
    RE, bl = session.RE, session.beamline
    bl.beam.shutter.set(0).wait(5)
    time.sleep(0.2)  # the monitor update reaches the suspender
    docs, token = collect(RE)
    log: dict = {}
    opener = threading.Thread(target=lambda: (time.sleep(1.0), log.update(open=time.time()),
                                              bl.beam.shutter.set(1).wait(5)), daemon=True)
    opener.start()
    try:
        (uid,) = RE(nanodiffraction_raster(bl.detector, bl.stage, ny=2, nx=2, exposure_s=0.01))
    finally:
        RE.unsubscribe(token)
        bl.beam.shutter.set(1).wait(5)
    primary = _stream_events(docs, "primary")
    assert primary[0]["time"] >= log["open"] + SLEEP_S
    assert [e["seq_num"] for e in primary] == [1, 2, 3, 4]
    assert session.client[uid].metadata["stop"]["exit_status"] == "success"


def test_every_run_records_a_baseline_and_the_ring_current_of_every_point(session):
    RE, bl = session.RE, session.beamline
    docs, token = collect(RE)
    try:
        (uid,) = RE(nanodiffraction_raster(bl.detector, bl.stage, ny=2, nx=2, exposure_s=0.01))
    finally:
        RE.unsubscribe(token)
    primary = _stream_events(docs, "primary")
    assert [e["data"]["beam_ring_current"] for e in primary] == [100.0] * 4
    baseline = _stream_events(docs, "baseline")
    assert len(baseline) == 2  # at the start and at the end of the run
    for key in ("beam_ring_current", "beam_energy", "beam_shutter", "stage_z", "reactor_nucleation",
                "reactor_growth", "reactor_pumps_reaction_time", "assembly_concentration"):
        assert key in baseline[0]["data"], key
    assert baseline[0]["data"]["beam_shutter"] == 1
    assert set(session.client[uid]) >= {"primary", "baseline"}


def _descriptor(docs, stream):
    return next(d["uid"] for n, d in docs if n == "descriptor" and d.get("name") == stream)


def _stream_events(docs, stream):
    uid = next((d["uid"] for n, d in docs if n == "descriptor" and d.get("name") == stream), None)
    return [d for n, d in docs if n == "event" and d["descriptor"] == uid]


def test_a_run_that_would_fill_the_data_directory_is_refused_before_it_opens(session, monkeypatch):
    """The session's disk-space guard: with more free space demanded than the disk has, the
    raster fails with one sentence naming the directory before its run opens (no documents,
    nothing measured), and the session runs the next raster once space is back."""
    import shutil

    free_mib = shutil.disk_usage(session.config.data_dir).free / 2**20
    monkeypatch.setenv("MC_BEAMLINE_MIN_FREE_MIB", str(free_mib * 4 + 1024))
    RE, bl = session.RE, session.beamline
    docs, token = collect(RE)
    try:
        with pytest.raises(Exception, match="no space left in"):
            RE(nanodiffraction_raster(bl.detector, bl.stage, ny=2, nx=2, exposure_s=0.01))
        assert docs == []
        monkeypatch.delenv("MC_BEAMLINE_MIN_FREE_MIB")
        (uid,) = RE(nanodiffraction_raster(bl.detector, bl.stage, ny=1, nx=2, exposure_s=0.01))
    finally:
        RE.unsubscribe(token)
    assert len(_stream_events(docs, "primary")) == 2
