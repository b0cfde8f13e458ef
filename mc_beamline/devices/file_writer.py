"""Frames written to HDF5 by a camera's file plugin, announced as Resource/Datum documents.

:class:`Hdf5FileFrames` is mixed into every camera whose IOC serves the HDF5 file plugin
(:class:`~mc_beamline.devices.detector.PixelDetector`,
:class:`~mc_beamline.devices.assembly_cell.AssemblySaxs`). Document model (ophyd v1 style,
understood by bluesky-tiled-plugins' ``TiledWriter``):

* ``describe()`` gives the data key ``{name}_image``: ``dtype "array"``, ``shape [rows,
  cols]``, ``dtype_numpy`` the frames' dtype (:attr:`Hdf5FileFrames.frame_dtype`),
  ``external "FILESTORE:"``.
* ``stage()`` opens a new capture file with a unique name and prepares one Resource::

      spec            "AD_HDF5_SWMR"
      root            DataDir_RBV of the IOC (``<data-dir>/detector``)
      resource_path   the file relative to root (e.g. ``2026/05/21/det_1a2b3c4d5e6f_00000.h5``)
      resource_kwargs {"dataset": "/entry/data/data", "chunk_shape": [1, rows, cols],
                       "swmr": True}
      path_semantics  "posix"

  TiledWriter's normaliser turns it into a StreamResource of mimetype
  ``application/x-hdf5`` whose parameters go to Tiled's HDF5 adapter (``dataset``,
  ``swmr``; ``chunk_shape`` makes one Tiled chunk per frame). There is deliberately no
  ``frame_per_point``: TiledWriter would turn it into a ``multiplier`` and add a
  length-1 axis to every frame.
* each frame the camera writes adds one Datum ``{"resource": uid, "datum_id":
  "<uid>/<i>", "datum_kwargs": {"point_number": i}}`` where ``i`` is the frame's index in
  the file (TiledWriter maps it to StreamDatum indices [i, i+1)); ``read()`` gives the
  datum id as the image's value. The Resource is emitted with the first Datum, both
  through ``collect_asset_docs()``.

One file per stage, one frame per trigger: for a run that stages the camera once, frame
``i`` of the file belongs to event ``seq_num = i + 1``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from pathlib import PurePosixPath

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO

DATASET = "/entry/data/data"
RESOURCE_SPEC = "AD_HDF5_SWMR"


def _uid() -> str:
    return str(uuid.uuid4())


class Hdf5FileFrames(Device):
    """The file-plugin PVs of a camera and the Resource/Datum of the frames it writes.

    The camera class (a subclass) has ``array_size_x`` and ``array_size_y`` (columns and
    rows of a frame) and ``status_message`` components, sets :attr:`frame_dtype` and
    calls :meth:`require_staged` before it acquires and :meth:`_frame_written` once the
    IOC reports the acquisition done.

    Parameters
    ----------
    write_path_template : directory of capture files relative to the IOC's data
        directory, passed through ``time.strftime`` at each stage (default ``%Y/%m/%d``).
    put_timeout : wall-clock seconds a put of the file PVs may take.
    """

    file_path = Cpt(EpicsSignal, "FilePath", string=True, kind="omitted")
    file_name = Cpt(EpicsSignal, "FileName", string=True, kind="omitted")
    file_number = Cpt(EpicsSignal, "FileNumber", kind="omitted")
    capture = Cpt(EpicsSignal, "Capture_RBV", write_pv="Capture", kind="omitted")
    num_captured = Cpt(EpicsSignalRO, "NumCaptured_RBV", kind="omitted")
    full_file_name = Cpt(EpicsSignalRO, "FullFileName_RBV", string=True, kind="omitted")
    data_dir = Cpt(EpicsSignalRO, "DataDir_RBV", string=True, kind="omitted")

    frame_dtype = np.dtype("<u4")
    """numpy dtype of the frames in the capture files."""

    def __init__(self, prefix: str = "", *, name: str, write_path_template: str = "%Y/%m/%d",
                 put_timeout: float = 10.0, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.write_path_template = write_path_template
        self.put_timeout = put_timeout
        self._asset_docs_cache: deque = deque()
        self._resource: dict | None = None
        self._resource_emitted = False
        self._datum_count = 0
        self._frames_in_file = 0
        self._last_reading: dict | None = None
        self._shape: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    @property
    def image_key(self) -> str:
        """Data key of the image in events: ``{name}_image``."""
        return f"{self.name}_image"

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of a frame, from the IOC (cached)."""
        if self._shape is None:
            self._shape = (int(self.array_size_y.get()), int(self.array_size_x.get()))
        return self._shape

    def _put(self, signal: EpicsSignal, value) -> None:
        """Put and wait for put-completion."""
        signal.put(value, use_complete=True, wait=True, timeout=self.put_timeout)

    @property
    def current_file(self) -> str | None:
        """Absolute path of the capture file opened by :meth:`stage` (None when unstaged)."""
        if self._resource is None:
            return None
        return str(PurePosixPath(self._resource["root"]) / self._resource["resource_path"])

    @property
    def last_frame(self) -> tuple[str, int] | None:
        """(absolute path of the capture file, 0-based index in it) of the last frame written
        since :meth:`stage`, so that a plan can read it back; None when none was written."""
        path = self.current_file
        if path is None or self._datum_count == 0:
            return None
        return path, self._frames_in_file - 1

    # -------------------------------------------------------------- staging
    def stage(self):
        """Open a new capture file with a unique name (one file per stage)."""
        shape = self.frame_shape
        staged = super().stage()
        try:
            if int(self.capture.get(use_monitor=False)) == 1:
                self._put(self.capture, 0)  # a file left open by an earlier session
            # "." rather than "": caproto's server fails on a one-element (empty) char-waveform put
            directory = time.strftime(self.write_path_template) if self.write_path_template else "."
            self._put(self.file_path, directory)
            self._put(self.file_name, f"{self.name}_{uuid.uuid4().hex[:12]}")
            self._put(self.capture, 1)
            if int(self.capture.get(use_monitor=False)) != 1:
                message = self.status_message.get(use_monitor=False)
                raise RuntimeError(f"{self.name} could not open a capture file: {message}")
            full = self.full_file_name.get(use_monitor=False)
            root = self.data_dir.get(use_monitor=False)
            rel = str(PurePosixPath(full).relative_to(root))
            self._resource = {
                "spec": RESOURCE_SPEC,
                "root": root,
                "resource_path": rel,
                "resource_kwargs": {"dataset": DATASET, "chunk_shape": [1, *shape], "swmr": True},
                "path_semantics": "posix",
                "uid": _uid(),
            }
            self._resource_emitted = False
            self._datum_count = 0
            self._frames_in_file = int(self.num_captured.get(use_monitor=False))
            self._last_reading = None
            self._asset_docs_cache.clear()
        except Exception:
            super().unstage()
            raise
        return staged

    def unstage(self):
        """Close the capture file."""
        try:
            if self.connected and int(self.capture.get(use_monitor=False)) == 1:
                self._put(self.capture, 0)
        finally:
            self._resource = None
            self._last_reading = None
            super().unstage()

    # ------------------------------------------------------------- acquiring
    def require_staged(self) -> int:
        """Raise unless a capture file is open; the number the next frame will have in it (1-based)."""
        if self._resource is None:
            raise RuntimeError(f"{self.name} is not staged: stage it (bluesky does) before triggering.")
        return self._frames_in_file + 1

    def _frame_written(self, expected: int, why) -> None:
        """After an acquisition: the file must hold ``expected`` frames, and the last one gets
        a Datum. ``why()`` says why it does not (the error raised otherwise)."""
        written = int(self.num_captured.get(use_monitor=False))
        if written < expected:
            raise RuntimeError(f"{self.name} did not write frame {expected}: {why()}")
        self.new_datum(written - 1)
        self._frames_in_file = written

    def new_datum(self, index: int) -> str:
        """A Datum for frame ``index`` (0-based) of the open capture file, queued for
        :meth:`collect_asset_docs` (after the Resource, the first time); it becomes what
        :meth:`read` reports for the image. Returns its datum id. A flyer that gathers
        the frames of a whole acquisition calls it once per frame."""
        with self._lock:
            resource = self._resource
            if resource is None:
                raise RuntimeError(f"{self.name} was unstaged during acquisition.")
            if not self._resource_emitted:
                self._asset_docs_cache.append(("resource", dict(resource)))
                self._resource_emitted = True
            datum_id = f"{resource['uid']}/{self._datum_count}"
            self._datum_count += 1
            datum = {"resource": resource["uid"], "datum_id": datum_id, "datum_kwargs": {"point_number": index}}
            self._asset_docs_cache.append(("datum", datum))
            self._last_reading = {"value": datum_id, "timestamp": time.time()}
            return datum_id

    # ------------------------------------------------------------ documents
    def describe(self):
        res = super().describe()
        rows, cols = self.frame_shape
        res[self.image_key] = {
            "source": f"PV:{self.prefix}FullFileName_RBV",
            "dtype": "array",
            "shape": [rows, cols],
            "dtype_numpy": np.dtype(self.frame_dtype).str,
            "external": "FILESTORE:",
        }
        return res

    def read(self):
        res = super().read()
        if self._last_reading is None:
            raise RuntimeError(f"{self.name} has no frame to read: trigger it first.")
        res[self.image_key] = dict(self._last_reading)
        return res

    def collect_asset_docs(self):
        with self._lock:
            items = list(self._asset_docs_cache)
            self._asset_docs_cache.clear()
        yield from items


__all__ = ["DATASET", "RESOURCE_SPEC", "Hdf5FileFrames"]
