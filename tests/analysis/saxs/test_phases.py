"""Phase fractions and nucleation pathway from simulated time-resolved SAXS (seed 004)."""

import numpy as np
import pytest

from mc_beamline.analysis.saxs.phases import (
    classify_pathway,
    fit_phase_series,
    hard_sphere_py,
    powder_lattice_factor,
    sphere_form_factor_poly,
)
from mc_beamline.physics.assembly import (
    AssemblyModel,
    default_q_nm,
    lattice_factor,
    percus_yevick,
    polydisperse_sphere,
)

Q = default_q_nm()
T = np.linspace(0.0, 900.0, 31)


def series(model, counts, seed):
    rng = np.random.default_rng(seed)
    curves = [model.measure(t, Q, rng, counts_per_cm1=counts) for t in T]
    return np.stack([c.intensity for c in curves]), np.stack([c.sigma for c in curves])


def test_analysis_model_pieces_agree_with_the_simulator():
    # written independently on both sides: they must agree
    assert hard_sphere_py(Q, 4.9, 0.4) == pytest.approx(percus_yevick(Q, 4.9, 0.4), rel=1e-9)
    p1, b1 = sphere_form_factor_poly(Q, 2.3, 0.06)
    p2, b2 = polydisperse_sphere(Q, 2.3, 0.06)
    assert np.max(np.abs(p1 - p2) / p2.max()) < 2e-3 and np.max(np.abs(b1 - b2)) < 0.02
    for lat, ca in (("fcc", None), ("bcc", None), ("hcp", None), ("bct", 1.2)):
        z1 = powder_lattice_factor(Q, lat, 6.0, 0.05, ca)
        z2 = lattice_factor(Q, lat, 6.0, 0.05, ca)
        assert np.max(np.abs(z1 - z2)) < 1e-4 * np.max(z2)  # FWHM→σ constant to 5 digits


@pytest.mark.parametrize("pathway, lattice, counts, seed", [
    ("one-step", "fcc", 2e4, 0), ("two-step", "fcc", 2e4, 1), ("two-step", "bcc", 2e4, 2),
    ("one-step", "hcp", 2e3, 3), ("two-step", "fcc", 2e3, 4),
])
def test_phase_fractions_within_0_05_and_pathway_right(pathway, lattice, counts, seed):
    model = AssemblyModel(pathway=pathway, lattice=lattice)
    y, s = series(model, counts, seed)
    fit = fit_phase_series(Q, y, s)
    truth = model.fractions(T).as_array()
    assert fit.lattice is not None and fit.lattice.lattice == lattice
    assert np.max(np.abs(fit.fractions - truth)) < 0.05
    assert fit.chi2_reduced < 1.3
    assert fit.params.radius_nm == pytest.approx(model.radius_nm, rel=0.03)
    assert classify_pathway(T, fit.fractions).pathway == pathway
    # the truth itself classifies the same way
    assert classify_pathway(T, truth).pathway == pathway


def test_phase_fit_without_sigma_estimates_the_noise():
    model = AssemblyModel(pathway="two-step")
    y, _ = series(model, 2e4, 7)
    fit = fit_phase_series(Q, y[::3])
    assert np.max(np.abs(fit.fractions - model.fractions(T[::3]).as_array())) < 0.05


def test_no_crystal_series_is_pathway_none():
    model = AssemblyModel(pathway="two-step", tau_crystal_s=1e7)  # dense fluid that never crystallises
    y, s = series(model, 2e4, 8)
    fit = fit_phase_series(Q, y, s)
    assert fit.lattice is None
    assert np.max(np.abs(fit.fractions - model.fractions(T).as_array())) < 0.05
    assert classify_pathway(T, fit.fractions).pathway == "none"


def test_classify_pathway_checks_shapes():
    with pytest.raises(ValueError):
        classify_pathway(T, np.zeros((3, 3)))
