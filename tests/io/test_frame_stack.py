"""FrameStack.read_into gives exactly what h5py reads, whichever way it reads.

One-frame-per-chunk Bitshuffle/LZ4 datasets are read as raw chunks and decompressed by a
thread pool straight into the caller's buffer; everything else goes through h5py. Checked
here against ``ds[start:stop]``: values, dtype and NaNs for several dtypes, frame sizes,
batch boundaries and thread counts; uncompressed, gzip, other chunk layouts and a single
2-D frame; a chunk that was never written (the fill value, as h5py gives it), a chunk that
does not decode (an InputError naming that frame), and a buffer of another dtype.
"""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pytest

from mc_beamline.io.frames import FrameStack, _bitshuffle_lz4_decoder
from mc_beamline.io.inputs import InputError
from tests.io.detector_files import random_frames

DATASET = "/entry/data/data"
BSLZ4 = hdf5plugin.Bitshuffle(nelems=0, cname="lz4")


def h5py_frames(path, start: int, stop: int) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[DATASET][start:stop]


def read_all(stack: FrameStack, batch: int, out: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
    """(start, copy of the batch) for every batch, reusing one buffer as the command does."""
    if out is None:
        out = np.full((batch, *stack.frame_shape), 77, dtype=stack.dtype)
    got = []
    for start in range(0, stack.n_frames, batch):
        stop = min(start + batch, stack.n_frames)
        view = stack.read_into(start, stop, out)
        assert view.shape == (stop - start, *stack.frame_shape)
        assert np.shares_memory(view, out)
        got.append((start, view.copy()))
    return got


def assert_same(path, got: list[tuple[int, np.ndarray]]) -> None:
    for start, frames in got:
        expected = h5py_frames(path, start, start + len(frames))
        assert frames.dtype == expected.dtype
        np.testing.assert_array_equal(frames, expected)  # NaN == NaN here, bit for bit otherwise


@pytest.fixture(autouse=True)
def _bitshuffle_available():
    if _bitshuffle_lz4_decoder() is None:
        pytest.skip("hdf5plugin's Bitshuffle library does not export bshuf_decompress_lz4 here")


@pytest.mark.parametrize("dtype", ["<u4", "<u2", "<i4", "<f4", "<f8", "u1"])
@pytest.mark.parametrize("shape", [(37, 45), (64, 64), (101, 83)])
@pytest.mark.parametrize("threads", [1, 3])
def test_bitshuffle_frames_are_decoded_as_h5py_decodes_them(tmp_path, dtype, shape, threads):
    frames = random_frames(11, shape, dtype, mean=0.4)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, *shape), **BSLZ4)
    with FrameStack(path, DATASET, threads=threads) as stack:
        assert stack._decoder is not None  # the raw-chunk path is the one tested
        for batch in (1, 4, 11):
            assert_same(path, read_all(stack, batch))
        # a batch that starts and ends anywhere, into a larger buffer
        out = np.zeros((8, *shape), dtype=frames.dtype)
        view = stack.read_into(3, 9, out)
        np.testing.assert_array_equal(view, frames[3:9])
        assert (out[6:] == 0).all()  # nothing beyond the view is written


def test_the_block_size_the_writer_chose_is_honoured(tmp_path):
    frames = random_frames(5, (50, 70), "<u4", seed=3, mean=0.4)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, 50, 70), **hdf5plugin.Bitshuffle(nelems=256, cname="lz4"))
    with FrameStack(path, DATASET, threads=2) as stack:
        assert stack._decoder is not None
        assert_same(path, read_all(stack, 3))


LAYOUTS = {
    "uncompressed, one frame per chunk": dict(chunks=(1, 40, 30)),
    "contiguous": dict(),
    "gzip": dict(chunks=(1, 40, 30), compression="gzip"),
    "two frames per chunk": dict(chunks=(2, 40, 30), **BSLZ4),
    "three frames per chunk": dict(chunks=(3, 40, 30), **BSLZ4),
    "half a frame per chunk": dict(chunks=(1, 20, 30), **BSLZ4),
    "tiles": dict(chunks=(1, 16, 16), **BSLZ4),
    "bitshuffle without LZ4": dict(chunks=(1, 40, 30), **hdf5plugin.Bitshuffle(cname="none")),
    "bitshuffle/zstd": dict(chunks=(1, 40, 30), **hdf5plugin.Bitshuffle(cname="zstd")),
    "big-endian": dict(chunks=(1, 40, 30), dtype=">u4", **BSLZ4),
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_other_layouts_are_read_by_h5py_with_the_same_result(tmp_path, layout):
    layout = dict(layout)
    frames = random_frames(7, (40, 30), layout.pop("dtype", "<u4"), seed=1, mean=0.4)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frames, **layout)
    with FrameStack(path, DATASET, threads=2) as stack:
        assert stack._decoder is None
        for batch in (1, 2, 3, 7):
            assert_same(path, read_all(stack, batch))


def test_a_single_2d_frame(tmp_path):
    frame = random_frames(1, (40, 30), "<f4", seed=6, mean=0.4)[0]
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frame, chunks=(40, 30), **BSLZ4)
    with FrameStack(path, DATASET) as stack:
        assert stack.single and stack.n_frames == 1
        out = np.empty((1, 40, 30), dtype=stack.dtype)
        np.testing.assert_array_equal(stack.read_into(0, 1, out)[0], frame)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_chunk_never_written_reads_as_the_fill_value(tmp_path, threads):
    frames = random_frames(6, (30, 20), "<u4", seed=2, mean=0.4)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATASET, shape=frames.shape, chunks=(1, 30, 20), dtype="<u4", fillvalue=5, **BSLZ4)
        for i in (0, 1, 3, 5):  # frames 2 and 4: no chunk stored
            ds[i] = frames[i]
    expected = h5py_frames(path, 0, 6)
    assert (expected[2] == 5).all() and (expected[4] == 5).all()
    with FrameStack(path, DATASET, threads=threads) as stack:
        assert stack._decoder is not None
        for batch in (1, 4, 6):
            assert_same(path, read_all(stack, batch))


def write_with_corrupt_chunk(path, frames: np.ndarray, bad: int) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(DATASET, data=frames, chunks=(1, *frames.shape[1:]), **BSLZ4)
        _, raw = ds.id.read_direct_chunk((bad, 0, 0))
        ds.id.write_direct_chunk((bad, 0, 0), raw[:12] + bytes([0xFF] * (len(raw) - 12)), 0)


@pytest.mark.parametrize("threads", [1, 3])
def test_a_chunk_that_does_not_decode_names_its_frame(tmp_path, threads):
    frames = random_frames(6, (40, 50), "<u4", seed=4, mean=0.4)
    path = tmp_path / "frames.h5"
    write_with_corrupt_chunk(path, frames, bad=3)
    with h5py.File(path, "r") as f, pytest.raises(OSError):
        f[DATASET][3]  # h5py cannot read it either
    with FrameStack(path, DATASET, threads=threads) as stack:
        out = np.zeros((6, 40, 50), dtype=stack.dtype)
        with pytest.raises(InputError, match=r"Cannot read frame 3 of .*frames\.h5:/entry/data/data"):
            stack.read_into(0, 6, out)
        # the frames around it are read, in batches that avoid it
        np.testing.assert_array_equal(stack.read_into(0, 3, out), frames[:3])
        np.testing.assert_array_equal(stack.read_into(4, 6, out), frames[4:])


def test_a_buffer_of_another_dtype_is_filled_by_h5py(tmp_path):
    frames = random_frames(5, (30, 40), "<u2", seed=5, mean=0.4)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=frames, chunks=(1, 30, 40), **BSLZ4)
    with FrameStack(path, DATASET, threads=2) as stack:
        as_float = stack.read_into(0, 5, np.empty((5, 30, 40), dtype=np.float32))
        assert as_float.dtype == np.float32
        np.testing.assert_array_equal(as_float, frames.astype(np.float32))
