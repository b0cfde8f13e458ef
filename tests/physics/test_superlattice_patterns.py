"""2D superlattice patterns: hexagonal → square transition (seed 003), 12-fold (seed 001)."""

import math

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import RingPolarOperator
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.superlattice_patterns import (
    HexToSquareTransition,
    dodecagonal_spots,
    lattice_2d_spots,
    polar_grid,
)


def first_ring(q, phi, w):
    q1 = q.min()
    sel = np.abs(q - q1) < 1e-6 * q1
    return np.sort(phi[sel]), q1


def test_hexagonal_and_square_first_rings():
    q, phi, w, _ = lattice_2d_spots(7.5, 60.0, 0.0, 3.0, radius_nm=3.1, domain_nm=60, angular_sigma_deg=2)
    angles, q1 = first_ring(q, phi, w)
    assert len(angles) == 6 and np.allclose(np.diff(angles), 60.0)
    assert q1 == pytest.approx(4 * math.pi / (math.sqrt(3) * 7.5))
    q, phi, w, _ = lattice_2d_spots(6.7, 90.0, 10.0, 3.0, radius_nm=3.1, domain_nm=60, angular_sigma_deg=2)
    angles, q1 = first_ring(q, phi, w)
    assert len(angles) == 4 and np.allclose(np.diff(angles), 90.0)
    assert q1 == pytest.approx(2 * math.pi / 6.7)


def test_transition_path_follows_seed_003():
    m = HexToSquareTransition(t_transition_s=25.0, width_s=3.0)
    assert m.lattice_angle_deg(-100.0) == pytest.approx(60.0, abs=1e-6)
    assert m.lattice_angle_deg(25.0) == pytest.approx(75.0)
    assert m.lattice_angle_deg(200.0) == pytest.approx(90.0, abs=1e-6)
    assert m.spacing_nm(200.0) == pytest.approx(6.7, abs=1e-6)


def test_polar_series_is_poisson_counts_of_the_expected_pattern():
    m = HexToSquareTransition()
    q, phi = polar_grid(0.6, 1.3, 20, 360)
    frames = m.polar_series(np.array([0.0, 50.0]), q, phi, rng=0)
    assert frames.shape == (2, 20, 360)
    assert np.all(frames == np.round(frames)) and frames.min() >= 0
    assert frames.mean() > m.background


def test_dodecagonal_first_ring_has_twelve_spots():
    pat = dodecagonal_spots(1.0, orientation_deg=5.0)
    sel = np.isclose(pat.q_nm, 1.0)
    assert sel.sum() == 12
    assert np.allclose(np.diff(np.sort(pat.phi_deg[sel])), 30.0)
    assert np.all(pat.q_nm[~sel] == pytest.approx(2 * math.cos(math.radians(15)), rel=1e-12))


def test_detector_frame_goes_through_the_ring_regrouping():
    geom = DetectorGeometry.from_beam_center((400, 400), (200.0, 200.0), dist_m=0.8, energy_kev=12.0)
    pat = dodecagonal_spots(1.0, orientation_deg=0.0, angular_sigma_deg=2.0)
    frame = pat.on_detector(geom.q_map, geom.phi_map, rng=1)
    assert frame.dtype == np.uint32 and frame.shape == (400, 400)
    op = RingPolarOperator(geom, [(1.0, 0.03)], n_bins=360)
    prof = op.regroup(frame).mean[0]
    # 12 maxima 30° apart, at 0°, 30°, …
    peaks = op.azimuth_deg[np.argsort(prof)[-60:]]
    assert np.all(np.min(np.abs(((peaks[:, None] - np.arange(-180, 180, 30)[None, :]) + 180) % 360 - 180),
                         axis=1) < 6.0)
