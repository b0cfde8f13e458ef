"""Continuous-flow synthesis of CdSe nanocrystals through magic-size clusters (seed 002).

Reactor
-------
Two precursor pumps (Cd, Se; flows in mL/min) meet in a nucleation chamber of volume
V_nuc at T_nuc, which feeds a growth oven of volume V_growth at T_growth; the optical and
X-ray flow cells sit at the oven outlet. Plug flow: the reaction time is

    t = (V_nuc + V_growth) / Q,    Q = Q_Cd + Q_Se,

of which the first V_nuc / (V_nuc + V_growth) is spent at T_nuc. With the default
V_nuc = 25 µL and V_growth = 225 µL, the seed times 1.5, 4.5, 7.6 and 14 s need
Q = 10, 3.33, 1.97 and 1.07 mL/min (HPLC-pump range). The paper's SAXS series has
T_growth = 230 °C above T_nuc = 190–220 °C, so T_growth ≤ T_nuc is not enforced.

Chemistry (the monomer-driven scheme of the paper)
----------------------------------------------------
Concentrations in mM of CdSe units for precursor P and monomer M, in µM of particles for
clusters X_f and NCs. Every rate constant is Arrhenius, k(T) = k₂₈₀·exp(−Eₐ/R·(1/T − 1/553.15 K)).

* Nucleation burst at the mixing point: N₀ = n₀(T_nuc)·b(T_nuc)·(1 + G_w·w_window + G_h·w_high)
  CdSe-350 nuclei ("Nucl", 12 units) per volume, taken from P. n₀ has a negative apparent
  activation energy (solubility rises faster than supersaturation), so a hotter mild
  chamber makes fewer nuclei, each of which gets more monomer: the quantised growth
  0.87 → 0.94 → 1.02 nm of the SAXS series. b = 1 − 2^−exp(−E_b/R·(1/T − 1/T_½)) (see
  :func:`activation`) switches nucleation and precursor conversion off below ≈ 150 °C (the
  cold precursor does not react). The burst does not depend on the flow.
* Continued nucleation wherever monomer is left: J = k_J(T)·M² µM/s of CdSe-350; its high
  activation energy keeps it small except in a hot oven (more CdSe-437 at a higher T_growth).
* Monomer supply: dP/dt = −b·k_P(T)·P, dM/dt = +b·k_P·P − consumption.
* Cluster steps r = k(T)·[X]·M_s with M_s = M / (1 + M/K_s); with the default K_s far above
  the 10 mM of the reactor this is the paper's mass action r = k[Nucl][M]. The pathway is
  set by the nucleation regime (the paper's three schemes), weights w_mild, w_window,
  w_high from T_nuc (C¹ smoothsteps over 265 ± 2.5 and 305 ± 2.5 °C, exactly 0 or 1
  outside, so no pathway leaks into another regime):

      mild (T_nuc ≤ 260):   350 → 403 → 437 → 465 → NC
      window (270–300):     350 → 403 → 437,  403 → NC     (no 437 → 465: CdSe-437 persists)
      high (> 300):         350 → 380 → 437 → 465,  350 → NC,  MSC dissolution

  In the high regime the NCs come from the nuclei (the paper's "Nucl → NC" alternative),
  early, while the burst's nuclei are there: the NCs are born together and stay narrow
  (3.6 nm, 1–2 % spread at 350 °C and 7.6 s); the clusters on the ladder are a reservoir
  that dissolves into the growing NCs (Ostwald ripening).
* CdSe-465 → NC (mild regime) is a restructuring limited by the cluster itself once
  monomer feeds it: r = k·[465]·M/(M + K_465) with K_465 = 0.1 mM.
* MSC dissolution (high regime only, "monomer depletion together with high temperature"):
  each cluster falls apart at k_d·K_M/(K_M + M) per second, returning its units to M.
* NCs are born at D₀ = 2.10 ± 0.06 nm and grow by diffusion-limited monomer addition,
  dD/dt = k_g(T)·M / D, so u = D² grows at the same rate 2 k_g M for every NC and the
  distribution focuses as the NCs grow. The NC population is carried by N = Σ 1,
  ν₁ = Σ u, ν₂ = Σ u² (closed: du/dt does not depend on u), read as a Gaussian number
  distribution of D with the same ⟨D²⟩ and var(D²): mean μ = (1.5 ū² − ν₂/(2N))^¼,
  σ² = ū − μ². The NC CdSe is ρ·π/6·N·(μ³ + 3μσ²); the monomer they take is its time
  derivative (chain rule through N, ν₁, ν₂), so CdSe is conserved exactly.

The ODEs are integrated with scipy's LSODA over the chamber (T_nuc), then the oven
(T_growth). Deterministic: noise enters only in the measured spectra and SAXS curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from mc_beamline.physics.cdse import (
    MSC_BY_NAME,
    MSC_FAMILIES,
    CdSePopulation,
    cdse_units,
)

R_KJ = 8.314462618e-3
"""Gas constant, kJ/(mol K)."""
T_REF_K = 553.15
"""Reference temperature of the rate constants (280 °C), K."""


# --------------------------------------------------------------------------- reactor
@dataclass(frozen=True)
class FlowReactor:
    """Volumes of the continuous-flow reactor.

    Attributes
    ----------
    nucleation_volume_ml : volume of the nucleation chamber, mL.
    growth_volume_ml : volume of the growth oven up to the flow cells, mL.
    """

    nucleation_volume_ml: float = 0.025
    growth_volume_ml: float = 0.225

    @property
    def total_volume_ml(self) -> float:
        return self.nucleation_volume_ml + self.growth_volume_ml

    @property
    def nucleation_fraction(self) -> float:
        """Fraction of the reaction time spent in the nucleation chamber."""
        return self.nucleation_volume_ml / self.total_volume_ml


DEFAULT_REACTOR = FlowReactor()


def reaction_time_s(total_flow_ml_min: float, reactor: FlowReactor = DEFAULT_REACTOR) -> float:
    """Reaction time (s) at the flow cells for a total flow of ``total_flow_ml_min`` (mL/min)."""
    if not (math.isfinite(total_flow_ml_min) and total_flow_ml_min > 0):
        raise ValueError(f"The total flow must be a positive number of mL/min, got {total_flow_ml_min!r}.")
    return 60.0 * reactor.total_volume_ml / total_flow_ml_min


def total_flow_ml_min(reaction_time: float, reactor: FlowReactor = DEFAULT_REACTOR) -> float:
    """Total flow (mL/min) that gives a reaction time of ``reaction_time`` (s); inverse of
    :func:`reaction_time_s`."""
    if not (math.isfinite(reaction_time) and reaction_time > 0):
        raise ValueError(f"The reaction time must be a positive number of seconds, got {reaction_time!r}.")
    return 60.0 * reactor.total_volume_ml / reaction_time


# --------------------------------------------------------------------------- kinetics
@dataclass(frozen=True)
class Arrhenius:
    """k(T) = k_ref · exp(−Eₐ/R · (1/T − 1/553.15 K)): ``k_ref`` at 280 °C, Eₐ in kJ/mol."""

    k_ref: float
    ea_kj_mol: float

    def __call__(self, temperature_c: float) -> float:
        return self.k_ref * math.exp(-self.ea_kj_mol / R_KJ * (1.0 / (temperature_c + 273.15) - 1.0 / T_REF_K))


@dataclass(frozen=True)
class CdSeKinetics:
    """Rate parameters of the CdSe scheme; units in brackets, k at 280 °C.

    Cluster steps are in 1/(mM s) (per cluster and mM of effective monomer), the
    precursor conversion and dissolution in 1/s, NC growth in nm²/(mM s).
    """

    nuclei_um: Arrhenius = Arrhenius(9.75, -40.6)
    """Nuclei from the mixing burst in the mild regime [µM]; ×(1 + gain) in the window and high regimes."""
    window_nuclei_gain: float = 1.54
    high_nuclei_gain: float = 29.0
    burst_half_c: float = 150.0
    """Chamber temperature at which the nucleation burst is half complete [°C]."""
    burst_ea_kj_mol: float = 250.0
    precursor: Arrhenius = Arrhenius(0.5, 60.0)
    nucleation: Arrhenius = Arrhenius(1e-3, 150.0)
    """Continued nucleation [µM/(s mM²)]."""
    to_403: Arrhenius = Arrhenius(2900.0, 22.6)
    to_380: Arrhenius = Arrhenius(1000.0, 30.0)
    from_380_to_437: Arrhenius = Arrhenius(0.3, 30.0)
    to_437: Arrhenius = Arrhenius(151.0, 60.8)
    nc_from_403: Arrhenius = Arrhenius(410.0, 8.1)
    to_465: Arrhenius = Arrhenius(4.4, 20.2)
    nc_from_465: Arrhenius = Arrhenius(0.4, 0.0)
    nc_from_350: Arrhenius = Arrhenius(230.0, 30.0)
    nc_growth: Arrhenius = Arrhenius(0.0159, 138.5)
    """NC growth dD/dt = k·M/D [nm²/(mM s)]."""
    dissolution: Arrhenius = Arrhenius(0.36, 0.0)
    depletion_mm: float = 8.0
    """Monomer level at which MSC dissolution (high regime) runs at half its rate [mM]."""
    saturation_mm: float = 1000.0
    """Monomer level at which cluster steps would saturate [mM]; far above the reactor's
    10 mM, so the steps follow mass action, r = k·[X]·[M]."""
    nc_465_half_mm: float = 0.1
    """CdSe-465 turns into a regular NC at kn465·M/(M + this) per second [mM]: a
    restructuring limited by the cluster itself once monomer feeds it."""
    nc_birth_diameter_nm: float = 2.10
    nc_birth_spread_nm: float = 0.06
    mild_window_c: float = 265.0
    window_high_c: float = 305.0
    regime_width_c: float = 2.5


DEFAULT_KINETICS = CdSeKinetics()


@dataclass(frozen=True)
class PathwayWeights:
    """Weights (sum 1) of the three pathways of the paper for a nucleation temperature."""

    mild: float
    window: float
    high: float


def pathway_weights(nucleation_temperature_c: float, kinetics: CdSeKinetics = DEFAULT_KINETICS) -> PathwayWeights:
    """Mild / window / high weights for ``nucleation_temperature_c`` (°C)."""

    def step(t0: float) -> float:
        # C¹ smoothstep: exactly 0 or 1 beyond ± regime_width_c, so no pathway leaks into another regime
        z = min(max((nucleation_temperature_c - t0) / (2.0 * kinetics.regime_width_c) + 0.5, 0.0), 1.0)
        return z * z * (3.0 - 2.0 * z)

    win, high = step(kinetics.mild_window_c), step(kinetics.window_high_c)
    return PathwayWeights(1.0 - win, win - high, high)


def activation(temperature_c: float, kinetics: CdSeKinetics = DEFAULT_KINETICS) -> float:
    """Fraction (0–1) of the precursor that is reactive at ``temperature_c`` (°C).

    b = 1 − 2^−exp(−E_b/R·(1/T − 1/T_½)): 0.5 at ``burst_half_c``, ≈ 1 from ≈ 180 °C up and
    < 10⁻¹⁰ at room temperature (the cold precursor mixture is stable; seed 002 measures
    it by SAXS).
    """
    t_k = temperature_c + 273.15
    x = -kinetics.burst_ea_kj_mol / R_KJ * (1.0 / t_k - 1.0 / (kinetics.burst_half_c + 273.15))
    return -math.expm1(-math.log(2.0) * math.exp(min(x, 50.0)))


def nuclei_um(nucleation_temperature_c: float, kinetics: CdSeKinetics = DEFAULT_KINETICS) -> float:
    """Nuclei (µM of CdSe-350) made by the mixing burst at ``nucleation_temperature_c`` (°C)."""
    w = pathway_weights(nucleation_temperature_c, kinetics)
    gain = 1.0 + kinetics.window_nuclei_gain * w.window + kinetics.high_nuclei_gain * w.high
    return kinetics.nuclei_um(nucleation_temperature_c) * activation(nucleation_temperature_c, kinetics) * gain


# --------------------------------------------------------------------------- conditions and state
@dataclass(frozen=True)
class ReactorConditions:
    """Set points of one steady state of the reactor.

    Attributes
    ----------
    nucleation_temperature_c, growth_temperature_c : chamber and oven temperatures, °C.
    cd_flow_ml_min, se_flow_ml_min : pump flows, mL/min.
    cd_stock_mm, se_stock_mm : precursor concentrations in the pump reservoirs, mM.
    """

    nucleation_temperature_c: float
    growth_temperature_c: float
    cd_flow_ml_min: float
    se_flow_ml_min: float
    cd_stock_mm: float = 20.0
    se_stock_mm: float = 20.0

    def __post_init__(self) -> None:
        for name in ("nucleation_temperature_c", "growth_temperature_c"):
            t = getattr(self, name)
            if not (math.isfinite(t) and 0.0 <= t <= 400.0):
                raise ValueError(f"{name} must be between 0 and 400 °C, got {t!r}.")
        for name in ("cd_flow_ml_min", "se_flow_ml_min"):
            q = getattr(self, name)
            if not (math.isfinite(q) and q > 0.0):
                raise ValueError(f"{name} must be a positive flow in mL/min, got {q!r}.")
        for name in ("cd_stock_mm", "se_stock_mm"):
            c = getattr(self, name)
            if not (math.isfinite(c) and c >= 0.0):
                raise ValueError(f"{name} must be a non-negative concentration in mM, got {c!r}.")

    @classmethod
    def at_reaction_time(cls, nucleation_temperature_c: float, growth_temperature_c: float, reaction_time: float,
                         reactor: FlowReactor = DEFAULT_REACTOR, cd_fraction: float = 0.5,
                         cd_stock_mm: float = 20.0, se_stock_mm: float = 20.0) -> "ReactorConditions":
        """Conditions for a reaction time (s), the total flow split ``cd_fraction`` : rest."""
        q = total_flow_ml_min(reaction_time, reactor)
        return cls(nucleation_temperature_c, growth_temperature_c, q * cd_fraction, q * (1.0 - cd_fraction),
                   cd_stock_mm, se_stock_mm)

    @property
    def total_flow_ml_min(self) -> float:
        return self.cd_flow_ml_min + self.se_flow_ml_min

    @property
    def cd_mm(self) -> float:
        """Cd precursor in the mixed stream, mM."""
        return self.cd_stock_mm * self.cd_flow_ml_min / self.total_flow_ml_min

    @property
    def se_mm(self) -> float:
        """Se precursor in the mixed stream, mM."""
        return self.se_stock_mm * self.se_flow_ml_min / self.total_flow_ml_min


@dataclass(frozen=True)
class ReactorState:
    """Composition of the mixture at the flow cells.

    Attributes
    ----------
    conditions : the set points.
    reaction_time_s, nucleation_time_s : time from mixing to the cells and the part of it
        spent in the nucleation chamber, s.
    precursor_mm : unreacted CdSe-forming precursor (the lesser of Cd and Se), mM.
    monomer_mm : free CdSe monomer, mM.
    cd_precursor_mm : Cd precursor left (excess Cd included), mM.
    population : MSC and NC concentrations and the NC size distribution.
    """

    conditions: ReactorConditions
    reaction_time_s: float
    nucleation_time_s: float
    precursor_mm: float
    monomer_mm: float
    cd_precursor_mm: float
    population: CdSePopulation = field(default_factory=CdSePopulation)

    @property
    def max_temperature_c(self) -> float:
        """Highest temperature the mixture has seen (the precursor mesophase melts above ≈ 50 °C)."""
        return max(self.conditions.nucleation_temperature_c, self.conditions.growth_temperature_c)

    @property
    def particle_cdse_mm(self) -> float:
        """CdSe units in clusters and NCs, mM."""
        pop = self.population
        return sum(pop.msc_cdse_mm(f.name) for f in MSC_FAMILIES) + pop.nc_cdse_mm

    def cdse_fraction(self, species: str) -> float:
        """Fraction of the particle-bound CdSe in ``species`` (an MSC family name or "NC")."""
        total = self.particle_cdse_mm
        if total <= 0:
            return 0.0
        pop = self.population
        held = pop.nc_cdse_mm if species == "NC" else pop.msc_cdse_mm(species)
        return held / total

    @property
    def nc_polydispersity(self) -> float:
        """Relative standard deviation of the NC diameters (0 without NCs)."""
        pop = self.population
        return pop.nc_std_diameter_nm / pop.nc_mean_diameter_nm if pop.nc_mean_diameter_nm > 0 else 0.0


# --------------------------------------------------------------------------- integration
_STATE = ("P", "M", "X350", "X380", "X403", "X437", "X465", "N", "nu1", "nu2")
_MSC_NAMES = ("CdSe-350", "CdSe-380", "CdSe-403", "CdSe-437", "CdSe-465")
_UNITS = np.array([MSC_BY_NAME[n].units for n in _MSC_NAMES], dtype=float)


def nc_distribution(n: float, nu1: float, nu2: float) -> tuple[float, float]:
    """Mean and standard deviation (nm) of the Gaussian NC diameter distribution with
    N = ``n`` NCs, Σ D² = ``nu1`` and Σ D⁴ = ``nu2`` (any common volume unit)."""
    if n <= 0:
        return 0.0, 0.0
    u = nu1 / n
    mean = max(1.5 * u * u - 0.5 * nu2 / n, 1e-12) ** 0.25
    return mean, math.sqrt(max(u - mean * mean, 0.0))


def _nc_third_moment_rate(n: float, nu1: float, nu2: float, dn: float, dnu1: float, dnu2: float) -> float:
    """d/dt of Σ D³ = N (μ³ + 3 μ σ²) = N (3 ū q^¼ − 2 q^¾), q = 1.5 ū² − ν₂/(2N), by the chain rule."""
    u, e2 = nu1 / n, nu2 / n
    q = max(1.5 * u * u - 0.5 * e2, 1e-12)
    h = 3.0 * u * q**0.25 - 2.0 * q**0.75
    h_u = 3.0 * q**0.25
    h_q = 0.75 * u * q**-0.75 - 1.5 * q**-0.25
    return (h - u * h_u + h_q * (0.5 * e2 - 3.0 * u * u)) * dn + (h_u + 3.0 * u * h_q) * dnu1 - 0.5 * h_q * dnu2


def _rhs(temperature_c: float, w: PathwayWeights, kin: CdSeKinetics):
    """Right-hand side of the ODEs at one temperature (a closure over its rate constants)."""
    n350, n380, n403, n437, n465 = _UNITS
    d0, s0 = kin.nc_birth_diameter_nm, kin.nc_birth_spread_nm
    u0 = d0**2 + s0**2  # ⟨D²⟩ and ⟨D⁴⟩ of newborn NCs
    u0_2 = d0**4 + 6.0 * d0**2 * s0**2 + 3.0 * s0**4
    newborn_third = d0**3 + 3.0 * d0 * s0**2
    unit_per_nm3 = float(cdse_units(1.0))
    kp = kin.precursor(temperature_c) * activation(temperature_c, kin)
    kj = kin.nucleation(temperature_c)
    ka = kin.to_403(temperature_c) * (1.0 - w.high)
    kb = kin.to_380(temperature_c) * w.high
    kc = kin.from_380_to_437(temperature_c)
    k437 = kin.to_437(temperature_c)
    kn403 = kin.nc_from_403(temperature_c) * w.window
    k465 = kin.to_465(temperature_c) * (1.0 - w.window)
    kn465 = kin.nc_from_465(temperature_c) * (1.0 - w.high)  # high regime: NCs from nuclei only
    kn350 = kin.nc_from_350(temperature_c) * w.high
    kg = kin.nc_growth(temperature_c)
    kd = kin.dissolution(temperature_c) * w.high
    km, ks = kin.depletion_mm, kin.saturation_mm
    k465_half = kin.nc_465_half_mm

    def f(_t: float, y: np.ndarray) -> list[float]:
        p, m, x350, x380, x403, x437, x465, n, nu1, _nu2 = y
        m = max(m, 0.0)
        ms = m / (1.0 + m / ks)
        ra, rb, rc = ka * x350 * ms, kb * x350 * ms, kc * x380 * ms
        r437, rn403 = k437 * x403 * ms, kn403 * x403 * ms
        r465, rn465, rn350 = k465 * x437 * ms, kn465 * x465 * m / (m + k465_half), kn350 * x350 * ms
        nucleation = kj * m * m
        g = kd * km / (km + m)
        births = rn403 + rn465 + rn350
        growth = 2.0 * kg * m  # du/dt, u = D²
        dn, dnu1, dnu2 = births, births * u0 + growth * n, births * u0_2 + 2.0 * growth * nu1
        if n > 1e-12:
            nc_third = _nc_third_moment_rate(n, nu1, y[9], dn, dnu1, dnu2)
        else:
            nc_third = births * newborn_third
        released = g * (n350 * x350 + n380 * x380 + n403 * x403 + n437 * x437 + n465 * x465)
        used = (n350 * nucleation + (n403 - n350) * ra + (n380 - n350) * rb + (n437 - n380) * rc
                + (n437 - n403) * r437 - n403 * rn403 + (n465 - n437) * r465 - n465 * rn465 - n350 * rn350)
        consumption = (used - released + unit_per_nm3 * nc_third) / 1000.0
        return [-kp * p, kp * p - consumption,
                nucleation - ra - rb - rn350 - g * x350, rb - rc - g * x380, ra - r437 - rn403 - g * x403,
                rc + r437 - r465 - g * x437, r465 - rn465 - g * x465, dn, dnu1, dnu2]

    return f


def simulate(conditions: ReactorConditions, reactor: FlowReactor = DEFAULT_REACTOR,
             kinetics: CdSeKinetics = DEFAULT_KINETICS) -> ReactorState:
    """Steady-state composition at the flow cells for ``conditions``.

    The mixture spends t·V_nuc/V at T_nuc, then the rest of the reaction time t at T_growth.
    """
    t_total = reaction_time_s(conditions.total_flow_ml_min, reactor)
    t_nuc = t_total * reactor.nucleation_fraction
    t_n, t_g = conditions.nucleation_temperature_c, conditions.growth_temperature_c
    w = pathway_weights(t_n, kinetics)
    p0 = min(conditions.cd_mm, conditions.se_mm)
    n0 = min(nuclei_um(t_n, kinetics), 0.5 * 1000.0 * p0 / _UNITS[0])
    y = np.zeros(len(_STATE))
    y[0] = p0 - _UNITS[0] * n0 / 1000.0
    y[2] = n0
    for (t0, t1), temp in (((0.0, t_nuc), t_n), ((t_nuc, t_total), t_g)):
        sol = solve_ivp(_rhs(temp, w, kinetics), (t0, t1), y, method="LSODA", rtol=1e-6, atol=1e-10)
        if not sol.success:
            raise RuntimeError(f"The reactor ODEs failed at {temp:g} °C: {sol.message}")
        y = np.maximum(sol.y[:, -1], 0.0)
    p, m, *clusters = y[:7]
    n = float(y[7]) if y[7] > 1e-9 else 0.0
    mean, spread = nc_distribution(n, y[8], y[9])
    population = CdSePopulation({k: float(v) for k, v in zip(_MSC_NAMES, clusters)}, n, mean, spread)
    converted = p0 - p
    return ReactorState(conditions, t_total, t_nuc, float(p), float(m),
                        float(max(conditions.cd_mm - converted, 0.0)), population)


__all__ = [
    "Arrhenius",
    "CdSeKinetics",
    "DEFAULT_KINETICS",
    "DEFAULT_REACTOR",
    "FlowReactor",
    "PathwayWeights",
    "ReactorConditions",
    "ReactorState",
    "nc_distribution",
    "nuclei_um",
    "pathway_weights",
    "reaction_time_s",
    "simulate",
    "total_flow_ml_min",
]
