"""Records of what a UV-Vis spectrum shows (cluster peaks, the NC exciton), the width limits
of a cluster peak and the Gaussian profiles they are fitted with.

Shared by the identification (:mod:`mc_beamline.analysis.uvvis.spectrum`) and the joint
band model (:mod:`mc_beamline.analysis.uvvis.band_model`). Wavelengths and widths in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.materials.cdse import yu_diameter_nm, yu_diameter_slope

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian over its σ, 2.3548."""
MIN_MSC_FWHM_NM = 5.0
"""Narrower 'peaks' are noise: MSC absorption peaks are 8–15 nm wide."""
HIDDEN_MSC_MAX_FWHM_NM = 16.0
"""Widest cluster peak looked for under an NC band (nm): the NC band itself is wider."""


@dataclass(frozen=True)
class MscPeak:
    """A narrow absorption peak assigned to a magic-size-cluster family.

    Attributes
    ----------
    family : family name, e.g. "CdSe-437".
    wavelength_nm : fitted peak position, nm.
    fwhm_nm : fitted full width at half maximum, nm.
    absorbance : peak height above the local background (absorbance units).
    wavelength_err_nm : standard error of the position from the fit covariance, nm.
    """

    family: str
    wavelength_nm: float
    fwhm_nm: float
    absorbance: float
    wavelength_err_nm: float = float("nan")

    def as_dict(self) -> dict:
        """The attributes by name (nm and absorbance units), for RESULT.json."""
        return {"family": self.family, "wavelength_nm": self.wavelength_nm,
                "wavelength_nm_err": self.wavelength_err_nm, "fwhm_nm": self.fwhm_nm,
                "absorbance": self.absorbance}


@dataclass(frozen=True)
class NcExciton:
    """First excitonic absorption of the regular nanocrystals.

    Attributes
    ----------
    wavelength_nm : position of the first-exciton band, nm.
    diameter_nm : Yu-curve diameter at that wavelength, nm.
    fwhm_nm : FWHM of the band, nm.
    wavelength_err_nm : standard error of the wavelength from the fit covariance, nm.
    diameter_err_nm : that error carried through the Yu curve, nm.
    """

    wavelength_nm: float
    diameter_nm: float
    fwhm_nm: float
    wavelength_err_nm: float = float("nan")
    diameter_err_nm: float = float("nan")

    def as_dict(self) -> dict:
        """The attributes by name (nm), for RESULT.json."""
        return {"wavelength_nm": self.wavelength_nm, "wavelength_nm_err": self.wavelength_err_nm,
                "diameter_nm": self.diameter_nm, "diameter_nm_err": self.diameter_err_nm, "fwhm_nm": self.fwhm_nm}

    @classmethod
    def at(cls, wavelength_nm: float, fwhm_nm: float, wavelength_err_nm: float) -> NcExciton:
        """The exciton at ``wavelength_nm`` sized by the Yu curve, errors carried over."""
        return cls(float(wavelength_nm), float(yu_diameter_nm(wavelength_nm)), float(fwhm_nm),
                   float(wavelength_err_nm), float(abs(yu_diameter_slope(wavelength_nm)) * wavelength_err_nm))


def covariance(jac: np.ndarray, chi2: float, dof: int) -> np.ndarray:
    """Covariance of least-squares parameters, (JᵀJ)⁻¹ · max(χ²/dof, 1) (J of the
    σ-weighted residuals)."""
    return np.linalg.pinv(jac.T @ jac) * max(chi2 / max(dof, 1), 1.0)


def gaussians(x: np.ndarray, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Unit-height Gaussians, one column per (centre, σ), at ``x`` (all in the same unit)."""
    return np.exp(-0.5 * ((x[:, None] - centres[None, :]) / sigmas[None, :]) ** 2)


__all__ = [
    "FWHM_PER_SIGMA",
    "HIDDEN_MSC_MAX_FWHM_NM",
    "MIN_MSC_FWHM_NM",
    "MscPeak",
    "NcExciton",
    "covariance",
    "gaussians",
]
