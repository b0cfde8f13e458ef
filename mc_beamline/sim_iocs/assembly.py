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

Samples
-------
* ``colloid``: 4.6 nm Au NCs (radius 2.3 nm, 0.3 nm gap in the supercrystal) in a
  capillary. The addition sets the pathway and kinetics of
  :mod:`mc_beamline.physics.flocculation` (final concentration, rate; onset when c crosses
  20 mM) and ``AssemblyModel`` (:mod:`mc_beamline.physics.assembly`) gives I(q) at model time
  ``elapsed − onset``; before the addition, the dilute colloid. While an addition runs, a
  frame uses the planned volume (after Stop, the volume actually added).
* ``monolayer``: a 6.2 nm PbSe NC monolayer, hexagonal (oleate capped). The pump adds the
  trigger of oriented attachment; ``HexToSquareTransition``
  (:mod:`mc_beamline.physics.superlattice_patterns`, ``t_transition_s`` = 25 s after the
  addition start: neck nucleus after 5–10 s, necks widen over ~15 s, seed 003) turns the
  first superlattice ring (q ≈ 0.97 → 0.94 nm⁻¹, 123 → 119 px) from six spots to four.
  Before any addition: the hexagonal pattern (progress 0).
* ``binary``: a binary NC mixture (γ_eff 0.51) that orders into a dodecagonal quasicrystal
  after the addition (seed 001): ``dodecagonal_spots`` at q0 = 2π / 11 nm = 0.571 nm⁻¹
  (73 px; 11 nm ≈ the tiling edge, the distance of the large NCs, form factor of 4 nm radius
  spheres), second ring 15° turned at 1.10 nm⁻¹, spot heights growing as
  1 − exp(−t / 20 s) after the addition start while the isotropic ring of the disordered
  mixture at q0 fades to 20 %. Before: the isotropic ring only.

The monolayer and the binary superlattice are one domain in the beam: its orientation is
drawn once per sample (at Reset, from ``(seed, 3, sample number)``), so the spots stay put
from frame to frame. Expected pattern intensities are counts per pixel per second of
exposure, 20 counts per pixel per cm⁻¹ per second (:data:`PIXEL_COUNTS_PER_CM1_PER_S`).

Measurements: frame ``n`` draws its 1D noise from ``(seed, 2, n)`` and its image from
``(seed, 4, n)``. The 1D curve is the azimuthal mean of the expected pattern (colloid:
the model I(q)) on Q_RBV with counting noise of :data:`SAXS_COUNTS_PER_CM1_PER_S` counts per
cm⁻¹ per q bin and second (σ returned); the image is Poisson counts of the expected
pattern (colloid: the isotropic model I(q) on the q map), solid-angle and flat-field
corrected, no beamstop or mask. Frames are computed in a worker thread while the
exposure runs, so the IOC keeps serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, SkipWrite
from caproto.server import PVGroup, SubGroup, pvproperty

from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics import saxs_models
from mc_beamline.physics.assembly import AssemblyModel, default_q_nm
from mc_beamline.physics.flocculation import (
    DEFAULT_COLLOID_VOLUME_UL, DEFAULT_STOCK_MM, Flocculation, assembly_model, concentration_mm,
)
from mc_beamline.physics.superlattice_patterns import HexToSquareTransition, SpotPattern, dodecagonal_spots
from mc_beamline.sim_iocs.reactor import MIN_TIME_SCALE, TICK_S, LimitedSetpoint, _enum, _FlowCellInstrument, _text, _waveform

SAMPLES = ("colloid", "monolayer", "binary")
"""Samples the cell can hold."""
LATTICE_CHOICES = ("fcc", "bcc", "hcp")
"""Supercrystal lattices offered for the colloid."""
DEFAULT_SEED = 2004
RATE_LIMITS_UL_S = (0.05, 100.0)
"""Smallest and largest syringe-pump rate, µL/s."""
VOLUME_MAX_UL = 1000.0
"""Largest volume of one addition, µL."""
Q_NM = default_q_nm()
"""q grid of the 1D curves: 600 points, 0.2–6 nm⁻¹."""

CAMERA_SHAPE = (512, 512)
"""Rows, columns of the SAXS camera."""
CAMERA_PIXEL_M = 75e-6
CAMERA_DISTANCE_M = 0.6
CAMERA_ENERGY_KEV = 12.4
SAXS_COUNTS_PER_CM1_PER_S = 2e4
"""1D curves: counts per q bin per cm⁻¹ of intensity and second of exposure."""
PIXEL_COUNTS_PER_CM1_PER_S = 20.0
"""Images: counts per pixel per cm⁻¹ of intensity and second of exposure."""

COLLOID_RADIUS_NM = 2.3
COLLOID_GAP_NM = 0.3
MONOLAYER_TRANSITION_S = 25.0
"""Time after the addition start at which the monolayer's lattice angle passes 75°, s."""
PRE_ADDITION_T_S = -1000.0
"""Model time of the monolayer before any addition (hexagonal, progress ~1e-48)."""
BINARY_Q0_NM = 2 * math.pi / 11.0
"""First ring of the dodecagonal quasicrystal, nm⁻¹ (tiling edge 11 nm)."""
BINARY_TAU_S = 20.0
"""Time constant of the quasicrystal's spot intensity after the addition start, s."""
BINARY_RADIUS_NM = 4.0
"""Radius of the large NCs of the binary mixture (form factor of the spots), nm."""
BINARY_SPOT_SCALE = 200.0
"""Peak height of a fully grown first-ring spot, counts per pixel per second."""
BINARY_RING_HEIGHT = 40.0
"""Peak height of the isotropic ring of the disordered mixture, counts per pixel per second."""
BINARY_RING_SIGMA_NM = 0.05
BINARY_RING_REMAINING = 0.2
"""Fraction of the isotropic ring left once the quasicrystal has fully grown."""
IMAGE_SUBSCRIPTION_BACKLOG = 10
"""Frames queued per monitor subscription of Image_RBV (caproto's default of 1000 frames
would allow ~1 GB per slow subscriber)."""
BACKGROUND_PER_S = 2.0
"""Flat background of the monolayer and binary frames, counts per pixel per second."""


def _is_on(value) -> bool:
    return value in (1, "1", "Add", "Stop", "Reset", "Acquire")


def camera_geometry() -> DetectorGeometry:
    """The SAXS camera: 512 x 512 pixels of 75 µm at 0.6 m, 12.4 keV, beam at the centre."""
    rows, cols = CAMERA_SHAPE
    return DetectorGeometry.from_beam_center(CAMERA_SHAPE, ((rows - 1) / 2.0, (cols - 1) / 2.0),
                                             dist_m=CAMERA_DISTANCE_M, energy_kev=CAMERA_ENERGY_KEV,
                                             pixel_m=CAMERA_PIXEL_M)


# ------------------------------------------------------------------------- model
@dataclass(frozen=True)
class CellState:
    """What a frame shows.

    Attributes
    ----------
    sample : one of :data:`SAMPLES`.
    lattice : supercrystal lattice of the colloid.
    flocculation : the addition to this sample (None before any).
    elapsed_s : time since the addition started, s (negative before it).
    orientation_deg : domain orientation of the monolayer / binary superlattice, degrees.
    """

    sample: str = "colloid"
    lattice: str = "fcc"
    flocculation: Flocculation | None = None
    elapsed_s: float = -1.0
    orientation_deg: float = 0.0


class CellSimulator:
    """Expected and measured SAXS of the cell's sample (1D curve on :data:`Q_NM`, 2D frame).

    Parameters
    ----------
    poni_text : camera geometry; default :func:`camera_geometry`. The q and φ maps come
        from this text, as a client builds them from ``PoniText_RBV``.
    """

    def __init__(self, poni_text: str | None = None):
        self.poni_text = poni_text if poni_text is not None else camera_geometry().to_poni_text()
        self.geometry = DetectorGeometry.from_poni_text(self.poni_text)
        self.shape = tuple(self.geometry.shape)
        self.q_map = self.geometry.q_map
        self.phi_map = self.geometry.phi_map
        self.q_max_nm = float(self.q_map.max())
        self._q_fine = np.linspace(0.0, self.q_max_nm * 1.001, 4096)
        self._phi_bins = -180.0 + (np.arange(360) + 1.0)
        self.transition = HexToSquareTransition(t_transition_s=MONOLAYER_TRANSITION_S, background=BACKGROUND_PER_S)
        self._models: dict = {}

    # ---------------------------------------------------------------- models
    def colloid_model(self, state: CellState) -> tuple[AssemblyModel, float]:
        """The colloid's :class:`AssemblyModel` and the model time of ``state``."""
        floc = state.flocculation if state.flocculation is not None else Flocculation()
        key = (floc, state.lattice)
        model = self._models.get(key)
        if model is None:
            model = assembly_model(floc, state.lattice, COLLOID_RADIUS_NM, gap_nm=COLLOID_GAP_NM)
            if len(self._models) > 16:
                self._models.clear()
            self._models[key] = model
        t = floc.model_time_s(state.elapsed_s) if state.flocculation is not None and state.elapsed_s >= 0 else -1.0
        return model, t

    def pattern(self, state: CellState) -> SpotPattern:
        """Expected 2D pattern (counts per pixel per second) of a monolayer or binary sample."""
        added = state.flocculation is not None and state.elapsed_s >= 0
        if state.sample == "monolayer":
            t = state.elapsed_s if added else PRE_ADDITION_T_S
            return self.transition.pattern(t, state.orientation_deg, q_max_nm=self.q_max_nm + 0.3)
        if state.sample == "binary":
            grown = 1.0 - math.exp(-state.elapsed_s / BINARY_TAU_S) if added else 0.0
            pat = dodecagonal_spots(BINARY_Q0_NM, state.orientation_deg, radius_nm=BINARY_RADIUS_NM,
                                    scale=BINARY_SPOT_SCALE * grown, background=BACKGROUND_PER_S)
            ring = BINARY_RING_HEIGHT * (1.0 - (1.0 - BINARY_RING_REMAINING) * grown)
            return dataclasses.replace(pat, ring_q_nm=BINARY_Q0_NM, ring_sigma_nm=BINARY_RING_SIGMA_NM,
                                       ring_height=ring)
        raise ValueError(f"The {state.sample!r} sample has no spot pattern.")

    def expected_curve(self, state: CellState, q_nm: np.ndarray = Q_NM) -> np.ndarray:
        """Noise-free azimuthally averaged I(q), cm⁻¹."""
        if state.sample == "colloid":
            model, t = self.colloid_model(state)
            return model.curve(t, q_nm)
        pat = self.pattern(state)
        counts = pat.intensity(np.asarray(q_nm, dtype=float)[:, None], self._phi_bins[None, :]).mean(axis=1)
        return counts / PIXEL_COUNTS_PER_CM1_PER_S

    def expected_image(self, state: CellState, exposure_s: float) -> np.ndarray:
        """Expected counts per pixel of a frame of ``exposure_s`` s (float64, camera shape)."""
        if state.sample == "colloid":
            model, t = self.colloid_model(state)
            i_cm1 = np.interp(self.q_map, self._q_fine, model.curve(t, self._q_fine))
            return PIXEL_COUNTS_PER_CM1_PER_S * exposure_s * i_cm1
        return self.pattern(state).intensity(self.q_map, self.phi_map) * exposure_s

    def measure(self, state: CellState, exposure_s: float, seed: int, counter: int
                ) -> tuple[saxs_models.SaxsCurve, np.ndarray]:
        """Frame ``counter``: the 1D curve (with σ) and the image (int32 Poisson counts)."""
        exposure_s = max(float(exposure_s), 1e-6)
        clean = self.expected_curve(state)
        curve = saxs_models.measure(clean, Q_NM, np.random.default_rng((seed, 2, counter)),
                                    counts_per_cm1=SAXS_COUNTS_PER_CM1_PER_S * exposure_s)
        mean = self.expected_image(state, exposure_s)
        image = np.random.default_rng((seed, 4, counter)).poisson(np.maximum(mean, 0.0))
        image = np.minimum(image, np.iinfo(np.int32).max).astype(np.int32)
        return curve, image


def sample_orientation_deg(seed: int, sample_number: int) -> float:
    """Domain orientation of sample ``sample_number`` (0 at IOC start, +1 per Reset), degrees."""
    return float(np.random.default_rng((int(seed), 3, int(sample_number))).uniform(-180.0, 180.0))


# ------------------------------------------------------------------------- PV groups
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
    add = _enum("Add", "Done", ("Done", "Add"),
                doc="Put 1: dispense Volume at Rate; completes when the dispensing ends")
    stop = _enum("Stop", "Done", ("Done", "Stop"), doc="Put 1: stop a running addition")
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
        cell.start_addition(float(self.rate_rbv.value), float(self.volume_rbv.value))
        await instance.write("Add", verify_value=False)
        await cell.publish()
        await cell.status.write(cell.addition_message()[:255])
        while cell.dispensing:
            remaining = (cell.addition_end_s - cell.sim_now()) * cell.time_scale_value
            if remaining <= 0:
                cell.finish_addition()
                await cell.publish()
                await cell.status.write(cell.addition_message()[:255])
                break
            await asyncio.sleep(min(remaining, TICK_S))
        return "Done"

    @stop.putter
    async def stop(self, instance, value):
        if _is_on(value) and self.cell.dispensing:
            self.cell.stop_addition()
            await self.cell.publish()
            await self.cell.status.write(self.cell.addition_message()[:255])
        return "Done"


class CameraIOC(_FlowCellInstrument):
    """The 2D SAXS camera with its on-line azimuthal reduction."""

    q = _waveform("Q_RBV", Q_NM.size, "1/nm", "Scattering vector (nm⁻¹)")
    intensity = _waveform("Intensity_RBV", Q_NM.size, "1/cm", "Azimuthally averaged intensity (cm⁻¹)")
    sigma = _waveform("Sigma_RBV", Q_NM.size, "1/cm", "Standard deviation of the intensity (cm⁻¹)")
    image = pvproperty(name="Image_RBV", value=np.zeros(CAMERA_SHAPE[0] * CAMERA_SHAPE[1], dtype=np.int32),
                       dtype=int, max_length=CAMERA_SHAPE[0] * CAMERA_SHAPE[1], read_only=True,
                       units="counts", doc="Frame, rows x cols flattened in C order (counts)",
                       max_subscription_backlog=IMAGE_SUBSCRIPTION_BACKLOG)
    array_size_x = pvproperty(name="ArraySizeX_RBV", value=CAMERA_SHAPE[1], read_only=True, doc="columns")
    array_size_y = pvproperty(name="ArraySizeY_RBV", value=CAMERA_SHAPE[0], read_only=True, doc="rows")
    poni_text = _text("PoniText_RBV", "", max_length=4096)
    acquire_time = pvproperty(name="AcquireTime", value=1.0, precision=4, units="s", dtype=LimitedSetpoint,
                              lower_ctrl_limit=1e-3, upper_ctrl_limit=3600.0, doc="Exposure (s)")
    acquire_time_rbv = pvproperty(name="AcquireTime_RBV", value=1.0, precision=4, units="s", read_only=True)
    acquire = _enum("Acquire", "Done", ("Done", "Acquire"), doc="Record one frame and its I(q)")
    acquire_count = pvproperty(name="AcquireCount_RBV", value=0, read_only=True)
    elapsed = pvproperty(name="Elapsed_RBV", value=-1.0, precision=3, units="s", read_only=True,
                         doc="Time since the addition started at mid-exposure (s); -1 before")
    status = _text("Status_RBV", "Idle.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.q._data["value"] = Q_NM.tolist()

    @acquire_time.putter
    async def acquire_time(self, instance, value):
        value = float(value)
        await self.acquire_time_rbv.write(value)
        return value

    @acquire.putter
    async def acquire(self, instance, value):
        if not _is_on(value):
            return "Done"
        cell = self.parent

        async def measure():
            t = float(self.acquire_time.value)
            counter = int(self.acquire_count.value) + 1
            state = cell.cell_state(t)
            job = cell.run_in_worker(cell.simulator.measure, state, t, cell.seed, counter)
            (curve, image), _ = await asyncio.gather(job, self._exposure(t))
            await self.elapsed.write(state.elapsed_s)
            await self.intensity.write(curve.intensity.tolist())
            await self.sigma.write(curve.sigma.tolist())
            await self.image.write(image.ravel())
            await self.acquire_count.write(counter)
            await self.status.write(f"Frame {counter} recorded.")

        return await self._acquire_once(instance, measure)


class AssemblyCellIOC(PVGroup):
    """The self-assembly cell: sample, flocculant pump and SAXS camera (see the module docstring).

    Parameters
    ----------
    prefix : PV prefix, e.g. ``"MC:ASSEMBLY:"``.
    seed : seed of the measurement noise and the domain orientations.
    colloid_volume_ul : sample volume before the addition, µL.
    stock_mm : flocculant concentration in the syringe, mM.
    """

    time_scale = pvproperty(name="TimeScale", value=1.0, precision=5,
                            doc="Wall-clock seconds per simulated second (> 0)")
    sim_time = pvproperty(name="SimTime_RBV", value=0.0, precision=2, units="s", read_only=True)
    sample = _enum("Sample", "colloid", SAMPLES, doc="Sample in the cell")
    lattice = _enum("Lattice", "fcc", LATTICE_CHOICES, doc="Supercrystal lattice of the colloid")
    reset = _enum("Reset", "Done", ("Done", "Reset"), doc="Put 1: load a fresh sample")
    colloid_volume = pvproperty(name="ColloidVolume_RBV", value=DEFAULT_COLLOID_VOLUME_UL, precision=2,
                                units="uL", read_only=True)
    concentration = pvproperty(name="Concentration_RBV", value=0.0, precision=4, units="mM", read_only=True,
                               doc="Flocculant concentration in the cell (mM)")
    elapsed = pvproperty(name="Elapsed_RBV", value=-1.0, precision=3, units="s", read_only=True,
                         doc="Simulated s since the addition started; -1 before")
    status = _text("Status_RBV", "")
    sim_seed = pvproperty(name="SimSeed_RBV", value=DEFAULT_SEED, read_only=True)

    floc = SubGroup(SyringePumpIOC, prefix="FLOC:")
    saxs = SubGroup(CameraIOC, prefix="SAXS:")

    def __init__(self, *args, seed: int = DEFAULT_SEED, colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL,
                 stock_mm: float = DEFAULT_STOCK_MM, simulator: CellSimulator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = int(seed)
        self.colloid_volume_ul = float(colloid_volume_ul)
        self.stock_mm = float(stock_mm)
        self.sim_seed._data["value"] = self.seed
        self.colloid_volume._data["value"] = self.colloid_volume_ul
        self.floc.stock._data["value"] = self.stock_mm
        self.simulator = simulator or CellSimulator()
        self.saxs.poni_text._data["value"] = self.simulator.poni_text
        self.simulated_s = 0.0
        self._tick_wall: float | None = None
        self.sample_number = 0
        self.orientation_deg = sample_orientation_deg(self.seed, 0)
        self._clear_addition()
        self.status._data["value"] = self.sample_message()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-assembly")

    # ------------------------------------------------------------------ clock
    @property
    def time_scale_value(self) -> float:
        return max(float(self.time_scale.value), MIN_TIME_SCALE)

    def sim_now(self) -> float:
        """Simulated time now (s), between ticks extrapolated from the wall clock."""
        if self._tick_wall is None:
            return self.simulated_s
        return self.simulated_s + (time.monotonic() - self._tick_wall) / self.time_scale_value

    def run_in_worker(self, func, *args):
        return asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    # ------------------------------------------------------------------ addition
    def _clear_addition(self) -> None:
        self.add_start_s: float | None = None
        self.add_rate_ul_s = 0.0
        self.add_volume_ul = 0.0
        self.dispensed_ul = 0.0
        self.dispensing = False

    @property
    def addition_end_s(self) -> float:
        """Simulated time at which the running addition ends, s."""
        return (self.add_start_s or 0.0) + self.add_volume_ul / self.add_rate_ul_s

    def addition_refusal(self) -> str | None:
        """Why an Add is refused now, or None."""
        if self.dispensing:
            return (f"Add refused: an addition is running ({self.dispensed_ul:.1f} of "
                    f"{self.add_volume_ul:g} uL dispensed); put Stop to end it.")
        if self.add_start_s is not None:
            return (f"Add refused: this sample already received {self.dispensed_ul:.1f} uL "
                    f"({self.concentration_mm():.1f} mM); put Reset to load a fresh sample.")
        return None

    def start_addition(self, rate_ul_s: float, volume_ul: float) -> None:
        self.add_start_s = self.sim_now()
        self.add_rate_ul_s = rate_ul_s
        self.add_volume_ul = volume_ul
        self.dispensed_ul = 0.0
        self.dispensing = True

    def finish_addition(self) -> None:
        if self.dispensing:
            self.dispensed_ul = self.add_volume_ul
            self.dispensing = False

    def stop_addition(self) -> None:
        if self.dispensing:
            added = (self.sim_now() - self.add_start_s) * self.add_rate_ul_s
            self.dispensed_ul = min(max(added, 0.0), self.add_volume_ul)
            self.add_volume_ul = self.dispensed_ul
            self.dispensing = False

    def concentration_mm(self) -> float:
        return concentration_mm(self.dispensed_ul, self.colloid_volume_ul, self.stock_mm)

    def flocculation(self) -> Flocculation | None:
        """The addition to this sample (planned volume while dispensing), or None."""
        if self.add_start_s is None:
            return None
        volume = self.add_volume_ul if self.dispensing else self.dispensed_ul
        return Flocculation(self.colloid_volume_ul, self.stock_mm, volume, self.add_rate_ul_s)

    def addition_message(self) -> str:
        floc = self.flocculation()
        if self.dispensing:
            return (f"Adding {self.add_volume_ul:g} uL of {self.stock_mm:g} mM flocculant at "
                    f"{self.add_rate_ul_s:g} uL/s (final {floc.final_mm:.1f} mM).")
        return f"Addition ended: {self.dispensed_ul:.2f} uL added, {self.concentration_mm():.2f} mM flocculant."

    def sample_message(self, sample: str | None = None) -> str:
        sample = str(self.sample.value if sample is None else sample)
        what = {"colloid": "4.6 nm Au NC colloid", "monolayer": "6.2 nm PbSe NC monolayer (hexagonal)",
                "binary": "binary NC mixture (disordered)"}.get(sample, sample)
        return f"Fresh sample {self.sample_number}: {what}, no flocculant added."

    def fresh_sample(self) -> None:
        self.sample_number += 1
        self.orientation_deg = sample_orientation_deg(self.seed, self.sample_number)
        self._clear_addition()

    def cell_state(self, exposure_s: float) -> CellState:
        """What a frame starting now and lasting ``exposure_s`` s shows (at mid-exposure)."""
        elapsed = -1.0 if self.add_start_s is None else self.sim_now() - self.add_start_s + exposure_s / 2.0
        return CellState(str(self.sample.value), str(self.lattice.value), self.flocculation(), elapsed,
                         self.orientation_deg)

    # ------------------------------------------------------------------ loop
    def step(self, dt: float) -> None:
        """Advance the cell by ``dt`` simulated seconds."""
        self.simulated_s += dt
        if self.dispensing:
            if self.simulated_s >= self.addition_end_s:
                self.finish_addition()
            else:
                self.dispensed_ul = (self.simulated_s - self.add_start_s) * self.add_rate_ul_s

    async def publish(self) -> None:
        """Write the readbacks that changed since the last update."""
        values = {
            self.sim_time: self.simulated_s,
            self.elapsed: -1.0 if self.add_start_s is None else max(self.sim_now() - self.add_start_s, 0.0),
            self.concentration: self.concentration_mm(),
            self.floc.dispensed: self.dispensed_ul,
            self.floc.dispensing: int(self.dispensing),
        }
        for pv, value in values.items():
            if pv.value != value:
                await pv.write(value)

    async def _refuse_while_adding(self, what: str) -> bool:
        if self.dispensing:
            await self.status.write(f"{what} refused: an addition is running; wait for it or put FLOC:Stop."[:255])
            return True
        return False

    @time_scale.putter
    async def time_scale(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < MIN_TIME_SCALE:
            return instance.value
        # keep the simulated time continuous across the change
        now = time.monotonic()
        if self._tick_wall is not None:
            self.simulated_s += (now - self._tick_wall) / self.time_scale_value
            self._tick_wall = now
        return value

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

    @sim_time.startup
    async def sim_time(self, instance, async_lib):
        self._tick_wall = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            dt = (now - self._tick_wall) / self.time_scale_value
            self._tick_wall = now
            try:
                self.step(dt)
                await self.publish()
            except Exception:  # never let the cell die: report and go on
                self.log.exception("Assembly cell simulation step failed")

    def close(self) -> None:
        self._executor.shutdown(wait=True)


__all__ = [
    "AssemblyCellIOC", "CameraIOC", "CellSimulator", "CellState", "SyringePumpIOC", "camera_geometry",
    "sample_orientation_deg", "CAMERA_SHAPE", "LATTICE_CHOICES", "PIXEL_COUNTS_PER_CM1_PER_S", "Q_NM",
    "SAMPLES", "SAXS_COUNTS_PER_CM1_PER_S",
]
