"""Simulated Eiger-1M-like pixel detector with an HDF5 (SWMR) file writer.

PVs (``{prefix}`` is e.g. ``MC:DET:``), areaDetector-like names:

=========================  ==============================================================
Acquire / Acquire_RBV      enum Done/Acquire; put 1 takes NumImages frames, put-completion
                           when all are written; put 0 stops after the current frame
AcquireTime(_RBV)          exposure per frame, s (≥ 0); sets the counts of the frame
TimeScale                  wall-clock seconds per exposure second (default 1; 0 = no wait)
NumImages(_RBV)            frames per Acquire (≥ 1)
ArrayCounter(_RBV)         image counter; each frame increments it and uses the new value
                           as ``noise_key`` of :meth:`MesocrystalSimulator.frame`
DetectorState_RBV          areaDetector states (Idle, Acquire, Error, Initializing, ...)
StatusMessage_RBV          last error or status text (char waveform)
FilePath, FileName         char waveforms; FilePath relative to (or inside) DataDir_RBV
FileNumber                 number of the next file; increments when a file is opened
Capture / Capture_RBV      enum Done/Capture; 1 opens {FilePath}/{FileName}_{FileNumber:05d}.h5,
                           0 closes it
NumCaptured_RBV            frames in the open file
FullFileName_RBV           absolute path of the open (or last) file
FilePathExists_RBV         1 if FilePath resolves to a directory inside DataDir_RBV
DataDir_RBV                absolute path of ``<data-dir>/detector`` (files must lie in it)
PoniFile_RBV, MaskFile_RBV absolute paths of the geometry (pyFAI PONI) and mask (.npy,
                           uint8, 1 = bad pixel) files written at IOC start
PoniText_RBV               the PONI file's content
ArraySizeX_RBV/Y_RBV       columns / rows of a frame
SimSeed_RBV, Geometry_RBV  sample seed and geometry name of the simulation
=========================  ==============================================================

Frames are computed at the stage's readback position at the start of each exposure, in a
single worker thread (the simulator and h5py are not re-entrant), so the IOC's event loop
keeps serving Channel Access meanwhile. The wall-clock exposure (AcquireTime x TimeScale)
runs concurrently with the computation. While the stage moves, the worker draws the
Poisson background of the next image counter in advance (it does not depend on the
position); the result is identical to ``MesocrystalSimulator.frame`` (checked at start-up,
otherwise the plain call is used). HDF5 layout of a capture file::

    /entry/data/data                       (N, rows, cols) uint32, chunk = 1 frame,
                                           Bitshuffle+LZ4, resizable
    /entry/instrument/NDAttributes/...     per frame: NDArrayUniqueId (noise key),
                                           NDArrayTimeStamp (s), SampleX/Y/Z (µm),
                                           AcquireTime (s)
    /entry/instrument/detector/pixel_mask  uint8, 1 = bad pixel
    /entry/instrument/detector/geometry_poni  PONI text

The file is opened with ``libver="latest"`` in SWMR mode and flushed after every frame,
so readers (``h5py.File(path, "r", swmr=True)``) see each completed frame, and a crash
loses at most the frame being written.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import h5py
import hdf5plugin
import numpy as np
from caproto import ChannelType, SkipWrite
from caproto.server import PVGroup, pvproperty

from mc_beamline.physics.detector_model import GAP_VALUE
from mc_beamline.physics.mesocrystal import MesocrystalSimulator
from mc_beamline.sim_iocs.pv_helpers import text_pv

DATASET = "/entry/data/data"
ATTRS_GROUP = "/entry/instrument/NDAttributes"
DETECTOR_STATES = (
    "Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting",
    "Error", "Waiting", "Initializing", "Disconnected", "Aborted",
)
PONI_NAME = "geometry.poni"
MASK_NAME = "mask.npy"
PATH_LENGTH = 1024
"""Longest file path or directory name a PV holds, bytes."""


def _clean(text) -> str:
    """String from a char-waveform put: NUL terminators and surrounding blanks removed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).split("\x00", 1)[0].strip()


def write_geometry_files(sim: MesocrystalSimulator, directory: Path) -> tuple[Path, Path, str]:
    """Write the simulator's PONI file and mask (.npy, uint8, 1 = bad) into ``directory``.

    Returns (poni path, mask path, PONI text). Files are replaced atomically.
    """
    directory.mkdir(parents=True, exist_ok=True)
    poni_text = sim.geometry.to_poni_text()
    poni = directory / PONI_NAME
    mask = directory / MASK_NAME
    tmp = directory / f".{PONI_NAME}.{os.getpid()}.tmp"
    tmp.write_text(poni_text)
    os.replace(tmp, poni)
    tmp = directory / f".{MASK_NAME}.{os.getpid()}.tmp.npy"
    np.save(tmp, sim.mask.astype(np.uint8))
    os.replace(tmp, mask)
    return poni.resolve(), mask.resolve(), poni_text


class FrameFileWriter:
    """Appends frames to one HDF5 file in SWMR mode (``/entry/data/data``)."""

    ATTRIBUTES = {
        "NDArrayUniqueId": "i8",
        "NDArrayTimeStamp": "f8",
        "SampleX": "f8",
        "SampleY": "f8",
        "SampleZ": "f8",
        "AcquireTime": "f8",
    }

    def __init__(self, path: Path, shape: tuple[int, int], *, mask: np.ndarray | None = None,
                 poni_text: str = "", file_attrs: dict | None = None):
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
                dtype="<u4", **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
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
                key: nd.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)
                for key, dtype in self.ATTRIBUTES.items()
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


class PixelDetectorIOC(PVGroup):
    """Simulated 2D pixel detector (Eiger 1M layout) writing HDF5 frame stacks.

    Parameters
    ----------
    prefix : PV prefix, e.g. ``"MC:DET:"``.
    simulator : the mesocrystal model that computes the frames.
    data_dir : the beamline data directory; files go to ``<data_dir>/detector``.
    geometry_name : name of the detector geometry (reported on Geometry_RBV).
    position_source : callable returning the current stage readbacks (x, y, z) in µm.
    """

    acquire = pvproperty(name="Acquire", value="Done", dtype=ChannelType.ENUM, enum_strings=("Done", "Acquire"),
                         doc="Start (1) or stop (0) an acquisition")
    acquire_rbv = pvproperty(name="Acquire_RBV", value="Done", dtype=ChannelType.ENUM,
                             enum_strings=("Done", "Acquire"), read_only=True)
    acquire_time = pvproperty(name="AcquireTime", value=0.01, precision=4, units="s", doc="Exposure per frame (s)")
    acquire_time_rbv = pvproperty(name="AcquireTime_RBV", value=0.01, precision=4, units="s", read_only=True)
    time_scale = pvproperty(name="TimeScale", value=1.0, precision=3,
                            doc="Wall-clock seconds per exposure second (0: no waiting)")
    num_images = pvproperty(name="NumImages", value=1, doc="Frames per Acquire")
    num_images_rbv = pvproperty(name="NumImages_RBV", value=1, read_only=True)
    array_counter = pvproperty(name="ArrayCounter", value=0, doc="Image counter (noise key of the last frame)")
    array_counter_rbv = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True)
    detector_state = pvproperty(name="DetectorState_RBV", value="Initializing", dtype=ChannelType.ENUM,
                                enum_strings=DETECTOR_STATES, read_only=True)
    status_message = text_pv("StatusMessage_RBV", "", max_length=512)
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
    poni_file = text_pv("PoniFile_RBV", "", max_length=PATH_LENGTH)
    mask_file = text_pv("MaskFile_RBV", "", max_length=PATH_LENGTH)
    poni_text = text_pv("PoniText_RBV", "", max_length=8192)
    array_size_x = pvproperty(name="ArraySizeX_RBV", value=0, read_only=True)
    array_size_y = pvproperty(name="ArraySizeY_RBV", value=0, read_only=True)
    sim_seed = pvproperty(name="SimSeed_RBV", value=0, read_only=True)
    geometry = pvproperty(name="Geometry_RBV", value="", dtype=str, read_only=True)
    model = pvproperty(name="Model_RBV", value="mc-beamline sim Eiger 1M", dtype=str, read_only=True)

    def __init__(
        self,
        *args,
        simulator: MesocrystalSimulator,
        data_dir: str | os.PathLike,
        geometry_name: str = "offaxis",
        position_source: Callable[[], tuple[float, float, float]] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.sim = simulator
        self.root = (Path(data_dir) / "detector").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.geometry_name = geometry_name
        self.position_source = position_source or (lambda: (0.0, 0.0, 0.0))
        self.poni_path, self.mask_path, self._poni_text = write_geometry_files(simulator, self.root)
        self._mask = simulator.mask.astype(np.uint8)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-det")
        self._writer: FrameFileWriter | None = None
        self._prefetched = None
        self._counter = 0
        self._acquiring: asyncio.Event | None = None  # set when the running acquisition ends
        self._stop = False
        rows, cols = simulator.geometry.shape
        # Static PV values (published at startup, before any client connects).
        self.data_dir._data["value"] = str(self.root)
        self.poni_file._data["value"] = str(self.poni_path)
        self.mask_file._data["value"] = str(self.mask_path)
        self.poni_text._data["value"] = self._poni_text
        self.array_size_x._data["value"] = cols
        self.array_size_y._data["value"] = rows
        self.sim_seed._data["value"] = int(simulator.params.seed)
        self.geometry._data["value"] = geometry_name

    # ----------------------------------------------------------------- frames
    def _blank_frame(self) -> np.ndarray:
        frame = np.zeros(self.sim.geometry.shape, dtype=np.uint32)
        frame[self.sim.gap_mask] = GAP_VALUE
        return frame

    # The Poisson background of a frame depends only on (seed, noise key, exposure), not on
    # the position, and is most of the cost of a frame. While the stage moves to the next
    # point, the worker draws the background of the next image counter in advance and
    # adds the position-dependent Bragg peaks when the exposure is taken.

    def _compute_frame(self, x: float, y: float, exposure: float, counter: int) -> np.ndarray:
        """Worker thread: the frame ``MesocrystalSimulator.frame(x, y, exposure, counter)``."""
        if exposure <= 0:
            return self._blank_frame()
        pre, self._prefetched = self._prefetched, None
        if pre is None or (pre.exposure_s, pre.noise_key) != (exposure, counter):
            pre = self.sim.noisy_background(exposure, counter)
        return self.sim.add_bragg_peaks(pre, x, y)

    def _prefetch(self, exposure: float, counter: int) -> None:
        """Worker thread: draw the background of image ``counter`` ahead of its exposure."""
        self._prefetched = self.sim.noisy_background(exposure, counter) if exposure > 0 else None

    def _expose(self, x: float, y: float, exposure: float, counter: int, meta: dict) -> int | None:
        """Worker thread: compute one frame and append it to the open file (index or None)."""
        frame = self._compute_frame(x, y, exposure, counter)
        writer = self._writer
        if writer is None:
            return None
        return writer.append(frame, meta)

    async def _run_in_worker(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    @detector_state.startup
    async def detector_state(self, instance, async_lib):
        exposure = float(self.acquire_time.value)
        try:  # build the simulator's cached tables now, not on the first frame
            await self._run_in_worker(self._prefetch, exposure, self._counter + 1)
        except Exception as exc:  # pragma: no cover - reported, the IOC keeps running
            await self.status_message.write(f"Simulator warm-up failed: {exc}")
            await instance.write("Error")
            return
        await instance.write("Idle")

    @detector_state.shutdown
    async def detector_state(self, instance, async_lib):
        await self._run_in_worker(self._close_writer)

    def close(self) -> None:
        """Synchronously close the capture file and stop the worker (process exit)."""
        self._executor.shutdown(wait=True)
        self._close_writer()

    # ---------------------------------------------------------------- acquire
    @acquire.putter
    async def acquire(self, instance, value):
        start = value in ("Acquire", 1)
        if not start:
            if self._acquiring is not None:
                self._stop = True
            return "Done"
        if self._acquiring is not None:  # already acquiring: complete with it
            await self._acquiring.wait()
            return SkipWrite
        done = self._acquiring = asyncio.Event()
        self._stop = False
        await instance.write("Acquire", verify_value=False)
        await self.acquire_rbv.write("Acquire")
        await self.detector_state.write("Acquire")
        state = "Idle"
        try:
            await self._acquire_frames()
            if self._stop:
                state = "Aborted"
        except Exception as exc:
            state = "Error"
            await self.status_message.write(f"Acquisition failed: {type(exc).__name__}: {exc}"[:511])
        finally:
            await self.detector_state.write(state)
            await self.acquire_rbv.write("Done")
            self._acquiring = None
            done.set()
        return "Done"

    async def _acquire_frames(self) -> None:
        n_images = max(int(self.num_images.value), 1)
        exposure = float(self.acquire_time.value)
        scale = float(self.time_scale.value)
        loop = asyncio.get_running_loop()
        for _ in range(n_images):
            if self._stop:
                break
            counter = self._counter + 1
            x, y, z = self.position_source()
            meta = {
                "NDArrayUniqueId": counter, "NDArrayTimeStamp": time.time(),
                "SampleX": x, "SampleY": y, "SampleZ": z, "AcquireTime": exposure,
            }
            job = loop.run_in_executor(self._executor, self._expose, x, y, exposure, counter, meta)
            wall = exposure * scale
            if wall > 0:
                index, _ = await asyncio.gather(job, asyncio.sleep(wall))
            else:
                index = await job
            self._counter = counter
            loop.run_in_executor(self._executor, self._prefetch, exposure, counter + 1)
            await self.array_counter.write(counter, verify_value=False)
            await self.array_counter_rbv.write(counter)
            if index is not None:
                await self.num_captured.write(index + 1)

    # ------------------------------------------------------------- parameters
    @acquire_time.putter
    async def acquire_time(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < 0:
            await self.status_message.write(f"AcquireTime must be a finite time >= 0 s, got {value}.")
            return instance.value
        await self.acquire_time_rbv.write(value)
        return value

    @time_scale.putter
    async def time_scale(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < 0:
            return instance.value
        return value

    @num_images.putter
    async def num_images(self, instance, value):
        value = max(int(value), 1)
        await self.num_images_rbv.write(value)
        return value

    @array_counter.putter
    async def array_counter(self, instance, value):
        self._counter = int(value)
        await self.array_counter_rbv.write(self._counter)
        return self._counter

    # ------------------------------------------------------------------ files
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
        value = _clean(value)
        try:
            path = self._resolve_dir(value)
            exists = 1 if path.is_dir() or not path.exists() else 0
        except ValueError as exc:
            await self.status_message.write(str(exc)[:511])
            exists = 0
        await self.file_path_exists.write(exists)
        return value

    @file_name.putter
    async def file_name(self, instance, value):
        return _clean(value)

    def _open_writer(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = FrameFileWriter(
            path, self.sim.geometry.shape, mask=self._mask, poni_text=self._poni_text,
            file_attrs={"mc_beamline_seed": int(self.sim.params.seed), "geometry": self.geometry_name},
        )

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    @capture.putter
    async def capture(self, instance, value):
        if value not in ("Capture", 1):
            await self._run_in_worker(self._close_writer)
            await self.capture_rbv.write("Done")
            return "Done"
        if self._writer is not None:
            return "Capture"
        try:
            name = _clean(self.file_name.value)
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"FileName {name!r} is not a plain file name.")
            directory = self._resolve_dir(_clean(self.file_path.value))
            number = int(self.file_number.value)
            path = directory / f"{name}_{number:05d}.h5"
            if path.exists():
                raise FileExistsError(f"Capture file {path} already exists.")
            await self._run_in_worker(self._open_writer, path)
        except Exception as exc:
            await self.status_message.write(f"Cannot open capture file: {exc}"[:511])
            await self.capture_rbv.write("Done")
            return "Done"
        await self.full_file_name.write(str(path))
        await self.file_number.write(number + 1)
        await self.num_captured.write(0)
        await self.file_path_exists.write(1)
        await self.status_message.write(f"Capturing to {path.name}"[:511])
        await self.capture_rbv.write("Capture")
        return "Capture"


__all__ = ["PixelDetectorIOC", "FrameFileWriter", "write_geometry_files", "DATASET", "ATTRS_GROUP"]
