"""`mc-beamline reprocess`: many stored runs re-analysed on a real Dask LocalCluster.

Synthetic raster runs (simulator frames in HDF5 files, documents as the raster plan emits
them, live XCCA results stored next to them) in a real Tiled server; the reprocessing runs
in real worker processes that connect to that server. Checked: each reprocessed result
equals the sequential replay of the same run exactly and is stored as a derived run marked
as reprocessed; a second reprocessing changes nothing (idempotent), ``force`` redoes it,
an interrupted one is replaced; the run selection (uids, ``KEY=VALUE`` terms, time range);
bad input ends with one sentence on stderr and exit status 2. Also on a PostgreSQL catalog.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from event_model import compose_run

from mc_beamline.callbacks.replay import RunNotFoundError, replay
from mc_beamline.commands.reprocess import (
    QueryError,
    RunQuery,
    dask_client,
    find_runs,
    forget_worker_client,
    reprocess_many,
    reprocess_run,
    reprocessed_result,
    reprocessed_uid,
    server_address,
    worker_client,
)
from mc_beamline.storage import DataDir, TiledService, read_stream_array, tiled_writer
from tests.storage.test_postgres import (  # noqa: F401
    postgres_admin_uri,
    postgres_database,
    store_raster_run,
)

SAMPLES = ["A", "A", "B"]


def derived_runs(client, raw_uid: str) -> list:
    from tiled.queries import Key

    found = client.search(Key("mc_beamline.raw_uid") == raw_uid)
    return [found[key] for key in found]


def run_cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return subprocess.Popen([sys.executable, "-m", "mc_beamline.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> DataDir:
    return DataDir(tmp_path_factory.mktemp("mc-data"))


@pytest.fixture(scope="module")
def service(data_dir):
    with TiledService(data_dir) as running:
        yield running


@pytest.fixture(scope="module")
def runs(service, data_dir):
    """Three raster runs (4 x 6 points; samples A, A, B) with live results, and one non-raster run.

    Returns ({uid: live result}, non-raster uid, time between the 2nd and 3rd run).
    """
    client = service.client()
    with client.context:
        live = {}
        for i, sample in enumerate(SAMPLES):
            if i == 2:
                time.sleep(0.05)
                boundary = time.time()
                time.sleep(0.05)
            uid, result, _ = store_raster_run(client, data_dir, offset=i, extra_md={"sample": sample})
            live[uid] = result
        other = compose_run(metadata={"plan_name": "count", "sample": "A"})
        writer = tiled_writer(client)
        writer("start", other.start_doc)
        writer("stop", other.compose_stop())
    return live, other.start_doc["uid"], boundary


@pytest.fixture()
def client(service):
    client = service.client()
    with client.context:
        yield client


@pytest.fixture(scope="module")
def reprocessed(service, runs):
    """All raster runs reprocessed on a LocalCluster of 2 worker processes."""
    live, _, _ = runs
    client = service.client()
    with client.context:
        uri, api_key = server_address(client)
        with dask_client(n_workers=2) as dask:
            assert len(dask.scheduler_info()["workers"]) == 2
            return reprocess_many(uri, api_key, list(live), dask)


# ------------------------------------------------------------------ results
def test_reprocessed_results_equal_sequential_replay_exactly(reprocessed, runs, client):
    live, _, _ = runs
    assert [o.status for o in reprocessed] == ["reprocessed"] * 3, [o.message for o in reprocessed]
    for outcome in reprocessed:
        sequential = replay(client, outcome.raw_uid)
        assert outcome.result == sequential == live[outcome.raw_uid]
        assert reprocessed_result(client, outcome.raw_uid) == sequential
        # stored complete and once: one CCF row, one row per frame (no duplicated writes)
        assert len(read_stream_array(client, outcome.derived_uid, "value", stream="ccf")) == 1
        assert len(read_stream_array(client, outcome.derived_uid, "index", stream="frames")) == 24


def test_reprocessed_run_is_stored_like_the_live_one_and_marked(reprocessed, client):
    outcome = reprocessed[0]
    derived = {run.metadata["start"]["uid"]: run for run in derived_runs(client, outcome.raw_uid)}
    assert len(derived) == 2 and outcome.derived_uid in derived
    run = derived.pop(outcome.derived_uid)
    (live_run,) = derived.values()
    start, stop = run.metadata["start"], run.metadata["stop"]
    assert start["mc_beamline"]["analysis"] == "xcca" and start["mc_beamline"]["raw_uid"] == outcome.raw_uid
    assert start["mc_beamline"]["reprocessed"] is True
    assert not live_run.metadata["start"]["mc_beamline"].get("reprocessed")
    assert stop["exit_status"] == "success" and list(stop["analysis_errors"]) == []
    assert dict(stop["num_events"]) == dict(live_run.metadata["stop"]["num_events"])
    assert sorted(run) == sorted(live_run) == ["ccf", "frames", "maps"]
    assert (run["maps"]["domain"].read() == live_run["maps"]["domain"].read()).all()


def test_workers_run_single_threaded_numerics(reprocessed, service):
    """The LocalCluster's workers: one BLAS/OpenMP/numba thread, glibc's adaptive malloc (no Dask trim override)."""

    def env() -> dict:
        return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                               "NUMBA_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")}

    with dask_client(n_workers=1) as dask:
        (seen,) = dask.run(env).values()
    assert seen == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "NUMBA_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": None}


def test_timings_and_what_the_write_lock_covers(reprocessed, client, monkeypatch):
    """The lock is held to delete the old derived run and to write the stop document, nothing else."""

    class RecordingLock:
        def __init__(self) -> None:
            self.held = False
            self.entered = 0

        def __enter__(self):
            self.held = True
            self.entered += 1

        def __exit__(self, *exc_info):
            self.held = False

    lock = RecordingLock()
    seen: list[tuple[str, bool]] = []
    import mc_beamline.commands.reprocess as module

    original = module.tiled_writer

    def recording_writer(*args, **kwargs):
        writer = original(*args, **kwargs)

        def write(name, doc):
            seen.append((name, lock.held))
            writer(name, doc)

        return write

    requests: list[tuple[str, str, bool]] = []

    def record_request(request) -> None:
        requests.append((request.method, request.url.path, lock.held))

    monkeypatch.setattr(module, "tiled_writer", recording_writer)
    hooks = client.context.http_client.event_hooks
    monkeypatch.setitem(hooks, "request", [*hooks["request"], record_request])
    outcome = reprocess_run(client, reprocessed[0].raw_uid, force=True, write_lock=lock)
    assert outcome.status == "reprocessed" and outcome.result == reprocessed[0].result
    assert lock.entered == 2  # the deletion of the earlier result, then the stop document
    assert seen[-1] == ("stop", True) and not any(held for _, held in seen[:-1])
    # what changes the server's SQLite table storage happens under the lock: deletions, table appends
    table_writes = [(m, path, held) for m, path, held in requests
                    if "/table/" in path or (m == "DELETE" and "/metadata/" in path)]
    assert table_writes and all(held for *_, held in table_writes), requests
    assert sum(m == "PATCH" and "/table/partition/" in path for m, path, _ in requests) == 3  # one append per stream
    assert [name for name, _ in seen[:-1]] == ["start", "descriptor", "event", "descriptor", "event_page",
                                               "descriptor", "event"]
    assert {"lookup", "delete", "replay", "lock_wait", "write"} <= set(outcome.timings)
    assert sum(outcome.timings.values()) <= outcome.seconds + 1e-6
    assert len(read_stream_array(client, outcome.derived_uid, "index", stream="frames")) == 24


def test_worker_client_is_kept_per_process(client):
    uri, api_key = server_address(client)
    first = worker_client(uri, api_key)
    try:
        assert worker_client(uri, api_key) is first
        forget_worker_client(uri, api_key)
        second = worker_client(uri, api_key)
        assert second is not first and sorted(second) == sorted(client)
    finally:
        forget_worker_client(uri, api_key)


def test_each_dask_task_reports_where_its_time_went(reprocessed):
    for outcome in reprocessed:
        assert {"connect", "lookup", "replay", "lock_wait", "write"} <= set(outcome.timings)
        assert outcome.timings["replay"] > 0 and outcome.timings["write"] > 0


# ------------------------------------------------------------------ idempotence
def test_second_reprocessing_changes_nothing(reprocessed, runs, client):
    uid = reprocessed[1].raw_uid
    again = reprocess_run(client, uid)
    assert again.status == "unchanged" and again.result == reprocessed[1].result
    assert len(derived_runs(client, uid)) == 2


def test_force_redoes_it_in_place(reprocessed, client):
    uid = reprocessed[1].raw_uid
    redone = reprocess_run(client, uid, force=True)
    assert redone.status == "reprocessed" and redone.derived_uid == reprocessed_uid(uid)
    assert redone.result == reprocessed[1].result
    assert len(derived_runs(client, uid)) == 2


def test_interrupted_reprocessing_is_replaced(reprocessed, client):
    """A derived run without stop document (a worker died) is deleted and written again."""
    uid = reprocessed[2].raw_uid
    client[reprocessed_uid(uid)].delete(recursive=True, external_only=False)
    partial = compose_run(uid=reprocessed_uid(uid),
                          metadata={"mc_beamline": {"analysis": "xcca", "raw_uid": uid, "reprocessed": True}})
    tiled_writer(client)("start", partial.start_doc)
    assert client[reprocessed_uid(uid)].metadata.get("stop") is None
    outcome = reprocess_run(client, uid)
    assert outcome.status == "reprocessed" and outcome.result == reprocessed[2].result
    assert client[reprocessed_uid(uid)].metadata["stop"]["exit_status"] == "success"
    assert len(derived_runs(client, uid)) == 2


# ------------------------------------------------------------------ selection
def test_selection_by_metadata_and_time(runs, client, reprocessed):
    live, other, boundary = runs
    uids = list(live)
    assert find_runs(client) == uids  # every raster run, oldest first; no derived or non-raster run
    assert find_runs(client, query=RunQuery.parse(["sample=A"])) == uids[:2]
    assert find_runs(client, query=RunQuery.parse(["sample=A", "mc_beamline.step_um=1.6"])) == uids[:2]
    assert find_runs(client, query=RunQuery.parse(["mc_beamline.step_um=0.4"])) == []
    assert find_runs(client, query=RunQuery.parse(since=str(boundary))) == uids[2:]
    assert find_runs(client, query=RunQuery.parse(until=str(boundary))) == uids[:2]
    assert find_runs(client, [uids[2]], RunQuery.parse(["sample=A"])) == uids
    with pytest.raises(RunNotFoundError, match="not a raster run"):
        find_runs(client, [other])
    with pytest.raises(RunNotFoundError, match="No run"):
        find_runs(client, [str(uuid.uuid4())])


@pytest.mark.parametrize("terms, since, until", [
    (["sample"], None, None), (["=A"], None, None), (["a..b=1"], None, None), (["start.sample=A"], None, None),
    ([], "yesterday-ish", None), ([], "2025-06-02", "2025-06-01"),
])
def test_bad_queries_are_rejected(terms, since, until):
    with pytest.raises(QueryError):
        RunQuery.parse(terms, since, until)


def test_query_values_are_json_when_they_parse():
    query = RunQuery.parse(["scan_id=3", "mc_beamline.snake=true", "sample=seed-000", "shape=[9, 13]"],
                           since="2025-06-01T08:00+02:00")
    assert query.equals == {"scan_id": 3, "mc_beamline.snake": True, "sample": "seed-000", "shape": [9, 13]}
    assert query.since == 1748757600.0


# ------------------------------------------------------------------ command line
def test_command_reprocesses_and_is_idempotent(reprocessed, runs, data_dir, tmp_path, client):
    """`mc-beamline reprocess` in its own process (its own Tiled server on the data directory)."""
    live, _, _ = runs
    uid = list(live)[2]
    client[reprocessed_uid(uid)].delete(recursive=True, external_only=False)
    args = ["reprocess", "--data-dir", str(data_dir.root), "--query", "sample=B", "--workers", "1"]
    first = subprocess.run([sys.executable, "-m", "mc_beamline.cli", *args], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"reprocessed {uid} -> {reprocessed_uid(uid)}: 24 frames" in first.stdout
    assert "1 run(s): 1 reprocessed, 0 unchanged, 0 failed" in first.stdout
    assert reprocessed_result(client, uid) == live[uid]
    second = subprocess.run([sys.executable, "-m", "mc_beamline.cli", *args], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "1 run(s): 0 reprocessed, 1 unchanged, 0 failed" in second.stdout


def test_bad_input_is_one_sentence_and_exit_2(runs, data_dir, tmp_path):
    d = str(data_dir.root)
    unknown = str(uuid.uuid4())
    cases = {
        "unknown uid": (["reprocess", unknown, "--data-dir", d], unknown),
        "no match": (["reprocess", "--data-dir", d, "--query", "sample=Z"], "No stored raster run matches"),
        "bad query": (["reprocess", "--data-dir", d, "--query", "sample"], "is not KEY=VALUE"),
        "bad time": (["reprocess", "--data-dir", d, "--since", "soon"], "neither an ISO 8601"),
        "no catalog": (["reprocess", "--data-dir", str(tmp_path / "empty")], "holds no catalog"),
        "unreachable tiled": (["reprocess", "--tiled", f"http://127.0.0.1:{free_port()}", "--query", "sample=A"],
                              "Nothing answers at"),
        "bad scheduler": (["reprocess", "--data-dir", d, "--query", "sample=B", "--scheduler",
                           f"tcp://127.0.0.1:{free_port()}"], "No Dask scheduler answers"),
        "bad workers": (["reprocess", "--data-dir", d, "--workers", "0"], "at least 1"),
    }
    procs = {name: run_cli(*args, cwd=tmp_path) for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, f"{name}: {proc.returncode} {err}"
        assert len(lines) == 1 and cases[name][1] in lines[0], f"{name}: {err}"
        assert lines[0].startswith("mc-beamline reprocess: ") and "Traceback" not in err


# ------------------------------------------------------------------ PostgreSQL catalog
def test_reprocess_on_a_postgres_catalog(postgres_database, tmp_path):
    data_dir = DataDir(tmp_path / "pg-data").set_catalog_uri(postgres_database())
    with TiledService(data_dir) as service:
        client = service.client()
        with client.context:
            live = {}
            for i in range(2):
                uid, result, _ = store_raster_run(client, data_dir, ny=3, nx=4, offset=i)
                live[uid] = result
            uri, api_key = server_address(client)
            with dask_client(n_workers=2) as dask:
                outcomes = reprocess_many(uri, api_key, list(live), dask)
            assert [o.status for o in outcomes] == ["reprocessed"] * 2, [o.message for o in outcomes]
            for outcome in outcomes:
                assert outcome.result == replay(client, outcome.raw_uid) == live[outcome.raw_uid]
                assert reprocessed_result(client, outcome.raw_uid) == outcome.result
