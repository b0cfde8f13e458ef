"""Time-resolved SAXS of supercrystal self-assembly and superlattice symmetry, frame by frame.

:class:`AssemblySeriesAnalysis` takes the frames of one series as they arrive, each with
its time since the flocculant addition began (s; negative for frames taken before), a 1D
curve I(q) ± σ (cm⁻¹ on a fixed q axis in nm⁻¹) and optionally the 2D detector image:

* per frame, from the image: the symmetry of the superlattice ring (order, C_4, C_6, C_12;
  :mod:`~mc_beamline.analysis.saxs.symmetry`), the ring regrouped by a
  :class:`~mc_beamline.analysis.detector.polar.RingPolarOperator` built once for the series;
* over the series, from the curves (3D samples): the number fractions of NCs in the dilute
  fluid, dense fluid and supercrystal (one joint fit,
  :func:`~mc_beamline.analysis.saxs.phases.fit_phase_series`), refitted while the series
  runs (after ``refit_every`` frames, then whenever the series has grown by half, so a long
  series costs a bounded multiple of one fit) and once over all frames at the end, and the
  nucleation pathway (:func:`~mc_beamline.analysis.saxs.phases.classify_pathway`);
* the last frame: everything ``mc-beamline saxs`` reports
  (:func:`~mc_beamline.analysis.saxs.curve.analyse_curve`);
* the symmetry change: from the order of the first frames to that of the last frames, the
  time C_to / (C_from + C_to) crosses ½ (e.g. C_6 → C_4 for a hexagonal → square
  superlattice); from an isotropic ring (order 0) to order N, the time of the first frame
  from which the order stays N.

The superlattice ring is ``ring_q_nm`` if given, else the ring of strongest angular
modulation in the first image that has one (:func:`~mc_beamline.analysis.saxs.symmetry.find_ordered_ring`;
the ring stays fixed for the series; frames before it is known have no symmetry). Times in s, q in nm⁻¹, intensities in cm⁻¹ (curves) or counts (image).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from mc_beamline.analysis.detector.polar import Ring, RingPolarOperator
from mc_beamline.analysis.saxs.curve import analyse_curve
from mc_beamline.analysis.saxs.phases import (
    PhaseSeries,
    classify_pathway,
    fit_phase_series,
)
from mc_beamline.analysis.saxs.symmetry import (
    find_ordered_ring,
    ring_symmetry,
    transition_time,
)
from mc_beamline.instrument.geometry import DetectorGeometry

N_AZIMUTH_BINS = 360
"""Azimuthal bins of the superlattice ring."""
SYMMETRY_HARMONICS = (4, 6, 12)
"""Fourier components reported per frame."""
STABLE_FRAMES = 3
"""Frames at the start and at the end of a series whose majority order counts as its symmetry."""
MIN_RING_HALF_WIDTH_NM = 0.04
RING_HALF_WIDTH_REL = 0.07
"""The ring is regrouped over q* ± max(0.04 nm⁻¹, 7 % of q*), enough to follow a lattice
whose spacing changes by a few per cent during the series."""


@dataclass(frozen=True)
class FrameSymmetry:
    """Symmetry of the superlattice ring in one frame: ``order`` (0: none) and C_4, C_6, C_12."""

    order: int
    c4: float
    c6: float
    c12: float


@dataclass(frozen=True)
class SymmetryChange:
    """A change of the superlattice ring's symmetry between the first and the last frames."""

    from_order: int
    """Symmetry order of the first frames (0: isotropic ring)."""
    to_order: int
    """Symmetry order of the last frames."""
    time_s: float | None
    """When it changed, s since the flocculant addition began; None if C_to never overtook C_from."""

    def as_dict(self) -> dict:
        """The ``symmetry.change`` object of the series result."""
        return {"from_order": self.from_order, "to_order": self.to_order, "time_s": self.time_s}


@dataclass(frozen=True)
class SymmetryTrace:
    """The superlattice ring's Fourier components frame by frame, for the assembly figure."""

    c4: np.ndarray
    """C_4 of each frame (normalised, dimensionless), NaN where the symmetry is not known."""
    c6: np.ndarray
    """C_6 of each frame (normalised, dimensionless), NaN where the symmetry is not known."""
    c12: np.ndarray
    """C_12 of each frame (normalised, dimensionless), NaN where the symmetry is not known."""
    change: SymmetryChange | None
    """The symmetry change (times in s), or None: none, not known, or not asked for."""


class AssemblySeriesAnalysis:
    """Analysis of one assembly series (see the module docstring).

    Parameters
    ----------
    q_nm : q axis of the curves, nm⁻¹ (increasing).
    geometry : the 2D detector geometry (None: no symmetry analysis).
    mask : bad pixels of the 2D detector, ``True`` = bad (optional).
    ring_q_nm : the superlattice ring, nm⁻¹ (None: found in the first image with an ordered ring).
    phases : fit phase fractions (a 3D sample; a monolayer on a membrane has none).
    refit_every : first live fit of the phase fractions after this many frames; then
        after ``max(refit_every, n / 2)`` more.
    """

    def __init__(self, q_nm: np.ndarray, geometry: DetectorGeometry | None = None, *,
                 mask: np.ndarray | None = None, ring_q_nm: float | None = None, phases: bool = True,
                 refit_every: int = 10):
        self.q_nm = np.asarray(q_nm, dtype=float)
        self.geometry = geometry
        self.mask = mask
        self.phases = phases
        self.refit_every = max(1, int(refit_every))
        self._next_fit = self.refit_every
        self.t_s: list[float] = []
        self.curves: list[np.ndarray] = []
        self.sigmas: list[np.ndarray] = []
        self.symmetry: list[FrameSymmetry | None] = []
        self.ring: Ring | None = None
        self._operator: RingPolarOperator | None = None
        self.fit: PhaseSeries | None = None
        if ring_q_nm is not None:
            self._set_ring(float(ring_q_nm))

    # ----------------------------------------------------------------- frames
    @property
    def n_frames(self) -> int:
        return len(self.t_s)

    def add_frame(self, t_s: float, intensity: np.ndarray, sigma: np.ndarray | None = None,
                  image: np.ndarray | None = None) -> FrameSymmetry | None:
        """Add one frame (time s, I(q) and σ in cm⁻¹, image in counts); returns its ring symmetry."""
        i = np.asarray(intensity, dtype=float)
        if i.shape != self.q_nm.shape:
            raise ValueError(f"A curve has {i.size} points but the q axis has {self.q_nm.size}.")
        s = None if sigma is None else np.asarray(sigma, dtype=float)
        if self.ring is None and self.geometry is not None and image is not None:
            found = find_ordered_ring(image, self.geometry.q_map, self.geometry.phi_map, self.mask)
            if found is not None:
                self._set_ring(found.q_nm)
        sym = self._frame_symmetry(image) if image is not None else None
        self.t_s.append(float(t_s))
        self.curves.append(i)
        self.sigmas.append(s if s is not None else np.full_like(i, np.nan))
        self.symmetry.append(sym)
        if self.phases and self.n_frames >= self._next_fit:
            self.fit = self._fit_phases()
            self._next_fit = self.n_frames + max(self.refit_every, self.n_frames // 2)
        return sym

    def _set_ring(self, q_nm: float) -> None:
        self.ring = Ring(q_nm, max(MIN_RING_HALF_WIDTH_NM, RING_HALF_WIDTH_REL * q_nm))

    def _frame_symmetry(self, image: np.ndarray) -> FrameSymmetry | None:
        if self.geometry is None or self.ring is None:
            return None
        if self._operator is None:
            self._operator = RingPolarOperator(self.geometry, [self.ring], N_AZIMUTH_BINS, mask=self.mask)
        profiles = self._operator.regroup(np.asarray(image))
        sym = ring_symmetry(profiles.mean[0], profiles.weight[0])
        c = {n: sym.component(n) for n in SYMMETRY_HARMONICS}
        return FrameSymmetry(sym.order, c[4], c[6], c[12])

    # ----------------------------------------------------------------- series
    def _fit_phases(self) -> PhaseSeries:
        sig = np.stack(self.sigmas)
        return fit_phase_series(self.q_nm, np.stack(self.curves), None if np.isnan(sig).any() else sig)

    def symmetry_change(self) -> SymmetryChange | None:
        """The change between the first and the last frames' symmetry, or None if it does not
        change (or is not known)."""
        known = [(t, s) for t, s in zip(self.t_s, self.symmetry) if s is not None]
        if len(known) < 2 * STABLE_FRAMES:
            return None
        first = Counter(s.order for _, s in known[:STABLE_FRAMES]).most_common(1)[0][0]
        last = Counter(s.order for _, s in known[-STABLE_FRAMES:]).most_common(1)[0][0]
        if first == last or last == 0:
            return None
        t = np.array([k[0] for k in known])
        if first in SYMMETRY_HARMONICS and last in SYMMETRY_HARMONICS:
            c = {n: np.array([getattr(s, f"c{n}") for _, s in known]) for n in SYMMETRY_HARMONICS}
            time_s = transition_time(t, c[first], c[last])
        else:
            orders = np.array([s.order for _, s in known])
            differs = np.flatnonzero(orders != last)
            time_s = float(t[differs[-1] + 1]) if differs.size and differs[-1] + 1 < t.size else float(t[0])
        return SymmetryChange(int(first), int(last), time_s)

    def symmetry_trace(self, with_change: bool) -> SymmetryTrace | None:
        """C_4, C_6 and C_12 of the frames so far and, if ``with_change``, the symmetry change;
        None while no frame's symmetry is known."""
        if all(s is None for s in self.symmetry):
            return None
        c4 = np.array([np.nan if s is None else s.c4 for s in self.symmetry])
        c6 = np.array([np.nan if s is None else s.c6 for s in self.symmetry])
        c12 = np.array([np.nan if s is None else s.c12 for s in self.symmetry])
        return SymmetryTrace(c4, c6, c12, self.symmetry_change() if with_change else None)

    def result(self) -> dict:
        """The series result: the ``saxs`` JSON of the last frame plus ``series`` and ``symmetry``."""
        if not self.n_frames:
            raise ValueError("The series has no frames.")
        last_sigma = self.sigmas[-1]
        out = analyse_curve(self.q_nm, self.curves[-1], None if np.isnan(last_sigma).any() else last_sigma)
        out["series"] = None
        if self.phases:
            self.fit = self._fit_phases()
            f = self.fit.fractions
            pathway = classify_pathway(np.array(self.t_s), np.where(np.isfinite(f), f, 0.0))
            out["series"] = {
                "t_s": list(self.t_s), "dilute": f[:, 0].tolist(), "dense": f[:, 1].tolist(),
                "crystal": f[:, 2].tolist(), "pathway": pathway.pathway, "dense_max": pathway.dense_max,
                "t_crystal_half_s": pathway.t_crystal_half_s, "crystal_final": pathway.crystal_final,
                "lattice": self.fit.lattice.lattice if self.fit.lattice is not None else None,
                "chi2_reduced": self.fit.chi2_reduced,
            }
        out["symmetry"] = None
        if any(s is not None for s in self.symmetry):
            known = [s for s in self.symmetry if s is not None]
            final = Counter(s.order for s in known[-STABLE_FRAMES:]).most_common(1)[0][0]
            change = self.symmetry_change()
            out["symmetry"] = {
                "ring_q_nm": self.ring.q_center_nm, "ring_half_width_nm": self.ring.half_width_nm,
                "t_s": list(self.t_s),
                "order": [None if s is None else s.order for s in self.symmetry],
                **{f"c{n}": [None if s is None else getattr(s, f"c{n}") for s in self.symmetry]
                   for n in SYMMETRY_HARMONICS},
                "final_order": int(final),
                "change": None if change is None else change.as_dict(),
            }
        return out


__all__ = ["AssemblySeriesAnalysis", "FrameSymmetry", "N_AZIMUTH_BINS", "SYMMETRY_HARMONICS", "SymmetryChange",
           "SymmetryTrace"]
