"""Reading detector frames: the raw-chunk Bitshuffle/LZ4 path gives h5py's frames exactly.

:class:`~mc_beamline.io.frames.Hdf5FrameReader` reads one-frame Bitshuffle/LZ4
chunks itself (raw chunk + the filter's C decompression, optionally in a thread pool) and
everything else through h5py. Checked here: the same arrays (values and dtype) as
``ds[i]`` for several dtypes and frame sizes (partial blocks, leftover elements), other
layouts and filters, chunks not stored yet, corrupt chunks (the error h5py raises, reported
per frame), frames decompressed ahead in a pool arriving in order, and frames read while
another process is still writing the file in SWMR mode.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import hdf5plugin
import numpy as np
import pytest

from mc_beamline.callbacks.frame_locator import FrameLocator
from mc_beamline.io.frames import (
    FrameNotFoundError,
    Hdf5FrameReader,
    _bitshuffle_lz4_decoder,
    _BitshuffleLz4Frames,
)
from tests.io.detector_files import random_frames

DATASET = "/entry/data/data"


def write(path, frames: np.ndarray, **filters) -> None:
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, *frames.shape[1:]), **filters)


@pytest.fixture(autouse=True)
def _bitshuffle_available():
    if _bitshuffle_lz4_decoder() is None:
        pytest.skip("hdf5plugin's Bitshuffle library does not export bshuf_decompress_lz4 here")


@pytest.mark.parametrize("dtype", ["<u4", "<u2", "<i4", "<f4", "<f8", "u1", "<u8"])
@pytest.mark.parametrize("shape", [(37, 45), (100, 83), (64, 64)])
def test_raw_chunk_frames_equal_h5py_frames(tmp_path, dtype, shape):
    frames = random_frames(4, shape, dtype)
    path = tmp_path / "frames.h5"
    write(path, frames, **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    reader = Hdf5FrameReader()
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        assert _BitshuffleLz4Frames.for_dataset(ds) is not None  # the fast path is taken
        for i in range(len(frames)):
            got = reader.read(str(path), DATASET, i)
            expected = ds[i]
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert np.array_equal(got, expected, equal_nan=dtype.startswith("<f"))
    reader.close()


def test_block_size_of_the_writer_is_honoured(tmp_path):
    frames = random_frames(3, (50, 70), "<u4", seed=3)
    path = tmp_path / "frames.h5"
    write(path, frames, **hdf5plugin.Bitshuffle(nelems=256, cname="lz4"))
    reader = Hdf5FrameReader()
    for i in range(3):
        assert np.array_equal(reader.read(str(path), DATASET, i), frames[i])
    reader.close()


@pytest.mark.parametrize("layout", ["gzip", "plain", "bitshuffle-only", "two-frame-chunks", "big-endian",
                                    "contiguous"])
def test_other_layouts_are_read_by_h5py(tmp_path, layout):
    frames = random_frames(4, (20, 30), "<u4", seed=1)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w", libver="latest") as f:
        if layout == "gzip":
            f.create_dataset(DATASET, data=frames, chunks=(1, 20, 30), compression="gzip")
        elif layout == "plain":
            f.create_dataset(DATASET, data=frames, chunks=(1, 20, 30))
        elif layout == "bitshuffle-only":
            f.create_dataset(DATASET, data=frames, chunks=(1, 20, 30), **hdf5plugin.Bitshuffle(cname="none"))
        elif layout == "two-frame-chunks":
            f.create_dataset(DATASET, data=frames, chunks=(2, 20, 30), **hdf5plugin.Bitshuffle(cname="lz4"))
        elif layout == "big-endian":
            f.create_dataset(DATASET, data=frames.astype(">u4"), chunks=(1, 20, 30),
                             **hdf5plugin.Bitshuffle(cname="lz4"))
        else:
            f.create_dataset(DATASET, data=frames)
    with h5py.File(path, "r") as f:
        assert _BitshuffleLz4Frames.for_dataset(f[DATASET]) is None
    reader = Hdf5FrameReader(executor=ThreadPoolExecutor(2))
    for i in range(4):
        assert np.array_equal(reader.read(str(path), DATASET, i), frames[i])
        assert np.array_equal(reader.request(str(path), DATASET, i)(), frames[i])
    reader.close()


def test_a_chunk_not_stored_yet_reads_as_h5py_reads_it(tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset(DATASET, shape=(3, 20, 30), chunks=(1, 20, 30), dtype="<u4",
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        ds[0] = 7
    reader = Hdf5FrameReader(executor=ThreadPoolExecutor(1))
    assert np.array_equal(reader.read(str(path), DATASET, 0), np.full((20, 30), 7))
    assert np.array_equal(reader.read(str(path), DATASET, 1), np.zeros((20, 30)))  # the fill value, as ds[1]
    assert np.array_equal(reader.request(str(path), DATASET, 2)(), np.zeros((20, 30)))
    with pytest.raises(FrameNotFoundError):
        reader.read(str(path), DATASET, 3)
    reader.close()


def corrupt_file(path, frames: np.ndarray, bad: int) -> None:
    write(path, frames, **hdf5plugin.Bitshuffle(cname="lz4"))
    with h5py.File(path, "r+") as f:
        ds = f[DATASET]
        _, raw = ds.id.read_direct_chunk((bad, 0, 0))
        junk = raw[:12] + bytes([0xFF] * (len(raw) - 12))  # valid header, payload that does not decode
        ds.id.write_direct_chunk((bad, 0, 0), junk, 0)


def test_a_corrupt_chunk_fails_as_with_h5py_and_the_other_frames_go_on(tmp_path):
    frames = random_frames(4, (40, 50), "<u4", seed=2)
    path = tmp_path / "frames.h5"
    corrupt_file(path, frames, bad=1)
    with h5py.File(path, "r") as f:
        with pytest.raises(OSError):
            f[DATASET][1]
    reader = Hdf5FrameReader()
    with pytest.raises(OSError):
        reader.read(str(path), DATASET, 1)
    reader.close()

    errors = []
    locator = FrameLocator("det_image", on_error=lambda seq_num, exc: errors.append((seq_num, exc)),
                           executor=ThreadPoolExecutor(2))
    stream_resource = {"uid": "sr", "data_key": "det_image", "uri": path.as_uri(), "parameters": {"dataset": DATASET}}
    got = {}
    for name, doc in [("stream_resource", stream_resource),
                      ("stream_datum", {"stream_resource": "sr", "indices": {"start": 0, "stop": 4},
                                        "seq_nums": {"start": 1, "stop": 5}})]:
        pending = list(locator.locate(name, doc))  # all four decompress ahead
        for p in pending:
            frame = p.result()
            if frame is not None:
                got[p.seq_num] = frame
    locator.close()
    assert sorted(got) == [1, 3, 4]
    assert [seq_num for seq_num, _ in errors] == [2]
    assert isinstance(errors[0][1], FrameNotFoundError)
    for seq_num, frame in got.items():
        assert np.array_equal(frame, frames[seq_num - 1])


def datum_documents(path, n: int) -> list[tuple[str, dict]]:
    docs = [("resource", {"uid": "r", "root": str(path.parent), "resource_path": path.name,
                          "resource_kwargs": {"dataset": DATASET}, "spec": "AD_HDF5_SWMR"})]
    for i in range(n):
        docs.append(("datum", {"datum_id": f"r/{i}", "resource": "r", "datum_kwargs": {"point_number": i}}))
        docs.append(("event", {"seq_num": i + 1, "data": {"det_image": f"r/{i}"}}))
    return docs


def test_prefetched_frames_arrive_in_order_and_equal_synchronous_reads(tmp_path):
    frames = random_frames(12, (60, 70), "<u4", seed=4)
    path = tmp_path / "frames.h5"
    write(path, frames, **hdf5plugin.Bitshuffle(cname="lz4"))
    docs = datum_documents(path, 12)
    plain = FrameLocator("det_image")
    sync = [(s, f) for name, doc in docs for s, f in plain(name, doc)]
    plain.close()
    ahead = FrameLocator("det_image", executor=ThreadPoolExecutor(3))
    pending = [p for name, doc in docs for p in ahead.locate(name, doc)]
    prefetched = [(p.seq_num, p.result()) for p in pending]
    ahead.close()
    assert [s for s, _ in sync] == [s for s, _ in prefetched] == list(range(1, 13))
    for (_, a), (_, b), expected in zip(sync, prefetched, frames):
        assert np.array_equal(a, expected) and np.array_equal(b, expected)


WRITER = textwrap.dedent("""
    import sys, time
    import h5py, hdf5plugin, numpy as np
    path, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(7)
    frames = rng.poisson(0.5, (n, 90, 110)).astype("<u4")
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("/entry/data/data", shape=(0, 90, 110), maxshape=(None, 90, 110),
                              chunks=(1, 90, 110), dtype="<u4", **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        f.swmr_mode = True
        f.flush()
        print("ready", flush=True)
        for i in range(n):
            time.sleep(0.05)
            ds.resize(i + 1, axis=0)
            ds[i] = frames[i]
            f.flush()
""")


def test_frames_are_read_while_the_file_is_being_written(tmp_path):
    """SWMR: the reader sees each frame once the writer has flushed it, not before."""
    n = 20
    path = tmp_path / "swmr.h5"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        reader = Hdf5FrameReader(executor=ThreadPoolExecutor(2))
        got = []
        early = 0
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            try:
                got.append(reader.request(str(path), DATASET, len(got))())
            except FrameNotFoundError:
                early += 1
                time.sleep(0.01)
        assert reader._files[(str(path), DATASET)][2] is not None  # read as raw chunks
        reader.close()
        assert writer.wait(60) == 0
    finally:
        writer.kill()
    expected = np.random.default_rng(7).poisson(0.5, (n, 90, 110)).astype("<u4")
    assert len(got) == n and early > 0  # frames were asked for before they existed
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)


def test_released_frame_arrays_are_reused_but_never_one_still_in_use(tmp_path):
    """With a bounded look-ahead, a handful of arrays carry all frames; a frame its user keeps
    (here every fifth, and a view of another) is never overwritten by a later one."""
    frames = random_frames(40, (64, 48), "<u4", seed=5)
    path = tmp_path / "frames.h5"
    write(path, frames, **hdf5plugin.Bitshuffle(cname="lz4"))
    locator = FrameLocator("det_image", executor=ThreadPoolExecutor(2), buffers=3)
    located = (p for name, doc in datum_documents(path, 40) for p in locator.locate(name, doc))
    addresses, kept, views = set(), {}, {}
    window = []
    for pending in located:
        window.append(pending)
        if len(window) <= 2:
            continue
        p = window.pop(0)
        frame = p.result()
        addresses.add(frame.__array_interface__["data"][0])
        if p.seq_num % 5 == 0:
            kept[p.seq_num] = frame
        if p.seq_num == 7:
            views[p.seq_num] = frame[10:20]
        del frame
        p.release()
    locator.close()
    assert len(addresses) < 20  # arrays were reused
    for seq_num, frame in kept.items():
        assert np.array_equal(frame, frames[seq_num - 1])
    assert np.array_equal(views[7], frames[6][10:20])
