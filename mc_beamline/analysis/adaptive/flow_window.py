"""The adaptive flow series' decisions from UV-Vis analyses: where an MSC family persists in T_nuc.

One condition's outcome is whether its spectrum shows the MSC family (e.g. CdSe-437) and
whether it shows NCs (:func:`spectrum_outcome`); :func:`rederive_flow_window` re-derives the
whole window search (:mod:`~mc_beamline.analysis.adaptive.window_search`) from the analysed
conditions of a stored run, in the order they were measured. Temperatures in °C.
"""

from __future__ import annotations

from typing import Sequence

from mc_beamline.analysis.adaptive.window_search import (
    WindowSearchResult,
    WindowSearchSpec,
    rederive_window_search,
)
from mc_beamline.analysis.series.flow_conditions import FlowEntry
from mc_beamline.analysis.uvvis.spectrum import SpectrumAnalysis


def spectrum_outcome(spectrum: SpectrumAnalysis, family: str) -> tuple[bool, bool]:
    """(``family`` found, NC exciton found) in one analysed spectrum."""
    return family in spectrum.families, spectrum.nc is not None


def rederive_flow_window(spec: WindowSearchSpec, family: str, entries: Sequence[FlowEntry]) -> WindowSearchResult:
    """The window search's decisions and edges from the analysed conditions ``entries`` (measurement order).

    Raises :class:`~mc_beamline.analysis.adaptive.window_search.WindowSearchError` where the
    stored conditions are not the ones the search chooses.
    """
    return rederive_window_search(spec, [(e.condition.nucleation_temperature_c, *spectrum_outcome(e.spectrum, family))
                                         for e in entries])


__all__ = ["rederive_flow_window", "spectrum_outcome"]
