"""Reflection geometry of the seed-000 lattices against SCIENCE.md §1."""

import pytest

from mc_beamline.materials.lattice_angles import (
    THETA_111_DEG,
    bct_beta_deg,
    c_over_a_from_beta,
)
from mc_beamline.physics.lattices import (
    BctSuperlattice,
    RockSaltLattice,
    ccf_peak_positions_deg,
)


def test_theta_is_the_rock_salt_angle():
    assert THETA_111_DEG == pytest.approx(35.26, abs=0.005)


def test_bct_of_the_seed():
    sl = BctSuperlattice.from_q112(1.72, 1.22)
    assert sl.a_nm == pytest.approx(7.91, abs=0.01)
    assert sl.c_nm == pytest.approx(9.65, abs=0.01)
    assert sl.q_hkl(1, -1, 0) == pytest.approx(1.12, abs=0.005)
    assert sl.q_hkl(0, 0, 2) == pytest.approx(1.30, abs=0.005)
    assert sl.q_hkl(1, 0, 1) == pytest.approx(1.03, abs=0.005)
    assert sl.q_hkl(1, -1, 2) == pytest.approx(1.72, abs=1e-9)
    angles = {r.hkl: r.angle_deg for r in sl.zone_110_reflections()}
    assert 90 - angles[(1, -1, 2)] == pytest.approx(bct_beta_deg(1.22), abs=1e-9)


def test_beta_and_ccf_peaks_of_the_seed():
    assert bct_beta_deg(1.22) == pytest.approx(40.78, abs=0.01)
    assert c_over_a_from_beta(bct_beta_deg(1.22)) == pytest.approx(1.22, abs=1e-12)
    peaks = ccf_peak_positions_deg(1.22)
    expected = [-166.05, -95.52, -84.48, -13.95, 13.95, 84.48, 95.52, 166.05]
    assert peaks == pytest.approx(expected, abs=0.01)


def test_bcc_gives_six_ccf_peaks():
    peaks = ccf_peak_positions_deg(1.0)
    assert peaks == pytest.approx([-160.53, -90.0, -19.47, 19.47, 90.0, 160.53], abs=0.01)


def test_rock_salt_pbs_rings():
    al = RockSaltLattice()
    q = {r.hkl: r.q_nm for r in al.zone_110_reflections()}
    assert q[(1, -1, 1)] == pytest.approx(18.3, abs=0.05)
    assert q[(0, 0, 2)] == pytest.approx(21.2, abs=0.05)
    angles = sorted(r.angle_deg for r in al.zone_110_reflections() if abs(r.hkl[0]) == 1)
    # {111} pairs 70.53° apart straddling [1-10], 109.47° apart across [001]
    assert angles == pytest.approx([-144.74, -35.26, 35.26, 144.74], abs=0.01)
    assert angles[2] - angles[1] == pytest.approx(70.53, abs=0.01)
