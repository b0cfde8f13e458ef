"""Simulated self-assembly cell: a NC sample, a flocculant syringe pump and a 2D SAXS camera.

Time-resolved SAXS of nanocrystal (NC) self-assembly after a flocculant is added (seed 004),
of the hexagonal → square transformation of a PbSe monolayer (seed 003) and of a binary NC
quasicrystal (seed 001). PVs under ``{prefix}`` (e.g. ``MC:ASSEMBLY:``); times are
*simulated* seconds, volumes µL, rates µL/s, concentrations mM:

===========================  ================================================================
TimeScale                    wall-clock seconds per simulated second (default 1; > 0). The
                             addition and the exposures run that much faster or slower
SimTime_RBV                  simulated seconds since the IOC started
Sample                       enum colloid / monolayer / binary (see below); a put that
                             changes it loads a fresh sample (as Reset)
Lattice                      enum fcc / bcc / hcp: supercrystal lattice of the colloid
                             (every frame uses the current value: set it before the addition)
Reset                        enum Done/Reset; put 1 loads a fresh sample: no flocculant,
                             addition clock cleared, Dispensed 0, a new domain orientation;
                             completes at once
ColloidVolume_RBV            volume of the sample before the addition, µL (500)
Concentration_RBV            flocculant concentration in the cell, mM (rises while adding)
Elapsed_RBV                  simulated s since the current addition started; −1 before
Status_RBV                   last event or refusal, one sentence
SimSeed_RBV                  seed of the noise and of the domain orientations
FLOC:                        the flocculant syringe pump, see below
SAXS:                        the SAXS camera, see below
===========================  ================================================================

Sample, Lattice and Reset are refused while an addition runs (the put completes, the
value stays, Status_RBV says why).

Syringe pump (``FLOC:``): ``Rate`` (µL/s, control limits [RateMin, RateMax] = [0.05, 100]),
``Rate_RBV``, ``Volume`` (µL to add, (0, 1000]), ``Volume_RBV``, ``Add`` (enum Done/Add: put 1
starts dispensing Volume at Rate; the put completes when the dispensing ends, i.e. after
Volume / Rate simulated s, or at Stop), ``Stop`` (enum Done/Stop: put 1 ends a running
addition; the kinetics use the volume actually added), ``Dispensing_RBV`` (0/1),
``Dispensed_RBV`` (µL added to this sample), ``Stock_RBV`` (mM, 500), ``RateMin_RBV``,
``RateMax_RBV``. Rate and Volume are read when Add starts. One addition per sample: Add
while dispensing, or after an addition to this sample, is refused (the put completes at
once, Status_RBV says why); Reset first.

SAXS camera (``SAXS:``), a 512 x 512 pixel camera (75 µm pixels, 0.6 m, 12.4 keV, beam at
the centre: q from 0 to 2.0 nm⁻¹ at the edges, 2.84 nm⁻¹ in the corners) with an on-line
azimuthal reduction: ``AcquireTime`` (s, [1e-3, 3600]), ``AcquireTime_RBV``, ``Acquire``
(enum Done/Acquire; put-completion when the frame is published, after AcquireTime),
``AcquireCount_RBV``, ``Elapsed_RBV`` (time since the addition started at the middle of the
exposure, the time the frame represents, s; −1 if no addition had started when the
exposure began: the frame shows the sample before the addition), ``Q_RBV`` (600 points,
0.2–6 nm⁻¹), ``Intensity_RBV`` and ``Sigma_RBV`` (cm⁻¹), ``Image_RBV`` (the frame, int32
counts, rows x cols flattened in C order), ``ArraySizeX_RBV`` (columns), ``ArraySizeY_RBV``
(rows), ``PoniText_RBV`` (pyFAI PONI of the camera: :meth:`DetectorGeometry.from_poni_text
<mc_beamline.instrument.geometry.DetectorGeometry.from_poni_text>` gives the q and φ maps the
simulation used) and ``Status_RBV``.

The camera's HDF5 file plugin (the raster detector's, :mod:`~mc_beamline.sim_iocs.file_plugin`)
serves ``FilePath``, ``FileName``, ``FileNumber``, ``Capture`` / ``Capture_RBV``,
``NumCaptured_RBV``, ``FullFileName_RBV``, ``FilePathExists_RBV`` and ``DataDir_RBV``
(``<data-dir>/detector``) under ``SAXS:``. While a capture file is open, every frame is
appended to it (int32, one Bitshuffle/LZ4 chunk per frame, SWMR, flushed before the
Acquire put completes) with, under ``/entry/instrument/NDAttributes``, ``NDArrayUniqueId``
(the frame number, AcquireCount_RBV), ``NDArrayTimeStamp`` (s, start of the exposure),
``AcquireTime`` and ``Elapsed`` (simulated s, as Elapsed_RBV); the camera's PONI is in
``/entry/instrument/detector/geometry_poni``. Image_RBV serves every frame too, captured
or not (a viewer's image).

Samples and frames
------------------
The samples (``colloid``, ``monolayer``, ``binary``), what the addition does to each and
how a frame is computed are described in :mod:`mc_beamline.physics.assembly_cell`. The
domain orientation of the monolayer and the binary superlattice is drawn at Reset, from
``(seed, 3, sample number)``. Frame ``n`` draws its 1D noise from ``(seed, 2, n)`` and its
image from ``(seed, 4, n)``. Frames are computed in a worker thread while the exposure
runs, so the IOC keeps serving.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, SkipWrite
from caproto.server import PVGroup, SubGroup, pvproperty

from mc_beamline.physics.assembly_cell import (
    CAMERA_SHAPE,
    LATTICE_CHOICES,
    Q_NM,
    SAMPLES,
    CellSimulator,
    CellState,
    SyringeAddition,
    sample_orientation_deg,
)
from mc_beamline.physics.flocculation import DEFAULT_COLLOID_VOLUME_UL, DEFAULT_STOCK_MM
from mc_beamline.sim_iocs.file_plugin import FrameFileWriter, Hdf5FilePlugin
from mc_beamline.sim_iocs.flow_cell import SaxsInstrument, curve_pvs
from mc_beamline.sim_iocs.pv_helpers import LimitedSetpoint, enum_pv, text_pv
from mc_beamline.sim_iocs.scaled_time import TICK_S, ScaledTimeIOC

DEFAULT_SEED = 2004
"""Default seed of the measurement noise and the domain orientations."""
RATE_LIMITS_UL_S = (0.05, 100.0)
"""Smallest and largest syringe-pump rate, µL/s."""
VOLUME_MAX_UL = 1000.0
"""Largest volume of one addition, µL."""
IMAGE_SUBSCRIPTION_BACKLOG = 10
"""Frames queued per monitor subscription of Image_RBV (caproto's default of 1000 frames
would allow ~1 GB per slow subscriber)."""
CAMERA_FRAME_ATTRIBUTES = {
    "NDArrayUniqueId": "i8",
    "NDArrayTimeStamp": "f8",
    "AcquireTime": "f8",
    "Elapsed": "f8",
}
"""Per-frame values of the SAXS camera's capture files (``/entry/instrument/NDAttributes``): name → dtype."""


def _is_on(value) -> bool:
    return value in (1, "1", "Add", "Stop", "Reset")


class VolumeSetpoint(LimitedSetpoint):
    """A volume set point in (0, upper limit]: zero is refused like a value out of limits."""

    async def verify_value(self, value):
        value = float(value)
        if math.isfinite(value) and value <= 0:
            await self.alarm.write(status=AlarmStatus.LOW, severity=AlarmSeverity.MINOR_ALARM)
            return SkipWrite
        return await super().verify_value(value)


class SyringePumpIOC(PVGroup):
    """The flocculant syringe pump: rate and volume set points, Add / Stop, dispensed volume."""

    rate = pvproperty(name="Rate", value=1.0, precision=3, units="uL/s", dtype=LimitedSetpoint,
                      lower_ctrl_limit=RATE_LIMITS_UL_S[0], upper_ctrl_limit=RATE_LIMITS_UL_S[1],
                      doc="Dispensing rate (µL/s)")
    rate_rbv = pvproperty(name="Rate_RBV", value=1.0, precision=3, units="uL/s", read_only=True)
    volume = pvproperty(name="Volume", value=50.0, precision=3, units="uL", dtype=VolumeSetpoint,
                        lower_ctrl_limit=0.0, upper_ctrl_limit=VOLUME_MAX_UL, doc="Volume to add (µL)")
    volume_rbv = pvproperty(name="Volume_RBV", value=50.0, precision=3, units="uL", read_only=True)
    add = enum_pv("Add", "Done", ("Done", "Add"),
                  doc="Put 1: dispense Volume at Rate; completes when the dispensing ends")
    stop = enum_pv("Stop", "Done", ("Done", "Stop"), doc="Put 1: stop a running addition")
    dispensing = pvproperty(name="Dispensing_RBV", value=0, read_only=True, doc="1 while dispensing")
    dispensed = pvproperty(name="Dispensed_RBV", value=0.0, precision=4, units="uL", read_only=True,
                           doc="Volume added to this sample (µL)")
    stock = pvproperty(name="Stock_RBV", value=DEFAULT_STOCK_MM, precision=2, units="mM", read_only=True)
    rate_min = pvproperty(name="RateMin_RBV", value=RATE_LIMITS_UL_S[0], precision=3, units="uL/s", read_only=True)
    rate_max = pvproperty(name="RateMax_RBV", value=RATE_LIMITS_UL_S[1], precision=3, units="uL/s", read_only=True)

    @property
    def cell(self) -> "AssemblyCellIOC":
        return self.parent

    @rate.putter
    async def rate(self, instance, value):
        await self.rate_rbv.write(float(value))
        return float(value)

    @volume.putter
    async def volume(self, instance, value):
        await self.volume_rbv.write(float(value))
        return float(value)

    @add.putter
    async def add(self, instance, value):
        if not _is_on(value):
            return "Done"
        cell = self.cell
        problem = cell.addition_refusal()
        if problem:
            await cell.status.write(problem[:255])
            return "Done"
        addition = cell.addition
        addition.start(cell.sim_now(), float(self.rate_rbv.value), float(self.volume_rbv.value))
        await instance.write("Add", verify_value=False)
        await cell.publish()
        await cell.status.write(cell.addition_message()[:255])
        while addition.dispensing:
            remaining = (addition.end_s - cell.sim_now()) * cell.time_scale_value
            if remaining <= 0:
                addition.finish()
                await cell.publish()
                await cell.status.write(cell.addition_message()[:255])
                break
            await asyncio.sleep(min(remaining, TICK_S))
        return "Done"

    @stop.putter
    async def stop(self, instance, value):
        if _is_on(value) and self.cell.addition.dispensing:
            self.cell.addition.stop(self.cell.sim_now())
            await self.cell.publish()
            await self.cell.status.write(self.cell.addition_message()[:255])
        return "Done"


class CameraIOC(SaxsInstrument, Hdf5FilePlugin):
    """The 2D SAXS camera with its on-line azimuthal reduction and its HDF5 file plugin.

    The parent cell calls :meth:`init_file_plugin` with the data directory.
    """

    q, intensity, sigma = curve_pvs(Q_NM)
    image = pvproperty(name="Image_RBV", value=np.zeros(CAMERA_SHAPE[0] * CAMERA_SHAPE[1], dtype=np.int32),
                       dtype=int, max_length=CAMERA_SHAPE[0] * CAMERA_SHAPE[1], read_only=True,
                       units="counts", doc="Frame, rows x cols flattened in C order (counts)",
                       max_subscription_backlog=IMAGE_SUBSCRIPTION_BACKLOG)
    array_size_x = pvproperty(name="ArraySizeX_RBV", value=CAMERA_SHAPE[1], read_only=True, doc="columns")
    array_size_y = pvproperty(name="ArraySizeY_RBV", value=CAMERA_SHAPE[0], read_only=True, doc="rows")
    poni_text = text_pv("PoniText_RBV", "", max_length=4096)
    elapsed = pvproperty(name="Elapsed_RBV", value=-1.0, precision=3, units="s", read_only=True,
                         doc="Time since the addition started at mid-exposure (s); -1 before")

    async def measure(self) -> None:
        """Expose for AcquireTime and publish the frame and its I(q)."""
        cell = self.cell
        t = float(self.acquire_time.value)
        counter = int(self.acquire_count.value) + 1
        state = cell.cell_state(t)
        meta = {"NDArrayUniqueId": counter, "NDArrayTimeStamp": time.time(), "AcquireTime": t,
                "Elapsed": state.elapsed_s}
        job = cell.run_in_worker(self._expose, state, t, counter, meta)
        (curve, image, index), _ = await asyncio.gather(job, self.exposure(t))
        await self.elapsed.write(state.elapsed_s)
        await self.intensity.write(curve.intensity.tolist())
        await self.sigma.write(curve.sigma.tolist())
        await self.image.write(image.ravel())
        await self.frame_captured(index)
        await self.acquire_count.write(counter)
        await self.status.write(f"Frame {counter} recorded.")

    def _expose(self, state: CellState, exposure_s: float, counter: int, meta: dict):
        """Worker thread: the frame's curve and image, the image appended to the open capture
        file; (curve, image, index in the file or None)."""
        cell = self.cell
        curve, image = cell.simulator.measure(state, exposure_s, cell.seed, counter)
        return curve, image, self.write_frame(image, meta)

    # ------------------------------------------------------------- file plugin
    def new_file_writer(self, path: Path) -> FrameFileWriter:
        """Worker thread: a capture file of int32 frames with the camera's PONI."""
        return FrameFileWriter(path, CAMERA_SHAPE, dtype="<i4", attributes=CAMERA_FRAME_ATTRIBUTES,
                               poni_text=self.cell.simulator.poni_text,
                               file_attrs={"mc_beamline_seed": self.cell.seed})

    async def run_file_job(self, func, *args):
        return await self.cell.run_in_worker(func, *args)

    async def report(self, message: str) -> None:
        await self.status.write(message[:255])


class AssemblyCellIOC(ScaledTimeIOC):
    """The self-assembly cell: sample, flocculant pump and SAXS camera (see the module docstring).

    Parameters
    ----------
    prefix : PV prefix, e.g. ``"MC:ASSEMBLY:"``.
    data_dir : the beamline data directory; the camera's files go to ``<data_dir>/detector``.
    seed : seed of the measurement noise and the domain orientations.
    colloid_volume_ul : sample volume before the addition, µL.
    stock_mm : flocculant concentration in the syringe, mM.
    simulator : the SAXS of the samples (default: :class:`CellSimulator` of the camera).
    """

    sample = enum_pv("Sample", "colloid", SAMPLES, doc="Sample in the cell")
    lattice = enum_pv("Lattice", "fcc", LATTICE_CHOICES, doc="Supercrystal lattice of the colloid")
    reset = enum_pv("Reset", "Done", ("Done", "Reset"), doc="Put 1: load a fresh sample")
    colloid_volume = pvproperty(name="ColloidVolume_RBV", value=DEFAULT_COLLOID_VOLUME_UL, precision=2,
                                units="uL", read_only=True)
    concentration = pvproperty(name="Concentration_RBV", value=0.0, precision=4, units="mM", read_only=True,
                               doc="Flocculant concentration in the cell (mM)")
    elapsed = pvproperty(name="Elapsed_RBV", value=-1.0, precision=3, units="s", read_only=True,
                         doc="Simulated s since the addition started; -1 before")
    status = text_pv("Status_RBV", "")

    floc = SubGroup(SyringePumpIOC, prefix="FLOC:")
    saxs = SubGroup(CameraIOC, prefix="SAXS:")

    def __init__(self, *args, data_dir: str | os.PathLike, seed: int = DEFAULT_SEED, colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL,
                 stock_mm: float = DEFAULT_STOCK_MM, simulator: CellSimulator | None = None, **kwargs):
        super().__init__(*args, seed=seed, worker_name="mc-assembly", **kwargs)
        self.colloid_volume_ul = float(colloid_volume_ul)
        self.stock_mm = float(stock_mm)
        self.colloid_volume._data["value"] = self.colloid_volume_ul
        self.floc.stock._data["value"] = self.stock_mm
        self.simulator = simulator or CellSimulator()
        self.saxs.poni_text._data["value"] = self.simulator.poni_text
        self.saxs.init_file_plugin(data_dir)
        self.sample_number = 0
        self.orientation_deg = sample_orientation_deg(self.seed, 0)
        self.addition = SyringeAddition(self.colloid_volume_ul, self.stock_mm)
        self.status._data["value"] = self.sample_message()

    def close(self) -> None:
        """Stop the worker and close the camera's capture file (after the server stopped)."""
        super().close()
        self.saxs.close_file()

    def before_time_scale_change(self) -> None:
        """Keep the simulated time continuous: the wall time since the last tick counts at the old scale."""
        now = time.monotonic()
        if self._tick_wall is not None:
            self.simulated_s += (now - self._tick_wall) / self.time_scale_value
            self._tick_wall = now

    # ------------------------------------------------------------------ addition
    def addition_refusal(self) -> str | None:
        """Why an Add is refused now, or None."""
        addition = self.addition
        if addition.dispensing:
            return (f"Add refused: an addition is running ({addition.dispensed_ul:.1f} of "
                    f"{addition.volume_ul:g} uL dispensed); put Stop to end it.")
        if addition.start_s is not None:
            return (f"Add refused: this sample already received {addition.dispensed_ul:.1f} uL "
                    f"({addition.concentration_mm():.1f} mM); put Reset to load a fresh sample.")
        return None

    def addition_message(self) -> str:
        """Status line of the running or ended addition."""
        addition = self.addition
        if addition.dispensing:
            return (f"Adding {addition.volume_ul:g} uL of {self.stock_mm:g} mM flocculant at "
                    f"{addition.rate_ul_s:g} uL/s (final {addition.flocculation().final_mm:.1f} mM).")
        return (f"Addition ended: {addition.dispensed_ul:.2f} uL added, "
                f"{addition.concentration_mm():.2f} mM flocculant.")

    def sample_message(self, sample: str | None = None) -> str:
        """Status line of a freshly loaded ``sample`` (default: the current one)."""
        sample = str(self.sample.value if sample is None else sample)
        what = {"colloid": "4.6 nm Au NC colloid", "monolayer": "6.2 nm PbSe NC monolayer (hexagonal)",
                "binary": "binary NC mixture (disordered)"}.get(sample, sample)
        return f"Fresh sample {self.sample_number}: {what}, no flocculant added."

    def fresh_sample(self) -> None:
        """Load a fresh sample: no flocculant, a new domain orientation."""
        self.sample_number += 1
        self.orientation_deg = sample_orientation_deg(self.seed, self.sample_number)
        self.addition = SyringeAddition(self.colloid_volume_ul, self.stock_mm)

    def cell_state(self, exposure_s: float) -> CellState:
        """What a frame starting now and lasting ``exposure_s`` s shows (at mid-exposure)."""
        return CellState(str(self.sample.value), str(self.lattice.value), self.addition.flocculation(),
                         self.addition.frame_elapsed_s(self.sim_now(), exposure_s), self.orientation_deg)

    # ------------------------------------------------------------------ loop
    def step(self, dt: float) -> None:
        """Advance the cell by ``dt`` simulated seconds."""
        self.simulated_s += dt
        self.addition.advance(self.simulated_s)

    async def publish(self) -> None:
        """Write the readbacks that changed since the last update."""
        values = {
            self.sim_time: self.simulated_s,
            self.elapsed: self.addition.elapsed_s(self.sim_now()),
            self.concentration: self.addition.concentration_mm(),
            self.floc.dispensed: self.addition.dispensed_ul,
            self.floc.dispensing: int(self.addition.dispensing),
        }
        for pv, value in values.items():
            if pv.value != value:
                await pv.write(value)

    async def _refuse_while_adding(self, what: str) -> bool:
        if self.addition.dispensing:
            await self.status.write(f"{what} refused: an addition is running; wait for it or put FLOC:Stop."[:255])
            return True
        return False

    @sample.putter
    async def sample(self, instance, value):
        if await self._refuse_while_adding("Changing the sample"):
            return instance.value
        if value != instance.value:
            self.fresh_sample()
            await self.publish()
            await self.status.write(self.sample_message(value)[:255])
        return value

    @lattice.putter
    async def lattice(self, instance, value):
        if await self._refuse_while_adding("Changing the lattice"):
            return instance.value
        return value

    @reset.putter
    async def reset(self, instance, value):
        if not _is_on(value):
            return "Done"
        if not await self._refuse_while_adding("Reset"):
            self.fresh_sample()
            await self.publish()
            await self.status.write(self.sample_message()[:255])
        return "Done"


__all__ = ["AssemblyCellIOC", "CAMERA_FRAME_ATTRIBUTES", "CameraIOC", "SyringePumpIOC", "VolumeSetpoint"]
