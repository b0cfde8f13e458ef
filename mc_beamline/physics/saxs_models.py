"""Small-angle X-ray scattering of the flow-reactor mixture and its precursors (seed 002).

Absolute intensities in cm⁻¹, q in nm⁻¹ (q = 4π sin θ / λ).

* Spheres: I(q) = Δρ² Σ φ_i V_i P(q r_i), P = [3(sin x − x cos x)/x³]², x = q r. MSC families
  have a narrow radius spread (``MSC_RADIUS_SPREAD``); NCs the Gaussian diameter
  distribution of the population. Δρ: CdSe (4.2·10¹¹ cm⁻²) in octadecene (0.77·10¹¹ cm⁻²).
* Solvent: flat background.
* Cd precursor (cadmium carboxylate): a broad correlation maximum at 0.25 nm⁻¹
  (seed 002, Fig. 3 right: "broad maximum at around 0.2 nm⁻¹ to 0.3 nm⁻¹"),
  I = A κ⁴ / ((q² − q_m²)² + κ⁴), and, below its melting range, a lamellar mesophase with
  Bragg peaks at q_n = 2πn/d, d = 3.41 nm (1.84 and 3.69 nm⁻¹; a weak third order).
  The mesophase order falls with temperature as 1 / (1 + exp((T − 50 °C)/6 °C)),
  normalised to 1 at 25 °C: 0.5 at 50 °C ("weaker"), < 10⁻³ at 100 °C ("gone").
  Once melted (mixture heated in the reactor) it does not re-form within the flow time.
* Noise: counting statistics of ``counts_per_cm1`` counts per unit intensity per q bin
  (Poisson-like, Gaussian approximation); σ is returned with the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.physics.cdse import MSC_FAMILIES, CdSePopulation
from mc_beamline.physics.flow_reactor import ReactorState

AVOGADRO = 6.02214076e23
DELTA_RHO_CM2 = 3.45e11
"""X-ray scattering-length-density contrast of CdSe in octadecene, cm⁻²."""
MSC_RADIUS_SPREAD = 0.03
"""Relative standard deviation of MSC radii (a family is nearly monodisperse)."""
MESOPHASE_D_NM = 3.41
MESOPHASE_ORDERS = ((1, 1.0), (2, 0.35), (3, 0.04))
"""Lamellar Bragg orders and their intensities relative to the first."""
MESOPHASE_PEAK_CM1_PER_MM = 0.004
"""First-order peak height per mM of Cd precursor at full order, cm⁻¹."""
MESOPHASE_FWHM_NM = 0.06
MESOPHASE_MELT_C = 50.0
MESOPHASE_MELT_WIDTH_C = 6.0
CD_CORRELATION_Q_NM = 0.25
CD_CORRELATION_KAPPA_NM = 0.25
CD_CORRELATION_CM1_PER_MM = 0.008
SOLVENT_CM1 = 0.02


def sphere_form_factor(q_nm: np.ndarray, radius_nm: float | np.ndarray) -> np.ndarray:
    """Normalised sphere form factor P(q r) = [3(sin x − x cos x)/x³]², P(0) = 1."""
    x = np.asarray(q_nm, dtype=float) * np.asarray(radius_nm, dtype=float)
    small = np.abs(x) < 1e-3
    xs = np.where(small, 1.0, x)
    f = np.where(small, 1.0 - x**2 / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)
    return f * f


def sphere_volume_cm3(radius_nm: float | np.ndarray) -> float | np.ndarray:
    """Volume of a sphere of ``radius_nm`` (nm), in cm³."""
    return 4.0 / 3.0 * math.pi * np.asarray(radius_nm, dtype=float) ** 3 * 1e-21


def spheres_intensity(q_nm: np.ndarray, radius_nm: np.ndarray, number_per_cm3: np.ndarray) -> np.ndarray:
    """I(q) in cm⁻¹ of dilute spheres: radii (nm) and their number densities (cm⁻³)."""
    r = np.asarray(radius_nm, dtype=float)
    n = np.asarray(number_per_cm3, dtype=float)
    v = sphere_volume_cm3(r)
    p = sphere_form_factor(np.asarray(q_nm, dtype=float)[:, None], r[None, :])
    return DELTA_RHO_CM2**2 * (p * (n * v * v)[None, :]).sum(axis=1)


def _per_cm3(micromolar: float) -> float:
    return micromolar * 1e-6 * AVOGADRO / 1000.0


def particle_intensity(population: CdSePopulation, q_nm: np.ndarray) -> np.ndarray:
    """Scattering of the MSCs and NCs of ``population`` (cm⁻¹)."""
    x, w = np.polynomial.hermite_e.hermegauss(7)
    w = w / w.sum()
    radii, numbers = [], []
    for family in MSC_FAMILIES:
        conc = population.msc_um.get(family.name, 0.0)
        if conc > 0:
            radii.append(family.saxs_radius_nm * (1.0 + MSC_RADIUS_SPREAD * x))
            numbers.append(_per_cm3(conc) * w)
    if population.nc_um > 0 and population.nc_mean_diameter_nm > 0:
        d, wd = population.nc_diameter_nodes(21)
        radii.append(d / 2.0)
        numbers.append(_per_cm3(population.nc_um) * wd)
    if not radii:
        return np.zeros_like(np.asarray(q_nm, dtype=float))
    return spheres_intensity(q_nm, np.concatenate(radii), np.concatenate(numbers))


def mesophase_order(temperature_c: float) -> float:
    """Order of the lamellar Cd-precursor mesophase at ``temperature_c`` (°C), 1 at 25 °C."""

    def raw(t: float) -> float:
        return 1.0 / (1.0 + math.exp((t - MESOPHASE_MELT_C) / MESOPHASE_MELT_WIDTH_C))

    return raw(temperature_c) / raw(25.0)


def cd_precursor_intensity(q_nm: np.ndarray, cd_mm: float, temperature_c: float) -> np.ndarray:
    """Cd precursor at ``cd_mm`` (mM) and ``temperature_c`` (°C): correlation peak + mesophase (cm⁻¹)."""
    q = np.asarray(q_nm, dtype=float)
    k4 = CD_CORRELATION_KAPPA_NM**4
    out = CD_CORRELATION_CM1_PER_MM * cd_mm * k4 / ((q**2 - CD_CORRELATION_Q_NM**2) ** 2 + k4)
    order = mesophase_order(temperature_c)
    if order > 1e-6:
        sigma = MESOPHASE_FWHM_NM / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        q1 = 2.0 * math.pi / MESOPHASE_D_NM
        for n, rel in MESOPHASE_ORDERS:
            out = out + MESOPHASE_PEAK_CM1_PER_MM * cd_mm * order * rel * np.exp(-0.5 * ((q - n * q1) / sigma) ** 2)
    return out


def reaction_intensity(state: ReactorState, q_nm: np.ndarray) -> np.ndarray:
    """Noise-free I(q) (cm⁻¹) of the reaction mixture at the X-ray flow cell.

    Solvent + clusters and NCs + the Cd precursor left; its mesophase only if the
    mixture never got warmer than the mesophase melts (a cold reactor).
    """
    q = np.asarray(q_nm, dtype=float)
    return (SOLVENT_CM1 + particle_intensity(state.population, q)
            + cd_precursor_intensity(q, state.cd_precursor_mm, state.max_temperature_c))


def precursor_intensity(q_nm: np.ndarray, temperature_c: float, which: str = "mixture",
                        cd_stock_mm: float = 20.0) -> np.ndarray:
    """Noise-free I(q) (cm⁻¹) of the precursors before nucleation (seed 002, Fig. 3).

    ``which``: "mixture" (both pumps at equal flow: Cd at half its stock concentration),
    "cd" (the Cd precursor stock alone) or "se" (the Se precursor alone: solvent only).
    """
    q = np.asarray(q_nm, dtype=float)
    cd = {"mixture": 0.5 * cd_stock_mm, "cd": cd_stock_mm, "se": 0.0}.get(which)
    if cd is None:
        raise ValueError(f"which must be 'mixture', 'cd' or 'se', got {which!r}.")
    return SOLVENT_CM1 + cd_precursor_intensity(q, cd, temperature_c)


@dataclass(frozen=True)
class SaxsCurve:
    """A simulated SAXS measurement: q (nm⁻¹), intensity and its σ (cm⁻¹)."""

    q_nm: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray


def default_q_nm(n: int = 500) -> np.ndarray:
    """The simulated SAXS q grid: 0.1–5 nm⁻¹, linear."""
    return np.linspace(0.1, 5.0, n)


def measure(clean: np.ndarray, q_nm: np.ndarray, rng: np.random.Generator | int | None,
            counts_per_cm1: float = 2e6) -> SaxsCurve:
    """Counting noise on a noise-free I(q): Gaussian with σ = sqrt(I·c)/c, c = ``counts_per_cm1``."""
    rng = np.random.default_rng(rng)
    clean = np.asarray(clean, dtype=float)
    sigma = np.sqrt(np.maximum(clean, 0.0) * counts_per_cm1 + 1.0) / counts_per_cm1
    return SaxsCurve(np.asarray(q_nm, dtype=float), clean + sigma * rng.standard_normal(clean.shape), sigma)


__all__ = [
    "DELTA_RHO_CM2",
    "MESOPHASE_D_NM",
    "SOLVENT_CM1",
    "SaxsCurve",
    "cd_precursor_intensity",
    "default_q_nm",
    "measure",
    "mesophase_order",
    "particle_intensity",
    "precursor_intensity",
    "reaction_intensity",
    "sphere_form_factor",
    "sphere_volume_cm3",
    "spheres_intensity",
]
