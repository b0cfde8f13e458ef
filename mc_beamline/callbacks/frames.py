"""Find the detector frame behind an event, live or in replay.

Live, the RunEngine emits Resource/Datum documents and events whose image value is a
datum id. Replayed from Tiled, the same run comes back as StreamResource/StreamDatum
documents (after the events) that map sequence numbers to frame indices in the file.
:class:`FrameLocator` understands both and yields ``(seq_num, frame)`` pairs as soon as a
frame can be located; :class:`Hdf5FrameReader` reads frames from the detector's HDF5
files (SWMR, so files still being written are readable).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlparse

import numpy as np

DEFAULT_DATASET = "/entry/data/data"


class FrameNotFoundError(LookupError):
    """A frame that the documents point to cannot be read."""


class Hdf5FrameReader:
    """Reads frame ``index`` of an HDF5 dataset, keeping a few files open.

    Files being written in SWMR mode are opened for SWMR reading and refreshed when a
    requested index is beyond what the reader saw last.
    """

    def __init__(self, max_open: int = 4):
        self._files: OrderedDict[tuple[str, str], tuple[object, object]] = OrderedDict()
        self._max_open = max_open

    def read(self, path: str, dataset: str, index: int) -> np.ndarray:
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
            self._files[key] = (handle, handle[dataset])
            while len(self._files) > self._max_open:
                old, _ = self._files.popitem(last=False)[1]
                old.close()
        handle, ds = self._files[key]
        self._files.move_to_end(key)
        if index >= ds.shape[0]:
            ds.refresh()
        if index >= ds.shape[0]:
            raise FrameNotFoundError(f"Detector file {path} holds {ds.shape[0]} frames, not frame {index}.")
        return ds[index]

    def close(self) -> None:
        for handle, _ in self._files.values():
            handle.close()
        self._files.clear()


def _uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise FrameNotFoundError(f"Cannot read detector data from {uri}: only file URIs are supported.")
    return unquote(parsed.path)


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
    """

    def __init__(self, image_key: str, read: Callable[[str, str, int], np.ndarray] | None = None,
                 fallback: Callable[[int], np.ndarray] | None = None,
                 on_error: Callable[[int, Exception], None] | None = None):
        self.image_key = image_key
        self._on_error = on_error
        self._reader = Hdf5FrameReader() if read is None else None
        self._read = read or self._reader.read
        self._fallback = fallback
        self._resources: dict[str, dict] = {}
        self._datums: dict[str, dict] = {}
        self._stream_resources: dict[str, dict] = {}
        self._delivered: set[int] = set()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def __call__(self, name: str, doc: dict) -> Iterator[tuple[int, np.ndarray]]:
        """Feed one document; yield the frames it makes available."""
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

    def _deliver(self, seq_num: int, locate: Callable[[], np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        if seq_num in self._delivered:
            return
        try:
            try:
                frame = locate()
            except (FrameNotFoundError, OSError) as exc:
                if self._fallback is None:
                    raise FrameNotFoundError(str(exc)) from None
                frame = self._fallback(seq_num)
        except Exception as exc:  # noqa: BLE001 - reported per frame, the others go on
            if self._on_error is None:
                raise
            self._on_error(seq_num, exc)
            return
        self._delivered.add(seq_num)
        yield seq_num, np.asarray(frame)

    def _from_event(self, seq_num: int, value) -> Iterator[tuple[int, np.ndarray]]:
        if value is None:
            return
        if not isinstance(value, str):  # filled in-line array
            self._delivered.add(seq_num)
            yield seq_num, np.asarray(value)
            return
        yield from self._deliver(seq_num, lambda: self._read(*self._datum_location(seq_num, value)))

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

    def _from_stream_datum(self, sres: dict, doc: dict) -> Iterator[tuple[int, np.ndarray]]:
        path = _uri_path(sres["uri"])
        dataset = sres.get("parameters", {}).get("dataset", DEFAULT_DATASET)
        first_index = doc["indices"]["start"]
        for offset, seq_num in enumerate(range(doc["seq_nums"]["start"], doc["seq_nums"]["stop"])):
            index = first_index + offset
            yield from self._deliver(seq_num, lambda index=index: self._read(path, dataset, index))
