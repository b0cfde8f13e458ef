"""Live analysis of flow-synthesis series: MSC families, NC sizes and SAXS sizes per condition.

:func:`flow_router` returns a RunRouter that gives every flow run (start metadata
``mc_beamline.experiment == "flow"``) its own :class:`LiveFlow`. The callback only queues
documents; a worker thread analyses each condition's spectrum and SAXS curve
(:class:`~mc_beamline.analysis.flow_conditions.FlowSeriesAnalysis`), redraws the live
"MSC map" (temperature x reaction time), and at the stop document publishes the result as a
derived run. Exceptions are recorded next to the results and never reach the RunEngine.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from event_model import RunRouter

from ..analysis.flow_conditions import FlowCondition, FlowSeriesAnalysis
from ..jsonio import json_ready
from .analysis_errors import record_error
from .flow_results import flow_result_documents

logger = logging.getLogger(__name__)

Publisher = Callable[[str, dict], None]
ArrayFallback = Callable[[str, int], np.ndarray]


def is_flow_run(start_doc: dict) -> bool:
    return start_doc.get("mc_beamline", {}).get("experiment") == "flow"


class LiveFlow:
    """Analysis of one flow run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document (``mc_beamline.keys`` name the data keys,
        ``wavelength_nm`` and ``q_nm`` the axes).
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live MSC map (PNG), or None for no figure.
    array_fallback : ``fallback(key, seq_num) -> array`` for array data an event does not carry.
    """

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None):
        self.start_doc = start_doc
        self.publish = publish
        self.figure_dir = Path(figure_dir) if figure_dir else None
        self.array_fallback = array_fallback
        self.errors: list[dict] = []
        self.result: dict | None = None
        self.figure_path: Path | None = None
        self.analysis = FlowSeriesAnalysis()
        md = start_doc.get("mc_beamline", {})
        self.keys = dict(md.get("keys", {}))
        self.wavelength_nm = np.asarray(md.get("wavelength_nm", []), dtype=float)
        self.q_nm = np.asarray(md.get("q_nm", []), dtype=float)
        self._primary: set[str] = set()
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"flow-{start_doc['uid'][:8]}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------- callback side
    def __call__(self, name: str, doc: dict) -> None:
        """Queue a document; returns at once."""
        self._queue.put((name, doc))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stop document has been processed; True if it has."""
        return self._done.wait(timeout)

    # --------------------------------------------------------------- worker side
    def _record(self, where: str, exc: BaseException, seq_num: int | None = None) -> None:
        record_error(self.errors, logger, f"Flow analysis of run {self.start_doc['uid'][:8]}", where, exc, seq_num)

    def _work(self) -> None:
        while True:
            name, doc = self._queue.get()
            try:
                if name == "stop":
                    self._finish()
                    return
                if name == "descriptor" and doc.get("name") == "primary":
                    self._primary.add(doc["uid"])
                elif name == "event" and doc["descriptor"] in self._primary:
                    self._event(doc)
                elif name == "event_page" and doc["descriptor"] in self._primary:
                    for i, seq_num in enumerate(doc["seq_num"]):
                        self._event({"seq_num": seq_num, "data": {k: v[i] for k, v in doc["data"].items()}})
            except Exception as exc:  # noqa: BLE001
                self._record(name, exc, doc.get("seq_num") if isinstance(doc.get("seq_num"), int) else None)

    def _array(self, data: dict, role: str, seq_num: int) -> np.ndarray | None:
        key = self.keys.get(role)
        if key is None:
            return None
        value = data.get(key)
        if value is None and self.array_fallback is not None:
            value = self.array_fallback(key, seq_num)
        return None if value is None else np.asarray(value, dtype=float)

    def _event(self, doc: dict) -> None:
        data, seq_num = doc["data"], doc["seq_num"]
        try:
            condition = FlowCondition(float(data[self.keys["nucleation_setpoint"]]),
                                      float(data[self.keys["growth_setpoint"]]),
                                      float(data[self.keys["reaction_time_setpoint"]]))
            absorbance = self._array(data, "absorbance", seq_num)
            intensity = self._array(data, "saxs_intensity", seq_num)
            sigma = self._array(data, "saxs_sigma", seq_num)
            q = self.q_nm if intensity is not None and self.q_nm.size == intensity.size else None
            self.analysis.add_condition(condition, self.wavelength_nm, absorbance, q, intensity, sigma)
        except Exception as exc:  # noqa: BLE001 - one bad condition does not end the analysis
            self._record("condition", exc, seq_num)
            return
        self._draw()

    def _finish(self) -> None:
        try:
            self.result = json_ready(self.analysis.result())
        except Exception as exc:  # noqa: BLE001
            self._record("result", exc)
        try:
            if self.publish is not None:
                for name, doc in flow_result_documents(self.start_doc, self.result, self.errors):
                    self.publish(name, doc)
        except Exception as exc:  # noqa: BLE001
            self._record("publish", exc)
        finally:
            self._done.set()

    def _draw(self) -> None:
        if self.figure_dir is None:
            return
        from ..figures import msc_map_figure

        try:
            path = self.figure_dir / f"{self.start_doc['uid'][:8]}_msc_map.png"
            self.figure_path = msc_map_figure(self.analysis.msc_map(), path)
        except Exception as exc:  # noqa: BLE001 - a plot never stops the analysis
            self._record("figure", exc)


def flow_router(publish: Publisher | None = None, figure_dir: Path | None = None,
                on_run: Callable[[LiveFlow], None] | None = None) -> RunRouter:
    """A RunRouter that runs :class:`LiveFlow` on every flow run (subscribe it to the RunEngine)."""

    def factory(name: str, start_doc: dict):
        if not is_flow_run(start_doc):
            return [], []
        live = LiveFlow(start_doc, publish=publish, figure_dir=figure_dir)
        if on_run is not None:
            on_run(live)
        return [live], []

    return RunRouter([factory])


__all__ = ["LiveFlow", "flow_router", "is_flow_run"]
