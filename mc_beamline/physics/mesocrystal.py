"""Nanodiffraction frames of a granular PbS mesocrystal film (seed 000).

The sample is a film of Voronoi grains (mean area ≈ 7 µm²). Each grain has

* an in-plane orientation: the detector azimuth of its atomic [1-10] axis (degrees);
* a superlattice (bct, c/a 1.22, (1-12) at 1.72 nm⁻¹) with [110]_SL along the beam and
  [001]_SL rotated from [001]_AL by the misorientation ψ (degrees, ψ ~ N(0.1°, 2.5°));
* a zone flag: only grains whose atomic lattice is in the [110] zone give atomic Bragg
  peaks ({111} at ±35.26° and {200} at 90° from [1-10]); the others show the superlattice
  only. Zone grains are chosen so that ≈ 412 of the 1785 seed raster points show {111}.

Atomic peaks are broadened in azimuth by the orientational disorder ΔΦ (FWHM, 10°) on top
of their radial width: σ_φ² = (ΔΦ/2.3548)² + (σ_q/q₀)². Grain boundaries (≈ 0.5 µm wide)
scatter diffusely; the 400 nm beam sees both neighbours near a boundary. Counts are
Poisson; pixels in module gaps read 2³²-1 as on an Eiger.

Stage coordinates (x, y) are in µm; the sample is centred on (0, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtr

from mc_beamline.instrument.geometry import DetectorGeometry, azimuth_ranges_deg
from mc_beamline.materials.pbs import PBS_A_NM
from mc_beamline.physics.counting import FixedMeanPoissonSampler
from mc_beamline.physics.detector_model import (
    GAP_VALUE,
    beamstop_mask,
    gap_mask,
    offaxis_geometry,
)
from mc_beamline.physics.lattices import BctSuperlattice, RockSaltLattice

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548

SEED_SCAN_SHAPE = (35, 51)
"""Seed 000 raster (rows along y, columns along x): 13.6 µm x 20 µm in 0.4 µm steps."""
SEED_STEP_UM = 0.4
SEED_FRAMES_WITH_111 = 412
DEFAULT_EXPOSURE_S = 0.01
"""Default exposure per frame in s (nanofocus flux: ~10⁴ photons/s in a superlattice peak pixel)."""
TRAVEL_SAMPLE_FWHM = 0.25
"""A frame taken while the beam moves integrates over its travel with one sample per at most
this many beam FWHMs (0.1 µm for the 0.4 µm beam)."""


def seed_raster_positions(shape: tuple[int, int] = SEED_SCAN_SHAPE, step_um: float = SEED_STEP_UM):
    """Stage positions (y, x) in µm of a raster centred on the sample, end points included."""
    ny, nx = shape
    ys = (np.arange(ny) - (ny - 1) / 2) * step_um
    xs = (np.arange(nx) - (nx - 1) / 2) * step_um
    return ys, xs


@dataclass(frozen=True)
class MesocrystalParams:
    """Parameters of the simulated sample and exposure (defaults: seed 000).

    Lengths in µm, angles in degrees, q in nm⁻¹, intensities in photons per pixel and
    second (at the peak maximum for Bragg peaks); frames default to 10 ms exposures.
    """

    seed: int = 2019
    """Seed of the random grains, orientations and counts."""
    sample_size_um: tuple[float, float] = (24.0, 32.0)
    """(y, x) extent of the sample, µm, centred on the stage origin."""
    mean_grain_area_um2: float = 7.0
    """Mean area of a grain, µm²."""
    boundary_width_um: float = 0.5
    """Width of the grain boundaries, µm; a boundary contributes no Bragg scattering."""
    beam_fwhm_um: float = 0.4
    """Focal spot size (FWHM), µm."""
    c_over_a: float = 1.22
    """Axial ratio of the bct superlattice."""
    q112_nm: float = 1.72
    """q of the superlattice (1-12) reflection, nm⁻¹."""
    al_a_nm: float = PBS_A_NM
    """Cubic lattice constant of the atomic lattice, nm."""
    psi_mean_deg: float = 0.1
    """Mean misorientation ψ = φ(SL) − φ(AL) of the grains, degrees."""
    psi_std_deg: float = 2.5
    """Standard deviation of ψ over the grains, degrees."""
    disorder_fwhm_deg: float = 10.0
    """Orientational disorder of the nanocrystals in a grain (azimuthal FWHM of the AL peaks), degrees."""
    al_radial_sigma_nm: float = 0.30
    """Radial width (σ) of the atomic peaks, nm⁻¹."""
    sl_radial_sigma_nm: float = 0.025
    """Radial width (σ) of the superlattice peaks, nm⁻¹."""
    sl_azimuthal_sigma_deg: float = 1.5
    """Azimuthal width (σ) of the superlattice peaks, degrees."""
    frames_with_111: int = SEED_FRAMES_WITH_111
    """Raster points of the seed raster that see an atomic {111} peak (grains in the [110] zone)."""
    sl_peak_counts: float = 6000.0
    """Superlattice peak maximum, photons per pixel and second."""
    al111_peak_counts: float = 1200.0
    """Atomic {111} peak maximum, photons per pixel and second."""
    al200_peak_counts: float = 600.0
    """Atomic {200} peak maximum, photons per pixel and second."""
    thickness_variation: float = 0.15
    """Relative spread of the grains' thickness (uniform, ±), which scales their Bragg intensity."""
    background_counts: float = 5.0
    """Flat background, photons per pixel and second."""
    saxs_background_counts: float = 400.0
    """Small-angle scattering of the nanocrystals at the beam stop's edge, photons per pixel and second."""
    powder_ring_counts: float = 30.0
    """Isotropic powder rings of misoriented material, photons per pixel and second."""


@dataclass(frozen=True)
class PositionTruth:
    """What the beam sees at one stage position.

    Attributes
    ----------
    grain : index of the dominant grain, -1 outside the sample.
    weight : fraction of the ordered scattering from that grain (0–1).
    orientation_deg : azimuth of the grain's atomic [1-10] axis on the detector.
    psi_deg : misorientation ψ = φ(SL) − φ(AL) of the grain.
    zone : True if the atomic lattice is in the [110] zone (atomic peaks present).
    boundary : True if the beam centre is within half a boundary width of a boundary.
    """

    grain: int
    weight: float
    orientation_deg: float
    psi_deg: float
    zone: bool
    boundary: bool


@dataclass
class _Band:
    """Good pixels within ±4σ_q of one ring, sorted by azimuth, with their radial profile."""

    index: np.ndarray  # flat pixel indices, int64
    phi: np.ndarray  # degrees, ascending
    radial: np.ndarray  # exp(-(q-q0)²/2σ_q²), float32


@dataclass
class NoisyBackground:
    """The background half of a frame: counts (flat uint32) and the generator to continue with."""

    exposure_s: float
    noise_key: int
    rng: np.random.Generator
    counts: np.ndarray


@dataclass(frozen=True)
class _Peak:
    band: int
    phi_deg: float
    sigma_phi_deg: float
    counts: float


class MesocrystalSimulator:
    """Generates nanodiffraction frames and their ground truth for stage positions.

    Parameters
    ----------
    params : sample and exposure parameters.
    geometry : detector geometry (default: the off-axis seed geometry).
    """

    def __init__(self, params: MesocrystalParams | None = None, geometry: DetectorGeometry | None = None):
        self.params = params or MesocrystalParams()
        self.geometry = geometry or offaxis_geometry()
        self.superlattice = BctSuperlattice.from_q112(self.params.q112_nm, self.params.c_over_a)
        self.atomic_lattice = RockSaltLattice(self.params.al_a_nm)
        self._build_grains()
        self._band_keys: list[tuple[float, float]] = []
        self._bands: list[_Band] = []
        self._sl_reflections = [
            (self._band_for(r.q_nm, self.params.sl_radial_sigma_nm), r.angle_deg, self._sl_weight(r.hkl))
            for r in self.superlattice.zone_110_reflections()
        ]
        self._al_reflections = [
            (self._band_for(r.q_nm, self.params.al_radial_sigma_nm), r.angle_deg, self._al_counts(r.hkl), r.q_nm)
            for r in self.atomic_lattice.zone_110_reflections()
        ]
        self._samplers: dict[float, FixedMeanPoissonSampler] = {}

    # ----------------------------------------------------------------- sample model
    def _build_grains(self) -> None:
        p = self.params
        rng = np.random.default_rng(p.seed)
        h, w = p.sample_size_um
        n = max(2, int(round(h * w / p.mean_grain_area_um2)))
        # Poisson-disc-like seeds (Lloyd-relaxed) give compact grains of similar size.
        seeds = np.column_stack([rng.uniform(-h / 2, h / 2, n), rng.uniform(-w / 2, w / 2, n)])
        probe = np.column_stack([rng.uniform(-h / 2, h / 2, 40 * n), rng.uniform(-w / 2, w / 2, 40 * n)])
        for _ in range(4):
            owner = cKDTree(seeds).query(probe)[1]
            counts = np.bincount(owner, minlength=n)
            sums = np.zeros_like(seeds)
            np.add.at(sums, owner, probe)
            moved = counts > 0
            seeds[moved] = sums[moved] / counts[moved, None]
        self.grain_seeds_um = seeds  # (n, 2) as (y, x)
        self._tree = cKDTree(seeds)
        self.grain_orientation_deg = rng.uniform(-180.0, 180.0, n)
        self.grain_psi_deg = rng.normal(p.psi_mean_deg, p.psi_std_deg, n)
        self.grain_thickness = 1.0 + p.thickness_variation * rng.uniform(-1, 1, n)
        self.grain_zone, points = self._choose_zone_grains(rng)
        self._match_psi_statistics(points)

    def _choose_zone_grains(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pick [110]-zone grains until the seed raster has ``frames_with_111`` such points."""
        n = len(self.grain_seeds_um)
        per_grain = self._seed_raster_points_per_grain()
        zone = np.zeros(n, dtype=bool)
        total = 0
        target = self.params.frames_with_111
        for g in rng.permutation(n):
            if per_grain[g] == 0:
                continue
            if abs(total + per_grain[g] - target) < abs(total - target):
                zone[g] = True
                total += per_grain[g]
        return zone, per_grain

    def _seed_raster_points_per_grain(self) -> np.ndarray:
        ys, xs = seed_raster_positions()
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        owner = self._tree.query(np.column_stack([yy.ravel(), xx.ravel()]))[1]
        return np.bincount(owner, minlength=len(self.grain_seeds_um))

    def _match_psi_statistics(self, points: np.ndarray) -> None:
        """Make ψ over the seed raster's zone positions have exactly the requested mean and std.

        With only a dozen [110]-zone grains under the seed raster, independent draws would
        give a sample mean ψ off by ~0.7° (2.5°/√12); the seed reports 0.1 ± 2.5° over its
        412 positions, so the zone grains' draws are standardised, weighted by positions.
        """
        p = self.params
        zone = self.grain_zone & (points > 0)
        if zone.sum() < 2:
            return
        w = points[zone].astype(float)
        psi = self.grain_psi_deg[zone]
        mean = np.average(psi, weights=w)
        std = math.sqrt(np.average((psi - mean) ** 2, weights=w))
        if std > 0:
            self.grain_psi_deg[zone] = p.psi_mean_deg + (psi - mean) * (p.psi_std_deg / std)

    def _inside(self, y: float, x: float) -> bool:
        h, w = self.params.sample_size_um
        return abs(y) <= h / 2 and abs(x) <= w / 2

    def _nearest_grains(self, x_um: float, y_um: float) -> tuple[int, int, float]:
        """The two nearest grains and the beam's distance (µm) to the boundary between them."""
        dist, idx = self._tree.query([y_um, x_um], k=2)
        g1, g2 = int(idx[0]), int(idx[1])
        sep = float(np.linalg.norm(self.grain_seeds_um[g1] - self.grain_seeds_um[g2]))
        return g1, g2, float((dist[1] ** 2 - dist[0] ** 2) / (2 * sep))

    def _illumination(self, x_um: float, y_um: float) -> list[tuple[int, float]]:
        """(grain, weight) pairs of ordered scattering seen by the beam at (x, y).

        The Gaussian beam is split by the boundary line; the disordered boundary band
        (``boundary_width_um``) contributes no Bragg scattering.
        """
        if not self._inside(y_um, x_um):
            return []
        p = self.params
        g1, g2, b = self._nearest_grains(x_um, y_um)
        sigma = p.beam_fwhm_um / FWHM_PER_SIGMA
        hw = p.boundary_width_um / 2
        return [(g1, float(ndtr((b - hw) / sigma))), (g2, float(ndtr((-b - hw) / sigma)))]

    def truth_at(self, x_um: float, y_um: float) -> PositionTruth:
        """Ground truth at stage position (x, y) in µm."""
        ill = self._illumination(x_um, y_um)
        if not ill:
            return PositionTruth(-1, 0.0, float("nan"), float("nan"), False, False)
        g, w = ill[0]
        b = self._nearest_grains(x_um, y_um)[2]
        return PositionTruth(
            grain=g,
            weight=w,
            orientation_deg=float(self.grain_orientation_deg[g]),
            psi_deg=float(self.grain_psi_deg[g]),
            zone=bool(self.grain_zone[g]),
            boundary=bool(b < self.params.boundary_width_um / 2),
        )

    # ---------------------------------------------------------------- detector model
    @cached_property
    def gap_mask(self) -> np.ndarray:
        """Pixels that do not exist (module/chip gaps), True = bad."""
        return gap_mask(self.geometry.shape)

    @cached_property
    def mask(self) -> np.ndarray:
        """Full analysis mask: gaps and beamstop shadow, True = bad."""
        return self.gap_mask | beamstop_mask(self.geometry)

    @cached_property
    def background_expected(self) -> np.ndarray:
        """Expected background count rate per pixel in photons/s (float64, detector shape).

        Diffuse scattering (constant), small-angle scattering of the nanocrystals (form
        factor of 6.2 nm spheres, Guinier-Porod), and weak isotropic powder rings from
        unaligned nanocrystals. The beamstop shadow receives 1% of it.
        """
        p = self.params
        q = self.geometry.q_map.astype(np.float64)
        radius = 3.1
        x = q * radius
        form = np.where(x < 1e-3, 1.0, (3 * (np.sin(x) - x * np.cos(x)) / np.maximum(x, 1e-3) ** 3) ** 2)
        saxs = p.saxs_background_counts * (form + 0.02 * (0.5 / np.maximum(q, 0.3)) ** 2)
        rings = np.zeros_like(q)
        for qr in (self.atomic_lattice.q_hkl(1, 1, 1), self.atomic_lattice.q_hkl(2, 0, 0)):
            rings += np.exp(-0.5 * ((q - qr) / p.al_radial_sigma_nm) ** 2)
        bg = p.background_counts + saxs + p.powder_ring_counts * rings
        bg[beamstop_mask(self.geometry)] *= 0.01
        bg[self.gap_mask] = 0.0
        return bg

    def _band_for(self, q0: float, sigma_q: float) -> int:
        key = (round(q0, 6), round(sigma_q, 6))
        if key in self._band_keys:
            return self._band_keys.index(key)
        q = self.geometry.q_map.ravel()
        good = ~self.gap_mask.ravel()
        index = np.flatnonzero(good & (np.abs(q - q0) <= 4 * sigma_q))
        phi = self.geometry.phi_map.ravel()[index]
        order = np.argsort(phi, kind="stable")
        index, phi = index[order], phi[order]
        radial = np.exp(-0.5 * ((q[index] - q0) / sigma_q) ** 2).astype(np.float32)
        self._band_keys.append(key)
        self._bands.append(_Band(index=index, phi=phi, radial=radial))
        return len(self._bands) - 1

    def _sl_weight(self, hkl: tuple[int, int, int]) -> float:
        """Relative intensity of superlattice reflections: (1-12) 1, (002) 0.6, (1-10) 0.45."""
        h, _, l = hkl
        if h != 0 and l != 0:
            return 1.0
        return 0.6 if l != 0 else 0.45

    def _al_counts(self, hkl: tuple[int, int, int]) -> float:
        return self.params.al111_peak_counts if abs(hkl[0]) == 1 else self.params.al200_peak_counts

    def peaks_at(self, x_um: float, y_um: float, exposure_s: float = DEFAULT_EXPOSURE_S) -> list[_Peak]:
        """The Bragg peaks (band, azimuth, width, peak counts) illuminated at (x, y)."""
        p = self.params
        sigma_dis = math.radians(p.disorder_fwhm_deg) / FWHM_PER_SIGMA
        peaks = []
        for grain, weight in self._illumination(x_um, y_um):
            if weight < 1e-3:
                continue
            scale = weight * self.grain_thickness[grain] * exposure_s
            phi_al = self.grain_orientation_deg[grain]
            phi_sl = phi_al + self.grain_psi_deg[grain]
            for band, angle, rel in self._sl_reflections:
                peaks.append(_Peak(band, phi_sl + angle, p.sl_azimuthal_sigma_deg, p.sl_peak_counts * rel * scale))
            if not self.grain_zone[grain]:
                continue
            for band, angle, counts, q0 in self._al_reflections:
                sigma_phi = math.degrees(math.hypot(sigma_dis, p.al_radial_sigma_nm / q0))
                peaks.append(_Peak(band, phi_al + angle, sigma_phi, counts * scale))
        return peaks

    def _sampler(self, exposure_s: float) -> FixedMeanPoissonSampler:
        """The background sampler of ``exposure_s`` (the last one is kept; safe across threads)."""
        key = round(float(exposure_s), 9)
        sampler = self._samplers.get(key)
        if sampler is None:
            sampler = FixedMeanPoissonSampler(self.background_expected * exposure_s)
            self._samplers = {key: sampler}
        return sampler

    def frame(self, x_um: float, y_um: float, exposure_s: float = DEFAULT_EXPOSURE_S, noise_key: int = 0,
              x_end_um: float | None = None) -> np.ndarray:
        """One detector frame (uint32 counts, detector shape) at stage position (x, y) µm.

        The Poisson noise is drawn from a generator seeded by (sample seed, ``noise_key``):
        a detector passes its image counter, so every exposure is a new realisation and
        any frame can be recomputed exactly from its position and counter. The frame is
        :meth:`noisy_background` followed by :meth:`add_bragg_peaks`; a detector may draw
        the background (most of the cost, independent of the position) ahead of time.
        With ``x_end_um`` the beam moves from ``x_um`` to ``x_end_um`` during the exposure
        (see :meth:`peaks_along`).
        """
        background = self.noisy_background(exposure_s, noise_key)
        return self.add_bragg_peaks(background, x_um, y_um, x_end_um)

    def noisy_background(self, exposure_s: float, noise_key: int) -> "NoisyBackground":
        """Poisson-sampled background of image ``noise_key``; does not depend on the position."""
        if exposure_s <= 0 or not math.isfinite(exposure_s):
            raise ValueError(f"Exposure time must be positive, got {exposure_s} s.")
        rng = np.random.default_rng([self.params.seed, int(noise_key)])
        counts = self._sampler(exposure_s).sample(rng).reshape(-1)
        return NoisyBackground(exposure_s=float(exposure_s), noise_key=int(noise_key), rng=rng, counts=counts)

    def peaks_along(self, x_start_um: float, x_end_um: float, y_um: float,
                    exposure_s: float = DEFAULT_EXPOSURE_S) -> list[_Peak]:
        """The Bragg peaks of an exposure during which the beam moves from ``x_start_um`` to
        ``x_end_um`` (µm) at constant speed: the integral over the travel by the midpoint rule,
        one sample per at most :data:`TRAVEL_SAMPLE_FWHM` beam widths, each with its share of
        ``exposure_s``; the same peak (a grain seen at several samples) is summed.

        A beam at rest (``x_end_um == x_start_um``) gives :meth:`peaks_at`.
        """
        travel = abs(x_end_um - x_start_um)
        n = max(1, math.ceil(travel / (TRAVEL_SAMPLE_FWHM * self.params.beam_fwhm_um) - 1e-9))
        if n == 1 and travel == 0:
            return self.peaks_at(x_start_um, y_um, exposure_s)
        summed: dict[tuple[int, float, float], float] = {}
        for k in range(n):
            x = x_start_um + (k + 0.5) / n * (x_end_um - x_start_um)
            for peak in self.peaks_at(x, y_um, exposure_s / n):
                key = (peak.band, peak.phi_deg, peak.sigma_phi_deg)
                summed[key] = summed.get(key, 0.0) + peak.counts
        return [_Peak(band, phi, sigma, counts) for (band, phi, sigma), counts in summed.items()]

    def add_bragg_peaks(self, background: "NoisyBackground", x_um: float, y_um: float,
                        x_end_um: float | None = None) -> np.ndarray:
        """Finish a frame: add the Poisson-sampled Bragg peaks at (x, y) to ``background``.

        With ``x_end_um`` the beam moves from ``x_um`` to ``x_end_um`` during the exposure
        (a fly scan) and the peaks are those of :meth:`peaks_along`. Consumes ``background``
        (its counts become the returned frame).
        """
        flat, rng = background.counts, background.rng
        x_end = x_um if x_end_um is None else x_end_um
        for peak in self.peaks_along(x_um, x_end, y_um, background.exposure_s):
            index, lam = self._peak_expected(peak)
            if index.size:
                flat[index] += rng.poisson(lam).astype(np.uint32)
        frame = flat.reshape(self.geometry.shape)
        frame[self.gap_mask] = GAP_VALUE
        return frame

    def expected_frame(self, x_um: float, y_um: float, exposure_s: float = DEFAULT_EXPOSURE_S,
                       x_end_um: float | None = None) -> np.ndarray:
        """Noise-free expected counts (float64) at (x, y), or over the travel to ``x_end_um``; gap pixels are 0."""
        flat = (self.background_expected * exposure_s).reshape(-1).copy()
        for peak in self.peaks_along(x_um, x_um if x_end_um is None else x_end_um, y_um, exposure_s):
            index, lam = self._peak_expected(peak)
            flat[index] += lam
        return flat.reshape(self.geometry.shape)

    def _peak_expected(self, peak: _Peak) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indices and expected counts of one peak, within ±4σ in azimuth."""
        band = self._bands[peak.band]
        center = (peak.phi_deg + 180.0) % 360.0 - 180.0
        half = 4.0 * peak.sigma_phi_deg
        sel = [slice(*np.searchsorted(band.phi, part)) for part in azimuth_ranges_deg(center - half, center + half)]
        index = np.concatenate([band.index[s] for s in sel])
        phi = np.concatenate([band.phi[s] for s in sel])
        radial = np.concatenate([band.radial[s] for s in sel])
        dphi = (phi - center + 180.0) % 360.0 - 180.0
        lam = peak.counts * radial * np.exp(-0.5 * (dphi / peak.sigma_phi_deg) ** 2)
        return index, lam


def raster_truth_summary(sim: MesocrystalSimulator, ys_um: np.ndarray, xs_um: np.ndarray) -> dict:
    """Ground truth of a raster over positions ``ys_um`` x ``xs_um`` (µm), for comparison with XCCA.

    Keys: ``c_over_a``, ``disorder_fwhm_deg``, ``psi_mean_deg``/``psi_std_deg`` over the
    positions in [110]-zone grains, ``n_zone_positions``, ``grains`` (grains seen at two or
    more positions) and ``mean_grain_area_um2`` (their mean area in the raster, µm²).
    """
    truths = [sim.truth_at(x, y) for y in ys_um for x in xs_um]
    psi = np.array([t.psi_deg for t in truths if t.zone])
    grains, counts = np.unique([t.grain for t in truths if t.grain >= 0], return_counts=True)
    step = float(abs(xs_um[1] - xs_um[0])) if len(xs_um) > 1 else float("nan")
    seen = counts[counts >= 2]
    return {
        "c_over_a": sim.params.c_over_a,
        "disorder_fwhm_deg": sim.params.disorder_fwhm_deg,
        "psi_mean_deg": float(psi.mean()) if psi.size else float("nan"),
        "psi_std_deg": float(psi.std(ddof=1)) if psi.size > 1 else float("nan"),
        "n_zone_positions": int(psi.size),
        "grains": int(seen.size),
        "mean_grain_area_um2": float(seen.mean() * step * step) if seen.size else float("nan"),
    }

