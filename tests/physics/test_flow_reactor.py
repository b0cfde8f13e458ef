"""The simulated continuous-flow CdSe reactor reproduces seed 002 (Palencia et al., Nanoscale 2020).

Tolerances: NC exciton ±5 nm, NC diameter ±0.1 nm, SAXS radii ±0.02 nm. "CdSe-437 persists"
means its narrow peak is at least 0.01 absorbance high (≈ 7 noise σ of the simulated
spectrometer) and holds at least 5 % of the CdSe in particles; "absent" means below
0.003 absorbance and 1 %.
"""

import math

import numpy as np
import pytest

from mc_beamline.analysis.saxs.sizes import find_lamellar_mesophase, size_distribution
from mc_beamline.materials.cdse import yu_diameter_nm
from mc_beamline.physics.absorption import (
    absorbance,
    msc_peak_absorbance,
    nc_exciton_peak_nm,
    noisy_absorbance,
)
from mc_beamline.physics.cdse import MSC_BY_NAME, MSC_FAMILIES
from mc_beamline.physics.flow_reactor import (
    DEFAULT_REACTOR,
    FlowReactor,
    ReactorConditions,
    pathway_weights,
    reaction_time_s,
    simulate,
    total_flow_ml_min,
)
from mc_beamline.physics.saxs_models import (
    default_q_nm,
    measure,
    mesophase_order,
    precursor_intensity,
    reaction_intensity,
)

SEED_TIMES_S = (1.5, 4.5, 7.6, 14.0)
PRESENT_ABS, PRESENT_FRACTION = 0.01, 0.05
ABSENT_ABS, ABSENT_FRACTION = 0.003, 0.01
WINDOW = range(270, 301, 10)
OUTSIDE = [250, 260, 310, 320, 330, 340, 350]


def state(t_nuc, t_growth, t_s):
    return simulate(ReactorConditions.at_reaction_time(t_nuc, t_growth, t_s))


def msc_present(s, name) -> bool:
    return msc_peak_absorbance(s.population, name) >= PRESENT_ABS and s.cdse_fraction(name) >= PRESENT_FRACTION


def msc_absent(s, name) -> bool:
    return msc_peak_absorbance(s.population, name) < ABSENT_ABS or s.cdse_fraction(name) < ABSENT_FRACTION


def saxs_volume_fractions(s) -> dict[str, float]:
    """Volume fractions of the species a SAXS fit separates (volume ∝ r³ at the SAXS radius)."""
    pop = s.population
    vols = {f.name: pop.msc_um.get(f.name, 0.0) * f.saxs_radius_nm**3 for f in MSC_FAMILIES}
    d, w = pop.nc_diameter_nodes(41)
    vols["NC"] = pop.nc_um * float(np.sum(w * (d / 2) ** 3)) if pop.nc_um > 0 else 0.0
    total = sum(vols.values())
    return {k: v / total for k, v in vols.items()}


def dominant_saxs_radius(s) -> float:
    fr = saxs_volume_fractions(s)
    name = max(fr, key=fr.get)
    if name == "NC":
        d, w = s.population.nc_diameter_nodes(41)
        return float(np.sum(w * (d / 2) ** 4) / np.sum(w * (d / 2) ** 3))
    return MSC_BY_NAME[name].saxs_radius_nm


def mean_saxs_radius(s) -> float:
    """Volume-weighted mean radius over clusters and NCs, nm."""
    pop = s.population
    num = den = 0.0
    for f in MSC_FAMILIES:
        v = pop.msc_um.get(f.name, 0.0) * f.saxs_radius_nm**3
        num, den = num + v * f.saxs_radius_nm, den + v
    if pop.nc_um > 0:
        d, w = pop.nc_diameter_nodes(41)
        r = d / 2
        num += pop.nc_um * float(np.sum(w * r**4))
        den += pop.nc_um * float(np.sum(w * r**3))
    return num / den


# --------------------------------------------------------------------------- reactor hydraulics
def test_reaction_times_of_the_seed_need_realistic_pump_rates():
    flows = [total_flow_ml_min(t) for t in SEED_TIMES_S]
    assert flows == pytest.approx([10.0, 3.333, 1.974, 1.071], abs=1e-3)
    assert all(0.5 <= q / 2 <= 5.0 for q in flows)  # each pump within a 0.5–5 mL/min HPLC pump range
    for t in SEED_TIMES_S:
        assert reaction_time_s(total_flow_ml_min(t)) == pytest.approx(t)
    cond = ReactorConditions.at_reaction_time(280, 280, 14.0)
    s = simulate(cond)
    assert s.reaction_time_s == pytest.approx(14.0)
    assert s.nucleation_time_s == pytest.approx(1.4)
    assert FlowReactor(0.05, 0.45).total_volume_ml == pytest.approx(2 * DEFAULT_REACTOR.total_volume_ml)


@pytest.mark.parametrize("call", [
    lambda: reaction_time_s(0.0), lambda: total_flow_ml_min(-1.0), lambda: reaction_time_s(float("nan")),
    lambda: ReactorConditions(280, 280, 0.0, 1.0), lambda: ReactorConditions(500, 280, 1.0, 1.0),
    lambda: ReactorConditions(280, 280, 1.0, 1.0, cd_stock_mm=-1.0),
])
def test_impossible_settings_raise(call):
    with pytest.raises(ValueError):
        call()


def test_cdse_is_conserved_and_the_leaner_precursor_limits_it():
    for t_nuc, t_g, t in ((280, 280, 14.0), (350, 260, 4.5), (200, 230, 1.5)):
        s = state(t_nuc, t_g, t)
        assert s.precursor_mm + s.monomer_mm + s.particle_cdse_mm == pytest.approx(10.0, rel=1e-4)
    lean = simulate(ReactorConditions(280, 280, 0.5, 1.5))  # Cd at 5 mM, Se at 15 mM
    assert lean.precursor_mm + lean.monomer_mm + lean.particle_cdse_mm == pytest.approx(5.0, rel=1e-4)
    assert lean.cd_precursor_mm == pytest.approx(lean.precursor_mm, abs=1e-9)


def test_simulation_is_deterministic():
    a, b = state(280, 250, 7.6), state(280, 250, 7.6)
    assert a == b


def test_cold_precursor_does_not_react():
    s = state(25, 25, 14.0)
    assert s.particle_cdse_mm < 1e-6 and s.precursor_mm == pytest.approx(10.0, rel=1e-6)


def test_pathways_follow_the_nucleation_temperature():
    assert pathway_weights(260).mild > 0.99
    assert all(pathway_weights(t).window > 0.99 for t in WINDOW)
    assert pathway_weights(310).high > 0.99


# --------------------------------------------------------------------------- Fig. 1: 14 s
@pytest.mark.parametrize("t_nuc", list(WINDOW))
def test_cdse437_persists_at_14s_in_the_window_and_grows_with_growth_temperature(t_nuc):
    growth = range(t_nuc - 90, t_nuc + 1, 10)
    states = [state(t_nuc, t_g, 14.0) for t_g in growth]
    assert all(msc_present(s, "CdSe-437") for s in states)
    heights = [msc_peak_absorbance(s.population, "CdSe-437") for s in states]
    assert all(b > a for a, b in zip(heights, heights[1:])), heights
    assert all(s.population.nc_um > 0 for s in states)  # coexisting with regular NCs


@pytest.mark.parametrize("t_nuc", OUTSIDE)
def test_no_cdse437_at_14s_outside_the_window(t_nuc):
    for t_g in range(t_nuc - 90, t_nuc + 1, 10):
        s = state(t_nuc, t_g, 14.0)
        assert msc_absent(s, "CdSe-437"), (t_nuc, t_g)
    s = state(t_nuc, t_nuc, 14.0)
    assert sum(s.cdse_fraction(f.name) for f in MSC_FAMILIES) < 0.03  # regular NCs rather than MSCs


# --------------------------------------------------------------------------- Fig. S2: 4.5 s
@pytest.mark.parametrize("t_nuc", [260, 350])
def test_msc_accumulate_at_4_5s_below_and_above_the_window(t_nuc):
    s = state(t_nuc, t_nuc, 4.5)
    assert any(msc_present(s, f.name) for f in MSC_FAMILIES)
    assert sum(s.cdse_fraction(f.name) for f in MSC_FAMILIES) >= 0.1


def test_cdse437_coexists_with_ncs_at_4_5s_in_the_window():
    s = state(280, 280, 4.5)
    assert msc_present(s, "CdSe-437") and s.cdse_fraction("NC") > 0.3


def test_nc_exciton_at_280c_moves_from_490_to_527_nm():
    early, late = nc_exciton_peak_nm(state(280, 280, 4.5).population), nc_exciton_peak_nm(state(280, 280, 14.0).population)
    assert early == pytest.approx(490, abs=5)
    assert late == pytest.approx(527, abs=5)


def test_ncs_at_350c_and_7_6s_are_3_6nm_with_exciton_at_572nm():
    s = state(350, 350, 7.6)
    assert s.population.nc_mean_diameter_nm == pytest.approx(3.6, abs=0.1)
    peak = nc_exciton_peak_nm(s.population)
    assert peak == pytest.approx(572, abs=5)
    assert yu_diameter_nm(peak) == pytest.approx(3.6, abs=0.1)
    assert s.nc_polydispersity < 0.12


# --------------------------------------------------------------------------- Fig. 2: SAXS at 1.5 s
@pytest.fixture(scope="module")
def saxs_series():
    return {t: state(t, 230, 1.5) for t in range(190, 281, 10)}


def test_quantised_radii_from_190_to_240c(saxs_series):
    assert dominant_saxs_radius(saxs_series[190]) == pytest.approx(0.87, abs=0.02)
    for t in (200, 210, 220, 230):
        assert dominant_saxs_radius(saxs_series[t]) == pytest.approx(0.94, abs=0.02), t
    shoulder = saxs_volume_fractions(saxs_series[230])["CdSe-465"]
    assert 0.15 <= shoulder <= 0.45  # r = 1.02 nm shoulder at 230 °C
    assert dominant_saxs_radius(saxs_series[240]) == pytest.approx(1.02, abs=0.02)
    assert saxs_volume_fractions(saxs_series[240])["CdSe-465"] >= 0.5  # fully pronounced at 240 °C


def test_continuous_growth_from_250c(saxs_series):
    nc = [saxs_volume_fractions(saxs_series[t])["NC"] for t in range(240, 281, 10)]
    assert nc[0] < 0.1 <= nc[1]
    radii = [mean_saxs_radius(saxs_series[t]) for t in range(240, 281, 10)]
    assert all(b > a for a, b in zip(radii, radii[1:])), radii


def test_saxs_fit_of_the_simulated_curves_recovers_the_mean_radius(saxs_series):
    q = default_q_nm()
    fitted = []
    for i, t in enumerate((190, 210, 240, 270)):
        s = saxs_series[t]
        curve = measure(reaction_intensity(s, q), q, i)
        fit = size_distribution(curve.q_nm, curve.intensity, curve.sigma)
        assert fit.mean_radius_nm == pytest.approx(mean_saxs_radius(s), rel=0.05), t
        assert find_lamellar_mesophase(curve.q_nm, curve.intensity, curve.sigma) is None
        fitted.append(fit.mean_radius_nm)
    assert fitted == sorted(fitted)


# --------------------------------------------------------------------------- Fig. 3: precursor SAXS
def test_precursor_mesophase_peaks_at_1_84_and_3_69():
    q = np.linspace(0.1, 5.0, 2000)
    rt = precursor_intensity(q, 25.0)
    for q_peak in (1.84, 3.69):
        window = (q > q_peak - 0.1) & (q < q_peak + 0.1)
        assert q[window][np.argmax(rt[window])] == pytest.approx(q_peak, abs=0.01)
    assert 2 * math.pi / 1.8426 == pytest.approx(3.41, abs=0.005)


def test_mesophase_weaker_at_50c_and_gone_at_100c():
    q = default_q_nm()
    height = {t: float(np.max(precursor_intensity(q, t)[(q > 1.7) & (q < 2.0)])) for t in (25.0, 50.0, 100.0)}
    base = float(precursor_intensity(q, 150.0)[np.argmin(np.abs(q - 1.84))])
    assert 0.3 < (height[50.0] - base) / (height[25.0] - base) < 0.7
    assert (height[100.0] - base) / (height[25.0] - base) < 0.01
    assert mesophase_order(25.0) == pytest.approx(1.0)


def test_cd_precursor_alone_has_a_broad_maximum_at_0_2_to_0_3():
    q = np.linspace(0.05, 1.0, 400)
    cd = precursor_intensity(q, 100.0, "cd")
    assert 0.2 <= q[np.argmax(cd)] <= 0.3
    se = precursor_intensity(q, 25.0, "se")
    assert np.ptp(se) < 1e-12  # the Se precursor is flat: the structure is the Cd precursor's


def test_mesophase_only_in_a_cold_reactor():
    q = default_q_nm()
    cold = measure(reaction_intensity(state(25, 25, 14.0), q), q, 1)
    phase = find_lamellar_mesophase(cold.q_nm, cold.intensity, cold.sigma)
    assert phase is not None and phase.d_nm == pytest.approx(3.41, abs=0.02)
    hot = measure(reaction_intensity(state(280, 280, 14.0), q), q, 2)
    assert find_lamellar_mesophase(hot.q_nm, hot.intensity, hot.sigma) is None


# --------------------------------------------------------------------------- spectra
def test_spectrum_has_msc_peaks_nc_bands_continuum_and_baseline():
    s = state(280, 280, 14.0)
    lam = np.arange(300.0, 700.01, 0.5)
    a = absorbance(s.population, lam)
    k437 = np.argmin(np.abs(lam - 437))
    assert a[k437] > a[k437 - 20] and a[k437] > a[k437 + 20]  # narrow peak at its fixed position
    k_nc = np.argmin(np.abs(lam - nc_exciton_peak_nm(s.population)))
    assert a[k_nc] > a[k_nc + 30]  # the NC's first exciton is a maximum
    assert a[0] > 2 * a[k_nc]  # continuum rising to the blue
    assert a[-1] == pytest.approx(0.004 + 0.012 * (400 / 700) ** 4, abs=1e-3)  # cell baseline
    noisy1, noisy2 = noisy_absorbance(a, 7), noisy_absorbance(a, 7)
    assert np.array_equal(noisy1, noisy2) and not np.array_equal(noisy1, a)
    assert 0.0005 < np.std(noisy1 - a) < 0.005
