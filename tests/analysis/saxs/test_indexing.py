"""Indexing 1D SAXS Bragg peaks against simulated supercrystals with known lattices."""

import math

import numpy as np
import pytest

from mc_beamline.analysis.saxs.indexing import (
    find_bragg_peaks,
    index_curve,
    index_peaks,
    reflections,
)
from mc_beamline.physics.assembly import (
    AssemblyModel,
    default_q_nm,
    percus_yevick,
    polydisperse_sphere,
)

Q = default_q_nm()
CASES = [("fcc", None), ("bcc", None), ("hcp", None), ("sc", None), ("bct", 1.22), ("hex", 1.1)]


@pytest.mark.parametrize("lattice, c_over_a", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_simulated_supercrystal_lattice_and_a_within_1_percent(lattice, c_over_a, seed):
    model = AssemblyModel(pathway="one-step", lattice=lattice, c_over_a=c_over_a)
    curve = model.measure(1000.0, Q, rng=seed)
    peaks, result = index_curve(curve.q_nm, curve.intensity, curve.sigma)
    fit = result.best
    assert fit is not None, result.reason
    assert fit.lattice == lattice
    assert fit.a_nm == pytest.approx(model.a_nm, rel=0.01)
    if c_over_a is not None:
        assert fit.c_over_a == pytest.approx(c_over_a, rel=0.01)
    assert fit.rms_rel_error < 0.005
    assert fit.n_unmatched == 0 and fit.n_matched >= 8


def test_mixed_fluid_and_crystal_still_indexes_fcc():
    model = AssemblyModel(pathway="two-step", lattice="fcc")
    curve = model.measure(90.0, Q, rng=4)  # about a third of the NCs in crystals
    assert 0.2 < model.truth(90.0)["crystal"] < 0.5
    _, result = index_curve(curve.q_nm, curve.intensity, curve.sigma)
    assert result.best.lattice == "fcc"
    assert result.best.a_nm == pytest.approx(model.a_nm, rel=0.01)


@pytest.mark.parametrize("x_dense", [0.0, 0.6, 1.0])
def test_fluids_alone_give_no_peaks_and_no_lattice(x_dense):
    model = AssemblyModel()
    clean = np.array([1 - x_dense, x_dense, 0.0]) @ model.components(Q) + model.background_cm1
    rng = np.random.default_rng(2)
    sigma = np.sqrt(clean * 2e4) / 2e4
    peaks, result = index_curve(Q, clean + sigma * rng.standard_normal(Q.size), sigma)
    assert peaks == []
    assert result.best is None


def test_broad_dense_fluid_peak_is_not_a_bragg_peak():
    q = np.linspace(0.2, 5, 500)
    p, beta = polydisperse_sphere(q, 2.3, 0.05)
    i = 100 * p * (1 + beta * (percus_yevick(q, 4.9, 0.5) - 1)) + 0.02
    assert find_bragg_peaks(q, i, np.sqrt(i * 1e4) / 1e4) == []


def test_lamellar_orders_index_as_lamellar():
    d = 3.41
    q = np.linspace(0.3, 6.0, 800)
    i = 1.0 + 0.02 / q
    for n, h in ((1, 1.0), (2, 0.35), (3, 0.1)):
        i = i + h * np.exp(-0.5 * ((q - 2 * math.pi * n / d) / 0.02) ** 2)
    _, result = index_curve(q, i, np.full_like(q, 0.005))
    assert result.best.lattice == "lamellar"
    assert result.best.a_nm == pytest.approx(d, rel=0.005)


def test_peak_lists_without_a_lattice_are_rejected():
    # form-factor-like maxima (k + 1/2) π / R and random positions index to nothing
    r = 5.0
    assert index_peaks([(k + 0.5) * math.pi / r for k in (4, 5, 6, 7)], (0.2, 6.0)).best is None
    rng = np.random.default_rng(3)
    rejected = sum(index_peaks(np.sort(rng.uniform(0.5, 5.0, 6)), (0.2, 6.0)).best is None for _ in range(20))
    assert rejected >= 18
    assert index_peaks([1.0], (0.2, 6.0)).best is None


def test_bcc_and_sc_told_apart_by_the_seventh_peak():
    g = reflections("bcc", 30.0).g
    bcc = g[:7] / 5.0
    assert index_peaks(bcc, (0.5 * bcc[0], bcc[-1] * 1.01)).best.lattice == "bcc"
    g = reflections("sc", 30.0).g
    sc = g[:7] / 5.0  # 1, √2, √3, 2, √5, √6, √8: no √7
    assert index_peaks(sc, (0.5 * sc[0], sc[-1] * 1.01)).best.lattice == "sc"


@pytest.mark.parametrize("lattice, a_nm", [("sc", 5.0), ("bcc", 5.0 * math.sqrt(2.0))])
def test_bcc_and_sc_told_apart_by_intensities_below_the_seventh_peak(lattice, a_nm):
    """The first six reflections of sc and bcc sit at the same √1…√6 × q₁; their areas on
    S(q), m|F|²/q² fading with q, tell which lattice it is (sc's √2 reflection is as strong
    as its first, bcc's a quarter)."""
    refl = reflections(lattice, 30.0)
    q = refl.g[:6] / a_nm
    area = refl.strength[:6] * a_nm**2 * np.exp(-0.02 * q**2)
    q_range = (0.5 * q[0], q[-1] * 1.01)
    assert index_peaks(q, q_range, peak_area=area).best.lattice == lattice
    # without intensities the two tie, and the tie goes to bcc
    assert index_peaks(q, q_range).best.lattice == "bcc"


def test_a_broad_peak_over_several_reflections_is_their_blend_not_unexplained():
    """A paracrystal's broadened high orders merge: a peak whose half width covers two
    reflections is neither indexed nor counted against the lattice."""
    g = reflections("fcc", 40.0).g / 8.0
    q = list(g[:5]) + [0.5 * (g[8] + g[9])]
    fwhm = [0.01] * 5 + [1.2 * (g[9] - g[8])]
    best = index_peaks(q, (0.5 * g[0], g[9] * 1.01), peak_fwhm_nm=fwhm).best
    assert best is not None and best.lattice == "fcc" and best.n_unmatched == 0
    assert best.hkl[-1] is None and best.a_nm == pytest.approx(8.0, rel=1e-3)
