"""The self-assembly cell's samples, their flocculant addition and their SAXS (seeds 001, 003, 004).

Time-resolved SAXS of nanocrystal (NC) self-assembly after a flocculant is added (seed 004),
of the hexagonal → square transformation of a PbSe monolayer (seed 003) and of a binary NC
quasicrystal (seed 001), as the simulated assembly cell
(:mod:`mc_beamline.sim_iocs.assembly`) measures it. Times are *simulated* seconds,
volumes µL, rates µL/s, concentrations mM, q in nm⁻¹, intensities cm⁻¹.

Addition
--------
:class:`SyringeAddition` follows the one addition a sample may receive: it starts at a
rate and a planned volume, dispenses rate · t, and ends when the planned volume is in
(or earlier, when stopped: then the volume actually added counts).

Samples
-------
* ``colloid``: 4.6 nm Au NCs (radius 2.3 nm, 0.3 nm gap in the supercrystal) in a
  capillary. The addition sets the pathway and kinetics of
  :mod:`mc_beamline.physics.flocculation` (final concentration, rate; onset when c crosses
  20 mM) and ``AssemblyModel`` (:mod:`mc_beamline.physics.assembly`) gives I(q) at model time
  ``elapsed − onset``; before the addition, the dilute colloid. While an addition runs, a
  frame uses the planned volume (after a stop, the volume actually added).
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
drawn once per sample (:func:`sample_orientation_deg`), so the spots stay put from frame to
frame. Expected pattern intensities are counts per pixel per second of exposure, 20 counts
per pixel per cm⁻¹ per second (:data:`PIXEL_COUNTS_PER_CM1_PER_S`).

Camera and measurement
----------------------
A 512 x 512 pixel camera (75 µm pixels, 0.6 m, 12.4 keV, beam at the centre: q from 0 to
2.0 nm⁻¹ at the edges, 2.84 nm⁻¹ in the corners; :func:`camera_geometry`). A frame
(:meth:`CellSimulator.measure`) is a 1D curve, the azimuthal mean of the expected pattern
(colloid: the model I(q)) on :data:`Q_NM` with counting noise of
:data:`SAXS_COUNTS_PER_CM1_PER_S` counts per cm⁻¹ per q bin and second (σ returned), and an
image, Poisson counts of the expected pattern (colloid: the isotropic model I(q) on the q
map), solid-angle and flat-field corrected, no beamstop or mask.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics import saxs_models
from mc_beamline.physics.assembly import AssemblyModel, default_q_nm
from mc_beamline.physics.flocculation import (
    DEFAULT_COLLOID_VOLUME_UL,
    DEFAULT_STOCK_MM,
    Flocculation,
    assembly_model,
    concentration_mm,
)
from mc_beamline.physics.superlattice_patterns import (
    HexToSquareTransition,
    SpotPattern,
    dodecagonal_spots,
)

SAMPLES = ("colloid", "monolayer", "binary")
"""Samples the cell can hold."""
LATTICE_CHOICES = ("fcc", "bcc", "hcp")
"""Supercrystal lattices offered for the colloid."""
Q_NM = default_q_nm()
"""q grid of the 1D curves: 600 points, 0.2–6 nm⁻¹."""

CAMERA_SHAPE = (512, 512)
"""Rows, columns of the SAXS camera."""
CAMERA_PIXEL_M = 75e-6
"""Pixel size of the SAXS camera, m."""
CAMERA_DISTANCE_M = 0.6
"""Sample-to-camera distance, m."""
CAMERA_ENERGY_KEV = 12.4
"""Photon energy, keV."""
SAXS_COUNTS_PER_CM1_PER_S = 2e4
"""1D curves: counts per q bin per cm⁻¹ of intensity and second of exposure."""
PIXEL_COUNTS_PER_CM1_PER_S = 20.0
"""Images: counts per pixel per cm⁻¹ of intensity and second of exposure."""

COLLOID_RADIUS_NM = 2.3
"""Radius of the colloid's Au NCs, nm."""
COLLOID_GAP_NM = 0.3
"""Gap between neighbouring NCs in the colloid's supercrystal, nm."""
MONOLAYER_TRANSITION_S = 25.0
"""Time after the addition start at which the monolayer's lattice angle passes 75°, s."""
PRE_ADDITION_T_S = -1000.0
"""Model time of the monolayer before any addition (hexagonal, progress ~1e-48), s."""
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
"""Standard deviation of the isotropic ring of the disordered mixture, nm⁻¹."""
BINARY_RING_REMAINING = 0.2
"""Fraction of the isotropic ring left once the quasicrystal has fully grown."""
BACKGROUND_PER_S = 2.0
"""Flat background of the monolayer and binary frames, counts per pixel per second."""


def camera_geometry() -> DetectorGeometry:
    """The SAXS camera: 512 x 512 pixels of 75 µm at 0.6 m, 12.4 keV, beam at the centre."""
    rows, cols = CAMERA_SHAPE
    return DetectorGeometry.from_beam_center(CAMERA_SHAPE, ((rows - 1) / 2.0, (cols - 1) / 2.0),
                                             dist_m=CAMERA_DISTANCE_M, energy_kev=CAMERA_ENERGY_KEV,
                                             pixel_m=CAMERA_PIXEL_M)


def sample_orientation_deg(seed: int, sample_number: int) -> float:
    """Domain orientation of sample ``sample_number`` (0 at IOC start, +1 per Reset), degrees."""
    return float(np.random.default_rng((int(seed), 3, int(sample_number))).uniform(-180.0, 180.0))


class SyringeAddition:
    """The flocculant a syringe pump adds to one sample, in simulated time.

    Parameters
    ----------
    colloid_volume_ul : sample volume before the addition, µL.
    stock_mm : flocculant concentration in the syringe, mM.

    Attributes
    ----------
    start_s : simulated time at which the addition started, s (None before it).
    rate_ul_s : pump rate, µL/s.
    volume_ul : planned volume (after a stop: the volume added), µL.
    dispensed_ul : volume added so far, µL.
    dispensing : True while the pump runs.
    """

    def __init__(self, colloid_volume_ul: float = DEFAULT_COLLOID_VOLUME_UL, stock_mm: float = DEFAULT_STOCK_MM):
        self.colloid_volume_ul = float(colloid_volume_ul)
        self.stock_mm = float(stock_mm)
        self.start_s: float | None = None
        self.rate_ul_s = 0.0
        self.volume_ul = 0.0
        self.dispensed_ul = 0.0
        self.dispensing = False

    @property
    def end_s(self) -> float:
        """Simulated time at which the (planned) addition ends, s."""
        return (self.start_s or 0.0) + self.volume_ul / self.rate_ul_s

    def start(self, now_s: float, rate_ul_s: float, volume_ul: float) -> None:
        """Start dispensing ``volume_ul`` µL at ``rate_ul_s`` µL/s at simulated time ``now_s`` s."""
        self.start_s = now_s
        self.rate_ul_s = rate_ul_s
        self.volume_ul = volume_ul
        self.dispensed_ul = 0.0
        self.dispensing = True

    def advance(self, now_s: float) -> None:
        """Update the dispensed volume to simulated time ``now_s`` s; finish at :attr:`end_s`."""
        if self.dispensing:
            if now_s >= self.end_s:
                self.finish()
            else:
                self.dispensed_ul = (now_s - self.start_s) * self.rate_ul_s

    def finish(self) -> None:
        """End a running addition with the planned volume added."""
        if self.dispensing:
            self.dispensed_ul = self.volume_ul
            self.dispensing = False

    def stop(self, now_s: float) -> None:
        """End a running addition at simulated time ``now_s`` s with the volume added by then."""
        if self.dispensing:
            added = (now_s - self.start_s) * self.rate_ul_s
            self.dispensed_ul = min(max(added, 0.0), self.volume_ul)
            self.volume_ul = self.dispensed_ul
            self.dispensing = False

    def concentration_mm(self) -> float:
        """Flocculant concentration in the cell now, mM."""
        return concentration_mm(self.dispensed_ul, self.colloid_volume_ul, self.stock_mm)

    def flocculation(self) -> Flocculation | None:
        """The addition (planned volume while dispensing) as a :class:`Flocculation`, or None before it."""
        if self.start_s is None:
            return None
        volume = self.volume_ul if self.dispensing else self.dispensed_ul
        return Flocculation(self.colloid_volume_ul, self.stock_mm, volume, self.rate_ul_s)

    def elapsed_s(self, now_s: float) -> float:
        """Simulated s from the addition start to ``now_s`` (at least 0); −1 before any addition."""
        return -1.0 if self.start_s is None else max(now_s - self.start_s, 0.0)

    def frame_elapsed_s(self, now_s: float, exposure_s: float) -> float:
        """Time since the addition start at the middle of an exposure of ``exposure_s`` s that
        starts at ``now_s`` (the time the frame represents), s; −1 if no addition had started."""
        return -1.0 if self.start_s is None else now_s - self.start_s + exposure_s / 2.0


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

    def colloid_model(self, state: CellState) -> tuple[AssemblyModel, float]:
        """The colloid's :class:`AssemblyModel` and the model time of ``state`` (s)."""
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
        """Noise-free azimuthally averaged I(q) on ``q_nm`` (nm⁻¹), cm⁻¹."""
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
        """Frame ``counter`` of an ``exposure_s`` s exposure: the 1D curve (with σ, cm⁻¹) and the
        image (int32 Poisson counts). The curve's noise comes from ``(seed, 2, counter)``, the
        image's from ``(seed, 4, counter)``."""
        exposure_s = max(float(exposure_s), 1e-6)
        clean = self.expected_curve(state)
        curve = saxs_models.measure(clean, Q_NM, np.random.default_rng((seed, 2, counter)),
                                    counts_per_cm1=SAXS_COUNTS_PER_CM1_PER_S * exposure_s)
        mean = self.expected_image(state, exposure_s)
        image = np.random.default_rng((seed, 4, counter)).poisson(np.maximum(mean, 0.0))
        image = np.minimum(image, np.iinfo(np.int32).max).astype(np.int32)
        return curve, image


__all__ = [
    "BINARY_Q0_NM", "CAMERA_SHAPE", "COLLOID_GAP_NM", "COLLOID_RADIUS_NM", "LATTICE_CHOICES",
    "MONOLAYER_TRANSITION_S", "PIXEL_COUNTS_PER_CM1_PER_S", "Q_NM", "SAMPLES", "SAXS_COUNTS_PER_CM1_PER_S",
    "CellSimulator", "CellState", "SyringeAddition", "camera_geometry", "sample_orientation_deg",
]
