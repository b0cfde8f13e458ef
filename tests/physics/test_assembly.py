"""Self-assembly SAXS simulator (seed 004): structure factors, lattices, kinetics."""

import math

import numpy as np
import pytest

from mc_beamline.physics.assembly import (
    AssemblyModel,
    default_q_nm,
    lattice_factor,
    lattice_reflections,
    percus_yevick,
    polydisperse_sphere,
)

# SCIENCE.md peak-position ratios q / q_first
RATIOS = {
    "fcc": [1, 1.155, 1.633, 1.915, 2.000, 2.309, 2.517, 2.582],
    "bcc": [1, math.sqrt(2), math.sqrt(3), 2, math.sqrt(5), math.sqrt(6), math.sqrt(7)],
    "sc": [1, math.sqrt(2), math.sqrt(3), 2, math.sqrt(5), math.sqrt(6), math.sqrt(8)],
    "hcp": [1, 1.061, 1.132, 1.458, 1.732, 1.879, 2.000],
}


@pytest.mark.parametrize("lattice", sorted(RATIOS))
def test_reflections_follow_the_ratio_table(lattice):
    shells = lattice_reflections(lattice, 1.0, 40.0)
    ratios = [s.q_nm / shells[0].q_nm for s in shells[: len(RATIOS[lattice])]]
    assert ratios == pytest.approx(RATIOS[lattice], abs=1.5e-3)


def test_fcc_first_reflection_is_111_with_multiplicity_8():
    s = lattice_reflections("fcc", 6.93, 3.0)[0]
    assert s.hkl == (1, 1, 1) and s.multiplicity == 8
    assert s.q_nm == pytest.approx(2 * math.pi * math.sqrt(3) / 6.93)


@pytest.mark.parametrize("lattice", ["fcc", "bcc", "hcp", "sc", "bct"])
def test_lattice_factor_averages_to_one(lattice):
    # Z0 carries the whole scattering of a point lattice: its mean over q at large q is 1
    q = np.linspace(40.0, 120.0, 200001)
    assert lattice_factor(q, lattice, 1.0, 0.5).mean() == pytest.approx(1.0, abs=0.03)


def test_percus_yevick_limits():
    phi = 0.3
    assert percus_yevick(np.array([1e-4]), 5.0, phi)[0] == pytest.approx((1 - phi) ** 4 / (1 + 2 * phi) ** 2)
    q = np.linspace(0.05, 20, 4000)
    s = percus_yevick(q, 5.0, phi)
    assert s[-1] == pytest.approx(1.0, abs=0.02)
    # the main correlation peak sits close to 2π/d
    assert q[np.argmax(s)] * 5.0 == pytest.approx(2 * math.pi, rel=0.15)
    assert np.all(percus_yevick(q, 5.0, 0.0) == 1.0)


def test_polydisperse_form_factor_smears_minima():
    q = np.linspace(0.01, 4, 2000)
    p0, b0 = polydisperse_sphere(q, 2.3, 0.0)
    p1, b1 = polydisperse_sphere(q, 2.3, 0.08)
    k = np.argmin(np.abs(q - 4.4934 / 2.3))
    assert p0[k] < 1e-4 < p1[k]
    assert p1[0] == pytest.approx(1.0, abs=1e-3)
    assert np.all(b1 <= 1 + 1e-12) and np.all(b0 == 1)


@pytest.mark.parametrize("pathway", ["one-step", "two-step"])
def test_fractions_sum_to_one_and_follow_the_pathway(pathway):
    m = AssemblyModel(pathway=pathway)
    t = np.linspace(-10, 2000, 400)
    f = m.fractions(t).as_array()
    assert np.allclose(f.sum(axis=1), 1.0)
    assert np.all(f >= -1e-12)
    assert f[0].tolist() == [1.0, 0.0, 0.0]
    if pathway == "one-step":
        assert np.all(f[:, 1] == 0) and f[-1, 2] == pytest.approx(m.crystal_final, abs=1e-3)
    else:
        k = np.argmax(f[:, 1])
        assert f[k, 1] > 0.5  # dense fluid first …
        assert f[k, 2] < 0.5 * f[-1, 2]  # … before most crystals
        assert f[-1, 2] == pytest.approx(m.dense_final, abs=0.01)


def test_curve_has_fcc_bragg_peak_at_111_and_decomposes_linearly():
    m = AssemblyModel(pathway="one-step")
    q = default_q_nm()
    late, early = m.curve(2000.0, q), m.curve(0.0, q)
    q111 = 2 * math.pi * math.sqrt(3) / m.a_nm
    near = np.abs(q - q111) < 0.05
    assert late[near].max() > 3 * early[near].max()
    x = m.fractions(300.0).as_array()[0]
    assert m.curve(300.0, q) == pytest.approx(x @ m.components(q) + m.background_cm1)
    assert m.a_nm == pytest.approx(math.sqrt(2) * (2 * 2.3 + 0.3))


def test_measure_adds_counting_noise_with_sigma():
    m = AssemblyModel()
    q = default_q_nm()
    c = m.measure(100.0, q, rng=1)
    z = (c.intensity - m.curve(100.0, q)) / c.sigma
    assert abs(z.mean()) < 0.15 and z.std() == pytest.approx(1.0, abs=0.1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        AssemblyModel(pathway="three-step")
    with pytest.raises(ValueError):
        AssemblyModel(lattice="quasi")
    with pytest.raises(ValueError):
        percus_yevick(np.ones(3), 1.0, 0.7)
