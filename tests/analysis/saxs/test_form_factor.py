"""The form factor fitted to a curve averaged over shells of q (the size of spheres in a lattice)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mc_beamline.analysis.saxs.form_factor import fit_shell_averaged_form_factor
from mc_beamline.analysis.saxs.phases import sphere_form_factor_poly


def _comb(q: np.ndarray, spacing: float) -> np.ndarray:
    """A structure factor of sharp peaks every ``spacing`` nm⁻¹ between which it is far
    below 1, rising with q like the diffuse scattering of a distorted crystal (0.01 at
    1 nm⁻¹, 0.5 at 6 nm⁻¹), and whose average over a spacing is 1 (the peaks carry what is
    missing between them)."""
    width = 0.01
    floor = 0.01 + 0.49 * np.clip((q - 1.0) / 5.0, 0.0, 1.0) ** 2
    centres = np.arange(1.0, q[-1] + spacing, spacing)
    amplitude = (1.0 - np.interp(centres, q, floor)) * spacing / (width * math.sqrt(2.0 * math.pi))
    peaks = amplitude[None, :] * np.exp(-0.5 * ((q[:, None] - centres[None, :]) / width) ** 2)
    return floor + peaks.sum(axis=1)


@pytest.mark.parametrize("radius, pd", [(2.3, 0.05), (2.3, 0.10), (4.0, 0.10)])
def test_shell_average_recovers_the_radius_under_sharp_peaks_on_a_depressed_structure_factor(radius, pd):
    q = np.arange(0.2, 6.0001, 0.005)
    intensity = 1e3 * sphere_form_factor_poly(q, radius, pd)[0] * _comb(q, 0.12) + 1e-3
    fit = fit_shell_averaged_form_factor(q, intensity, 0.01 * intensity, q_min_nm=1.0, width_nm=0.6,
                                         radius_range_nm=(0.5 * radius, 1.5 * radius))
    assert fit is not None
    assert fit.radius_nm == pytest.approx(radius, rel=0.02)


def test_shell_average_needs_enough_windows():
    q = np.arange(0.2, 2.0001, 0.01)
    intensity = sphere_form_factor_poly(q, 2.0, 0.1)[0]
    assert fit_shell_averaged_form_factor(q, intensity, 0.01 * intensity, q_min_nm=1.0, width_nm=1.6,
                                          radius_range_nm=(1.0, 3.0)) is None
