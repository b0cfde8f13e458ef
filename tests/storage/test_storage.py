"""Embedded Tiled storage against a real server: write a synthetic run, read it back.

The run is composed with event_model (no RunEngine, no IOC): a scalar motor position
and an external detector image per event, the frames in a real HDF5 file under the data
directory's detector folder, referenced by Resource/Datum documents (spec AD_HDF5) as a
classic ophyd area detector emits them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin
import httpx
import numpy as np
import pytest
from event_model import DocumentNames, compose_run, schema_validators

from mc_beamline.storage import (
    DataDir,
    TiledService,
    connect,
    read_stream_array,
    run_documents,
    tiled_writer,
)

N_FRAMES = 7
FRAME_SHAPE = (64, 48)
DATASET = "/entry/data/data"


def validate(name: str, doc: dict) -> None:
    """Validate one document against its event-model JSON schema."""
    schema_validators[DocumentNames(name)].validate(doc)


def write_frames(path: Path, frames: np.ndarray) -> None:
    """Write a frame stack as a detector does: one frame per chunk, bitshuffle/LZ4."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            DATASET,
            data=frames,
            chunks=(1, *frames.shape[1:]),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )


def compose_raster_run(data_dir: DataDir, frames: np.ndarray) -> list[tuple[str, dict]]:
    """Documents of a step scan with one external detector frame per event.

    The Resource points at the HDF5 file written by `write_frames`; Datum ``i`` names
    frame ``i`` of the dataset through ``point_number``.
    """
    fname = "raster_0001.h5"
    write_frames(data_dir.detector / fname, frames)
    run = compose_run(metadata={"plan_name": "synthetic_raster", "scan_id": 1})
    resource = run.compose_resource(
        spec="AD_HDF5",
        root=str(data_dir.root),
        resource_path=f"detector/{fname}",
        resource_kwargs={},
    )
    descriptor = run.compose_descriptor(
        name="primary",
        data_keys={
            "stage_x": {"source": "SIM:X", "dtype": "number", "shape": [], "units": "um"},
            "det_image": {
                "source": "SIM:DET",
                "dtype": "array",
                "dtype_numpy": np.dtype(frames.dtype).str,
                "shape": list(frames.shape[1:]),
                "external": "FILESTORE:",
            },
        },
        object_keys={"stage": ["stage_x"], "det": ["det_image"]},
    )
    docs = [
        ("start", run.start_doc),
        ("descriptor", descriptor.descriptor_doc),
        ("resource", resource.resource_doc),
    ]
    for i in range(len(frames)):
        datum = resource.compose_datum(datum_kwargs={"point_number": i})
        now = time.time()
        event = descriptor.compose_event(
            data={"stage_x": 0.5 * i, "det_image": datum["datum_id"]},
            timestamps={"stage_x": now, "det_image": now},
        )
        docs += [("datum", datum), ("event", event)]
    docs.append(("stop", run.compose_stop(exit_status="success")))
    return docs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> DataDir:
    return DataDir(tmp_path_factory.mktemp("mc-data"))


@pytest.fixture(scope="module")
def service(data_dir):
    with TiledService(data_dir) as running:
        yield running
    assert not any(t.name == "tiled-server" for t in threading.enumerate())


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    return rng.integers(0, 2**20, size=(N_FRAMES, *FRAME_SHAPE), dtype=np.uint32)


@pytest.fixture(scope="module")
def written(service, data_dir, frames) -> list[tuple[str, dict]]:
    """The documents of one run, after feeding them all to a TiledWriter."""
    docs = compose_raster_run(data_dir, frames)
    client = service.client()
    writer = tiled_writer(client, batch_size=3)  # exercises batches and the remainder
    for name, doc in docs:
        writer(name, doc)
    client.context.close()
    return docs


@pytest.fixture()
def client(service):
    """A client of the running service, closed after the test."""
    client = service.client()
    yield client
    client.context.close()


@pytest.fixture()
def uid(written) -> str:
    return written[0][1]["uid"]


def test_api_key_file_is_private_and_reused(service, data_dir):
    mode = stat.S_IMODE(os.stat(data_dir.api_key_file).st_mode)
    assert mode == 0o600
    assert DataDir(data_dir.root).api_key() == service.api_key
    assert len(service.api_key) == 64


def test_run_is_in_catalog(client, uid):
    run = client[uid]
    assert run.metadata["start"]["plan_name"] == "synthetic_raster"
    assert run.metadata["stop"]["exit_status"] == "success"
    assert list(run) == ["primary"]


def test_event_table_has_one_row_per_event(client, uid):
    table = client[uid]["primary"].base["internal"].read()
    assert len(table) == N_FRAMES
    np.testing.assert_array_equal(table["seq_num"], np.arange(1, N_FRAMES + 1))
    np.testing.assert_array_equal(table["stage_x"], 0.5 * np.arange(N_FRAMES))
    np.testing.assert_array_equal(
        read_stream_array(client, uid, "stage_x"), 0.5 * np.arange(N_FRAMES)
    )


def test_detector_frames_read_back_exactly(client, uid, frames):
    stack = read_stream_array(client, uid, "det_image")
    assert stack.dtype == frames.dtype
    assert stack.shape == frames.shape
    np.testing.assert_array_equal(stack, frames)
    one = client[uid]["primary"]["det_image"][3]
    np.testing.assert_array_equal(one, frames[3])


def test_documents_replay_in_order_with_stream_resources(client, uid, data_dir):
    docs = list(run_documents(client, uid))
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert names.count("descriptor") == 1 and names.count("event") == N_FRAMES
    assert "resource" not in names and "datum" not in names
    (resource,) = [doc for name, doc in docs if name == "stream_resource"]
    (datum,) = [doc for name, doc in docs if name == "stream_datum"]
    assert resource["data_key"] == "det_image"
    assert resource["mimetype"] == "application/x-hdf5"
    assert resource["parameters"]["dataset"] == DATASET
    assert resource["uri"] == f"file://localhost{data_dir.detector}/raster_0001.h5"
    assert datum["stream_resource"] == resource["uid"]
    assert datum["indices"] == {"start": 0, "stop": N_FRAMES}
    assert datum["seq_nums"] == {"start": 1, "stop": N_FRAMES + 1}
    events = [doc for name, doc in docs if name == "event"]
    assert [e["data"]["stage_x"] for e in events] == [0.5 * i for i in range(N_FRAMES)]


def test_every_document_validates(client, uid, written):
    for name, doc in written:
        validate(name, doc)
    for name, doc in run_documents(client, uid):
        validate(name, doc)


def test_stream_resource_documents_store_readable_frames(client, data_dir, frames):
    """The ophyd-async flavour: StreamResource/StreamDatum instead of Resource/Datum."""
    path = data_dir.detector / "stream_0001.h5"
    write_frames(path, frames)
    run = compose_run()
    descriptor = run.compose_descriptor(
        name="primary",
        data_keys={
            "det_image": {
                "source": "SIM:DET",
                "dtype": "array",
                "dtype_numpy": "<u4",
                "shape": list(FRAME_SHAPE),
                "external": "STREAM:",
            },
        },
    )
    resource = run.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="det_image",
        parameters={"dataset": DATASET, "chunk_shape": [1]},
    )
    writer = tiled_writer(client)
    writer("start", run.start_doc)
    writer("descriptor", descriptor.descriptor_doc)
    writer("stream_resource", resource.stream_resource_doc)
    for i in range(N_FRAMES):
        datum = resource.compose_stream_datum(
            indices={"start": i, "stop": i + 1},
            seq_nums={"start": i + 1, "stop": i + 2},
            descriptor=descriptor.descriptor_doc,
        )
        writer("stream_datum", datum)
    writer("stop", run.compose_stop())
    stack = read_stream_array(client, run.start_doc["uid"], "det_image")
    np.testing.assert_array_equal(stack, frames)


def test_anonymous_client_cannot_read_or_write(service):
    new_node = {
        "structure_family": "container", "metadata": {}, "specs": [], "data_sources": []
    }
    with httpx.Client(base_url=f"{service.uri}/api/v1", trust_env=False) as http:
        assert http.post("/metadata/", json=new_node).status_code == 401
        assert http.get("/metadata/").status_code == 401
        wrong_key = {"Authorization": "Apikey not-the-key"}
        assert http.post("/metadata/", json=new_node, headers=wrong_key).status_code == 401
        right_key = {"Authorization": f"Apikey {service.api_key}"}
        assert http.get("/metadata/", headers=right_key).status_code == 200


def test_connect_to_running_server_by_uri(service, uid):
    with connect(uri=service.uri, api_key=service.api_key) as client:
        assert uid in client


def test_connect_needs_exactly_one_source(data_dir):
    with pytest.raises(ValueError), connect():
        pass
    with pytest.raises(ValueError), connect(data_dir=data_dir.root, uri="http://x"):
        pass


def test_restart_on_same_data_dir_finds_the_run(service, uid, frames):
    service.stop()
    assert not any(t.name == "tiled-server" for t in threading.enumerate())
    service.start()
    with connect(uri=service.uri, api_key=service.api_key) as client:
        np.testing.assert_array_equal(read_stream_array(client, uid, "det_image"), frames)


def test_embedded_server_process_exits(data_dir, uid):
    """Another process serves the same data dir (while this one does), reads, exits."""
    code = textwrap.dedent(f"""
        from mc_beamline.storage import connect
        with connect(data_dir={str(data_dir.root)!r}) as client:
            print(client[{uid!r}]["primary"].base["internal"].read().shape[0])
    """)
    repo = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(N_FRAMES)
