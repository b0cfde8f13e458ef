"""Literature data on CdSe used by both the simulation (physics) and the analysis.

* h·c in eV·nm, to convert photon wavelengths to energies.
* The room-temperature band gap of bulk CdSe.
* The absorption maxima of the magic-size-cluster (MSC) families of seed 002 (Palencia
  et al., Nanoscale 2020, 12, 22928, Fig. 4).
* The sizing curve of Yu et al. (Chem. Mater. 2003, 15, 2854), λ = first-exciton peak in nm::

      D(λ) = 1.6122e-9 λ⁴ − 2.6575e-6 λ³ + 1.6242e-3 λ² − 0.4277 λ + 41.57   (nm)
      ε(D) = 5857 · D^2.65                                                  (M⁻¹ cm⁻¹)

  D(467 nm) = 2.075 nm, D(465 nm) = 2.06 nm, D(572 nm) = 3.57 nm. The curve is monotonic
  above 286 nm.
"""

from __future__ import annotations

import numpy as np

HC_EV_NM = 1239.841984
"""h·c in eV·nm (CODATA 2018, exact in the 2019 SI): photon energy (eV) = HC_EV_NM / wavelength (nm)."""

BULK_GAP_EV = 1.74
"""Band gap of bulk (wurtzite) CdSe at room temperature, eV (the usual handbook value)."""

MSC_FAMILY_NM: dict[str, float] = {
    "CdSe-350": 350.0,
    "CdSe-380": 380.0,
    "CdSe-403": 403.0,
    "CdSe-437": 437.0,
    "CdSe-465": 465.0,
}
"""Absorption maxima (nm) of the magic-size-cluster families of seed 002 (Palencia et al.,
Nanoscale 2020, Fig. 4; the paper also writes 382 and 467 nm for the second and last family)."""


def yu_diameter_nm(wavelength_nm: float | np.ndarray) -> float | np.ndarray:
    """CdSe NC diameter (nm) from its first-exciton wavelength (nm), Yu et al. 2003."""
    lam = np.asarray(wavelength_nm, dtype=float)
    d = (((1.6122e-9 * lam - 2.6575e-6) * lam + 1.6242e-3) * lam - 0.4277) * lam + 41.57
    return float(d) if d.ndim == 0 else d


def yu_diameter_slope(wavelength_nm: float | np.ndarray) -> float | np.ndarray:
    """dD/dλ of the Yu curve (nm of diameter per nm of wavelength), to carry a wavelength
    uncertainty over to the diameter."""
    lam = np.asarray(wavelength_nm, dtype=float)
    s = ((4 * 1.6122e-9 * lam - 3 * 2.6575e-6) * lam + 2 * 1.6242e-3) * lam - 0.4277
    return float(s) if s.ndim == 0 else s


def yu_extinction_coefficient(diameter_nm: float | np.ndarray) -> float | np.ndarray:
    """Molar extinction coefficient (M⁻¹ cm⁻¹) at the first exciton of a CdSe NC of
    ``diameter_nm`` (nm), per particle, Yu et al. 2003."""
    eps = 5857.0 * np.asarray(diameter_nm, dtype=float) ** 2.65
    return float(eps) if eps.ndim == 0 else eps


_YU_GRID_NM = np.linspace(320.0, 720.0, 8001)
_YU_GRID_D = yu_diameter_nm(_YU_GRID_NM)


def yu_wavelength_nm(diameter_nm: float | np.ndarray) -> float | np.ndarray:
    """First-exciton wavelength (nm) of a CdSe NC of ``diameter_nm`` (nm): the Yu curve
    inverted by interpolation on a 0.05 nm grid.

    Defined for 320–720 nm (D ≈ 0.85–17 nm), where the curve is monotonic; outside it the
    wavelength is clipped to that range.
    """
    d = np.asarray(diameter_nm, dtype=float)
    out = np.interp(d, _YU_GRID_D, _YU_GRID_NM)
    return float(out) if out.ndim == 0 else out


__all__ = [
    "BULK_GAP_EV",
    "HC_EV_NM",
    "MSC_FAMILY_NM",
    "yu_diameter_slope",
    "yu_diameter_nm",
    "yu_extinction_coefficient",
    "yu_wavelength_nm",
]
