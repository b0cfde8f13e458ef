"""MSC families and NC sizes from UV-Vis spectra simulated by the flow-reactor model (seed 002)."""

import numpy as np
import pytest

from mc_beamline.analysis.uvvis.spectrum import SpectrumError, analyse_spectrum
from mc_beamline.materials.cdse import (
    MSC_FAMILY_NM,
    yu_diameter_nm,
    yu_extinction_coefficient,
)
from mc_beamline.physics.absorption import (
    absorbance,
    msc_peak_absorbance,
    nc_exciton_peak_nm,
    nc_first_exciton_band,
    noisy_absorbance,
)
from mc_beamline.physics.cdse import MSC_FAMILIES, CdSePopulation
from mc_beamline.physics.flow_reactor import simulate
from tests.analysis.uvvis.spectrum_sets import random_mixtures, reactor_conditions

LAM = np.arange(300.0, 700.01, 0.5)
MUST_FIND = 0.01
"""A family whose peak is at least this high (and 10 noise σ) must be found."""
MUST_NOT_FIND = 0.003
"""A family whose peak is lower than this must not be reported."""
D_TOLERANCE_NM = 0.06


def noise_sigma(clean: np.ndarray) -> np.ndarray:
    return np.log10(np.e) * np.sqrt((10.0**clean + 1.0) / 2e5)


def expected_families(pop: CdSePopulation) -> tuple[set[str], set[str]]:
    """Families that must be found and families that may be found (truth from the model)."""
    sigma = noise_sigma(absorbance(pop, LAM))
    must, may = set(), set()
    for f in MSC_FAMILIES:
        peak = msc_peak_absorbance(pop, f.name)
        snr = peak / sigma[np.argmin(np.abs(LAM - f.peak_nm))]
        if peak >= MUST_FIND and snr >= 10:
            must.add(f.name)
        elif peak >= MUST_NOT_FIND:
            may.add(f.name)
    return must, may


def nc_band_height(pop: CdSePopulation) -> float:
    return float(nc_first_exciton_band(pop, LAM).max())


def check(pop: CdSePopulation, seed: int) -> tuple[bool, str]:
    """Analyse one noisy spectrum of ``pop``; (families ambiguous?, failure text or "")."""
    result = analyse_spectrum(LAM, noisy_absorbance(absorbance(pop, LAM), seed))
    must, may = expected_families(pop)
    found = result.families
    problems = []
    if not (must <= found <= must | may):
        problems.append(f"families {sorted(found)}, expected {sorted(must)} (optional {sorted(may)})")
    band = nc_band_height(pop) if pop.nc_um > 0 else 0.0
    if band >= MUST_FIND:
        if result.nc is None:
            problems.append("NC exciton missed")
        else:
            true_d = yu_diameter_nm(nc_exciton_peak_nm(pop))
            if abs(result.nc.diameter_nm - true_d) > D_TOLERANCE_NM:
                problems.append(f"NC diameter {result.nc.diameter_nm:.3f} nm, Yu at the true peak {true_d:.3f} nm")
    elif band < MUST_NOT_FIND and result.nc is not None:
        problems.append(f"NC exciton reported at {result.nc.wavelength_nm:.1f} nm without NCs")
    return bool(may), "; ".join(problems)


# --------------------------------------------------------------------------- sizing curve
def test_yu_curve_values_of_seed_002():
    assert yu_diameter_nm(467.0) == pytest.approx(2.075, abs=0.001)
    assert yu_diameter_nm(465.0) == pytest.approx(2.06, abs=0.001)
    assert yu_diameter_nm(572.0) == pytest.approx(3.57, abs=0.005)
    assert yu_extinction_coefficient(3.57) == pytest.approx(5857 * 3.57**2.65)
    d = yu_diameter_nm(np.array([350.0, 380.0, 403.0, 437.0]))
    assert d == pytest.approx([1.09, 1.37, 1.58, 1.85], abs=0.01)  # the paper's d_Abs column


def test_family_positions_are_the_seed_families():
    assert MSC_FAMILY_NM == {"CdSe-350": 350.0, "CdSe-380": 380.0, "CdSe-403": 403.0, "CdSe-437": 437.0,
                             "CdSe-465": 465.0}
    assert [f.name for f in MSC_FAMILIES] == list(MSC_FAMILY_NM)


# --------------------------------------------------------------------------- single features
@pytest.mark.parametrize("family", list(MSC_FAMILY_NM))
def test_lone_msc_family_position_width_and_height(family):
    f = next(x for x in MSC_FAMILIES if x.name == family)
    pop = CdSePopulation({family: 10.0})
    result = analyse_spectrum(LAM, noisy_absorbance(absorbance(pop, LAM), 1))
    assert [p.family for p in result.msc] == [family]
    peak = result.msc[0]
    assert peak.wavelength_nm == pytest.approx(f.peak_nm, abs=0.5)
    assert peak.fwhm_nm == pytest.approx(f.fwhm_nm, abs=1.5)
    assert peak.absorbance == pytest.approx(msc_peak_absorbance(pop, family), rel=0.1)
    assert result.nc is None


def test_shifted_family_members_are_assigned_within_tolerance():
    """The paper writes 382 and 467 nm for CdSe-380 and CdSe-465."""
    lam = LAM
    clean = 0.01 + 0.05 * np.exp(-0.5 * ((lam - 382.0) / 4.0) ** 2) + 0.05 * np.exp(-0.5 * ((lam - 467.0) / 5.0) ** 2)
    result = analyse_spectrum(lam, noisy_absorbance(clean, 2))
    assert [(p.family, round(p.wavelength_nm)) for p in result.msc] == [("CdSe-380", 382), ("CdSe-465", 467)]


def test_narrow_peak_away_from_the_families_is_not_an_msc():
    clean = 0.01 + 0.05 * np.exp(-0.5 * ((LAM - 420.0) / 4.0) ** 2)
    assert analyse_spectrum(LAM, noisy_absorbance(clean, 3)).msc == ()


@pytest.mark.parametrize("diameter_nm", np.round(np.arange(2.10, 3.95, 0.05), 2))
def test_nc_shoulders_are_not_counted_as_msc(diameter_nm):
    """Without clusters, the NCs' second and third excitonic bands (which cross 465, 437,
    403 and 380 nm as the NCs grow) give no MSC, and the first exciton gives the size."""
    pop = CdSePopulation({}, 25.0, float(diameter_nm), 0.06 + 0.05 * (diameter_nm - 2.1))
    result = analyse_spectrum(LAM, noisy_absorbance(absorbance(pop, LAM), int(diameter_nm * 100)))
    assert result.msc == ()
    assert result.nc is not None
    assert result.nc.diameter_nm == pytest.approx(yu_diameter_nm(nc_exciton_peak_nm(pop)), abs=D_TOLERANCE_NM)
    assert 15.0 < result.nc.fwhm_nm < 80.0


def test_non_uniform_wavelength_grid_is_resampled():
    pop = CdSePopulation({"CdSe-437": 10.0}, 20.0, 2.7, 0.1)
    lam = np.sort(np.concatenate([np.arange(300.0, 500.0, 0.5), np.arange(500.0, 700.0, 1.0)]))
    result = analyse_spectrum(lam, noisy_absorbance(absorbance(pop, lam), 4))
    assert result.families == {"CdSe-437"}
    assert result.nc.diameter_nm == pytest.approx(yu_diameter_nm(nc_exciton_peak_nm(pop)), abs=D_TOLERANCE_NM)


# --------------------------------------------------------------------------- acceptance on the reactor model
MAX_AMBIGUOUS_FRACTION = 0.3
"""The kinetic model leaves trace families (peaks of 0.003–0.01) in about a quarter of the
conditions; those families may or may not be reported, everything else must be exact."""


def test_families_and_sizes_on_simulated_reactor_spectra():
    failures, ambiguous, n = [], 0, 0
    for i, cond in enumerate(reactor_conditions()):
        pop = simulate(cond).population
        amb, problem = check(pop, seed=i)
        n += 1
        ambiguous += amb
        if problem:
            failures.append(f"T_nuc {cond.nucleation_temperature_c:g}, T_growth {cond.growth_temperature_c:g}, "
                            f"t {60 * 0.25 / cond.total_flow_ml_min:.1f} s: {problem}")
    assert not failures, "\n".join(failures)
    assert ambiguous <= MAX_AMBIGUOUS_FRACTION * n


def test_families_and_sizes_on_random_mixtures():
    """Random MSC mixtures on NCs of 2.1–3.9 nm: harder than the reactor makes them."""
    failures = []
    for trial, pop in enumerate(random_mixtures()):
        _, problem = check(pop, seed=1000 + trial)
        if problem:
            failures.append(f"trial {trial}: {problem}")
    assert len(failures) <= 1, "\n".join(failures)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("lam, a, message", [
    (LAM[:10], np.zeros(10), "at least 30 points"),
    (LAM, np.zeros(LAM.size - 1), "same length"),
    (LAM, np.where(LAM > 500, np.nan, 0.1), "finite"),
    (LAM[::-1], np.zeros(LAM.size), "increase"),
])
def test_bad_spectra_raise_one_sentence(lam, a, message):
    with pytest.raises(SpectrumError, match=message):
        analyse_spectrum(lam, a)
