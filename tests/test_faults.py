"""Faults during an overnight queue, against the real IOC, Tiled and Redis.

The queue here runs with an IOC, a Tiled server and a Redis server of its own (the test
kills and restarts them): ``queue start --tiled URI --redis HOST:PORT`` (the path of an
existing Tiled server and of a system redis-server).

* IOC killed mid-scan: the run ends with exit_status "fail", every frame acquired so far
  is readable in Tiled, and the queue goes on with the next item.
* Tiled restarted or down: runs are kept in the local backup and sent when Tiled answers
  again; no run is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from bluesky_queueserver_api import BPlan

from mc_beamline.queue_server.access import manager_api
from mc_beamline.queue_server.redis import find_redis_server, start_redis
from mc_beamline.sim_iocs.process import IocProcess
from mc_beamline.storage import DataDir, TiledService, connect, read_stream_array
from tests.demo_process import demo_after_frames, demo_when, enough_frames, frames_in
from tests.queue_server.test_queue import QUICK, free_tcp_port, queue_cli

RESEND_WAIT_S = 60.0


class Beamline:
    """The parts the faults are injected into: IOC, Tiled server, the queue's data directory."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.ioc = IocProcess(prefix="MC:", data_dir=data_dir).start()
        self.tiled_port = free_tcp_port()
        self.tiled = TiledService(data_dir, port=self.tiled_port).start()

    def kill_ioc(self) -> None:
        os.kill(self.ioc.proc.pid, signal.SIGKILL)
        self.ioc.proc.wait()
        port = self.ioc.port
        self.ioc.stop()
        self.ioc = IocProcess(prefix="MC:", data_dir=self.data_dir, port=port).start()

    def stop_tiled(self) -> None:
        self.tiled.stop()

    def start_tiled(self) -> None:
        self.tiled = TiledService(self.data_dir, port=self.tiled_port).start()

    def client(self):
        return self.tiled.client()

    def close(self) -> None:
        self.tiled.stop()
        self.ioc.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """(api, beamline): a queue started with an existing Tiled server and an existing Redis."""
    data_dir = tmp_path_factory.mktemp("faults")
    beamline = Beamline(data_dir)
    redis_proc, redis_port = start_redis(data_dir / "system-redis", DataDir(data_dir).redis_password(),
                                         executable=shutil.which("redis-server") or find_redis_server())
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    env = dict(os.environ, **beamline.ioc.client_env, MC_BEAMLINE_SUSPEND_SLEEP_S="0.2",
               MC_BEAMLINE_BACKUP_RETRY_S="1")
    api = None
    try:
        proc = queue_cli("start", "--data-dir", str(data_dir), "--tiled", beamline.tiled.uri,
                         "--redis", f"127.0.0.1:{redis_port}", "--zmq-control-addr", control,
                         "--zmq-info-addr", f"tcp://127.0.0.1:{free_tcp_port()}", env=env)
        assert proc.returncode == 0, proc.stderr
        api = manager_api(data_dir, control, request_fail_exceptions=False)
        yield api, beamline
    finally:
        if api is not None:
            api.close()
        queue_cli("stop", "--data-dir", str(data_dir), "--force")
        beamline.close()
        redis_proc.terminate()
        redis_proc.wait(10)


def add(api, *items):
    uids = []
    for item in items:
        response = api.item_add(item)
        assert response["success"], response["msg"]
        uids.append(response["item"]["item_uid"])
    return uids


def history_of(api, item_uids):
    by_uid = {h["item_uid"]: h for h in api.history_get()["items"]}
    return [by_uid[uid] for uid in item_uids]


def wait_for_running(api, item_uid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while api.status(reload=True)["running_item_uid"] != item_uid:
        assert time.monotonic() < deadline, "the item did not start"
        time.sleep(0.05)


def wait_for_frames(directory: Path, n: int, timeout: float = 60.0) -> None:
    """Wait until the detector files below ``directory`` hold at least ``n`` frames together."""
    deadline = time.monotonic() + timeout
    while True:
        total = 0
        for path in directory.rglob("*.h5"):
            try:
                with h5py.File(path, "r", swmr=True) as f:
                    total += f["/entry/data/data"].shape[0]
            except (OSError, KeyError):  # a file being created: counted on the next look
                pass
        if total >= n:
            return
        assert time.monotonic() < deadline, f"only {total} of {n} frames written after {timeout:g} s"
        time.sleep(0.05)


def wait_until_stored(client, run_uids, timeout=RESEND_WAIT_S):
    """Wait until every run is in Tiled with its stop document (resent from the backup if need be)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [uid for uid in run_uids if uid not in client or client[uid].metadata.get("stop") is None]
        if not missing:
            return
        assert time.monotonic() < deadline, f"runs not in Tiled after {timeout:g} s: {missing}"
        time.sleep(0.5)


def test_ioc_killed_mid_scan_fails_that_run_keeps_its_frames_and_the_queue_goes_on(faulty):
    api, beamline = faulty
    slow = BPlan("nanodiffraction_raster", "det", "stage", ny=3, nx=4, exposure_s=0.3)
    items = add(api, BPlan("nanodiffraction_raster", "det", "stage", **QUICK), slow,
                BPlan("nanodiffraction_raster", "det", "stage", **QUICK))
    assert api.queue_start()["success"]
    wait_for_running(api, items[1])
    # a few points into the slow raster: the first raster's 12 frames and at least 2 of its own are written
    wait_for_frames(beamline.data_dir / "detector", 12 + 2)
    beamline.kill_ioc()
    api.wait_for_idle(timeout=180)

    first, killed, after = history_of(api, items)
    assert first["result"]["exit_status"] == "completed", first["result"]
    assert killed["result"]["exit_status"] == "failed", killed["result"]
    assert after["result"]["exit_status"] == "completed", after["result"]

    client = beamline.client()
    with client.context:
        (uid,) = killed["result"]["run_uids"]
        run = client[uid]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "fail"
        n = stop["num_events"]["primary"]
        assert 1 <= n < 12
        frames = read_stream_array(client, uid, "det_image")
        assert frames.shape == (n, 1065, 1030)
        (h5file,) = [p for p in beamline.data_dir.joinpath("detector").rglob("*.h5")
                     if _file_of_run(client, uid) == p]
        with h5py.File(h5file, "r", swmr=True) as f:
            written = f["/entry/data/data"][:n]
        assert np.array_equal(frames, written)
        (after_uid,) = after["result"]["run_uids"]
        assert client[after_uid].metadata["stop"]["exit_status"] == "success"
        assert read_stream_array(client, after_uid, "det_image").shape == (12, 1065, 1030)


def test_tiled_restarted_during_the_queue_loses_no_run(faulty):
    api, beamline = faulty
    items = add(api, *[BPlan("nanodiffraction_raster", "det", "stage", **QUICK) for _ in range(4)])
    assert api.queue_start()["success"]
    wait_for_running(api, items[1])
    beamline.stop_tiled()
    time.sleep(3.0)
    beamline.start_tiled()
    api.wait_for_idle(timeout=180)
    entries = history_of(api, items)
    assert [e["result"]["exit_status"] for e in entries] == ["completed"] * 4, [e["result"] for e in entries]
    run_uids = [e["result"]["run_uids"][0] for e in entries]
    client = beamline.client()
    with client.context:
        wait_until_stored(client, run_uids)
        for uid in run_uids:
            assert client[uid].metadata["stop"]["exit_status"] == "success"
            assert read_stream_array(client, uid, "det_image").shape == (12, 1065, 1030)


def test_runs_while_tiled_is_down_are_kept_and_sent_when_it_returns(faulty):
    api, beamline = faulty
    backup = beamline.data_dir / "backup" / "documents"
    beamline.stop_tiled()
    try:
        items = add(api, *[BPlan("nanodiffraction_raster", "det", "stage", **QUICK) for _ in range(2)])
        assert api.queue_start()["success"]
        api.wait_for_idle(timeout=180)
        entries = history_of(api, items)
        assert [e["result"]["exit_status"] for e in entries] == ["completed"] * 2
        run_uids = [e["result"]["run_uids"][0] for e in entries]
        assert {p.stem for p in backup.glob("*.jsonl")} >= set(run_uids)
    finally:
        beamline.start_tiled()
    client = beamline.client()
    with client.context:
        wait_until_stored(client, run_uids)
        for uid in run_uids:
            assert client[uid].metadata["stop"]["exit_status"] == "success"
            assert client[uid].metadata["stop"]["num_events"]["primary"] == 12
            assert read_stream_array(client, uid, "det_image").shape == (12, 1065, 1030)
    deadline = time.monotonic() + 10
    while set(run_uids) & {p.stem for p in backup.glob("*.jsonl")} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(run_uids) & {p.stem for p in backup.glob("*.jsonl")}
    assert {p.stem for p in (backup / "sent").glob("*.jsonl")} >= set(run_uids)


def _file_of_run(client, uid) -> Path:
    """The detector file of a stored run, from its documents."""
    for name, doc in client[uid].documents():
        if name == "stream_resource":
            return Path(doc["uri"].removeprefix("file://localhost").removeprefix("file://"))
    raise AssertionError("no stream resource")


# ------------------------------------------------------------------ a dead IOC under the demo
def kill_the_ioc_and_wait(demo) -> str:
    """``kill -9`` the demo's IOC; the demo must end within the bound with exit 2 and one
    sentence naming the failed run and its stored events. Returns the run's uid."""
    import psutil

    (ioc,) = [p for p in psutil.Process(demo.pid).children() if "mc_beamline.sim_iocs" in " ".join(p.cmdline())]
    ioc.kill()
    _, stderr = demo.communicate(timeout=120)  # the bound: a demo that hangs fails here
    assert demo.returncode == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("mc-beamline demo: The beamline IOC stopped answering; run "), stderr
    assert " ended with exit_status fail and its " in last, stderr
    assert len(stderr.strip().splitlines()) <= 10, stderr
    return last.split("run ", 1)[1].split()[0]


def after_line(text: str, delay_s: float):
    """A ``ready`` for :func:`demo_when`: ``delay_s`` seconds after the demo printed ``text``."""
    seen: list[float] = []

    def ready(stdout: Path) -> bool:
        if not seen and text in stdout.read_text():
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay_s

    return ready


def assert_events_are_the_file_frames(data_dir: Path, uid: str, image_key: str, at_least: int) -> None:
    """The failed run's events hold the frames of its (closed, plainly readable) file, one
    event each; the frame being written when the IOC died may have no event (its trigger
    never completed)."""
    frames = frames_in(data_dir / "detector", swmr=False)  # no SWMR: the file was closed after the IOC died
    assert frames >= at_least
    with connect(data_dir=data_dir) as client:
        stop = client[uid].metadata["stop"]
        assert stop["exit_status"] == "fail"
        events = stop["num_events"].get("primary", 0)
        assert frames - 1 <= events <= frames
        stored = read_stream_array(client, uid, image_key)
    (h5file,) = list((data_dir / "detector").rglob("*.h5"))
    with h5py.File(h5file, "r") as f:
        assert np.array_equal(stored, f["/entry/data/data"][:events])


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_frames", [3, 60])
def test_ioc_killed_mid_demo_raster_fails_the_run_and_keeps_every_frame(tmp_path, kill_after_frames):
    """``kill -9`` of the IOC after some frames of ``demo --quick``: one sentence, the run's
    stop document says fail, and Tiled holds the frames of the file."""
    data_dir = tmp_path / "mc-data"
    with demo_after_frames(data_dir, kill_after_frames) as demo:
        uid = kill_the_ioc_and_wait(demo)
    assert_events_are_the_file_frames(data_dir, uid, "det_image", kill_after_frames)


@pytest.mark.slow
def test_ioc_killed_mid_assembly_series_fails_the_run_and_keeps_every_frame(tmp_path):
    """The same for the first series of ``demo assembly --quick``, after 3 camera frames."""
    data_dir = tmp_path / "mc-data"
    with demo_when(data_dir, enough_frames(data_dir, 3), args=("assembly",)) as demo:
        uid = kill_the_ioc_and_wait(demo)
    assert_events_are_the_file_frames(data_dir, uid, "assembly_saxs_image", 3)


@pytest.mark.slow
def test_ioc_killed_mid_flow_series_fails_the_run_and_keeps_its_conditions(tmp_path):
    """The same for ``demo flow --quick`` (4 conditions, ~2 s each) 0.5 s after its run
    started: the run fails, and every condition it recorded is in Tiled with its spectrum."""
    data_dir = tmp_path / "mc-data"
    with demo_when(data_dir, after_line(" started (scan id ", 0.5), args=("flow",)) as demo:
        uid = kill_the_ioc_and_wait(demo)
    with connect(data_dir=data_dir) as client:
        run = client[uid]
        stop = run.metadata["stop"]
        assert stop["exit_status"] == "fail"
        events = stop["num_events"].get("primary", 0)
        assert events < 4
        if events:
            key = run.metadata["start"]["mc_beamline"]["keys"]["absorbance"]
            spectra = read_stream_array(client, uid, key)
            assert spectra.shape[0] == events and np.all(np.isfinite(spectra))


@pytest.mark.slow
def test_ctrl_c_in_the_demo_aborts_the_run_with_one_line(tmp_path):
    """SIGINT mid-raster: the run is stored with exit_status abort and its frames; stderr ends in one line."""
    data_dir = tmp_path / "mc-data"
    with demo_after_frames(data_dir, 3) as demo:
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=180)  # the bound: a demo that hangs fails here
    assert demo.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "mc-beamline: interrupted."
    assert "Traceback" not in stderr, stderr  # the live analysis may name frames it did not finish, one line each
    with connect(data_dir=data_dir) as client:
        (uid,) = [uid for uid in client if client[uid].metadata["start"].get("plan_name") == "nanodiffraction_raster"]
        stop = client[uid].metadata["stop"]
        assert stop["exit_status"] == "abort"
        events = stop["num_events"].get("primary", 0)
        stored = read_stream_array(client, uid, "det_image") if events else np.empty((0, 1065, 1030))
    (h5file,) = list((data_dir / "detector").rglob("*.h5"))
    with h5py.File(h5file, "r") as f:  # the IOC lives on and closed the file
        assert f["/entry/data/data"].shape[0] == events >= 3
        assert np.array_equal(stored, f["/entry/data/data"][:])
