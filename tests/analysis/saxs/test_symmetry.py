"""Symmetry order of superlattice rings from the Fourier components of their CCF."""

import numpy as np
import pytest

from mc_beamline.analysis.detector.polar import RingPolarOperator
from mc_beamline.analysis.saxs.symmetry import (
    find_ordered_ring,
    ring_profile,
    ring_symmetry,
    symmetry_series,
    transition_time,
)
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.physics.superlattice_patterns import (
    HexToSquareTransition,
    SpotPattern,
    dodecagonal_spots,
    lattice_2d_spots,
    polar_grid,
)

Q, PHI = polar_grid(0.6, 1.3, 36, 360)


def profile_of(gamma, d, seed, orientation=17.0):
    q, phi, w, sq = lattice_2d_spots(d, gamma, orientation, 1.3, radius_nm=3.1, domain_nm=60,
                                     angular_sigma_deg=3.0, scale=400.0)
    pat = SpotPattern(q, phi, w, sq, 3.0, background=2.0)
    q1 = 2 * np.pi / (d * np.sin(np.radians(gamma)))
    return ring_profile(Q, pat.polar_frame(Q, PHI, rng=seed), q1, 0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hexagonal_ring_is_6_fold_and_square_ring_4_fold(seed):
    assert ring_symmetry(profile_of(60.0, 7.5, seed)).order == 6
    assert ring_symmetry(profile_of(90.0, 6.7, seed)).order == 4


def test_oblique_ring_is_2_fold_and_isotropic_ring_has_no_order():
    assert ring_symmetry(profile_of(75.0, 7.1, 3)).order == 2
    rng = np.random.default_rng(4)
    flat = rng.poisson(200.0, 360).astype(float)
    assert ring_symmetry(flat).order == 0


@pytest.mark.parametrize("orientation, seed", [(0.0, 0), (7.0, 1), (-41.0, 2)])
def test_dodecagonal_ring_is_12_fold(orientation, seed):
    pat = dodecagonal_spots(1.0, orientation)
    sym = ring_symmetry(ring_profile(Q, pat.polar_frame(Q, PHI, rng=seed), 1.0, 0.05))
    assert sym.order == 12
    assert sym.component(12) > 100 * max(sym.component(4), sym.component(6), sym.noise_floor)


def test_12_fold_from_a_detector_frame_through_the_xcca_regrouping():
    geom = DetectorGeometry.from_beam_center((400, 400), (200.0, 200.0), dist_m=0.8, energy_kev=12.0)
    frame = dodecagonal_spots(1.0, 3.0, angular_sigma_deg=2.0).on_detector(geom.q_map, geom.phi_map, rng=5)
    mask = np.zeros(geom.shape, bool)
    mask[:, 195:205] = True  # a module gap through the ring
    op = RingPolarOperator(geom, [(1.0, 0.03)], n_bins=360, mask=mask)
    prof = op.regroup(frame)
    sym = ring_symmetry(prof.mean[0], prof.weight[0])
    assert sym.order == 12


@pytest.mark.parametrize("t_c, seed", [(25.0, 0), (31.3, 1), (18.7, 2)])
def test_hex_to_square_transition_time_within_one_frame(t_c, seed):
    model = HexToSquareTransition(t_transition_s=t_c, width_s=3.0)
    t = np.arange(0.0, 60.0, 2.0)  # one frame every 2 s
    frames = model.polar_series(t, Q, PHI, rng=seed)
    profiles = ring_profile(Q, frames, 0.95, 0.08)
    series = symmetry_series(profiles, t_s=t)
    assert np.all(series.order[t < t_c - 10] == 6)
    assert np.all(series.order[t > t_c + 10] == 4)
    found = transition_time(t, series.component(6), series.component(4))
    assert found is not None and abs(found - t_c) <= 2.0


def test_no_transition_is_none():
    t = np.arange(10.0)
    assert transition_time(t, np.ones(10), np.zeros(10)) is None


def test_short_profiles_are_refused():
    with pytest.raises(ValueError):
        ring_symmetry(np.ones(50))


def _camera():
    return DetectorGeometry.from_beam_center((256, 256), (127.5, 127.5), 0.55, 12.0, pixel_m=172e-6)


def test_no_ordered_ring_in_isotropic_counting_noise():
    camera = _camera()
    image = np.random.default_rng(0).poisson(50.0 * np.exp(-camera.q_map), size=camera.shape)
    assert find_ordered_ring(image, camera.q_map, camera.phi_map) is None


def test_ordered_ring_is_the_ring_of_spots_not_the_brighter_isotropic_one():
    camera = _camera()
    spots = dodecagonal_spots(0.8, scale=100.0).on_detector(camera.q_map, camera.phi_map)
    halo = 400.0 * np.exp(-0.5 * ((camera.q_map - 1.5) / 0.05) ** 2)
    image = np.random.default_rng(1).poisson(spots + halo)
    found = find_ordered_ring(image, camera.q_map, camera.phi_map)
    assert found is not None and found.q_nm == pytest.approx(0.8, abs=0.02)
    masked = find_ordered_ring(image, camera.q_map, camera.phi_map, mask=np.abs(camera.q_map - 0.8) < 0.1)
    assert masked is None or abs(masked.q_nm - 0.8) > 0.1
