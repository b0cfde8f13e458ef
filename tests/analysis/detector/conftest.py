"""A small detector and its ring operator, shared by the polar-regrouping and hot-pixel tests."""

import pytest

from mc_beamline.analysis.detector.polar import RingPolarOperator
from mc_beamline.instrument.geometry import DetectorGeometry

SMALL_RINGS = [(3.0, 0.15), (6.0, 0.2)]
"""(q in nm⁻¹, half width in nm⁻¹) of the two rings on the small detector."""


@pytest.fixture(scope="module")
def small_geometry():
    """12.4 keV, 50 mm, beam in the middle of a 240 x 250 detector: q up to ~9 nm⁻¹."""
    return DetectorGeometry.from_beam_center((240, 250), (120.0, 124.0), dist_m=0.05, energy_kev=12.4)


@pytest.fixture(scope="module")
def small_operator(small_geometry):
    """The ring operator of :data:`SMALL_RINGS` with 180 azimuthal bins (2°)."""
    return RingPolarOperator(small_geometry, SMALL_RINGS, n_bins=180)
