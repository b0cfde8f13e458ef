"""2D pixel detector (Eiger-1M-like) that writes frames to HDF5 and emits Resource/Datum.

Document model (ophyd v1 style, understood by bluesky-tiled-plugins' ``TiledWriter``):

* ``describe()`` gives the data key ``{name}_image`` (``det_image`` for the default name):
  ``dtype "array"``, ``shape [rows, cols]``, ``dtype_numpy "<u4"``,
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
* each ``trigger()`` adds one Datum ``{"resource": uid, "datum_id": "<uid>/<i>",
  "datum_kwargs": {"point_number": i}}`` where ``i`` is the frame's index in the file
  (TiledWriter maps it to StreamDatum indices [i, i+1)). The Resource is emitted with
  the first Datum, both through ``collect_asset_docs()``.

One file per stage, one frame per trigger: for a run that stages the detector once, frame
``i`` of the file belongs to event ``seq_num = i + 1``.

:class:`PixelDetector` holds only what the real detector has; :class:`SimPixelDetector`
adds the simulator-only time scale, seed and geometry name.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict, deque
from pathlib import PurePosixPath

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus

DATASET = "/entry/data/data"
RESOURCE_SPEC = "AD_HDF5_SWMR"


def _uid() -> str:
    return str(uuid.uuid4())


class PixelDetector(Device):
    """Eiger-1M-like pixel detector with its HDF5 file writer (``{prefix}`` = ``MC:DET:``).

    Parameters
    ----------
    prefix : PV prefix.
    name : device name; the image data key is ``{name}_image``.
    write_path_template : directory of capture files relative to the IOC's data
        directory, passed through ``time.strftime`` at each stage (default ``%Y/%m/%d``).

    Configuration (``read_configuration``): exposure time (s), PONI and mask file paths;
    ``poni_text`` holds the PONI file content that plans put into the start document.
    """

    acquire = Cpt(EpicsSignal, "Acquire", kind="omitted", put_complete=True)
    acquire_busy = Cpt(EpicsSignalRO, "Acquire_RBV", kind="omitted")
    acquire_time = Cpt(EpicsSignal, "AcquireTime_RBV", write_pv="AcquireTime", kind="config", auto_monitor=True,
                       doc="exposure per frame (s)")
    num_images = Cpt(EpicsSignal, "NumImages_RBV", write_pv="NumImages", kind="omitted", auto_monitor=True)
    # Per-frame PVs are not monitored: fewer CA updates per point; read them on demand.
    array_counter = Cpt(EpicsSignal, "ArrayCounter_RBV", write_pv="ArrayCounter", kind="omitted")
    detector_state = Cpt(EpicsSignalRO, "DetectorState_RBV", string=True, kind="omitted")
    status_message = Cpt(EpicsSignalRO, "StatusMessage_RBV", string=True, kind="omitted")
    file_path = Cpt(EpicsSignal, "FilePath", string=True, kind="omitted")
    file_name = Cpt(EpicsSignal, "FileName", string=True, kind="omitted")
    file_number = Cpt(EpicsSignal, "FileNumber", kind="omitted")
    capture = Cpt(EpicsSignal, "Capture_RBV", write_pv="Capture", kind="omitted")
    num_captured = Cpt(EpicsSignalRO, "NumCaptured_RBV", kind="omitted")
    full_file_name = Cpt(EpicsSignalRO, "FullFileName_RBV", string=True, kind="omitted")
    data_dir = Cpt(EpicsSignalRO, "DataDir_RBV", string=True, kind="omitted")
    poni_file = Cpt(EpicsSignalRO, "PoniFile_RBV", string=True, kind="config")
    mask_file = Cpt(EpicsSignalRO, "MaskFile_RBV", string=True, kind="config")
    poni_text = Cpt(EpicsSignalRO, "PoniText_RBV", string=True, kind="omitted")
    array_size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="omitted")
    array_size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="omitted")

    def __init__(self, prefix: str = "", *, name: str, write_path_template: str = "%Y/%m/%d",
                 put_timeout: float = 10.0, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.write_path_template = write_path_template
        self.put_timeout = put_timeout
        self.time_scale_signal = None
        self.stage_sigs = OrderedDict([("num_images", 1)])
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
    def trigger(self) -> DeviceStatus:
        """Take one frame; the status completes when the IOC has written it (put-completion)."""
        if self._resource is None:
            raise RuntimeError(f"{self.name} is not staged: stage it (bluesky does) before triggering.")
        expected = self._frames_in_file + 1
        scale = float(self.time_scale_signal.get()) if self.time_scale_signal is not None else 1.0
        timeout = self.put_timeout + float(self.acquire_time.get()) * scale
        status = DeviceStatus(self, timeout=timeout)

        def acquired(*args, **kwargs):
            try:
                written = int(self.num_captured.get(use_monitor=False))
                if written < expected:
                    state = self.detector_state.get(use_monitor=False)
                    message = self.status_message.get(use_monitor=False)
                    raise RuntimeError(f"{self.name} did not write frame {expected} (state {state}): {message}")
                self._new_datum(written - 1)
                self._frames_in_file = written
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        self.acquire.put(1, use_complete=True, callback=acquired)
        return status

    def _new_datum(self, index: int) -> None:
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

    def stop(self, *, success: bool = False) -> None:
        if self.connected:
            self.acquire.put(0, use_complete=False)
        super().stop(success=success)

    # ------------------------------------------------------------ documents
    def describe(self):
        res = super().describe()
        rows, cols = self.frame_shape
        res[self.image_key] = {
            "source": f"PV:{self.prefix}FullFileName_RBV",
            "dtype": "array",
            "shape": [rows, cols],
            "dtype_numpy": np.dtype("<u4").str,
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


class SimPixelDetector(PixelDetector):
    """:class:`PixelDetector` on the simulated IOC (``{prefix}`` = ``MC:DET:``).

    Adds the simulator-only configuration: ``time_scale`` (wall-clock seconds per exposure
    second, 0: no waiting; the trigger timeout is scaled with it), ``sim_seed`` and
    ``geometry_name``, from which ``MesocrystalSimulator`` rebuilds the frames the IOC serves.
    """

    time_scale = Cpt(EpicsSignal, "TimeScale", kind="config", auto_monitor=True,
                     doc="wall-clock seconds per exposure second (0: no waiting)")
    sim_seed = Cpt(EpicsSignalRO, "SimSeed_RBV", kind="config")
    geometry_name = Cpt(EpicsSignalRO, "Geometry_RBV", string=True, kind="config")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.time_scale_signal = self.time_scale


__all__ = ["PixelDetector", "SimPixelDetector", "DATASET", "RESOURCE_SPEC"]
