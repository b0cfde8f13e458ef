"""Analysis of a flow-synthesis series: MSC families, NC size and SAXS sizes per condition.

One reactor condition (nucleation temperature, growth temperature, reaction time) gives one
UV-Vis spectrum and one SAXS curve. :class:`FlowSeriesAnalysis` analyses each as it comes
(:func:`~mc_beamline.analysis.uvvis.spectrum.analyse_spectrum`,
:func:`~mc_beamline.analysis.saxs.sizes.size_distribution`,
:func:`~mc_beamline.analysis.saxs.sizes.detect_mesophase`) and keeps a :class:`FlowEntry`
per condition. Its :meth:`~FlowSeriesAnalysis.result` holds, per condition, what the
``mc-beamline msc`` result holds for a spectrum plus the condition and the SAXS result:

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

from mc_beamline.analysis.saxs.sizes import (
    LamellarMesophase,
    SizeDistribution,
    detect_mesophase,
    size_distribution,
)
from mc_beamline.analysis.uvvis.spectrum import SpectrumAnalysis, analyse_spectrum
from mc_beamline.materials.cdse import MSC_FAMILY_NM


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


@dataclass(frozen=True)
class FlowSaxs:
    """SAXS analysis of one condition's curve."""

    size_distribution: SizeDistribution
    """Volume-weighted size distribution of spheres (radii in nm)."""
    mesophase: LamellarMesophase | None
    """Lamellar mesophase (period in nm, peaks in nm⁻¹), or None."""

    def as_dict(self) -> dict:
        """The ``saxs`` object of a ``spectra`` entry."""
        return {"size_distribution": self.size_distribution.as_dict(),
                "mesophase": None if self.mesophase is None else self.mesophase.as_dict()}


@dataclass(frozen=True)
class FlowEntry:
    """Analysis of one condition of a flow series."""

    condition: FlowCondition
    """Reactor set points (°C, °C, s)."""
    spectrum: SpectrumAnalysis
    """MSC families and NC exciton of the UV-Vis spectrum (wavelengths and sizes in nm)."""
    saxs: FlowSaxs | None
    """SAXS analysis, or None without a SAXS curve."""

    def as_dict(self) -> dict:
        """One entry of the ``spectra`` list of the series result (see the module docstring)."""
        entry = self.spectrum.as_dict(self.condition.label)
        entry["condition"] = self.condition.as_dict()
        entry["saxs"] = None if self.saxs is None else self.saxs.as_dict()
        return entry


@dataclass(frozen=True)
class MscMap:
    """The results of a flow series on the (T_nuc, T_growth) x reaction-time grid."""

    rows: tuple[tuple[float, float], ...]
    """(T_nuc, T_growth) of each row, °C, increasing."""
    reaction_times_s: tuple[float, ...]
    """Reaction time of each column, s, increasing."""
    families: tuple[str, ...]
    """MSC family names, by increasing wavelength."""
    msc_absorbance: np.ndarray
    """Absorbance (peak height) of each MSC family, shape (rows, times, families); 0 where a
    family was not found, NaN where the condition was not measured."""
    nc_diameter_nm: np.ndarray
    """NC diameter, nm, shape (rows, times); NaN without NCs or measurement."""


class FlowSeriesAnalysis:
    """Per-condition MSC/NC and SAXS analysis of a flow series, in arrival order."""

    def __init__(self) -> None:
        self.entries: list[FlowEntry] = []

    def add_condition(self, condition: FlowCondition, wavelength_nm: np.ndarray, absorbance: np.ndarray,
                      q_nm: np.ndarray | None = None, intensity: np.ndarray | None = None,
                      sigma: np.ndarray | None = None) -> FlowEntry:
        """Analyse one condition's spectrum (and SAXS curve, if given); returns its entry."""
        spectrum = analyse_spectrum(np.asarray(wavelength_nm, dtype=float), np.asarray(absorbance, dtype=float))
        saxs = None
        if q_nm is not None and intensity is not None:
            q, i = np.asarray(q_nm, dtype=float), np.asarray(intensity, dtype=float)
            s = None if sigma is None else np.asarray(sigma, dtype=float)
            mesophase = detect_mesophase(q, i, s)
            saxs = FlowSaxs(size_distribution(q, i, s), mesophase)
        entry = FlowEntry(condition, spectrum, saxs)
        self.entries.append(entry)
        return entry

    def result(self) -> dict:
        """The series result (see the module docstring)."""
        return {"spectra": [entry.as_dict() for entry in self.entries]}

    def msc_map(self) -> MscMap:
        """The results on the (T_nuc, T_growth) x reaction-time grid (for the "MSC map" figure)."""
        rows = sorted({(e.condition.nucleation_temperature_c, e.condition.growth_temperature_c)
                       for e in self.entries})
        times = sorted({e.condition.reaction_time_s for e in self.entries})
        families = sorted(MSC_FAMILY_NM, key=MSC_FAMILY_NM.get)
        msc = np.full((len(rows), len(times), len(families)), np.nan)
        nc = np.full((len(rows), len(times)), np.nan)
        for entry in self.entries:
            cond, spectrum = entry.condition, entry.spectrum
            i = rows.index((cond.nucleation_temperature_c, cond.growth_temperature_c))
            j = times.index(cond.reaction_time_s)
            msc[i, j] = 0.0
            for peak in spectrum.msc:
                k = families.index(peak.family)
                msc[i, j, k] = max(msc[i, j, k], peak.absorbance)
            if spectrum.nc is not None and math.isfinite(spectrum.nc.diameter_nm):
                nc[i, j] = spectrum.nc.diameter_nm
        return MscMap(tuple(rows), tuple(times), tuple(families), msc, nc)


__all__ = ["FlowCondition", "FlowEntry", "FlowSaxs", "FlowSeriesAnalysis", "MscMap"]
