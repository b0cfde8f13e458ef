"""A second CdSe absorption model, deliberately unlike the project's own, for validation.

Unlike :mod:`mc_beamline.physics.absorption` and the fitted band model of the analysis, the
NC ensemble here has four transitions per size with Lorentzian (not Gaussian) homogeneous
lines: the first exciton at E1 = hc/λ_Yu(D), a weak one 0.08 eV up, 2S3/2–1Se at
E1 + 0.10 + 0.10·(E1 − Eg) and 1P at E1 + 0.30 + 0.15·(E1 − Eg) (Eg = 1.74 eV), with other
strengths and widths; a continuum rising as (E − E1 − 0.25 eV)^1.5 with an Urbach edge;
a Gaussian size distribution (7 % relative σ) weighted by ε_Yu(D); a scattering baseline
c·(400 nm/λ)² + offset (not λ⁻⁴). MSC peaks are pseudo-Voigt in photon energy (30 %
Lorentzian) of 8–12 nm FWHM at the family positions. Wavelengths in nm, energies in eV,
absorbance decadic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from mc_beamline.materials.cdse import BULK_GAP_EV, HC_EV_NM, MSC_FAMILY_NM, yu_extinction_coefficient, \
    yu_wavelength_nm

TRANSITIONS = ((0.0, 0.0, 1.0, 0.028), (0.08, 0.0, 0.15, 0.035), (0.10, 0.10, 0.55, 0.045), (0.30, 0.15, 0.9, 0.06))
"""(offset eV, × (E1 − Eg), relative strength, Lorentzian HWHM eV) of each NC transition."""
SIZE_SPREAD = 0.07
SIZE_NODES = 401
"""Diameters of the size-distribution quadrature (±5 σ): at 2 nm, 0.003 eV apart in E1."""
MSC_FWHM_NM = {"CdSe-350": 8.0, "CdSe-380": 9.0, "CdSe-403": 10.0, "CdSe-437": 11.0, "CdSe-465": 12.0}


def _lorentz(e, centre, hwhm):
    return hwhm**2 / ((e - centre) ** 2 + hwhm**2)


def nc_absorbance(lam_nm: np.ndarray, diameter_nm: float, first_band_peak: float) -> tuple[np.ndarray, np.ndarray]:
    """NC ensemble absorbance (all transitions + continuum) and its first transition alone,
    scaled so that the first transition alone peaks at ``first_band_peak``."""
    e = HC_EV_NM / np.asarray(lam_nm, dtype=float)
    # A dense uniform quadrature of the size distribution: at 2 nm the first transition moves
    # by ~0.6 eV per nm of diameter, so Gauss–Hermite nodes (0.03–0.05 eV apart at 7 %) would
    # leave a comb of Lorentzians narrower than the MSC peaks instead of a smooth band.
    x = np.linspace(-5.0, 5.0, SIZE_NODES)
    w = np.exp(-0.5 * x * x)
    d = diameter_nm * (1.0 + SIZE_SPREAD * x)
    weight = w / w.sum() * yu_extinction_coefficient(d)
    e1 = HC_EV_NM / yu_wavelength_nm(d)
    ec = e1 - BULK_GAP_EV
    first = np.zeros_like(e)
    total = np.zeros_like(e)
    for k, (off, slope, strength, hwhm) in enumerate(TRANSITIONS):
        line = _lorentz(e[:, None], (e1 + off + slope * ec)[None, :], hwhm) @ (weight * strength)
        total += line
        if k == 0:
            first = line
    onset = e1 + 0.25
    z = (e[:, None] - onset[None, :]) / 0.05
    cont = (0.05 * np.logaddexp(0.0, z)) ** 1.5 @ (weight * 2.5)
    total += cont
    scale = first_band_peak / first.max()
    return total * scale, first * scale


def first_band_peak_nm(lam_nm: np.ndarray, diameter_nm: float) -> float:
    """Wavelength of the maximum of the ensemble's first transition (the truth for sizing)."""
    fine = np.linspace(float(lam_nm[0]), float(lam_nm[-1]), 20001)
    return float(fine[np.argmax(nc_absorbance(fine, diameter_nm, 1.0)[1])])


def msc_absorbance(lam_nm: np.ndarray, family: str, height: float) -> np.ndarray:
    """Pseudo-Voigt (30 % Lorentzian) in photon energy at the family position, FWHM from
    :data:`MSC_FWHM_NM`, peak ``height``."""
    e = HC_EV_NM / np.asarray(lam_nm, dtype=float)
    pos = MSC_FAMILY_NM[family]
    e0 = HC_EV_NM / pos
    hw = 0.5 * (HC_EV_NM / (pos - MSC_FWHM_NM[family] / 2) - HC_EV_NM / (pos + MSC_FWHM_NM[family] / 2))
    gauss = np.exp(-np.log(2.0) * ((e - e0) / hw) ** 2)
    return height * (0.7 * gauss + 0.3 * _lorentz(e, e0, hw))


def baseline(lam_nm: np.ndarray, scatter: float = 0.05, offset: float = 0.01) -> np.ndarray:
    """Scattering baseline c (400/λ)² + offset."""
    return scatter * (400.0 / np.asarray(lam_nm, dtype=float)) ** 2 + offset


def noise_sigma(clean: np.ndarray) -> np.ndarray:
    """Shot noise of a spectrometer with 2·10⁵ counts at zero absorbance (absorbance units)."""
    return np.log10(np.e) * np.sqrt((10.0**clean + 1.0) / 2e5)


def spectrum(lam_nm: np.ndarray, diameter_nm: float | None, families: dict[str, float], seed: int,
             nc_peak: float = 0.3) -> np.ndarray:
    """A noisy spectrum: NCs of ``diameter_nm`` (None: none), MSC families {name: height}."""
    clean = baseline(lam_nm)
    if diameter_nm is not None:
        clean = clean + nc_absorbance(lam_nm, diameter_nm, nc_peak)[0]
    for name, height in families.items():
        clean = clean + msc_absorbance(lam_nm, name, height)
    return clean + noise_sigma(clean) * np.random.default_rng(seed).standard_normal(clean.size)


VALIDATION_DIAMETERS_NM = (2.0, 2.5, 3.0, 3.5, 4.0)
VALIDATION_MSC_HEIGHT = 0.04
"""Peak absorbance of each MSC family in the validation set."""
MSC_COMBINATIONS = [c for r in range(len(MSC_FAMILY_NM) + 1) for c in itertools.combinations(MSC_FAMILY_NM, r)]


def validation_spectra(lam_nm: np.ndarray) -> Iterator[tuple[float, tuple[str, ...], np.ndarray]]:
    """(NC diameter nm, MSC families, noisy spectrum) for every combination of the MSC
    families once, on NCs of 2.0–4.0 nm in turn (each diameter meets about six combinations)."""
    for i, combo in enumerate(MSC_COMBINATIONS):
        d = VALIDATION_DIAMETERS_NM[i % len(VALIDATION_DIAMETERS_NM)]
        yield d, combo, spectrum(lam_nm, d, {c: VALIDATION_MSC_HEIGHT for c in combo}, seed=i)
