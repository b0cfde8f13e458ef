"""Storage on both catalog back ends: the embedded SQLite file and a real PostgreSQL server.

For each back end a data directory gets its catalog (SQLite: its own file; PostgreSQL: a
fresh database of a real server, named in the data directory with
``DataDir.set_catalog_uri``), a real Tiled server is started on it, and a synthetic raster
run is stored the way a scan stores it: simulator frames in a Bitshuffle/LZ4 HDF5 file under
the detector folder (external data, Resource/Datum), the TiledWriter taking the raw
documents and the live XCCA callback publishing its derived run. Then the run is read back:
documents, frames, and ``replay`` equals the stored live ``results`` exactly.

PostgreSQL: ``MC_BEAMLINE_TEST_POSTGRES`` may name a server where the tests may create
databases (``.ci/run`` starts one and sets it); otherwise a throwaway cluster is started
here from the Debian ``postgresql`` binaries (``initdb``/``pg_ctl``, as the ``postgres``
user when running as root) on a free port in a temporary directory, and stopped after the
tests. Without the binaries the tests fail with a message saying what to install.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from event_model import compose_run

from mc_beamline.storage import (
    DataDir,
    TiledService,
    connect,
    read_stream_array,
    run_documents,
    tiled_writer,
)

POSTGRES_ENV = "MC_BEAMLINE_TEST_POSTGRES"
DATASET = "/entry/data/data"
ANALYSIS_WAIT_S = 300.0


# ------------------------------------------------------------------ PostgreSQL server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path:
    """Directory of ``initdb``/``pg_ctl`` (the newest Debian PostgreSQL, else the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    pytest.fail("The PostgreSQL server binaries (initdb, pg_ctl) are not installed: install the Debian package "
                f"'postgresql' (apt-get install postgresql) or set {POSTGRES_ENV} to a server URI "
                "where the tests may create databases.", pytrace=False)


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory on 127.0.0.1:<free port>, trust authentication.

    As root the cluster runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
    """

    USER = "mc_beamline"

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="mc-pg-"))
        self.port = _free_port()
        self._as = []
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("Running as root, but there is no 'postgres' user to run PostgreSQL as "
                            "(install the Debian package 'postgresql').", pytrace=False)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()} {tail}")

    def start(self) -> str:
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", self.USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_uri: str, prefix: str = "mc_test") -> str:
    """Create a fresh, empty database on the server of ``admin_uri``; return its URI."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_uri.replace("postgresql+asyncpg://", "postgresql://"), timeout=30)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    base, _, _ = admin_uri.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_admin_uri():
    """URI of a running PostgreSQL server on which databases may be created."""
    uri = os.environ.get(POSTGRES_ENV)
    if uri:
        yield uri
        return
    server = ThrowawayPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_uri):
    """Factory of fresh PostgreSQL databases: ``postgres_database() -> URI``."""
    return lambda: create_database(postgres_admin_uri)


# ------------------------------------------------------------------ synthetic raster runs
_SIMULATOR = None


def simulator():
    """The seed sample's simulator (built once per process: ~0.5 s)."""
    global _SIMULATOR
    if _SIMULATOR is None:
        from mc_beamline.physics.mesocrystal import MesocrystalSimulator

        _SIMULATOR = MesocrystalSimulator()
    return _SIMULATOR


def raster_frames(ny: int, nx: int, step_um: float, offset: int = 0) -> np.ndarray:
    """Simulator frames of a snake raster of ``ny`` x ``nx`` points centred on the seed area.

    ``offset`` shifts the raster by whole steps along x and selects other noise, so that
    several runs differ.
    """
    sim = simulator()
    frames = np.empty((ny * nx, *sim.geometry.shape), dtype=np.uint32)
    for k in range(ny * nx):
        row, col = divmod(k, nx)
        if row % 2:
            col = nx - 1 - col
        y = (row - (ny - 1) / 2) * step_um
        x = (col - (nx - 1) / 2 + offset) * step_um
        frames[k] = sim.frame(x, y, 0.01, noise_key=1000 * offset + k)
    return frames


def raster_documents(data_dir: DataDir, frames: np.ndarray, ny: int, nx: int, step_um: float,
                     extra_md: dict | None = None) -> list[tuple[str, dict]]:
    """Documents of a raster run as ``nanodiffraction_raster`` emits them, frames in an HDF5 file."""
    from mc_beamline.analysis.detector.masks import encode_mask
    from mc_beamline.devices.detector import RESOURCE_SPEC

    sim = simulator()
    name = f"raster_{uuid.uuid4().hex[:8]}.h5"
    path = data_dir.detector / name
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, *frames.shape[1:]), **hdf5plugin.Bitshuffle(cname="lz4"))
    md = {
        "plan_name": "nanodiffraction_raster",
        **(extra_md or {}),
        "mc_beamline": {
            "experiment": "raster", "scan_shape": [ny, nx], "step_um": step_um, "center_um": [0.0, 0.0],
            "snake": True, "exposure_s": 0.01, "image_key": "det_image",
            "detector_poni": sim.geometry.to_poni_text(), "detector_mask": encode_mask(sim.mask),
            "detector_shape": list(sim.geometry.shape),
        },
    }
    run = compose_run(metadata=md)
    resource = run.compose_resource(spec=RESOURCE_SPEC, root=str(data_dir.root), resource_path=f"detector/{name}",
                                    resource_kwargs={"dataset": DATASET, "swmr": True})
    descriptor = run.compose_descriptor(
        name="primary",
        data_keys={
            "stage_x": {"source": "SIM:X", "dtype": "number", "shape": [], "units": "um"},
            "det_image": {"source": "SIM:DET", "dtype": "array", "dtype_numpy": "<u4",
                          "shape": list(frames.shape[1:]), "external": "FILESTORE:"},
        },
    )
    docs = [("start", run.start_doc), ("descriptor", descriptor.descriptor_doc), ("resource", resource.resource_doc)]
    for i in range(len(frames)):
        datum = resource.compose_datum(datum_kwargs={"point_number": i})
        now = time.time()
        event = descriptor.compose_event(data={"stage_x": step_um * (i % nx), "det_image": datum["datum_id"]},
                                         timestamps={"stage_x": now, "det_image": now})
        docs += [("datum", datum), ("event", event)]
    docs.append(("stop", run.compose_stop(exit_status="success")))
    return docs


def store_raster_run(client, data_dir: DataDir, ny: int = 4, nx: int = 6, step_um: float = 1.6, offset: int = 0,
                     extra_md: dict | None = None, live: bool = True) -> tuple[str, dict | None, list]:
    """Store a synthetic raster run as a scan does (TiledWriter + live XCCA publishing its results).

    Returns (uid, live result or None without ``live``, raw documents).
    """
    from mc_beamline.callbacks.live_xcca import LiveXcca

    frames = raster_frames(ny, nx, step_um, offset)
    docs = raster_documents(data_dir, frames, ny, nx, step_um, extra_md)
    writer = tiled_writer(client)
    analysis = LiveXcca(docs[0][1], publish=tiled_writer(client)) if live else None
    for name, doc in docs:
        writer(name, doc)
        if analysis is not None and name != "start":
            analysis(name, doc)
    if analysis is None:
        return docs[0][1]["uid"], None, docs
    assert analysis.wait(ANALYSIS_WAIT_S), "the live analysis did not finish"
    assert analysis.errors == [], analysis.errors
    return docs[0][1]["uid"], analysis.result, docs


# ------------------------------------------------------------------ both back ends
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request, tmp_path_factory):
    """(name, DataDir) with the catalog of that back end configured."""
    data_dir = DataDir(tmp_path_factory.mktemp(f"mc-data-{request.param}"))
    if request.param == "postgresql":
        data_dir.set_catalog_uri(request.getfixturevalue("postgres_database")())
    return request.param, data_dir


@pytest.fixture(scope="module")
def service(backend):
    _, data_dir = backend
    with TiledService(data_dir) as running:
        yield running


@pytest.fixture(scope="module")
def stored(service, backend):
    """A raster run (4 x 6 points) stored with its live XCCA results: (uid, live result, raw docs)."""
    client = service.client()
    with client.context:
        return store_raster_run(client, backend[1])


@pytest.fixture()
def client(service):
    client = service.client()
    with client.context:
        yield client


def test_server_uses_the_configured_catalog(backend, service):
    name, data_dir = backend
    assert service.catalog_dialect == name
    assert data_dir.has_catalog()
    if name == "postgresql":
        assert data_dir.catalog_uri.startswith("postgresql://")
        assert oct(data_dir.catalog_uri_file.stat().st_mode & 0o777) == "0o600"
        assert not data_dir.catalog.exists()  # no SQLite catalog was made on the side
    else:
        assert data_dir.catalog_uri == data_dir.sqlite_catalog_uri and data_dir.catalog.is_file()


def test_raw_run_documents_read_back(stored, client, backend):
    uid, _, docs = stored
    back = list(run_documents(client, uid))
    names = [name for name, _ in back]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("event") == 24
    assert back[0][1] == docs[0][1]
    (sres,) = [doc for name, doc in back if name == "stream_resource"]
    assert sres["uri"].startswith(f"file://localhost{backend[1].detector}/raster_")
    (sdatum,) = [doc for name, doc in back if name == "stream_datum"]
    assert sdatum["seq_nums"] == {"start": 1, "stop": 25}
    assert client[uid].metadata["stop"]["num_events"] == {"primary": 24}


def test_detector_frames_read_back_exactly(stored, client):
    uid, _, _ = stored
    stack = read_stream_array(client, uid, "det_image")
    assert stack.dtype == np.uint32 and stack.shape == (24, *simulator().geometry.shape)
    np.testing.assert_array_equal(stack, raster_frames(4, 6, 1.6))


def test_replay_equals_stored_live_results(stored, client):
    from mc_beamline.callbacks.replay import replay, stored_results

    uid, live_result, _ = stored
    assert live_result is not None and live_result["n_frames"] == 24
    assert stored_results(client, uid) == live_result
    assert replay(client, uid) == live_result


def test_second_server_on_the_same_catalog_sees_the_run(stored, backend):
    """A second server for the same data directory (e.g. `mc-beamline results`) finds the run."""
    uid, live_result, _ = stored
    from mc_beamline.callbacks.replay import stored_results

    with connect(data_dir=backend[1].root) as other:
        assert stored_results(other, uid) == live_result


def test_results_command_on_the_data_dir(stored, backend, tmp_path):
    import json

    uid, live_result, _ = stored
    done = subprocess.run([sys.executable, "-m", "mc_beamline.cli", "results", uid, "--data-dir",
                           str(backend[1].root), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text()) == live_result


# ------------------------------------------------------------------ PostgreSQL specifics
def test_catalog_uri_setting_round_trips(tmp_path):
    data_dir = DataDir(tmp_path)
    assert data_dir.catalog_uri == data_dir.sqlite_catalog_uri and not data_dir.has_catalog()
    data_dir.set_catalog_uri("postgresql+asyncpg://u:secret@db.example:5432/runs")
    assert DataDir(tmp_path).catalog_uri == "postgresql+asyncpg://u:secret@db.example:5432/runs"
    assert DataDir(tmp_path).has_catalog()
    data_dir.set_catalog_uri(None)
    assert DataDir(tmp_path).catalog_uri == data_dir.sqlite_catalog_uri
    with pytest.raises(ValueError, match="neither sqlite"):
        data_dir.set_catalog_uri("mysql://u@h/db")


def test_passwords_are_redacted_from_uris_and_driver_messages():
    from mc_beamline.storage.data_dir import redact_password, redact_uri

    uri = "postgresql://u:s3cret@db.example:5432/runs"
    assert redact_uri(uri) == "postgresql://u:***@db.example:5432/runs"
    assert redact_password('password authentication failed ("s3cret" rejected)', uri) == \
        'password authentication failed ("***" rejected)'
    assert redact_password("no password in it", "sqlite:////tmp/catalog.db") == "no password in it"


def test_unreachable_postgres_is_one_clear_error(tmp_path):
    uri = f"postgresql://nobody:secret@127.0.0.1:{_free_port()}/nothing"
    with pytest.raises(ConnectionError) as info:
        TiledService(tmp_path, catalog_uri=uri).start()
    message = str(info.value)
    assert "could not be opened" in message and "secret" not in message and "***" in message


def test_postgres_catalog_survives_a_server_restart(postgres_database, tmp_path):
    """The catalog lives in PostgreSQL: a new server for the data directory finds the run."""
    data_dir = DataDir(tmp_path).set_catalog_uri(postgres_database())
    with TiledService(data_dir) as service:
        client = service.client()
        with client.context:
            uid, _, _ = store_raster_run(client, data_dir, ny=1, nx=2, live=False)
    with connect(data_dir=data_dir.root) as client:
        assert uid in client
        assert client[uid].metadata["stop"]["num_events"] == {"primary": 2}
        assert read_stream_array(client, uid, "det_image").shape[0] == 2
