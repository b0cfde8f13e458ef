"""Who may read a data directory: the key gate of its Tiled server, read-only keys, file modes.

The data directory lives in a directory every local user may enter, so that only the
modes the package sets stand between another user and the frames; the other user is
``nobody`` (the test runs a subprocess under its uid, which needs root).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from mc_beamline.commands.catalog import probe_tiled
from mc_beamline.io.inputs import InputError
from mc_beamline.storage import DataDir, TiledService, connect, tiled_writer
from tests.storage.test_storage import compose_raster_run

NOBODY = 65534


@pytest.fixture(scope="module")
def open_parent():
    """A directory every local user may enter (unlike pytest's tmp_path, which is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="mc-access-"))
    os.chmod(parent, 0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def stored(open_parent):
    """(service, data_dir, uid): a running server holding one run with external HDF5 frames."""
    data_dir = DataDir(open_parent / "mc-data")
    frames = np.arange(3 * 8 * 6, dtype=np.uint32).reshape(3, 8, 6)
    with TiledService(data_dir) as service:
        client = service.client()
        with client.context:
            docs = compose_raster_run(data_dir, frames)
            writer = tiled_writer(client)
            for name, doc in docs:
                writer(name, doc)
        yield service, data_dir, docs[0][1]["uid"]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_catalog_keys_and_detector_directory_are_owner_only(stored):
    _, data_dir, _ = stored
    assert mode(data_dir.tiled) == mode(data_dir.detector) == 0o700
    for path in (data_dir.catalog, data_dir.api_key_file, data_dir.tables):
        assert mode(path) == 0o600, path


def as_nobody() -> None:
    os.setgid(NOBODY)
    os.setgroups([])
    os.setuid(NOBODY)


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another user needs root")
def test_another_local_user_cannot_read_frames_or_catalog(stored, open_parent):
    _, data_dir, _ = stored
    readable = open_parent / "public.txt"  # the control: what the modes do not protect, nobody reads
    readable.write_text("x")
    os.chmod(readable, 0o644)
    frame_file = next(data_dir.detector.rglob("*.h5"))
    for path in (readable, frame_file, data_dir.catalog, data_dir.tables, data_dir.api_key_file):
        proc = subprocess.run(["/usr/bin/head", "-c", "1", str(path)], capture_output=True, preexec_fn=as_nobody,
                              timeout=30, cwd="/")
        if path == readable:
            assert proc.returncode == 0 and proc.stdout == b"x"
        else:
            assert proc.returncode != 0 and b"Permission denied" in proc.stderr, path


def test_every_route_but_health_and_about_needs_a_key(stored):
    service, _, uid = stored
    with httpx.Client(base_url=service.uri, trust_env=False) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/v1/").status_code == 200  # what a client reads before it sends its key
        for route in ("/docs", "/openapi.json", "/redoc", "/api/v1/metadata/", f"/api/v1/metadata/{uid}",
                      "/api/v1/search/"):
            answer = http.get(route)
            assert answer.status_code == 401, route
            assert "needs an API key" in answer.json()["detail"]
        assert http.get("/docs", headers={"Authorization": "Apikey wrong"}).status_code == 401
        assert http.get("/docs", params={"api_key": service.api_key}).status_code == 200


def test_readonly_key_reads_runs_but_cannot_write(stored):
    service, data_dir, uid = stored
    proc = subprocess.run([sys.executable, "-m", "mc_beamline.cli", "serve", "--data-dir", str(data_dir.root),
                           "--create-readonly-key"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    assert len(key) == 64 and key not in data_dir.readonly_keys_file.read_text()
    assert mode(data_dir.readonly_keys_file) == 0o600
    with connect(uri=service.uri, api_key=key) as client:
        run = client[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        names = [name for name, _ in run.documents()]
        assert names[0] == "start" and names[-1] == "stop"
    with httpx.Client(base_url=service.uri, trust_env=False) as http:
        answer = http.post("/api/v1/metadata/", json={}, headers={"Authorization": f"Apikey {key}"})
        assert answer.status_code == 403 and "read-only" in answer.json()["detail"]


def test_server_errors_a_user_can_cause_are_one_sentence_each(stored, monkeypatch):
    service, _, _ = stored
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    host_port = service.uri.split("://", 1)[1]
    with socket_on_free_port() as free:
        cases = {
            service.uri: "needs an API key",
            f"{service.uri}?api_key=wrong": "refuses the API key",
            f"http://127.0.0.1:{free}": "Nothing answers at",
            f"https://{host_port}": "does not speak https",
            f"tiled://{host_port}": "is not an http:// or https:// address",
        }
        for uri, expected in cases.items():
            with pytest.raises(InputError, match=expected):
                probe_tiled(uri)
    probe_tiled(f"{service.uri}?api_key={service.api_key}")


class socket_on_free_port:
    """A port nothing listens on (bound, not listening, for the duration of the block)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()
