"""Detector frames from HDF5 files: one frame by index, or a whole stack in batches.

:class:`Hdf5FrameReader` reads single frames from the detector's HDF5 files (SWMR, so
files still being written are readable), as the live analysis and replay need them;
:class:`FrameStack` reads a stack of frames in batches for the offline command.

Both read Eiger-style datasets (one frame per chunk, Bitshuffle/LZ4) the same way, through
:class:`_BitshuffleLz4Frames`: raw chunks (``H5Dread_chunk``) decompressed by the Bitshuffle
filter's own C function from hdf5plugin's filter library, called through ctypes: the same
bytes as an h5py read, without HDF5's filter pipeline and copies, and without holding the
GIL, so that a small thread pool decompresses several frames at once, straight into the
arrays they are analysed from. :class:`Hdf5FrameReader` decompresses the next frames while
the current one is analysed (:meth:`Hdf5FrameReader.request`); :meth:`FrameStack.read_into`
decompresses the frames of a batch in parallel into the caller's buffer. Any other layout
or filter, a chunk not (yet) stored, or a chunk that does not decode is read by h5py as
before. Frames decompressed ahead go into a few reused arrays: one that its user gives
back (:meth:`Hdf5FrameReader.recycle`) is reused only if nothing else refers to it any more.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Callable

import numpy as np

from mc_beamline.io.inputs import InputError, short_reason

DEFAULT_DATASET = "/entry/data/data"
BITSHUFFLE_FILTER_ID = 32008
_BSHUF_LZ4 = 2  # compression code of the Bitshuffle filter's 5th parameter (0: none, 2: LZ4, 3: Zstd)
_BSHUF_HEADER = 12  # uncompressed size (uint64, big endian) and block size in bytes (uint32, big endian)


class FrameNotFoundError(LookupError):
    """A frame that the documents point to cannot be read."""


_bshuf_decompress_lz4 = None


def _bitshuffle_lz4_decoder():
    """``bshuf_decompress_lz4`` of hdf5plugin's Bitshuffle filter library, or None if unavailable."""
    global _bshuf_decompress_lz4
    if _bshuf_decompress_lz4 is None:
        fn = False
        try:
            import hdf5plugin

            path = None
            try:
                path = hdf5plugin.get_config().registered_filters.get("bshuf")
            except Exception:  # noqa: BLE001 - older hdf5plugin: look in its plugin directory
                pass
            if not path:
                names = [n for n in os.listdir(hdf5plugin.PLUGIN_PATH) if "h5bshuf" in n]
                path = os.path.join(hdf5plugin.PLUGIN_PATH, names[0]) if names else None
            if path:
                lib = ctypes.CDLL(path)
                fn = lib.bshuf_decompress_lz4
                # int64_t bshuf_decompress_lz4(const void* in, void* out, size_t size, size_t elem_size,
                #                              size_t block_size): bytes of ``in`` consumed, < 0 on error
                fn.restype = ctypes.c_int64
                fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
        except (ImportError, OSError, AttributeError):
            fn = False
        _bshuf_decompress_lz4 = fn
    return _bshuf_decompress_lz4 or None


class _BitshuffleLz4Frames:
    """Decodes the raw chunks of a dataset of one-frame Bitshuffle/LZ4 chunks."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, decompress):
        self.shape = shape
        self.dtype = dtype
        self.n = math.prod(shape)
        self.nbytes = self.n * dtype.itemsize
        self._decompress = decompress

    @classmethod
    def for_dataset(cls, ds) -> "_BitshuffleLz4Frames | None":
        """The decoder of ``ds`` if its chunks are single Bitshuffle/LZ4 frames of a native dtype, else None."""
        decompress = _bitshuffle_lz4_decoder()
        if decompress is None or ds.ndim < 2 or ds.chunks != (1, *ds.shape[1:]):
            return None
        dt = ds.dtype
        if dt.kind not in "uif" or not dt.isnative or dt.itemsize not in (1, 2, 4, 8):
            return None
        try:
            plist = ds.id.get_create_plist()
            if plist.get_nfilters() != 1:
                return None
            code, _flags, values, _name = plist.get_filter(0)
        except Exception:  # noqa: BLE001 - anything unusual: h5py reads it
            return None
        if code != BITSHUFFLE_FILTER_ID or len(values) < 5 or values[2] != dt.itemsize or values[4] != _BSHUF_LZ4:
            return None
        return cls(tuple(ds.shape[1:]), dt, decompress)

    def decode(self, raw: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """The frame in one raw chunk (the filter's output); OSError if the chunk does not decode.

        ``out``: the array to decode into (C-contiguous, frame shape and dtype; default a new one).
        """
        if len(raw) < _BSHUF_HEADER:
            raise OSError("Bitshuffle chunk too short.")
        total = int.from_bytes(raw[:8], "big")
        block = int.from_bytes(raw[8:12], "big")
        if total != self.nbytes or block <= 0 or block % self.dtype.itemsize:
            raise OSError(f"Bitshuffle chunk of {total} bytes in blocks of {block}, expected {self.nbytes} bytes.")
        if out is None:
            out = np.empty(self.shape, self.dtype)
        source = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value + _BSHUF_HEADER
        used = self._decompress(source, out.ctypes.data, self.n, self.dtype.itemsize, block // self.dtype.itemsize)
        if used != len(raw) - _BSHUF_HEADER:
            raise OSError(f"Bitshuffle/LZ4 chunk does not decode (code {used}).")
        return out

    @staticmethod
    def raw_chunk(ds, index: int) -> bytes | None:
        """The stored (filtered) chunk of frame ``index`` of ``ds``, or None where h5py must read it."""
        try:
            filter_mask, raw = ds.id.read_direct_chunk((index,) + (0,) * (ds.ndim - 1))
        except Exception:  # noqa: BLE001 - e.g. a chunk not stored (yet): h5py reads the fill value
            return None
        return raw if filter_mask == 0 else None

    def fits(self, out: np.ndarray) -> bool:
        """Whether frames can be decoded straight into ``out`` (frames, *frame shape), C-contiguous."""
        return out.dtype == self.dtype and tuple(out.shape[1:]) == self.shape and out.flags.c_contiguous

    def decode_range(self, ds, start: int, stop: int, out: np.ndarray, executor: Executor | None) -> list[int]:
        """Decode frames ``start:stop`` of ``ds`` into ``out[0 : stop - start]`` (:meth:`fits`).

        The raw chunks are read in the calling thread, in order; they are decompressed in
        ``executor``'s threads (here if None). Returns the indices that h5py must read: chunks
        not stored, stored unfiltered, or that do not decode. Every decompression has ended
        when this returns, also when it raises.
        """
        redo: list[int] = []
        futures: dict[Future, int] = {}
        try:
            for k, index in enumerate(range(start, stop)):
                raw = self.raw_chunk(ds, index)
                if raw is None:
                    redo.append(index)
                elif executor is None:
                    try:
                        self.decode(raw, out[k])
                    except OSError:
                        redo.append(index)
                else:
                    futures[executor.submit(self.decode, raw, out[k])] = index
        finally:
            wait_futures(futures)  # nothing writes into ``out`` once this returns
        for future, index in futures.items():
            if future.exception() is not None:
                if not isinstance(future.exception(), OSError):
                    raise future.exception()
                redo.append(index)
        return sorted(redo)


def ready(value: np.ndarray) -> Callable[[], np.ndarray]:
    """A frame that is already read, in the form :meth:`Hdf5FrameReader.request` returns."""
    return lambda: value


def _calibrate_refs() -> int:
    frame = np.empty(1)
    return sys.getrefcount(frame)


_UNSHARED_REFS = _calibrate_refs()
"""``sys.getrefcount(frame)`` of an array that only the calling function's local variable refers to."""


def unshared(frame: np.ndarray) -> bool:
    """Whether ``frame`` owns its memory and only the caller's local variable refers to it,
    so that its array may be reused for another frame."""
    return frame.base is None and sys.getrefcount(frame) - 1 <= _UNSHARED_REFS


class _FrameBuffers:
    """At most ``size`` frame arrays given back after use, handed out again for the next frames."""

    def __init__(self, size: int):
        self._size = size
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self._lock:
            for i, buf in enumerate(self._free):
                if buf.shape == shape and buf.dtype == dtype:
                    return self._free.pop(i)
        return np.empty(shape, dtype)

    def give(self, buf: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self._size:
                self._free.append(buf)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


def read_frame(path: str | Path, index: int, dataset: str = DEFAULT_DATASET) -> np.ndarray:
    """Frame ``index`` of a detector file, also while the detector is still writing it (SWMR read)."""
    import h5py
    import hdf5plugin  # noqa: F401 - registers the Bitshuffle/LZ4 filter

    with h5py.File(path, "r", swmr=True, libver="latest") as f:
        ds = f[dataset]
        ds.refresh()
        return ds[index]


def read_flushed_frame(path: str | Path, index: int, dataset: str = DEFAULT_DATASET) -> np.ndarray:
    """Frame ``index`` of a detector file whose writer has flushed it and writes nothing while
    it is read (a plan reading back the frame it has just taken).

    The file is opened through its own Python file object, so HDF5 does not share it with
    other handles of the same file in this process: two SWMR handles of one file in a process
    can see a stale chunk index (the first frame for every later one), e.g. where the live
    analysis holds the file open beside the plan.
    """
    import h5py
    import hdf5plugin  # noqa: F401 - registers the Bitshuffle/LZ4 filter

    with open(path, "rb") as raw, h5py.File(raw, "r") as f:
        ds = f[dataset]
        if index >= ds.shape[0]:
            raise FrameNotFoundError(f"Detector file {path} holds {ds.shape[0]} frames, not frame {index}.")
        return ds[index]


class Hdf5FrameReader:
    """Reads frame ``index`` of an HDF5 dataset, keeping a few files open.

    Files being written in SWMR mode are opened for SWMR reading and refreshed when a
    requested index is beyond what the reader saw last. With an ``executor``,
    :meth:`request` decompresses Bitshuffle/LZ4 frames in its threads, into at most
    ``buffers`` reused arrays (see :meth:`recycle`) besides new ones.
    """

    def __init__(self, max_open: int = 4, executor: Executor | None = None, buffers: int = 4):
        self._files: OrderedDict[tuple[str, str], tuple[object, object, object]] = OrderedDict()
        self._max_open = max_open
        self._executor = executor
        self._buffers = _FrameBuffers(buffers) if executor is not None and buffers > 0 else None

    def _dataset(self, path: str, dataset: str, index: int):
        """(dataset, chunk decoder or None) holding frame ``index``; FrameNotFoundError if it does not."""
        import h5py
        import hdf5plugin  # noqa: F401 - registers the Bitshuffle/LZ4 filter

        key = (path, dataset)
        if key not in self._files:
            if not os.path.exists(path):
                raise FrameNotFoundError(f"Detector file {path} does not exist.")
            try:
                handle = h5py.File(path, "r", swmr=True)
            except OSError:
                handle = h5py.File(path, "r")
            if dataset not in handle:
                handle.close()
                raise FrameNotFoundError(f"Detector file {path} has no dataset {dataset}.")
            ds = handle[dataset]
            self._files[key] = (handle, ds, _BitshuffleLz4Frames.for_dataset(ds))
            while len(self._files) > self._max_open:
                old, _, _ = self._files.popitem(last=False)[1]
                old.close()
        _, ds, decoder = self._files[key]
        self._files.move_to_end(key)
        if index >= ds.shape[0]:
            ds.refresh()
        if index >= ds.shape[0]:
            raise FrameNotFoundError(f"Detector file {path} holds {ds.shape[0]} frames, not frame {index}.")
        return ds, decoder

    def read(self, path: str, dataset: str, index: int) -> np.ndarray:
        """Frame ``index`` of ``dataset`` in file ``path``, read now."""
        ds, decoder = self._dataset(path, dataset, index)
        raw = None if decoder is None else decoder.raw_chunk(ds, index)
        if raw is not None:
            try:
                return decoder.decode(raw)
            except OSError:
                pass  # h5py decides (and raises the error it raises)
        return ds[index]

    def request(self, path: str, dataset: str, index: int) -> Callable[[], np.ndarray]:
        """Start reading frame ``index``; returns a function that waits for the frame.

        What can be known at once (no file, no such frame yet) raises FrameNotFoundError
        here; the raw chunk is read here too (frames come in the order requested), only
        its decompression runs in the executor. A chunk that does not decode is read by
        h5py when the frame is asked for.
        """
        if self._executor is None:
            return ready(self.read(path, dataset, index))
        ds, decoder = self._dataset(path, dataset, index)
        raw = None if decoder is None else decoder.raw_chunk(ds, index)
        if raw is None:
            return ready(ds[index])
        # the array comes from this thread (as an h5py read's would), so that its memory goes
        # back where the caller's later allocations find it
        out = self._buffers.take(decoder.shape, decoder.dtype) if self._buffers is not None else None
        future: Future = self._executor.submit(decoder.decode, raw, out)

        def get() -> np.ndarray:
            try:
                return future.result()
            except OSError:
                ds, _ = self._dataset(path, dataset, index)
                return ds[index]

        return get

    def recycle(self, frame: np.ndarray) -> None:
        """Take back a frame array that nothing refers to any more (but the caller, who drops
        it): it may hold a later frame."""
        if self._buffers is not None:
            self._buffers.give(frame)

    def close(self) -> None:
        """Close the files and drop the frame arrays kept for reuse."""
        for handle, _, _ in self._files.values():
            handle.close()
        self._files.clear()
        if self._buffers is not None:
            self._buffers.clear()


def frame_dtype_ok(dtype: np.dtype) -> bool:
    """Whether frames of ``dtype`` are counts the analysis takes: integer or float, at most 8 bytes."""
    return dtype.kind in "uif" and dtype.itemsize <= 8


MAX_DECODE_THREADS = 8


def decode_threads() -> int:
    """Threads that decompress frames: the CPUs this process may run on, at most
    :data:`MAX_DECODE_THREADS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(MAX_DECODE_THREADS, n))


class FrameStack:
    """Read access to a stack of frames in an HDF5 dataset.

    One-frame-per-chunk Bitshuffle/LZ4 datasets (Eiger files) are read as raw chunks and
    decompressed by a small thread pool straight into the caller's buffer
    (:meth:`read_into`); every other dataset is read by h5py. Both give the same arrays.

    Parameters
    ----------
    path : HDF5 file.
    dataset : path of the dataset in the file, shape (n, rows, columns) or (rows, columns).
    threads : threads decompressing Bitshuffle/LZ4 frames (default :func:`decode_threads`;
        1: in the reading thread, no pool).

    Raises
    ------
    InputError
        If the file is missing or not HDF5, or the dataset is missing, not 2-D/3-D, empty,
        or not integer/float counts.
    """

    def __init__(self, path: Path, dataset: str, *, threads: int | None = None):
        import h5py
        import hdf5plugin  # noqa: F401 - registers the Bitshuffle/LZ4 (and other) filters

        self.path = Path(path)
        self.dataset_name = dataset
        if not self.path.exists():
            raise InputError(f"Frames file {self.path} does not exist.")
        if not self.path.is_file():
            raise InputError(f"Frames file {self.path} is not a file.")
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError as exc:
            raise InputError(f"Frames file {self.path} cannot be read ({short_reason(exc)}).") from None
        if not is_hdf5:
            raise InputError(f"Frames file {self.path} is not an HDF5 file.")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"Frames file {self.path} cannot be opened as HDF5 ({short_reason(exc)}).") from None
        try:
            try:
                ds = self._file.get(dataset)
            except (KeyError, ValueError, OSError):  # a broken link or an invalid path
                ds = None
            if ds is None:
                link = self._file.get(dataset, getlink=True) if dataset in self._file else None
                if isinstance(link, h5py.ExternalLink):
                    target = Path(link.filename)
                    target = target if target.is_absolute() else self.path.parent / target
                    raise InputError(f"{dataset} in {self.path} links to {target}:{link.path}, which does not "
                                     f"exist or cannot be read.")
                raise InputError(f"Frames file {self.path} has no dataset {dataset}; name the frames' dataset "
                                 "with --dataset.")
            if not isinstance(ds, h5py.Dataset):
                raise InputError(f"{dataset} in {self.path} is a {type(ds).__name__.lower()}, not a dataset of frames.")
            if ds.ndim not in (2, 3):
                raise InputError(
                    f"Dataset {dataset} in {self.path} has shape {ds.shape}; frames must be (n, rows, columns) "
                    "or one (rows, columns) frame."
                )
            if not frame_dtype_ok(ds.dtype):
                raise InputError(f"Dataset {dataset} in {self.path} holds {ds.dtype}, not integer or float counts.")
            self.ds = ds
            self.single = ds.ndim == 2
            self.n_frames = 1 if self.single else int(ds.shape[0])
            self.frame_shape = tuple(int(s) for s in ds.shape[-2:])
            self.dtype = ds.dtype
            self.chunk_frames = int(ds.chunks[0]) if (ds.chunks and not self.single) else 1
            if self.n_frames == 0 or 0 in self.frame_shape:
                raise InputError(f"Dataset {dataset} in {self.path} holds no frames (shape {ds.shape}).")
            self._decoder = None if self.single else _BitshuffleLz4Frames.for_dataset(ds)
        except BaseException:
            self._file.close()
            raise
        self._threads = decode_threads() if threads is None else max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape)) * self.dtype.itemsize

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Read frames ``start:stop`` into ``out[: stop - start]`` and return that view.

        Bitshuffle/LZ4 frames are decompressed in parallel straight into ``out`` when it is
        a C-contiguous array of the dataset's dtype; otherwise (and for frames whose chunk is
        not stored or does not decode) h5py reads them. ``out`` is not written to any more
        once this returns or raises.

        Raises
        ------
        InputError
            If HDF5 cannot read or decompress them.
        """
        view = out[: stop - start]
        if self._decoder is not None and self._decoder.fits(view):
            for index in self._decoder.decode_range(self.ds, start, stop, view, self._executor()):
                self._read_h5py(index, index + 1, view[index - start : index - start + 1])
        else:
            self._read_h5py(start, stop, view)
        return view

    def _executor(self) -> ThreadPoolExecutor | None:
        if self._threads <= 1:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="mc-frames-decode")
        return self._pool

    def _read_h5py(self, start: int, stop: int, view: np.ndarray) -> None:
        try:
            if self.single:
                self.ds.read_direct(view[0])
            else:
                self.ds.read_direct(view, np.s_[start:stop], np.s_[0 : stop - start])
        except (OSError, ValueError, TypeError) as exc:
            which = f"frame {start}" if stop - start == 1 else f"frames {start}-{stop - 1}"
            raise InputError(f"Cannot read {which} of {self.path}:{self.dataset_name} ({short_reason(exc)}).") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._file.close()

    def __enter__(self) -> "FrameStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
