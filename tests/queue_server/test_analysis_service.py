"""The analysis service with the real queue, IOC, Redis, Tiled and document stream.

Every raw run the queue stores gets exactly one derived run, without any `reprocess`, and
what it holds (`results`) equals a replay of the raw run; a run stored while the service
was stopped, or while it was killed mid-run, is analysed when the service starts again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from bluesky_queueserver_api import BPlan

from mc_beamline.callbacks.experiments import experiment_of
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.queue_server.manager import read_state, start_analysis_service
from mc_beamline.queue_server.processes import alive as _alive
from mc_beamline.storage import DataDir
from mc_beamline.storage.runs import derived_runs, plain

from .test_queue import QUICK, queue_cli, run_queue, running_queue

pytestmark = pytest.mark.slow

DERIVED_WAIT_S = 180.0
"""Longest wait for a derived run (s): the analysis of a 12-frame raster takes a few seconds."""


@pytest.fixture(scope="module")
def queue(sim_ioc):
    """The queue with its analysis service (a short catch-up sweep) on the session IOC's data directory."""
    data_dir = Path(sim_ioc.data_dir)
    with running_queue(data_dir) as api:
        yield api, data_dir


@pytest.fixture(scope="module")
def client(queue):
    from tiled.client import from_uri

    _, data_dir = queue
    c = from_uri(read_state(data_dir)["tiled_uri"], api_key=DataDir(data_dir).api_key(), trust_env=False)
    with c.context:
        yield c


def derived_of(client, uid: str) -> list:
    start = plain(client[uid].metadata["start"])
    return derived_runs(client, uid, experiment_of(start).analysis_name)


def wait_for_derived(client, uid: str, timeout: float = DERIVED_WAIT_S) -> list:
    deadline = time.monotonic() + timeout
    while not (found := derived_of(client, uid)):
        assert time.monotonic() < deadline, f"run {uid} has no derived run after {timeout:g} s"
        time.sleep(0.5)
    return found


def assert_results_equal_replay(client, uid: str) -> None:
    (derived,) = wait_for_derived(client, uid)
    assert derived.metadata["stop"]["analysis_errors"] == []
    assert stored_results(client, uid) == replay(client, uid)


def service(data_dir: Path) -> dict:
    return read_state(data_dir)["analysis"]


def test_queued_rasters_flow_adaptive_flow_and_assembly_series_each_get_their_derived_run(queue, client, reactor):
    api, data_dir = queue
    assert _alive(service(data_dir)["pid"])
    items = [BPlan("nanodiffraction_raster", "det", "stage", **QUICK),
             BPlan("flow_series", "reactor", [280.0], [260.0], [4.5, 14.0]),
             BPlan("assembly_series", "assembly", sample="binary", flocculant_mm=20.0, addition_time_s=1.0,
                   n_frames=3, interval_s=1.0, exposure_s=0.1),
             BPlan("adaptive_flow_series", "reactor", max_conditions=2)]
    history = run_queue(api, items)
    assert [h["result"]["exit_status"] for h in history] == ["completed"] * 4
    for entry in history:
        assert_results_equal_replay(client, entry["result"]["run_uids"][0])
    decisions = stored_results(client, history[3]["result"]["run_uids"][0])["window_search"]["decisions"]
    assert [d["temperature_c"] for d in decisions] == [270.0, 230.0]  # re-derived by the service from the spectra
    status = queue_cli("status", "--data-dir", str(data_dir))
    assert "analysis: running" in status.stdout and "proxy: running" in status.stdout, status.stdout


def test_a_run_stored_while_the_service_is_stopped_is_analysed_when_it_starts(queue, client):
    api, data_dir = queue
    pid = service(data_dir)["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (entry,) = run_queue(api, [BPlan("nanodiffraction_raster", "det", "stage", center_x_um=2.0, **QUICK)])
    uid = entry["result"]["run_uids"][0]
    assert client[uid].metadata["stop"]["exit_status"] == "success"
    assert derived_of(client, uid) == []  # nobody analysed it
    start_analysis_service(data_dir, read_state(data_dir))
    assert_results_equal_replay(client, uid)


def test_a_run_whose_analysis_was_killed_is_analysed_after_the_restart(queue, client):
    api, data_dir = queue
    wait_for_idle_service(client, data_dir)
    item = BPlan("nanodiffraction_raster", "det", "stage", ny=6, nx=8, step_um=0.4, exposure_s=0.05)
    assert api.item_add(item)["success"]
    before = set(client)
    assert api.queue_start()["success"]
    deadline = time.monotonic() + 60
    while not (new := [key for key in set(client) - before if "stop" not in client[key].metadata]):
        assert time.monotonic() < deadline, "the raster did not start"
        time.sleep(0.1)
    (uid,) = new
    os.kill(service(data_dir)["pid"], signal.SIGKILL)  # mid-run: the live analysis is lost
    api.wait_for_idle(timeout=180)
    assert client[uid].metadata["stop"]["exit_status"] == "success"
    start_analysis_service(data_dir, read_state(data_dir))
    assert_results_equal_replay(client, uid)
    assert len(derived_of(client, uid)) == 1


def wait_for_idle_service(client, data_dir: Path) -> None:
    """Every raw run stored so far has its derived run (the service has nothing left to catch up)."""
    from mc_beamline.services.analysis_service import AnalysisService

    deadline = time.monotonic() + DERIVED_WAIT_S
    while AnalysisService(client).missing():
        assert time.monotonic() < deadline, "the analysis service did not catch up"
        time.sleep(0.5)
