"""The sampled absorption spectrum that the UV-Vis fits work on (wavelengths in nm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpectrumGrid:
    """An absorption spectrum on a uniform wavelength grid, with its noise.

    Attributes
    ----------
    wavelength_nm : increasing, uniformly spaced wavelengths, nm.
    absorbance : decadic absorbance at each wavelength.
    sigma : noise σ of each absorbance (absorbance units).
    step_nm : grid spacing, nm.
    """

    wavelength_nm: np.ndarray
    absorbance: np.ndarray
    sigma: np.ndarray
    step_nm: float


__all__ = ["SpectrumGrid"]
