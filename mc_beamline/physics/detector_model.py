"""The simulated 2D pixel detector: Eiger-1M-like layout, geometries and masks.

The default setup follows seed 000: one detector in transmission, shifted off the beam
axis so that the small-angle superlattice ring and an arc of the wide-angle atomic {111}
and {200} rings are recorded in the same frame.
"""

from __future__ import annotations

import numpy as np

from mc_beamline.instrument.geometry import DetectorGeometry

EIGER_1M_SHAPE = (1065, 1030)
"""Rows, columns of an Eiger 1M: two 514 x 1030 modules with a 37-row gap."""

GAP_VALUE = np.iinfo(np.uint32).max
"""Value written into pixels that do not exist (module and chip gaps), as Eiger detectors do."""

DEFAULT_ENERGY_KEV = 12.4
PIXEL_M = 75e-6


def offaxis_geometry() -> DetectorGeometry:
    """Seed-000-like geometry: beam near one corner, 164 mm, 12.4 keV.

    The superlattice rings (q ≤ 1.8 nm⁻¹, radius ≤ 64 px) lie fully on the detector; of the
    atomic {111} ring (18.3 nm⁻¹, radius ≈ 660 px) only the arc φ ≈ -10°…100° does.
    """
    return DetectorGeometry.from_beam_center(
        EIGER_1M_SHAPE, center_px=(130.0, 130.0), dist_m=0.164, energy_kev=DEFAULT_ENERGY_KEV
    )


def centered_geometry() -> DetectorGeometry:
    """Beam at the detector centre, 110 mm: the full {111} ring (radius ≈ 440 px) is on the detector."""
    return DetectorGeometry.from_beam_center(
        EIGER_1M_SHAPE,
        center_px=(EIGER_1M_SHAPE[0] / 2, EIGER_1M_SHAPE[1] / 2),
        dist_m=0.110,
        energy_kev=DEFAULT_ENERGY_KEV,
    )


def gap_mask(shape: tuple[int, int]) -> np.ndarray:
    """Pixels that do not exist: module gap and 2-pixel chip borders (True = bad).

    For the Eiger 1M shape the module gap is rows 514–550; chips are 256 x 256 pixels.
    Other shapes get chip borders every 256 pixels and no module gap.
    """
    mask = np.zeros(shape, dtype=bool)
    rows, cols = shape
    if tuple(shape) == EIGER_1M_SHAPE:
        mask[514:551, :] = True
        module_starts = (0, 551)
    else:
        module_starts = (0,)
    for start in module_starts:
        for border in range(start + 256, min(start + 514, rows), 256):
            mask[border - 1 : border + 1, :] = True
    for border in range(256, cols - 1, 258):
        mask[:, border - 1 : border + 1] = True
    return mask


def beamstop_mask(
    geometry: DetectorGeometry, radius_px: float = 14.0, arm_width_px: float = 10.0, arm_direction_deg: float = -90.0
) -> np.ndarray:
    """Shadow of a round beamstop on the direct beam and of its holding arm (True = bad).

    The arm runs from the beam centre to the detector edge in direction φ = ``arm_direction_deg``.
    """
    rows, cols = geometry.shape
    r0, c0 = geometry.beam_center_px
    rr, cc = np.ogrid[:rows, :cols]
    dr = rr - r0
    dc = cc - c0
    disk = dr**2 + dc**2 <= radius_px**2
    phi = np.radians(arm_direction_deg)
    along = dc * np.cos(phi) + dr * np.sin(phi)
    across = -dc * np.sin(phi) + dr * np.cos(phi)
    arm = (along >= 0) & (np.abs(across) <= arm_width_px / 2)
    return disk | arm


def detector_mask(geometry: DetectorGeometry) -> np.ndarray:
    """Full mask of the simulated detector: gaps plus beamstop (True = bad pixel)."""
    return gap_mask(geometry.shape) | beamstop_mask(geometry)
