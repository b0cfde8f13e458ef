"""UV-Vis absorbance of a CdSe reaction mixture in the optical flow cell.

A(λ) = Σ_MSC + NC excitonic bands + NC and MSC continua + cell baseline, on any
wavelength grid (nm; 300–700 nm is what the flow-cell spectrometer records).

* MSC family: one narrow Gaussian peak at its fixed position (FWHM 8–12 nm, in
  :data:`~mc_beamline.physics.cdse.MSC_FAMILIES`), peak extinction per cluster
  ``MSC_PEAK_GAIN`` · ε_Yu(d_Abs), plus an interband continuum that starts
  ``MSC_CONTINUUM_OFFSET_EV`` above the peak.
* NC of diameter D (nm): first exciton at E1 = hc/λ_Yu(D); the second and third
  excitonic features (2S3/2–1Se and 1P3/2–1Pe type) at E1 + 0.07 + 0.13·Ec and
  E1 + 0.25 + 0.35·Ec (Ec = E1 − 1.74 eV, the confinement energy), broader and seen
  as shoulders; and a continuum per CdSe unit that rises from E1 + 0.35 eV to the blue.
  Each band is a Gaussian in photon energy; the ensemble sums the bands over the size
  distribution (Gauss–Hermite nodes), which sets the inhomogeneous width.
* Baseline: a constant offset plus Rayleigh-like scattering ∝ λ⁻⁴.
* Noise: photon noise of a spectrometer whose reference spectrum has ``reference_counts``
  counts per pixel: σ_A = log10(e)·sqrt((10^A + 1)/N0).

Absorbances are decadic, for ``path_cm`` of optical path (default 1 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.materials.cdse import (
    BULK_GAP_EV,
    HC_EV_NM,
    yu_extinction_coefficient,
    yu_wavelength_nm,
)
from mc_beamline.physics.cdse import MSC_FAMILIES, CdSePopulation, cdse_units

NC_BAND1_SIGMA_EV = 0.04
NC_BAND1_GAIN = 1.3
"""Peak of one NC's first-exciton band relative to ε_Yu(D): the ensemble of a typical
synthesis (≈ 8 % size spread) then peaks near ε_Yu."""
NC_BAND2 = (0.3, 0.07)
"""Second excitonic band: (peak relative to the first, sigma in eV)."""
NC_BAND3 = (0.6, 0.12)
"""Third excitonic band: (peak relative to the first, sigma in eV)."""
CONTINUUM_PER_UNIT = 1000.0
"""Slope of the interband continuum per CdSe unit, M⁻¹ cm⁻¹ per eV above its onset."""
CONTINUUM_ONSET_EV = 0.35
CONTINUUM_SOFTNESS_EV = 0.10
MSC_PEAK_GAIN = 1.5
MSC_CONTINUUM_OFFSET_EV = 0.35
MSC_CONTINUUM_FRACTION = 0.6
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class CellBaseline:
    """Baseline of the optical flow cell: offset + scattering·(400 nm / λ)⁴ (absorbance units)."""

    offset: float = 0.004
    scattering_at_400nm: float = 0.012

    def __call__(self, wavelength_nm: np.ndarray) -> np.ndarray:
        return self.offset + self.scattering_at_400nm * (400.0 / wavelength_nm) ** 4


def nc_band_energies_ev(diameter_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies (eV) of the first three excitonic bands of CdSe NCs of ``diameter_nm`` (nm)."""
    e1 = HC_EV_NM / np.asarray(yu_wavelength_nm(diameter_nm), dtype=float)
    ec = np.maximum(e1 - BULK_GAP_EV, 0.0)
    return e1, e1 + 0.07 + 0.13 * ec, e1 + 0.25 + 0.35 * ec


def _gauss(x: np.ndarray, centre: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _continuum(energy_ev: np.ndarray, onset_ev: np.ndarray) -> np.ndarray:
    """Soft-onset linear continuum (eV above onset), shape (nodes, wavelengths)."""
    z = (energy_ev - onset_ev) / CONTINUUM_SOFTNESS_EV
    return CONTINUUM_SOFTNESS_EV * np.logaddexp(0.0, z)


def nc_first_exciton_band(population: CdSePopulation, wavelength_nm: np.ndarray,
                          path_cm: float = 0.1) -> np.ndarray:
    """Absorbance of the NCs' first excitonic band alone (the quantity the sizing curve reads)."""
    return _nc_bands(population, np.asarray(wavelength_nm, dtype=float), path_cm, first_only=True)


def _nc_bands(population: CdSePopulation, wavelength_nm: np.ndarray, path_cm: float,
              first_only: bool = False) -> np.ndarray:
    if population.nc_um <= 0 or population.nc_mean_diameter_nm <= 0:
        return np.zeros_like(wavelength_nm)
    d, w = population.nc_diameter_nodes()
    e1, e2, e3 = (e[:, None] for e in nc_band_energies_ev(d))
    energy = HC_EV_NM / wavelength_nm[None, :]
    molar = population.nc_um * 1e-6 * w[:, None]  # M of particles per node
    peak1 = NC_BAND1_GAIN * np.asarray(yu_extinction_coefficient(d))[:, None]
    eps = peak1 * _gauss(energy, e1, NC_BAND1_SIGMA_EV)
    if not first_only:
        eps = eps + peak1 * (NC_BAND2[0] * _gauss(energy, e2, NC_BAND2[1])
                             + NC_BAND3[0] * _gauss(energy, e3, NC_BAND3[1]))
        units = np.asarray(cdse_units(d))[:, None]
        eps = eps + units * CONTINUUM_PER_UNIT * _continuum(energy, e1 + CONTINUUM_ONSET_EV)
    return path_cm * (molar * eps).sum(axis=0)



def _msc_bands(population: CdSePopulation, wavelength_nm: np.ndarray, path_cm: float) -> np.ndarray:
    energy = HC_EV_NM / wavelength_nm
    out = np.zeros_like(wavelength_nm)
    for family in MSC_FAMILIES:
        conc = population.msc_um.get(family.name, 0.0) * 1e-6  # M of clusters
        if conc <= 0:
            continue
        sigma = family.fwhm_nm / FWHM_PER_SIGMA
        peak = MSC_PEAK_GAIN * yu_extinction_coefficient(family.diameter_nm)
        onset = HC_EV_NM / family.peak_nm + MSC_CONTINUUM_OFFSET_EV
        eps = peak * _gauss(wavelength_nm, family.peak_nm, sigma)
        eps = eps + MSC_CONTINUUM_FRACTION * family.units * CONTINUUM_PER_UNIT * _continuum(energy, onset)
        out += path_cm * conc * eps
    return out


def msc_peak_absorbance(population: CdSePopulation, name: str, path_cm: float = 0.1) -> float:
    """Height of the narrow peak of MSC family ``name`` above what lies under it."""
    family = next(f for f in MSC_FAMILIES if f.name == name)
    conc = population.msc_um.get(name, 0.0) * 1e-6
    return path_cm * conc * MSC_PEAK_GAIN * float(yu_extinction_coefficient(family.diameter_nm))


def absorbance(population: CdSePopulation, wavelength_nm: np.ndarray, path_cm: float = 0.1,
               baseline: CellBaseline | None = None) -> np.ndarray:
    """Noise-free absorbance of ``population`` at ``wavelength_nm`` (nm) for ``path_cm`` (cm)."""
    lam = np.asarray(wavelength_nm, dtype=float)
    if lam.ndim != 1 or lam.size == 0 or np.any(lam <= 0):
        raise ValueError("Wavelengths must be a non-empty 1-D array of positive values in nm.")
    base = (baseline or CellBaseline())(lam)
    return base + _msc_bands(population, lam, path_cm) + _nc_bands(population, lam, path_cm)


def nc_exciton_peak_nm(population: CdSePopulation) -> float | None:
    """Wavelength (nm) of the maximum of the NCs' first excitonic band, or None without NCs.

    This is where the sizing curve should be read: the band alone, without the rising
    continuum and the higher bands that shift the apparent maximum of A(λ).
    """
    if population.nc_um <= 0 or population.nc_mean_diameter_nm <= 0:
        return None
    centre = yu_wavelength_nm(population.nc_mean_diameter_nm)
    lam = np.arange(centre - 60.0, centre + 60.0, 0.02)
    band = nc_first_exciton_band(population, lam)
    i = int(np.argmax(band))
    if 0 < i < lam.size - 1:  # parabolic refinement of the grid maximum
        a, b, c = band[i - 1 : i + 2]
        denom = a - 2 * b + c
        return float(lam[i] + (0.5 * (a - c) / denom * 0.02 if denom < 0 else 0.0))
    return float(lam[i])


def noisy_absorbance(clean: np.ndarray, rng: np.random.Generator | int | None,
                     reference_counts: float = 2e5) -> np.ndarray:
    """``clean`` absorbance with the photon noise of a spectrometer (seeded by ``rng``)."""
    rng = np.random.default_rng(rng)
    clean = np.asarray(clean, dtype=float)
    sigma = math.log10(math.e) * np.sqrt((10.0 ** np.clip(clean, -1.0, 6.0) + 1.0) / reference_counts)
    return clean + sigma * rng.standard_normal(clean.shape)


__all__ = [
    "CellBaseline",
    "absorbance",
    "msc_peak_absorbance",
    "nc_band_energies_ev",
    "nc_exciton_peak_nm",
    "nc_first_exciton_band",
    "noisy_absorbance",
]
