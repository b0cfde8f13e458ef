"""Live analysis of flow-synthesis series: MSC families, NC sizes and SAXS sizes per condition.

:func:`flow_router` returns a RunRouter that gives every flow run (start metadata
``mc_beamline.experiment == "flow"``) its own :class:`LiveFlow`. The callback only queues
documents; a worker thread analyses each condition's spectrum and SAXS curve
(:class:`~mc_beamline.analysis.series.flow_conditions.FlowSeriesAnalysis`), redraws the live
"MSC map" (temperature x reaction time), and at the stop document publishes the result as a
derived run. Exceptions are recorded next to the results and never reach the RunEngine.

A run of the adaptive flow series (start metadata ``mc_beamline.window_search``) also gets
its decisions re-derived from the analysed spectra
(:func:`~mc_beamline.analysis.adaptive.flow_window.rederive_flow_window`): the result's
``window_search`` holds every measured condition with the reason it was chosen, the edges
of the window (°C ± °C), the NC onset and why the search stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mc_beamline.analysis.adaptive.flow_window import rederive_flow_window
from mc_beamline.analysis.adaptive.window_search import WindowSearchError, WindowSearchSpec
from mc_beamline.analysis.series.flow_conditions import (
    FlowCondition,
    FlowSeriesAnalysis,
)
from mc_beamline.callbacks.flow_results import flow_result_documents
from mc_beamline.callbacks.queued_analysis import (
    ArrayFallback,
    Publisher,
    QueuedRunAnalysis,
)
from mc_beamline.io.result_json import json_ready


class LiveFlow(QueuedRunAnalysis):
    """Analysis of one flow run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document (``mc_beamline.keys`` name the data keys,
        ``wavelength_nm`` and ``q_nm`` the axes).
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live MSC map (PNG), or None for no figure.
    array_fallback : ``fallback(key, seq_num) -> array`` for array data an event does not carry.
    """

    EXPERIMENT = "flow"
    WHAT = "Flow analysis"

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None):
        super().__init__(start_doc, publish=publish, figure_dir=figure_dir, array_fallback=array_fallback)
        self.analysis = FlowSeriesAnalysis()
        md = start_doc.get("mc_beamline", {})
        self.wavelength_nm = np.asarray(md.get("wavelength_nm", []), dtype=float)
        self.q_nm = np.asarray(md.get("q_nm", []), dtype=float)
        self.window_search = md.get("window_search")
        self._start_worker()

    def _event(self, doc: dict) -> None:
        data, seq_num = doc["data"], doc["seq_num"]
        try:
            condition = FlowCondition(float(data[self.keys["nucleation_setpoint"]]),
                                      float(data[self.keys["growth_setpoint"]]),
                                      float(data[self.keys["reaction_time_setpoint"]]))
            absorbance = self._array(data, "absorbance", seq_num, float)
            intensity = self._array(data, "saxs_intensity", seq_num, float)
            sigma = self._array(data, "saxs_sigma", seq_num, float)
            q = self.q_nm if intensity is not None and self.q_nm.size == intensity.size else None
            self.analysis.add_condition(condition, self.wavelength_nm, absorbance, q, intensity, sigma)
        except Exception as exc:  # noqa: BLE001 - one bad condition does not end the analysis
            self._record("condition", exc, seq_num)
            return
        self._draw()

    def _compute_result(self) -> dict:
        result = self.analysis.result()
        if self.window_search is not None:
            result["window_search"] = self._window_search()
        return json_ready(result)

    def _window_search(self) -> dict | None:
        ws = self.window_search
        try:
            spec = WindowSearchSpec(float(ws["low_c"]), float(ws["high_c"]), float(ws["tolerance_c"]),
                                    int(ws["max_conditions"]))
            return rederive_flow_window(spec, ws["family"], self.analysis.entries).as_dict()
        except (WindowSearchError, KeyError, TypeError, ValueError) as exc:
            self._record("window_search", exc)
            return None

    def _result_documents(self):
        return flow_result_documents(self.start_doc, self.result, self.errors)

    def _draw(self) -> None:
        if self.figure_dir is None:
            return
        from mc_beamline.io.figures import msc_map_figure

        try:
            path = self.figure_dir / f"{self.start_doc['uid'][:8]}_msc_map.png"
            self.figure_path = msc_map_figure(self.analysis.msc_map(), path)
        except Exception as exc:  # noqa: BLE001 - a plot never stops the analysis
            self._record("figure", exc)


flow_router = LiveFlow.router
"""A RunRouter that runs :class:`LiveFlow` on every flow run (:meth:`QueuedRunAnalysis.router`)."""


__all__ = ["LiveFlow", "flow_router"]
