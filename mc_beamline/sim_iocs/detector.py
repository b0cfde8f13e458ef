"""Simulated Eiger-1M-like pixel detector with an HDF5 (SWMR) file writer.

PVs (``{prefix}`` is e.g. ``MC:DET:``), areaDetector-like names:

=========================  ==============================================================
Acquire / Acquire_RBV      enum Done/Acquire; put 1 takes NumImages frames, put-completion
                           when all are written; put 0 stops after the current frame
AcquireTime(_RBV)          exposure per frame, s (≥ 0); sets the counts of the frame
TimeScale                  wall-clock seconds per exposure second (default 1; 0 = no wait)
NumImages(_RBV)            frames per Acquire (≥ 1)
TriggerMode                enum Internal / External Gate: in External Gate mode Acquire
                           arms the detector, and each gate of the stage's fly controller
                           (:mod:`.fly_controller`) exposes one frame for the gate's length
ArrayCounter(_RBV)         image counter; each frame increments it and uses the new value
                           as ``noise_key`` of :meth:`MesocrystalSimulator.frame`
DetectorState_RBV          areaDetector states (Idle, Acquire, Error, Initializing, ...)
StatusMessage_RBV          last error or status text (char waveform)
FilePath, FileName, ...    the HDF5 file plugin's PVs (FileNumber, Capture(_RBV),
                           NumCaptured_RBV, FullFileName_RBV, FilePathExists_RBV,
                           DataDir_RBV), see :mod:`.file_plugin`
PoniFile_RBV, MaskFile_RBV absolute paths of the geometry (pyFAI PONI) and mask (.npy,
                           uint8, 1 = bad pixel) files written at IOC start
PoniText_RBV               the PONI file's content
ArraySizeX_RBV/Y_RBV       columns / rows of a frame
TotalCounts_RBV            summed counts of the last frame's pixels, module gaps left out
                           (an areaDetector Stats plugin's Total), set before the frame
                           is reported written
SimSeed_RBV, Geometry_RBV  sample seed and geometry name of the simulation
=========================  ==============================================================

Frames are computed at the stage's readback position at the start of each exposure (in
External Gate mode: integrated over the beam's travel between the encoder positions the
controller latched at the gate's edges, :meth:`MesocrystalSimulator.peaks_along`), in a
single worker thread (the simulator and h5py are not re-entrant), so the IOC's event loop
keeps serving Channel Access meanwhile. The wall-clock exposure (AcquireTime x TimeScale)
runs concurrently with the computation. While the stage moves, the worker draws the
Poisson background of the next image counter in advance (it does not depend on the
position); the result is identical to ``MesocrystalSimulator.frame`` (checked at start-up,
otherwise the plain call is used). In External Gate mode a second thread draws the
backgrounds of the next queued gates while the worker finishes the current frame.
Capture files (:class:`~.file_plugin.FrameFileWriter`)
hold uint32 frames and per frame, under ``/entry/instrument/NDAttributes``: NDArrayUniqueId
(noise key), NDArrayTimeStamp (s, start of the exposure), SampleX/Y/Z (µm; x: the mean
position during the exposure), SampleXStart/SampleXEnd (µm, x when the exposure started
and ended), AcquireTime (s); the pixel mask and
the PONI text are stored with them.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from caproto import ChannelType, SkipWrite
from caproto.server import pvproperty

from mc_beamline.physics.detector_model import GAP_VALUE
from mc_beamline.physics.mesocrystal import MesocrystalSimulator, NoisyBackground
from mc_beamline.sim_iocs.file_plugin import (
    ATTRS_GROUP,
    DATASET,
    PATH_LENGTH,
    FrameFileWriter,
    Hdf5FilePlugin,
)
from mc_beamline.sim_iocs.fly_controller import GatePulse
from mc_beamline.sim_iocs.pv_helpers import enum_pv, text_pv

DETECTOR_STATES = (
    "Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting",
    "Error", "Waiting", "Initializing", "Disconnected", "Aborted",
)
TRIGGER_MODES = ("Internal", "External Gate")
GATE_LOOKAHEAD = 4
"""Gates whose backgrounds are drawn ahead in External Gate mode (a 1 Mpx background is 4 MiB)."""
PONI_NAME = "geometry.poni"
MASK_NAME = "mask.npy"
FRAME_ATTRIBUTES = {
    "NDArrayUniqueId": "i8",
    "NDArrayTimeStamp": "f8",
    "SampleX": "f8",
    "SampleY": "f8",
    "SampleZ": "f8",
    "SampleXStart": "f8",
    "SampleXEnd": "f8",
    "AcquireTime": "f8",
}
"""Per-frame values of a capture file (``/entry/instrument/NDAttributes``): name → dtype."""


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


class PixelDetectorIOC(Hdf5FilePlugin):
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
    trigger_mode = enum_pv("TriggerMode", "Internal", TRIGGER_MODES, doc="Internal, or one frame per external gate")
    array_counter = pvproperty(name="ArrayCounter", value=0, doc="Image counter (noise key of the last frame)")
    array_counter_rbv = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True)
    detector_state = pvproperty(name="DetectorState_RBV", value="Initializing", dtype=ChannelType.ENUM,
                                enum_strings=DETECTOR_STATES, read_only=True)
    status_message = text_pv("StatusMessage_RBV", "", max_length=512)
    poni_file = text_pv("PoniFile_RBV", "", max_length=PATH_LENGTH)
    mask_file = text_pv("MaskFile_RBV", "", max_length=PATH_LENGTH)
    poni_text = text_pv("PoniText_RBV", "", max_length=8192)
    array_size_x = pvproperty(name="ArraySizeX_RBV", value=0, read_only=True)
    array_size_y = pvproperty(name="ArraySizeY_RBV", value=0, read_only=True)
    total_counts = pvproperty(name="TotalCounts_RBV", value=0.0, read_only=True,
                              doc="Summed counts of the last frame, module gaps left out")
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
        self.init_file_plugin(data_dir)
        self.geometry_name = geometry_name
        self.position_source = position_source or (lambda: (0.0, 0.0, 0.0))
        self.poni_path, self.mask_path, self._poni_text = write_geometry_files(simulator, self.root)
        self._mask = simulator.mask.astype(np.uint8)
        # TotalCounts_RBV sums the pixels that exist: every frame's sum less its gap pixels,
        # which always hold GAP_VALUE (one plain sum per frame, no masked pass)
        self._gap_counts = int(simulator.gap_mask.sum()) * GAP_VALUE
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-det")
        self._noise_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-det-noise")
        self._prefetched = None
        self._counter = 0
        self._acquiring: asyncio.Event | None = None  # set when the running acquisition ends
        self._gates: asyncio.Queue | None = None  # gate pulses while armed in External Gate mode
        self._stop = False
        rows, cols = simulator.geometry.shape
        # Static PV values (published at startup, before any client connects).
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

    def _expose(self, x: float, y: float, exposure: float, counter: int, meta: dict) -> tuple[int | None, float]:
        """Worker thread: compute one frame and append it to the open file (index or None, total counts)."""
        return self._write_counted(self._compute_frame(x, y, exposure, counter), meta)

    def _expose_gate(self, background: NoisyBackground, pulse: GatePulse, meta: dict) -> tuple[int | None, float]:
        """Worker thread: a gate's frame, integrated over the x travel its encoder latched, appended
        (index or None, total counts)."""
        return self._write_counted(
            self.sim.add_bragg_peaks(background, pulse.x_open_um, pulse.y_um, pulse.x_close_um), meta)

    def _write_counted(self, frame: np.ndarray, meta: dict) -> tuple[int | None, float]:
        """Worker thread: append ``frame`` to the open file; (its index or None, its total counts)."""
        total = float(int(frame.sum(dtype=np.uint64)) - self._gap_counts)
        return self.write_frame(frame, meta), total

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
        await self._run_in_worker(self.close_file)

    def close(self) -> None:
        """Synchronously close the capture file and stop the worker (process exit)."""
        self._noise_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)
        self.close_file()

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

    def gate(self, pulse: GatePulse) -> None:
        """A gate of the fly controller closed: expose one frame for it, if armed (event loop)."""
        if self._gates is not None:
            self._gates.put_nowait(pulse)

    async def _frame_done(self, counter: int, index: int | None, total: float) -> None:
        self._counter = counter
        await self.total_counts.write(total)
        await self.array_counter.write(counter, verify_value=False)
        await self.array_counter_rbv.write(counter)
        await self.frame_captured(index)

    async def _acquire_gated(self, n_images: int) -> None:
        """External Gate mode: one frame per gate pulse until ``n_images`` (or a stop).

        Pulses queue up while the worker computes earlier frames, as in a detector's buffer.
        The Poisson backgrounds of the next queued gates (at most :data:`GATE_LOOKAHEAD`) are
        drawn in a second thread while the worker adds the Bragg peaks of the current one and
        writes it, so a frame costs about the larger of the two, not their sum.
        """
        gates = self._gates = asyncio.Queue()
        loop = asyncio.get_running_loop()
        ahead: deque[tuple[GatePulse, int, asyncio.Future]] = deque()
        counter = self._counter

        def draw(pulse: GatePulse) -> None:
            nonlocal counter
            counter += 1
            ahead.append((pulse, counter, loop.run_in_executor(self._noise_executor, self.sim.noisy_background,
                                                               pulse.exposure_s, counter)))

        await self.detector_state.write("Waiting")
        try:
            taken = 0
            while taken < n_images and not self._stop:
                while not gates.empty() and len(ahead) < GATE_LOOKAHEAD and taken + len(ahead) < n_images:
                    draw(gates.get_nowait())
                if not ahead:
                    try:
                        draw(await asyncio.wait_for(gates.get(), timeout=0.05))
                    except asyncio.TimeoutError:
                        pass
                    continue
                pulse, key, background = ahead.popleft()
                meta = {
                    "NDArrayUniqueId": key, "NDArrayTimeStamp": pulse.time_open,
                    "SampleX": 0.5 * (pulse.x_open_um + pulse.x_close_um), "SampleY": pulse.y_um,
                    "SampleZ": pulse.z_um, "SampleXStart": pulse.x_open_um, "SampleXEnd": pulse.x_close_um,
                    "AcquireTime": pulse.exposure_s,
                }
                index, total = await loop.run_in_executor(self._executor, self._expose_gate, await background,
                                                          pulse, meta)
                await self._frame_done(key, index, total)
                taken += 1
        finally:
            self._gates = None
            for *_, background in ahead:  # a stopped acquisition leaves the background thread idle
                await asyncio.gather(background, return_exceptions=True)

    async def _acquire_frames(self) -> None:
        n_images = max(int(self.num_images.value), 1)
        if self.trigger_mode.value in ("External Gate", 1):
            await self._acquire_gated(n_images)
            return
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
                "SampleX": x, "SampleY": y, "SampleZ": z, "SampleXStart": x, "SampleXEnd": x,
                "AcquireTime": exposure,
            }
            job = loop.run_in_executor(self._executor, self._expose, x, y, exposure, counter, meta)
            wall = exposure * scale
            if wall > 0:
                (index, total), _ = await asyncio.gather(job, asyncio.sleep(wall))
            else:
                index, total = await job
            loop.run_in_executor(self._executor, self._prefetch, exposure, counter + 1)
            await self._frame_done(counter, index, total)

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
    def new_file_writer(self, path: Path) -> FrameFileWriter:
        """Worker thread: a capture file of uint32 frames with the mask and the PONI."""
        return FrameFileWriter(
            path, self.sim.geometry.shape, dtype="<u4", attributes=FRAME_ATTRIBUTES, mask=self._mask,
            poni_text=self._poni_text,
            file_attrs={"mc_beamline_seed": int(self.sim.params.seed), "geometry": self.geometry_name},
        )

    async def run_file_job(self, func, *args):
        return await self._run_in_worker(func, *args)

    async def report(self, message: str) -> None:
        await self.status_message.write(message[:511])


__all__ = ["PixelDetectorIOC", "FrameFileWriter", "write_geometry_files", "DATASET", "ATTRS_GROUP",
           "FRAME_ATTRIBUTES"]
