"""MSC families and NC sizes on spectra of a second, deliberately different band model.

The spectra come from :mod:`alt_band_model` (Lorentzian lines, four transitions at other
offsets, a (E − E1 − 0.25 eV)^1.5 continuum, a λ⁻² scattering baseline), which the analysis
does not know. Every combination of the five MSC families (peak 0.04 absorbance, at least
6 noise σ per point on the highest absorbance under them) is put on NCs of 2.0–4.0 nm:
each combination once, the diameters in turn, so that each diameter meets about six
combinations. Targets: no family reported that is not there, none missed, and the NC
diameter within 0.06 nm of the Yu diameter at the first transition's true maximum.
"""

from __future__ import annotations

import numpy as np

from mc_beamline.analysis.uvvis.spectrum import analyse_spectrum
from mc_beamline.materials.cdse import yu_diameter_nm
from tests.analysis.uvvis.alt_band_model import VALIDATION_DIAMETERS_NM, first_band_peak_nm, validation_spectra

LAM = np.arange(300.0, 700.01, 0.5)
D_TOLERANCE_NM = 0.06


def test_every_msc_combination_on_nc_of_2_to_4_nm():
    truth = {d: float(yu_diameter_nm(first_band_peak_nm(LAM, d))) for d in VALIDATION_DIAMETERS_NM}
    failures = []
    for d, combo, absorbance in validation_spectra(LAM):
        result = analyse_spectrum(LAM, absorbance)
        false, missed = result.families - set(combo), set(combo) - result.families
        err = None if result.nc is None else result.nc.diameter_nm - truth[d]
        if false or missed or err is None or abs(err) > D_TOLERANCE_NM:
            failures.append(f"D {d} nm, families {sorted(combo)}: false {sorted(false)}, missed {sorted(missed)}, "
                            f"diameter error {'no NC' if err is None else f'{err:+.3f} nm'}")
        else:
            assert result.nc.diameter_err_nm > 0.0
            assert all(p.wavelength_err_nm > 0.0 for p in result.msc)
    assert not failures, "\n".join(failures)
