"""Find the detector frame behind an event, live or in replay.

Live, the RunEngine emits Resource/Datum documents and events whose image value is a
datum id. Replayed from Tiled, the same run comes back as StreamResource/StreamDatum
documents (after the events) that map sequence numbers to frame indices in the file.
:class:`FrameLocator` understands both and yields ``(seq_num, frame)`` pairs as soon as a
frame can be located; :class:`Hdf5FrameReader` reads frames from the detector's HDF5
files (SWMR, so files still being written are readable).

Eiger-style files (one frame per chunk, Bitshuffle/LZ4) are read as raw chunks
(``H5Dread_chunk``) and decompressed by the Bitshuffle filter's own C function from
hdf5plugin's filter library, called through ctypes: the same bytes as an h5py read,
without HDF5's filter pipeline and copies, and without holding the GIL, so that a small
thread pool can decompress the next frames while the current one is analysed
(:meth:`FrameLocator.locate`, :meth:`Hdf5FrameReader.request`). Any other layout or
filter, a chunk not (yet) stored, or a chunk that does not decode is read by h5py as
before. Frames decompressed ahead go into a few reused arrays: one that its user gives
back (:meth:`PendingFrame.release`) is reused only if nothing else refers to it any more.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlparse

import numpy as np

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


def _done(value: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: value


def _refs(obj) -> int:
    return sys.getrefcount(obj)


def _calibrate_refs() -> int:
    frame = np.empty(1)
    return _refs(frame)


_UNSHARED_REFS = _calibrate_refs()
"""``_refs(frame)`` of an array that only the calling function's local variable refers to."""


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

    def _raw_chunk(self, ds, decoder, index: int) -> bytes | None:
        """The stored (filtered) chunk of frame ``index``, or None where h5py must read it."""
        if decoder is None:
            return None
        try:
            filter_mask, raw = ds.id.read_direct_chunk((index,) + (0,) * (ds.ndim - 1))
        except Exception:  # noqa: BLE001 - e.g. a chunk not stored yet: h5py reads the fill value
            return None
        return raw if filter_mask == 0 else None

    def read(self, path: str, dataset: str, index: int) -> np.ndarray:
        """Frame ``index`` of ``dataset`` in file ``path``, read now."""
        ds, decoder = self._dataset(path, dataset, index)
        raw = self._raw_chunk(ds, decoder, index)
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
            return _done(self.read(path, dataset, index))
        ds, decoder = self._dataset(path, dataset, index)
        raw = self._raw_chunk(ds, decoder, index)
        if raw is None:
            return _done(ds[index])
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


def _uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise FrameNotFoundError(f"Cannot read detector data from {uri}: only file URIs are supported.")
    return unquote(parsed.path)


class PendingFrame:
    """A located frame that may still be decompressing; :meth:`result` waits for it."""

    __slots__ = ("seq_num", "_get", "_locator", "_frame")

    def __init__(self, seq_num: int, get: Callable[[], np.ndarray], locator: "FrameLocator"):
        self.seq_num = seq_num
        self._get = get
        self._locator = locator
        self._frame = None

    def result(self) -> np.ndarray | None:
        """The frame; None if it could not be read and the locator's ``on_error`` was told."""
        if self._frame is None and self._get is not None:
            get, self._get = self._get, None
            self._frame = self._locator._resolve(self.seq_num, get)
        return self._frame

    def release(self) -> None:
        """Done with the frame: drop it; the reader may reuse its array if nothing else refers to it.

        Call it after the last use of :meth:`result`'s array, with no variable of yours still
        bound to it (``del frame`` first), if at all.
        """
        self._get = None
        frame, self._frame = self._frame, None
        if frame is not None and frame.base is None and _refs(frame) <= _UNSHARED_REFS:
            self._locator._recycle(frame)


class FrameLocator:
    """Turns a run's documents into ``(seq_num, frame)`` pairs for one image data key.

    Parameters
    ----------
    image_key : the event data key of the detector image, e.g. ``det_image``.
    read : ``read(path, dataset, index) -> frame``; default an :class:`Hdf5FrameReader`.
    fallback : optional ``fallback(seq_num) -> frame`` used when the file cannot be read
        locally (e.g. replay from a remote Tiled server that serves the array).
    on_error : optional ``on_error(seq_num, exception)`` for a frame that cannot be read;
        the other frames of the same document are still delivered. Without it the error
        is raised.
    executor : optional executor in which the default reader decompresses frames that
        :meth:`locate` hands out (the caller bounds how many it keeps pending).
    buffers : with an executor, how many frame arrays given back through
        :meth:`PendingFrame.release` the reader keeps for reuse.
    """

    def __init__(self, image_key: str, read: Callable[[str, str, int], np.ndarray] | None = None,
                 fallback: Callable[[int], np.ndarray] | None = None,
                 on_error: Callable[[int, Exception], None] | None = None,
                 executor: Executor | None = None, buffers: int = 4):
        self.image_key = image_key
        self._on_error = on_error
        self._reader = Hdf5FrameReader(executor=executor, buffers=buffers) if read is None else None
        if read is not None:
            self._request = lambda path, dataset, index: _done(read(path, dataset, index))
        else:
            self._request = self._reader.request
        self._fallback = fallback
        self._resources: dict[str, dict] = {}
        self._datums: dict[str, dict] = {}
        self._stream_resources: dict[str, dict] = {}
        self._delivered: set[int] = set()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def _recycle(self, frame: np.ndarray) -> None:
        if self._reader is not None:
            self._reader.recycle(frame)

    def __call__(self, name: str, doc: dict) -> Iterator[tuple[int, np.ndarray]]:
        """Feed one document; yield the frames it makes available."""
        for pending in self.locate(name, doc):
            frame = pending.result()
            if frame is not None:
                yield pending.seq_num, frame

    def locate(self, name: str, doc: dict) -> Iterator[PendingFrame]:
        """Feed one document; yield a :class:`PendingFrame` per frame it makes available.

        Frames are read in the order yielded; with an executor their decompression runs
        ahead until :meth:`PendingFrame.result` is called. Ask for the results in order.
        """
        if name == "resource":
            self._resources[doc["uid"]] = doc
        elif name == "datum":
            self._datums[doc["datum_id"]] = doc
        elif name == "datum_page":
            for i, datum_id in enumerate(doc["datum_id"]):
                self._datums[datum_id] = {
                    "resource": doc["resource"],
                    "datum_kwargs": {k: v[i] for k, v in doc["datum_kwargs"].items()},
                }
        elif name == "stream_resource":
            if doc.get("data_key") == self.image_key:
                self._stream_resources[doc["uid"]] = doc
        elif name == "stream_datum":
            sres = self._stream_resources.get(doc["stream_resource"])
            if sres is not None:
                yield from self._from_stream_datum(sres, doc)
        elif name == "event":
            yield from self._from_event(doc["seq_num"], doc["data"].get(self.image_key))
        elif name == "event_page":
            values = doc["data"].get(self.image_key)
            if values is not None:
                for seq_num, value in zip(doc["seq_num"], values):
                    yield from self._from_event(seq_num, value)

    def _deliver(self, seq_num: int, request: Callable[[], Callable[[], np.ndarray]]) -> Iterator[PendingFrame]:
        if seq_num in self._delivered:
            return
        try:
            try:
                get = request()
            except (FrameNotFoundError, OSError) as exc:
                if self._fallback is None:
                    raise FrameNotFoundError(str(exc)) from None
                get = _done(self._fallback(seq_num))
        except Exception as exc:  # noqa: BLE001 - reported per frame, the others go on
            if self._on_error is None:
                raise
            self._on_error(seq_num, exc)
            return
        self._delivered.add(seq_num)
        yield PendingFrame(seq_num, get, self)

    def _resolve(self, seq_num: int, get: Callable[[], np.ndarray]) -> np.ndarray | None:
        """The frame of a pending read; read errors are handled as in :meth:`_deliver`."""
        try:
            try:
                frame = get()
            except (FrameNotFoundError, OSError) as exc:
                if self._fallback is None:
                    raise FrameNotFoundError(str(exc)) from None
                frame = self._fallback(seq_num)
        except Exception as exc:  # noqa: BLE001
            self._delivered.discard(seq_num)
            if self._on_error is None:
                raise
            self._on_error(seq_num, exc)
            return None
        return np.asarray(frame)

    def _from_event(self, seq_num: int, value) -> Iterator[PendingFrame]:
        if value is None:
            return
        if not isinstance(value, str):  # filled in-line array
            self._delivered.add(seq_num)
            yield PendingFrame(seq_num, _done(value), self)
            return
        yield from self._deliver(seq_num, lambda: self._request(*self._datum_location(seq_num, value)))

    def _datum_location(self, seq_num: int, datum_id: str) -> tuple[str, str, int]:
        """(file path, dataset, frame index) of a datum; the datum is forgotten (one event each)."""
        datum = self._datums.pop(datum_id, None)
        if datum is None:
            raise FrameNotFoundError(f"Event {seq_num} refers to datum {datum_id}, which was never emitted.")
        resource = self._resources[datum["resource"]]
        path = str(Path(resource.get("root", "/")) / resource["resource_path"])
        dataset = resource.get("resource_kwargs", {}).get("dataset", DEFAULT_DATASET)
        kwargs = datum["datum_kwargs"]
        return path, dataset, int(kwargs.get("point_number", kwargs.get("index", 0)))

    def _from_stream_datum(self, sres: dict, doc: dict) -> Iterator[PendingFrame]:
        path = _uri_path(sres["uri"])
        dataset = sres.get("parameters", {}).get("dataset", DEFAULT_DATASET)
        first_index = doc["indices"]["start"]
        for offset, seq_num in enumerate(range(doc["seq_nums"]["start"], doc["seq_nums"]["stop"])):
            index = first_index + offset
            yield from self._deliver(seq_num, lambda index=index: self._request(path, dataset, index))
