"""The simulated mesocrystal reproduces the seed-000 sample and its diffraction."""

import math

import numpy as np
import pytest

from mc_beamline.materials.lattice_angles import THETA_111_DEG
from mc_beamline.physics.detector_model import GAP_VALUE, centered_geometry
from mc_beamline.physics.mesocrystal import (
    FWHM_PER_SIGMA,
    MesocrystalParams,
    MesocrystalSimulator,
    seed_raster_positions,
)


@pytest.fixture(scope="module")
def sim():
    return MesocrystalSimulator()


@pytest.fixture(scope="module")
def raster_truth(sim):
    ys, xs = seed_raster_positions()
    return [[sim.truth_at(x, y) for x in xs] for y in ys]


def test_seed_raster_is_35_by_51_with_end_points():
    ys, xs = seed_raster_positions()
    assert (len(ys), len(xs)) == (35, 51)
    assert ys[-1] - ys[0] == pytest.approx(13.6)
    assert xs[-1] - xs[0] == pytest.approx(20.0)


def test_412_of_1785_positions_show_atomic_peaks(raster_truth):
    flat = [t for row in raster_truth for t in row]
    assert len(flat) == 1785
    assert sum(t.zone for t in flat) == 412


def test_grains_have_the_seed_size(sim):
    h, w = sim.params.sample_size_um
    mean_area = h * w / len(sim.grain_seeds_um)
    assert 6.0 <= mean_area <= 8.0


def test_misorientation_statistics_follow_the_parameters():
    sim = MesocrystalSimulator(MesocrystalParams(sample_size_um=(200.0, 200.0)))
    psi = sim.grain_psi_deg
    assert psi.mean() == pytest.approx(0.1, abs=4 * 2.5 / math.sqrt(psi.size))
    assert psi.std() == pytest.approx(2.5, rel=0.1)


def _zone_position(sim, raster_truth):
    ys, xs = seed_raster_positions()
    for i, row in enumerate(raster_truth):
        for j, t in enumerate(row):
            if t.zone and t.weight > 0.99:
                return xs[j], ys[i], t
    raise AssertionError("no clean zone position")


def _azimuthal_profile(sim, frame, q0, half_width=0.2, bins=720):
    q, phi = sim.geometry.q_map, sim.geometry.phi_map
    sel = (np.abs(q - q0) < half_width) & ~sim.mask
    edges = np.linspace(-180, 180, bins + 1)
    num = np.histogram(phi[sel], edges, weights=frame[sel])[0]
    den = np.histogram(phi[sel], edges)[0]
    with np.errstate(invalid="ignore"):
        return 0.5 * (edges[1:] + edges[:-1]), num / den


def test_atomic_and_superlattice_peaks_sit_where_the_truth_says(sim, raster_truth):
    x, y, truth = _zone_position(sim, raster_truth)
    expected = sim.expected_frame(x, y)
    centers, prof = _azimuthal_profile(sim, expected, sim.atomic_lattice.q_hkl(1, 1, 1))
    visible = []
    for angle in (THETA_111_DEG, -THETA_111_DEG, 180 - THETA_111_DEG, THETA_111_DEG - 180):
        phi = (truth.orientation_deg + angle + 180) % 360 - 180
        k = np.argmin(np.abs(centers - phi))
        if np.isfinite(prof[max(k - 10, 0) : k + 10]).all():
            visible.append(phi)
            window = slice(max(k - 10, 0), k + 11)
            peak_at = centers[window][np.nanargmax(prof[window])]
            assert peak_at == pytest.approx(phi, abs=0.5)
    assert visible, "the off-axis arc shows at least one {111} peak of a zone grain"
    centers, prof = _azimuthal_profile(sim, expected, 1.72, half_width=0.05)
    beta = 90 - math.degrees(math.atan(1.22 / math.sqrt(2)))
    phi_sl = (truth.orientation_deg + truth.psi_deg + beta + 180) % 360 - 180
    k = np.argmin(np.abs(centers - phi_sl))
    window = slice(max(k - 6, 0), k + 7)
    assert centers[window][np.nanargmax(prof[window])] == pytest.approx(phi_sl, abs=0.5)


def test_atomic_peak_azimuthal_width_encodes_the_orientational_disorder():
    sim = MesocrystalSimulator(geometry=centered_geometry())
    p = sim.params
    ys, xs = seed_raster_positions()
    x, y = next((x, y) for y in ys for x in xs if sim.truth_at(x, y).zone and sim.truth_at(x, y).weight > 0.99)
    truth = sim.truth_at(x, y)
    expected = sim.expected_frame(x, y, exposure_s=1.0) - sim.background_expected
    centers, prof = _azimuthal_profile(sim, expected, sim.atomic_lattice.q_hkl(1, 1, 1), half_width=0.05)
    phi0 = truth.orientation_deg + THETA_111_DEG
    d = (centers - phi0 + 180) % 360 - 180
    sel = (np.abs(d) < 20) & np.isfinite(prof)
    sigma = math.sqrt(np.sum(prof[sel] * d[sel] ** 2) / np.sum(prof[sel]))
    q0 = sim.atomic_lattice.q_hkl(1, 1, 1)
    expected_sigma = math.degrees(math.hypot(math.radians(p.disorder_fwhm_deg) / FWHM_PER_SIGMA, p.al_radial_sigma_nm / q0))
    assert sigma == pytest.approx(expected_sigma, rel=0.05)
    # ΔΦ recovered by the seed's deconvolution formula
    dphi = FWHM_PER_SIGMA * math.degrees(math.sqrt(math.radians(sigma) ** 2 - (p.al_radial_sigma_nm / q0) ** 2))
    assert dphi == pytest.approx(10.0, abs=0.5)


def test_noisy_frame_matches_expectation_and_marks_gaps(sim, raster_truth):
    x, y, _ = _zone_position(sim, raster_truth)
    frame = sim.frame(x, y, exposure_s=0.02, noise_key=11)
    assert frame.dtype == np.uint32 and frame.shape == sim.geometry.shape
    assert np.all(frame[sim.gap_mask] == GAP_VALUE)
    expected = sim.expected_frame(x, y, exposure_s=0.02)
    good = ~sim.gap_mask
    total, total_expected = frame[good].sum(dtype=np.float64), expected[good].sum()
    assert total == pytest.approx(total_expected, abs=5 * math.sqrt(total_expected))
    assert np.array_equal(frame, sim.frame(x, y, exposure_s=0.02, noise_key=11))
    assert not np.array_equal(frame, sim.frame(x, y, exposure_s=0.02, noise_key=12))


def test_outside_the_sample_there_is_no_bragg_scattering(sim):
    truth = sim.truth_at(500.0, 500.0)
    assert truth.grain == -1 and not truth.zone
    assert not sim.peaks_at(500.0, 500.0)


def test_boundaries_scatter_weakly(sim):
    g1, g2 = 0, int(sim._tree.query(sim.grain_seeds_um[0], k=2)[1][1])
    mid = 0.5 * (sim.grain_seeds_um[g1] + sim.grain_seeds_um[g2])
    truth = sim.truth_at(mid[1], mid[0])
    assert truth.boundary
    assert truth.weight < 0.2


def test_bad_exposure_is_refused(sim):
    with pytest.raises(ValueError, match="Exposure"):
        sim.frame(0.0, 0.0, exposure_s=0.0)


def test_frame_over_travel_integrates_the_positions_it_passes():
    """A moving beam sees the expected counts averaged over its path; at rest, the plain frame."""
    sim = MesocrystalSimulator()
    y = 0.0
    # find a point next to a grain boundary: the frame changes along 0.4 µm
    xs = np.arange(-9.0, 9.0, 0.1)
    grains = [sim.truth_at(x, y).grain for x in xs]
    i = next(k for k in range(len(xs) - 1) if grains[k] != grains[k + 1] and grains[k] >= 0)
    x0, x1 = xs[i] - 0.2, xs[i] + 0.2
    moving = sim.expected_frame(x0, y, 0.01, x_end_um=x1)
    samples = [x0 + (k + 0.5) / 4 * (x1 - x0) for k in range(4)]
    average = sum(sim.expected_frame(x, y, 0.0025) for x in samples)
    np.testing.assert_allclose(moving, average, rtol=1e-9)
    assert not np.allclose(moving, sim.expected_frame(0.5 * (x0 + x1), y, 0.01), rtol=1e-3)
    np.testing.assert_array_equal(sim.frame(x0, y, 0.01, noise_key=7, x_end_um=x0), sim.frame(x0, y, 0.01, noise_key=7))
