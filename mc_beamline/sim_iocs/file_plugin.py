"""The HDF5 file plugin of the simulated cameras: capture files of one-frame chunks, SWMR.

Every simulated camera that records frames to disk (the raster's pixel detector, the
assembly cell's SAXS camera) mixes :class:`Hdf5FilePlugin` into its PV group and so
serves the same areaDetector-like file PVs under its own prefix:

=========================  ==============================================================
FilePath                   char waveform; directory of capture files, relative to (or
                           inside) DataDir_RBV
FileName                   char waveform; base name of capture files
FileNumber                 number of the next file; increments when a file is opened
Capture / Capture_RBV      enum Done/Capture; 1 opens {FilePath}/{FileName}_{FileNumber:05d}.h5,
                           0 closes it
NumCaptured_RBV            frames in the open file (the index of the next frame)
FullFileName_RBV           absolute path of the open (or last) file
FilePathExists_RBV         1 if FilePath resolves to a directory inside DataDir_RBV
DataDir_RBV                absolute path of ``<data-dir>/detector`` (files must lie in it)
=========================  ==============================================================

HDF5 layout of a capture file (:class:`FrameFileWriter`)::

    /entry/data/data                       (N, rows, cols) frames, chunk = 1 frame,
                                           Bitshuffle+LZ4, resizable
    /entry/instrument/NDAttributes/...     one value per frame, names chosen by the camera
    /entry/instrument/detector/pixel_mask  uint8, 1 = bad pixel (if the camera has a mask)
    /entry/instrument/detector/geometry_poni  PONI text

The file is opened with ``libver="latest"`` in SWMR mode and flushed after every frame, so
readers (``h5py.File(path, "r", swmr=True)``) see each completed frame, and a crash loses
at most the frame being written.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from mc_beamline.sim_iocs.pv_helpers import text_pv

DATASET = "/entry/data/data"
ATTRS_GROUP = "/entry/instrument/NDAttributes"
PATH_LENGTH = 1024
"""Longest file path or directory name a PV holds, bytes."""


def clean_text(text) -> str:
    """String from a char-waveform put: NUL terminators and surrounding blanks removed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).split("\x00", 1)[0].strip()


class FrameFileWriter:
    """Appends frames to one HDF5 file in SWMR mode (``/entry/data/data``).

    Parameters
    ----------
    path : the file to create (it must not exist).
    shape : (rows, cols) of a frame.
    dtype : numpy dtype of the frames as stored (e.g. ``"<u4"``, ``"<i4"``).
    attributes : per-frame values stored under ``NDAttributes``: name → numpy dtype.
    mask : pixel mask (1 = bad) or None.
    poni_text : pyFAI PONI of the camera.
    file_attrs : attributes of the file's root group.
    """

    def __init__(self, path: Path, shape: tuple[int, int], *, dtype="<u4", attributes: dict[str, str],
                 mask: np.ndarray | None = None, poni_text: str = "", file_attrs: dict | None = None):
        self.path = Path(path)
        rows, cols = shape
        self._file = h5py.File(self.path, "w-", libver="latest")
        try:
            f = self._file
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            data = entry.create_group("data")
            data.attrs["NX_class"] = "NXdata"
            data.attrs["signal"] = "data"
            self._data = data.create_dataset(
                "data", shape=(0, rows, cols), maxshape=(None, rows, cols), chunks=(1, rows, cols),
                dtype=np.dtype(dtype), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
            )
            self._data.attrs["units"] = "counts"
            instrument = entry.create_group("instrument")
            instrument.attrs["NX_class"] = "NXinstrument"
            det = instrument.create_group("detector")
            det.attrs["NX_class"] = "NXdetector"
            if mask is not None:
                det.create_dataset("pixel_mask", data=mask.astype(np.uint8), chunks=mask.shape,
                                   **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
            det.create_dataset("geometry_poni", data=poni_text)
            nd = instrument.create_group("NDAttributes")
            self._attrs = {
                key: nd.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=kind)
                for key, kind in attributes.items()
            }
            for key, value in (file_attrs or {}).items():
                f.attrs[key] = value
            f.swmr_mode = True
            f.flush()
        except Exception:
            self._file.close()
            raise
        self.count = 0

    def append(self, frame: np.ndarray, meta: dict) -> int:
        """Write one frame (and its per-frame attributes), flush; return its index."""
        n = self.count
        self._data.resize(n + 1, axis=0)
        self._data[n] = frame
        for key, ds in self._attrs.items():
            ds.resize(n + 1, axis=0)
            ds[n] = meta.get(key, np.nan if ds.dtype.kind == "f" else -1)
        self._file.flush()
        self.count = n + 1
        return n

    def close(self) -> None:
        if self._file:
            self._file.close()


class Hdf5FilePlugin(PVGroup):
    """The file PVs of the module docstring, mixed into a camera's PV group.

    The camera calls :meth:`init_file_plugin` in its ``__init__`` (or its parent does,
    for a camera that is a SubGroup) and implements the hooks :meth:`new_file_writer`,
    :meth:`run_file_job` and :meth:`report`. Per frame it calls :meth:`write_frame` in
    its worker thread and then ``await`` :meth:`frame_captured` with the index.
    """

    file_path = text_pv("FilePath", "", max_length=PATH_LENGTH, read_only=False,
                        doc="Directory of capture files, relative to DataDir_RBV")
    file_name = text_pv("FileName", "frames", read_only=False, doc="Base name of capture files")
    file_number = pvproperty(name="FileNumber", value=0, doc="Number of the next capture file")
    file_path_exists = pvproperty(name="FilePathExists_RBV", value=1, read_only=True)
    capture = pvproperty(name="Capture", value="Done", dtype=ChannelType.ENUM, enum_strings=("Done", "Capture"),
                         doc="Open (1) or close (0) a capture file")
    capture_rbv = pvproperty(name="Capture_RBV", value="Done", dtype=ChannelType.ENUM,
                             enum_strings=("Done", "Capture"), read_only=True)
    num_captured = pvproperty(name="NumCaptured_RBV", value=0, read_only=True)
    full_file_name = text_pv("FullFileName_RBV", "", max_length=PATH_LENGTH)
    data_dir = text_pv("DataDir_RBV", "", max_length=PATH_LENGTH)

    def init_file_plugin(self, data_dir: str | os.PathLike) -> Path:
        """Files go to ``<data_dir>/detector`` (created); returns that directory."""
        self.root = (Path(data_dir) / "detector").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._writer: FrameFileWriter | None = None
        self.data_dir._data["value"] = str(self.root)
        return self.root

    # ------------------------------------------------------------ camera hooks
    def new_file_writer(self, path: Path) -> FrameFileWriter:
        """Worker thread: create the capture file ``path`` for this camera's frames."""
        raise NotImplementedError

    async def run_file_job(self, func, *args):
        """Run ``func(*args)`` in the camera's worker thread (the one that writes frames)."""
        raise NotImplementedError

    async def report(self, message: str) -> None:
        """Show ``message`` (a refusal or the file opened) on the camera's status PV."""
        raise NotImplementedError

    # ------------------------------------------------------------------ frames
    @property
    def capturing(self) -> bool:
        """Whether a capture file is open."""
        return self._writer is not None

    def write_frame(self, frame: np.ndarray, meta: dict) -> int | None:
        """Worker thread: append ``frame`` (and ``meta``) to the open file; its index, or None if none is open."""
        writer = self._writer
        if writer is None:
            return None
        return writer.append(frame, meta)

    async def frame_captured(self, index: int | None) -> None:
        """Publish NumCaptured_RBV after :meth:`write_frame` returned ``index``."""
        if index is not None:
            await self.num_captured.write(index + 1)

    def close_file(self) -> None:
        """Close the capture file, if one is open (worker thread, or after the worker stopped)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    # ------------------------------------------------------------------- files
    def _resolve_dir(self, file_path: str) -> Path:
        """Directory for FilePath; it must lie inside DataDir_RBV."""
        path = Path(file_path) if file_path else self.root
        if not path.is_absolute():
            path = self.root / path
        path = path.resolve()
        if path != self.root and not path.is_relative_to(self.root):
            raise ValueError(f"FilePath {file_path!r} is outside the detector data directory {self.root}.")
        return path

    @file_path.putter
    async def file_path(self, instance, value):
        value = clean_text(value)
        try:
            path = self._resolve_dir(value)
            exists = 1 if path.is_dir() or not path.exists() else 0
        except ValueError as exc:
            await self.report(str(exc))
            exists = 0
        await self.file_path_exists.write(exists)
        return value

    @file_name.putter
    async def file_name(self, instance, value):
        return clean_text(value)

    def _open_writer(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self.new_file_writer(path)

    @capture.putter
    async def capture(self, instance, value):
        if value not in ("Capture", 1):
            await self.run_file_job(self.close_file)
            await self.capture_rbv.write("Done")
            return "Done"
        if self._writer is not None:
            return "Capture"
        try:
            name = clean_text(self.file_name.value)
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"FileName {name!r} is not a plain file name.")
            directory = self._resolve_dir(clean_text(self.file_path.value))
            number = int(self.file_number.value)
            path = directory / f"{name}_{number:05d}.h5"
            if path.exists():
                raise FileExistsError(f"Capture file {path} already exists.")
            await self.run_file_job(self._open_writer, path)
        except Exception as exc:
            await self.report(f"Cannot open capture file: {exc}")
            await self.capture_rbv.write("Done")
            return "Done"
        await self.full_file_name.write(str(path))
        await self.file_number.write(number + 1)
        await self.num_captured.write(0)
        await self.file_path_exists.write(1)
        await self.report(f"Capturing to {path.name}")
        await self.capture_rbv.write("Capture")
        return "Capture"


__all__ = ["ATTRS_GROUP", "DATASET", "FrameFileWriter", "Hdf5FilePlugin", "PATH_LENGTH", "clean_text"]
