"""SAXS size distributions and lamellar mesophases on simulated curves (seed 002)."""

import math

import numpy as np
import pytest

from mc_beamline.analysis.saxs.sizes import (
    SaxsInputError,
    estimate_noise,
    find_lamellar_mesophase,
    size_distribution,
)
from mc_beamline.physics.cdse import CdSePopulation
from mc_beamline.physics.saxs_models import (
    SOLVENT_CM1,
    default_q_nm,
    measure,
    particle_intensity,
    precursor_intensity,
)

Q = default_q_nm()


def volume_weighted_mean_radius(pop: CdSePopulation) -> float:
    d, w = pop.nc_diameter_nodes(41)
    v = w * d**3
    return float(np.sum(d / 2 * v) / v.sum())


def nc_curve(mean_d: float, rel_sd: float, conc_um: float, seed: int):
    pop = CdSePopulation({}, conc_um, mean_d, rel_sd * mean_d)
    return pop, measure(particle_intensity(pop, Q) + SOLVENT_CM1, Q, seed)


@pytest.mark.parametrize("mean_d, rel_sd, conc_um", [
    (1.8, 0.05, 30.0), (2.2, 0.10, 20.0), (3.0, 0.15, 10.0), (4.0, 0.08, 5.0), (6.0, 0.12, 2.0), (2.0, 0.20, 20.0),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_radius_of_polydisperse_spheres_within_5_percent(mean_d, rel_sd, conc_um, seed):
    pop, curve = nc_curve(mean_d, rel_sd, conc_um, seed)
    truth = volume_weighted_mean_radius(pop)
    fit = size_distribution(curve.q_nm, curve.intensity, curve.sigma)
    assert fit.mean_radius_nm == pytest.approx(truth, rel=0.05)
    assert fit.volume_fraction.sum() == pytest.approx(1.0)
    assert np.all(fit.volume_fraction >= 0)
    assert fit.chi2_reduced < 1.5
    assert fit.background == pytest.approx(SOLVENT_CM1, rel=0.1)


@pytest.mark.parametrize("mean_d, rel_sd", [(2.2, 0.10), (3.0, 0.15), (4.0, 0.08)])
def test_mean_radius_without_sigma_uses_the_estimated_noise(mean_d, rel_sd):
    pop, curve = nc_curve(mean_d, rel_sd, 20.0, 5)
    fit = size_distribution(curve.q_nm, curve.intensity)
    assert fit.mean_radius_nm == pytest.approx(volume_weighted_mean_radius(pop), rel=0.05)


def test_noise_estimate_matches_counting_noise():
    _, curve = nc_curve(2.2, 0.1, 20.0, 1)
    ratio = estimate_noise(curve.intensity) / curve.sigma
    assert 0.8 < np.median(ratio) < 1.2


def test_two_cluster_families_give_a_bimodal_distribution():
    """0.94 nm (CdSe-437) and 1.02 nm (CdSe-465) clusters with 3.5 nm NCs: the
    distribution has weight at both ends and the mean is the volume-weighted one."""
    pop = CdSePopulation({"CdSe-437": 40.0}, 4.0, 3.5, 0.2)
    curve = measure(particle_intensity(pop, Q) + SOLVENT_CM1, Q, 3)
    fit = size_distribution(curve.q_nm, curve.intensity, curve.sigma)
    small = fit.volume_fraction[fit.radius_nm < 1.3].sum()
    large = fit.volume_fraction[fit.radius_nm > 1.4].sum()
    v437 = 40.0 * 0.94**3
    d, w = pop.nc_diameter_nodes(41)
    v_nc = 4.0 * float(np.sum(w * (d / 2) ** 3))
    assert small == pytest.approx(v437 / (v437 + v_nc), abs=0.1)
    assert large == pytest.approx(v_nc / (v437 + v_nc), abs=0.1)


@pytest.mark.parametrize("which", ["mixture", "cd"])
@pytest.mark.parametrize("temperature_c", [25.0, 50.0])
def test_seed_mesophase_found_below_its_melting(which, temperature_c):
    curve = measure(precursor_intensity(Q, temperature_c, which), Q, 11)
    phase = find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma)
    assert phase is not None
    assert phase.d_nm == pytest.approx(3.41, abs=0.02)
    assert phase.peaks_q_nm[0] == pytest.approx(1.84, abs=0.02)
    assert phase.peaks_q_nm[1] == pytest.approx(3.69, abs=0.02)
    assert phase.as_dict() == {"d_nm": phase.d_nm, "peaks_q_nm": list(phase.peaks_q_nm)}


@pytest.mark.parametrize("which, temperature_c", [("mixture", 100.0), ("cd", 100.0), ("se", 25.0)])
def test_no_mesophase_when_melted_or_without_cd(which, temperature_c):
    curve = measure(precursor_intensity(Q, temperature_c, which), Q, 12)
    assert find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma) is None
    assert find_lamellar_mesophase(curve.q_nm, curve.intensity) is None


def test_particles_alone_are_no_mesophase():
    _, curve = nc_curve(3.0, 0.1, 20.0, 4)
    assert find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma) is None


def test_a_lone_peak_is_no_lamellar_phase():
    clean = SOLVENT_CM1 + 0.05 * np.exp(-0.5 * ((Q - 2.0) / 0.03) ** 2)
    curve = measure(clean, Q, 5)
    assert find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma) is None


def test_three_orders_fit_one_period():
    d = 4.0
    clean = SOLVENT_CM1 + sum(a * np.exp(-0.5 * ((Q - 2 * math.pi * n / d) / 0.025) ** 2)
                              for n, a in ((1, 0.05), (2, 0.02), (3, 0.01)))
    curve = measure(clean, Q, 6)
    phase = find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma)
    assert phase is not None and len(phase.peaks_q_nm) == 3
    assert phase.d_nm == pytest.approx(d, rel=0.005)


@pytest.mark.parametrize("q, i, sigma, message", [
    (Q[:10], np.ones(10), None, "at least 20 points"),
    (Q, np.ones(Q.size - 1), None, "same length"),
    (Q, np.where(Q > 2, np.nan, 1.0), None, "finite"),
    (Q[::-1], np.ones(Q.size), None, "increasing"),
    (Q, np.ones(Q.size), np.zeros(Q.size), "sigma"),
])
def test_bad_curves_raise_one_sentence(q, i, sigma, message):
    with pytest.raises(SaxsInputError, match=message):
        size_distribution(q, i, sigma)


def test_size_fit_needs_points_above_q_min():
    with pytest.raises(SaxsInputError, match="above q"):
        size_distribution(Q, np.ones(Q.size), q_min_nm=4.99)
