"""Literature data on CdSe: h·c, the seed-002 cluster families and the Yu et al. sizing curve."""

import numpy as np
import pytest

from mc_beamline.materials.cdse import (
    BULK_GAP_EV,
    HC_EV_NM,
    MSC_FAMILY_NM,
    yu_diameter_nm,
    yu_extinction_coefficient,
    yu_wavelength_nm,
)


def test_hc_and_bulk_gap():
    assert HC_EV_NM == pytest.approx(6.62607015e-34 * 299792458.0 / 1.602176634e-19 * 1e9, rel=1e-9)
    assert HC_EV_NM / BULK_GAP_EV == pytest.approx(712.6, abs=0.1)  # bulk CdSe absorption edge, nm


def test_families_increase_in_wavelength():
    positions = list(MSC_FAMILY_NM.values())
    assert positions == sorted(positions) and len(set(positions)) == 5


def test_yu_curve_scalar_and_array():
    assert isinstance(yu_diameter_nm(467.0), float) and isinstance(yu_extinction_coefficient(2.0), float)
    lam = np.array([467.0, 572.0])
    assert yu_diameter_nm(lam) == pytest.approx([2.075, 3.57], abs=0.005)
    assert yu_extinction_coefficient(np.array([1.0, 2.0])) == pytest.approx([5857.0, 5857.0 * 2.0**2.65])


def test_yu_wavelength_inverts_the_sizing_curve():
    lam = np.linspace(330.0, 710.0, 77)
    assert yu_wavelength_nm(yu_diameter_nm(lam)) == pytest.approx(lam, abs=1e-3)
    assert isinstance(yu_wavelength_nm(2.06), float)
    assert yu_wavelength_nm(2.06) == pytest.approx(465.0, abs=0.1)


def test_yu_wavelength_is_clipped_outside_320_720_nm():
    assert yu_wavelength_nm(0.1) == 320.0
    assert yu_wavelength_nm(50.0) == 720.0
