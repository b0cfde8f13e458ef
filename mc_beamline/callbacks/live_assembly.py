"""Live analysis of self-assembly series: phase fractions, pathway, indexing and ring symmetry.

:func:`assembly_router` returns a RunRouter that gives every assembly run (start metadata
``mc_beamline.experiment == "assembly"``) its own :class:`LiveAssembly`. The callback only
queues documents; a worker thread analyses each frame as it arrives
(:class:`~mc_beamline.analysis.assembly_series.AssemblySeriesAnalysis`: the superlattice
ring's symmetry per frame, the phase fractions refitted every few frames), redraws the live
figure, and at the stop document publishes the whole result as a derived run. Exceptions
are recorded next to the results and never reach the RunEngine.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from event_model import RunRouter

from ..analysis.assembly_series import AssemblySeriesAnalysis
from ..analysis.geometry import DetectorGeometry
from ..jsonio import json_ready
from .analysis_errors import record_error
from .assembly_results import assembly_result_documents

logger = logging.getLogger(__name__)

Publisher = Callable[[str, dict], None]
ArrayFallback = Callable[[str, int], np.ndarray]
SAMPLES_WITH_PHASES = ("colloid",)
"""Samples whose curves are fitted with the dilute/dense/crystal phase model (3D assemblies)."""


def is_assembly_run(start_doc: dict) -> bool:
    return start_doc.get("mc_beamline", {}).get("experiment") == "assembly"


class LiveAssembly:
    """Analysis of one assembly run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document: ``mc_beamline.keys`` name the data keys
        (``intensity``, ``sigma``, ``image``, ``elapsed``), ``q_nm`` the q axis (nm⁻¹),
        ``poni`` the 2D detector's PONI text, ``sample`` the sample kind and ``ring_q_nm``
        the superlattice ring (optional).
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live figure (PNG), or None for no figure.
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
        md = start_doc.get("mc_beamline", {})
        self.keys = dict(md.get("keys", {}))
        self.image_shape = tuple(md.get("image_shape") or ())
        self.analysis: AssemblySeriesAnalysis | None = None
        self._primary: set[str] = set()
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Event()
        try:
            geometry = DetectorGeometry.from_poni_text(md["poni"]) if md.get("poni") else None
            self.analysis = AssemblySeriesAnalysis(
                np.asarray(md["q_nm"], dtype=float), geometry, ring_q_nm=md.get("ring_q_nm"),
                phases=md.get("sample") in SAMPLES_WITH_PHASES)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on, the result says why
            self._record("start", exc)
        self._worker = threading.Thread(target=self._work, name=f"assembly-{start_doc['uid'][:8]}", daemon=True)
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
        record_error(self.errors, logger, f"Assembly analysis of run {self.start_doc['uid'][:8]}", where, exc,
                     seq_num)

    def _work(self) -> None:
        while True:
            name, doc = self._queue.get()
            try:
                if name == "stop":
                    self._finish()
                    return
                if self.analysis is None:
                    continue
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
        return None if value is None else np.asarray(value)

    def _event(self, doc: dict) -> None:
        data, seq_num = doc["data"], doc["seq_num"]
        try:
            t = float(data[self.keys["elapsed"]])
            intensity = self._array(data, "intensity", seq_num)
            sigma = self._array(data, "sigma", seq_num)
            image = self._array(data, "image", seq_num)
            if image is not None and self.image_shape and image.ndim == 1:
                image = image.reshape(self.image_shape)
            self.analysis.add_frame(t, intensity, sigma, image)
        except Exception as exc:  # noqa: BLE001 - one bad frame does not end the analysis
            self._record("frame", exc, seq_num)
            return
        self._draw()

    def _finish(self) -> None:
        try:
            if self.analysis is not None and self.analysis.n_frames:
                self.result = json_ready(self.analysis.result())
            elif not self.errors:
                raise ValueError("The run holds no frames to analyse.")
        except Exception as exc:  # noqa: BLE001
            self._record("result", exc)
        self._draw()
        try:
            if self.publish is not None:
                for name, doc in assembly_result_documents(self.start_doc, self.result, self.errors):
                    self.publish(name, doc)
        except Exception as exc:  # noqa: BLE001
            self._record("publish", exc)
        finally:
            self._done.set()

    def _draw(self) -> None:
        if self.figure_dir is None or self.analysis is None or not self.analysis.n_frames:
            return
        from ..figures import assembly_figure

        analysis = self.analysis
        try:
            if self.result is not None:
                series, symmetry = self.result["series"], self.result["symmetry"]
                fractions = None if series is None else np.stack([series[k] for k in ("dilute", "dense", "crystal")],
                                                                 axis=1)
            else:
                fractions = None if analysis.fit is None else analysis.fit.fractions
                known = [s for s in analysis.symmetry if s is not None]
                symmetry = None if not known else {
                    f"c{n}": [None if s is None else getattr(s, f"c{n}") for s in analysis.symmetry]
                    for n in (4, 6, 12)}
            what = self.start_doc.get("description") or self.start_doc.get("mc_beamline", {}).get("sample", "")
            path = self.figure_dir / f"{self.start_doc['uid'][:8]}_assembly.png"
            self.figure_path = assembly_figure(analysis.t_s, fractions, symmetry,
                                               f"{what}: {analysis.n_frames} frames", path)
        except Exception as exc:  # noqa: BLE001 - a plot never stops the analysis
            self._record("figure", exc)


def assembly_router(publish: Publisher | None = None, figure_dir: Path | None = None,
                    on_run: Callable[[LiveAssembly], None] | None = None) -> RunRouter:
    """A RunRouter that runs :class:`LiveAssembly` on every assembly run (subscribe it to the RunEngine)."""

    def factory(name: str, start_doc: dict):
        if not is_assembly_run(start_doc):
            return [], []
        live = LiveAssembly(start_doc, publish=publish, figure_dir=figure_dir)
        if on_run is not None:
            on_run(live)
        return [live], []

    return RunRouter([factory])


__all__ = ["LiveAssembly", "assembly_router", "is_assembly_run"]
