"""Find the detector frame behind an event, live or in replay.

Live, the RunEngine emits Resource/Datum documents and events whose image value is a
datum id. Replayed from Tiled, the same run comes back as StreamResource/StreamDatum
documents (after the events) that map sequence numbers to frame indices in the file.
:class:`FrameLocator` understands both and yields frames as soon as they can be located;
the frames are read by :class:`~mc_beamline.io.frames.Hdf5FrameReader`, which may
decompress the next ones in threads while the current one is analysed
(:meth:`FrameLocator.locate`): a :class:`PendingFrame` waits for its frame, and gives its
array back for reuse when released.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import unquote, urlparse

import numpy as np

from mc_beamline.io.frames import (
    DEFAULT_DATASET,
    FrameNotFoundError,
    Hdf5FrameReader,
    ready,
    unshared,
)

T = TypeVar("T")


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
        if frame is not None and unshared(frame):
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
            self._request = lambda path, dataset, index: ready(read(path, dataset, index))
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
        get = self._read(seq_num, request, ready)
        if get is not None:
            self._delivered.add(seq_num)
            yield PendingFrame(seq_num, get, self)

    def _resolve(self, seq_num: int, get: Callable[[], np.ndarray]) -> np.ndarray | None:
        """The frame of a pending read; read errors are handled as in :meth:`_deliver`."""
        frame = self._read(seq_num, get, lambda fallback_frame: fallback_frame)
        return None if frame is None else np.asarray(frame)

    def _read(self, seq_num: int, read: Callable[[], T], from_fallback: Callable[[np.ndarray], T]) -> T | None:
        """``read()``; where the file cannot be read, ``from_fallback`` of the fallback's frame.

        Any other error (or one without a fallback) goes to ``on_error`` (the frame is then
        None and may be delivered again) or, without it, is raised.
        """
        try:
            try:
                return read()
            except (FrameNotFoundError, OSError) as exc:
                if self._fallback is None:
                    raise FrameNotFoundError(str(exc)) from None
                return from_fallback(self._fallback(seq_num))
        except Exception as exc:  # noqa: BLE001 - reported per frame, the others go on
            self._delivered.discard(seq_num)
            if self._on_error is None:
                raise
            self._on_error(seq_num, exc)
            return None

    def _from_event(self, seq_num: int, value) -> Iterator[PendingFrame]:
        if value is None:
            return
        if not isinstance(value, str):  # filled in-line array
            self._delivered.add(seq_num)
            yield PendingFrame(seq_num, ready(value), self)
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
