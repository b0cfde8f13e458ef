"""Analysis of a flow-synthesis series: MSC families, NC size and SAXS sizes per condition.

One reactor condition (nucleation temperature, growth temperature, reaction time) gives one
UV-Vis spectrum and one SAXS curve. :class:`FlowSeriesAnalysis` analyses each as it comes
(:func:`~mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`,
:func:`~mc_beamline.analysis.saxs.sizes.size_distribution`,
:func:`~mc_beamline.analysis.saxs.sizes.detect_mesophase`) and keeps, per condition, what
the ``mc-beamline msc`` result holds for a spectrum plus the condition and the SAXS result:

    {"spectra": [{"label": "T_nuc 280 °C, T_growth 260 °C, 4.5 s",
                  "msc": [...], "nc": {...} | null,                       # as `mc-beamline msc`
                  "condition": {"nucleation_temperature_c", "growth_temperature_c",
                                "reaction_time_s"},
                  "saxs": {"size_distribution": {"radius_nm", "volume_fraction",
                                                 "mean_radius_nm"} | null,
                           "mesophase": {"d_nm", "peaks_q_nm"} | null}}]}

:meth:`FlowSeriesAnalysis.msc_map` arranges the results on the (nucleation temperature,
growth temperature) x reaction-time grid for the "MSC map" figure. Temperatures in °C,
times in s, wavelengths in nm, q in nm⁻¹, radii in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mc_beamline.analysis.saxs.sizes import detect_mesophase, size_distribution
from mc_beamline.analysis.uvvis.spectrum import MSC_FAMILY_NM, analyse_spectrum


@dataclass(frozen=True)
class FlowCondition:
    """Set points of one reactor condition: °C, °C, s."""

    nucleation_temperature_c: float
    growth_temperature_c: float
    reaction_time_s: float

    @property
    def label(self) -> str:
        return (f"T_nuc {self.nucleation_temperature_c:g} °C, T_growth {self.growth_temperature_c:g} °C, "
                f"{self.reaction_time_s:g} s")

    def as_dict(self) -> dict:
        return {"nucleation_temperature_c": self.nucleation_temperature_c,
                "growth_temperature_c": self.growth_temperature_c, "reaction_time_s": self.reaction_time_s}


def _saxs_result(q_nm: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None) -> dict:
    phase = detect_mesophase(q_nm, intensity, sigma)
    return {"size_distribution": size_distribution(q_nm, intensity, sigma).as_dict(),
            "mesophase": None if phase is None else phase.as_dict()}


class FlowSeriesAnalysis:
    """Per-condition MSC/NC and SAXS analysis of a flow series, in arrival order."""

    def __init__(self) -> None:
        self.conditions: list[FlowCondition] = []
        self.entries: list[dict] = []

    def add_condition(self, condition: FlowCondition, wavelength_nm: np.ndarray, absorbance: np.ndarray,
                      q_nm: np.ndarray | None = None, intensity: np.ndarray | None = None,
                      sigma: np.ndarray | None = None) -> dict:
        """Analyse one condition's spectrum (and SAXS curve, if given); returns its result entry."""
        spectrum = analyse_spectrum(np.asarray(wavelength_nm, dtype=float), np.asarray(absorbance, dtype=float))
        entry = spectrum.as_dict(condition.label)
        entry["condition"] = condition.as_dict()
        entry["saxs"] = None
        if q_nm is not None and intensity is not None:
            entry["saxs"] = _saxs_result(np.asarray(q_nm, dtype=float), np.asarray(intensity, dtype=float),
                                         None if sigma is None else np.asarray(sigma, dtype=float))
        self.conditions.append(condition)
        self.entries.append(entry)
        return entry

    def result(self) -> dict:
        """The series result (see the module docstring)."""
        return {"spectra": list(self.entries)}

    def msc_map(self) -> dict:
        """The results on the (T_nuc, T_growth) x reaction-time grid.

        Returns a dict with ``rows`` (list of (T_nuc, T_growth) in °C), ``reaction_times_s``,
        ``families`` (MSC family names by wavelength), ``msc_absorbance`` (rows x times x
        families; 0 where a family was not found, NaN where the condition was not measured)
        and ``nc_diameter_nm`` (rows x times; NaN without NCs or measurement).
        """
        rows = sorted({(c.nucleation_temperature_c, c.growth_temperature_c) for c in self.conditions})
        times = sorted({c.reaction_time_s for c in self.conditions})
        families = sorted(MSC_FAMILY_NM, key=MSC_FAMILY_NM.get)
        msc = np.full((len(rows), len(times), len(families)), np.nan)
        nc = np.full((len(rows), len(times)), np.nan)
        for cond, entry in zip(self.conditions, self.entries):
            i = rows.index((cond.nucleation_temperature_c, cond.growth_temperature_c))
            j = times.index(cond.reaction_time_s)
            msc[i, j] = 0.0
            for peak in entry["msc"]:
                k = families.index(peak["family"])
                msc[i, j, k] = max(msc[i, j, k], peak["absorbance"])
            if entry["nc"] is not None and math.isfinite(entry["nc"]["diameter_nm"]):
                nc[i, j] = entry["nc"]["diameter_nm"]
        return {"rows": rows, "reaction_times_s": times, "families": families, "msc_absorbance": msc,
                "nc_diameter_nm": nc}


__all__ = ["FlowCondition", "FlowSeriesAnalysis"]
