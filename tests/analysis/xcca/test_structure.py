"""Superlattice model and fit, orientations and ψ, pair angle, domains, disorder fit."""

import math

import numpy as np
import pytest

from mc_beamline.analysis.xcca.ccf import delta_grid_deg
from mc_beamline.analysis.xcca.disorder import PeakCutAccumulator, fit_peak_widths
from mc_beamline.analysis.xcca.domains import segment_domains
from mc_beamline.analysis.xcca.orientation import (
    al_orientation_candidates,
    misorientation,
    sl_orientation_candidates,
    sl_pair_angle,
)
from mc_beamline.analysis.xcca.structure import (
    al_111_angles_deg,
    expected_ccf_peaks_deg,
    fit_superlattice,
    model_ccf,
    model_ccf_from_lattices,
    sl_112_angles_deg,
    wrap90,
)
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.materials.lattice_angles import (
    THETA_111_DEG,
    bct_beta_deg,
    c_over_a_from_beta,
)

DELTA = delta_grid_deg(360)


def test_seed_angles():
    assert THETA_111_DEG == pytest.approx(35.26, abs=0.01)
    assert bct_beta_deg(1.22) == pytest.approx(40.78, abs=0.01)
    assert c_over_a_from_beta(bct_beta_deg(1.3)) == pytest.approx(1.3)
    seed = [-166.05, -95.52, -84.48, -13.95, 13.95, 84.48, 95.52, 166.05]
    assert expected_ccf_peaks_deg(1.22) == pytest.approx(seed, abs=0.01)
    assert expected_ccf_peaks_deg(1.0) == pytest.approx([-160.53, -90.0, -19.47, 19.47, 90.0, 160.53], abs=0.01)


def test_model_from_lattices_equals_the_bct_model():
    beta = bct_beta_deg(1.22)
    generic = model_ccf_from_lattices(DELTA, sl_112_angles_deg(beta), al_111_angles_deg(), 5.0)
    bct = model_ccf(DELTA, 1.22, 5.0)
    assert np.allclose(generic, 2.0 * bct)  # each of the 8 peaks is made by two reflection pairs


@pytest.mark.parametrize("c_over_a, lattice, n_peaks", [(1.22, "bct", 8), (1.0, "bcc", 6), (1.35, "bct", 8)])
def test_fit_recovers_c_over_a_and_lattice(c_over_a, lattice, n_peaks):
    rng = np.random.default_rng(1)
    y = model_ccf(DELTA, c_over_a, 5.2, -0.8, -0.5, 1.6, 1.1) + rng.normal(0, 0.03, DELTA.size)
    fit = fit_superlattice(DELTA, y)
    assert fit.c_over_a == pytest.approx(c_over_a, abs=0.01)
    assert fit.lattice == lattice
    assert fit.offset_deg == pytest.approx(-0.8, abs=0.2)
    assert fit.sigma_deg == pytest.approx(5.2, abs=0.3)
    assert len(fit.peaks_deg) == n_peaks
    expected = np.array(expected_ccf_peaks_deg(c_over_a)) - 0.8
    assert np.allclose(np.sort(fit.peaks_deg), np.sort(np.mod(expected + 180, 360) - 180), atol=0.3)


def test_fit_with_measured_beta_candidates_picks_beta_not_90_minus_beta():
    rng = np.random.default_rng(2)
    y = model_ccf(DELTA, 1.22, 5.0, 0.0, -0.5, 1.5, 1.5) + rng.normal(0, 0.05, DELTA.size)
    beta = bct_beta_deg(1.22)
    fit = fit_superlattice(DELTA, y, [beta, 90 - beta])
    assert fit.beta_source == "sl_pairs"
    assert fit.beta_deg == pytest.approx(beta, abs=1e-6)


def test_sl_pair_angle_measures_beta():
    rng = np.random.default_rng(3)
    beta = bct_beta_deg(1.22)
    frames = []
    for _ in range(200):
        u = rng.uniform(-90, 90)
        peaks = u + sl_112_angles_deg(beta) + rng.normal(0, 0.3, 4)
        keep = rng.random(4) > 0.3
        frames.append(np.mod(peaks[keep] + 180, 360) - 180)
    pa = sl_pair_angle(frames)
    assert pa.beta_deg == pytest.approx(beta, abs=0.1)
    assert pa.n_pairs > 100


def test_orientation_candidates_and_mirror_ambiguity():
    beta = bct_beta_deg(1.22)
    u = 23.0
    four = u + sl_112_angles_deg(beta)
    cands = sl_orientation_candidates(four, np.ones(4), beta)
    assert len(cands) == 1 and cands[0].u_deg == pytest.approx(u, abs=1e-6)
    pair = np.array([u + 90 - beta, u - 90 - beta])  # one centrosymmetric pair only
    cands = sl_orientation_candidates(pair, np.ones(2), beta)
    assert len(cands) == 2
    got = sorted(float(wrap90(c.u_deg - u)) for c in cands)
    assert got == pytest.approx(sorted([0.0, float(wrap90(-2 * beta))]), abs=1e-6)


def test_misorientation_uses_the_orientation_relation():
    beta = bct_beta_deg(1.22)
    u_al, psi = -61.0, 2.2
    sl = sl_orientation_candidates(u_al + psi + sl_112_angles_deg(beta), np.ones(4), beta)
    one_al_peak = al_orientation_candidates([u_al + THETA_111_DEG], [1.0])  # mirror-ambiguous
    assert len(one_al_peak) == 2
    m = misorientation(sl, one_al_peak)
    assert m.psi_deg == pytest.approx(psi, abs=1e-6)
    assert m.u_al_deg == pytest.approx(float(wrap90(u_al)), abs=1e-6)
    two_al_peaks = al_orientation_candidates([u_al + THETA_111_DEG, u_al - THETA_111_DEG], [1.0, 0.8])
    assert len(two_al_peaks) == 1
    assert misorientation(sl, al_orientation_candidates([u_al + 80], [1.0]), psi_max_deg=20) is None


def test_domains_are_connected_regions_of_equal_orientation():
    o = np.full((10, 12), 10.0)
    o[:, 6:] = 50.0
    o[6:, :6] = -70.0
    o += np.random.default_rng(4).normal(0, 0.3, o.shape)
    o[0, 0] = np.nan
    dm = segment_domains(o, 3.0, 2, step_um=0.4)
    assert dm.count == 3
    assert dm.sizes.sum() == o.size - 1
    assert dm.mean_area_um2 == pytest.approx((o.size - 1) / 3 * 0.16)
    assert dm.labels[0, 0] == -1
    # a position that sees two grains equally (two candidates) does not merge them
    cand = np.full((1, 7, 2), np.nan)
    cand[0, :3, 0] = 10.0
    cand[0, 4:, 0] = 50.0
    cand[0, 3] = [10.0, 50.0]
    assert segment_domains(cand, 3.0, 2).count == 2
    # a grain seen only through mirror-ambiguous positions is still one domain
    amb = np.full((3, 3, 2), np.nan)
    amb[..., 0], amb[..., 1] = 12.0, 12.0 - 81.6
    assert segment_domains(amb, 3.0, 2).count == 1


def test_disorder_from_an_aligned_averaged_peak():
    """Frames with one {111}-like peak of known radial and azimuthal width give ΔΦ back."""
    geom = DetectorGeometry.from_beam_center((700, 700), (350.0, 350.0), dist_m=0.11, energy_kev=12.4)
    q, phi = geom.q_map.astype(np.float64), geom.phi_map.astype(np.float64)
    q0, sigma_q, disorder = 18.3, 0.3, 10.0
    sigma_az = math.degrees(math.hypot(math.radians(disorder) / 2.3548, sigma_q / q0))
    acc = PeakCutAccumulator(geom, None, q0, 1.4)
    rng = np.random.default_rng(5)
    for k in range(12):
        centre = rng.uniform(-180, 180)
        d = np.mod(phi - centre + 180, 360) - 180
        lam = 0.3 + 12 * np.exp(-0.5 * ((q - q0) / sigma_q) ** 2 - 0.5 * (d / sigma_az) ** 2)
        frame = rng.poisson(lam).astype(np.uint32)
        acc.add(frame, centre + rng.normal(0, 0.2))
    w = fit_peak_widths(acc.mean(), acc.q_centers, acc.dphi_centers)
    assert w.sigma_q_nm == pytest.approx(sigma_q, rel=0.05)
    assert w.sigma_az_deg == pytest.approx(sigma_az, rel=0.05)
    assert w.disorder_fwhm_deg == pytest.approx(disorder, abs=0.7)
    other = PeakCutAccumulator(geom, None, q0, 1.4).load_state(acc.to_state())
    assert np.array_equal(other.merge(acc).count, 2 * acc.count)
