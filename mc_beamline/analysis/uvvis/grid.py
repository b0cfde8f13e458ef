"""The sampled absorption spectrum that the UV-Vis fits work on, and the smooth background
basis they share (wavelengths in nm)."""

from __future__ import annotations

import math

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


def spline_basis(x: np.ndarray, knot_spacing: float) -> np.ndarray:
    """Uniform cubic B-spline basis on ``x`` with knots every ``knot_spacing`` (same units).

    B(u) = (4 − 6u² + 3|u|³)/6 for |u| < 1, (2 − |u|)³/6 for 1 ≤ |u| < 2, with
    u = (x − c_j)/spacing and centres c_j from one spacing before ``x[0]`` to one after ``x[-1]``.
    """
    n_int = max(int(math.ceil((x[-1] - x[0]) / knot_spacing)), 1)
    spacing = (x[-1] - x[0]) / n_int if x[-1] > x[0] else knot_spacing
    centres = x[0] + spacing * np.arange(-1, n_int + 2)
    u = np.abs((x[:, None] - centres[None, :]) / spacing)
    return np.where(u < 1.0, (4.0 - 6.0 * u**2 + 3.0 * u**3) / 6.0, np.where(u < 2.0, (2.0 - u) ** 3 / 6.0, 0.0))


__all__ = ["SpectrumGrid", "spline_basis"]
