"""Live analysis of self-assembly series: phase fractions, pathway, indexing and ring symmetry.

:func:`assembly_router` returns a RunRouter that gives every assembly run (start metadata
``mc_beamline.experiment == "assembly"``) its own :class:`LiveAssembly`. The callback only
queues documents; a worker thread analyses each frame as it arrives
(:class:`~mc_beamline.analysis.series.assembly_series.AssemblySeriesAnalysis`: the superlattice
ring's symmetry per frame, the phase fractions refitted every few frames), redraws the live
figure, and at the stop document publishes the whole result as a derived run. Exceptions
are recorded next to the results and never reach the RunEngine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mc_beamline.analysis.series.assembly_series import AssemblySeriesAnalysis
from mc_beamline.callbacks.assembly_results import assembly_result_documents
from mc_beamline.callbacks.queued_analysis import (
    ArrayFallback,
    Publisher,
    QueuedRunAnalysis,
)
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.result_json import json_ready

SAMPLES_WITH_PHASES = ("colloid",)
"""Samples whose curves are fitted with the dilute/dense/crystal phase model (3D assemblies)."""


class LiveAssembly(QueuedRunAnalysis):
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

    EXPERIMENT = "assembly"
    WHAT = "Assembly analysis"

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None):
        super().__init__(start_doc, publish=publish, figure_dir=figure_dir, array_fallback=array_fallback)
        md = start_doc.get("mc_beamline", {})
        self.image_shape = tuple(md.get("image_shape") or ())
        self.analysis: AssemblySeriesAnalysis | None = None
        try:
            geometry = DetectorGeometry.from_poni_text(md["poni"]) if md.get("poni") else None
            self.analysis = AssemblySeriesAnalysis(
                np.asarray(md["q_nm"], dtype=float), geometry, ring_q_nm=md.get("ring_q_nm"),
                phases=md.get("sample") in SAMPLES_WITH_PHASES)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on, the result says why
            self._record("start", exc)
        self._start_worker()

    def _event(self, doc: dict) -> None:
        if self.analysis is None:
            return
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

    def _compute_result(self) -> dict | None:
        if self.analysis is not None and self.analysis.n_frames:
            return json_ready(self.analysis.result())
        if not self.errors:
            raise ValueError("The run holds no frames to analyse.")
        return None

    def _after_result(self) -> None:
        self._draw()

    def _result_documents(self):
        return assembly_result_documents(self.start_doc, self.result, self.errors)

    def _draw(self) -> None:
        if self.figure_dir is None or self.analysis is None or not self.analysis.n_frames:
            return
        from mc_beamline.io.figures import assembly_figure

        analysis = self.analysis
        try:
            fractions = None if analysis.fit is None else analysis.fit.fractions  # the final fit after the result
            symmetry = analysis.symmetry_trace(with_change=self.result is not None)
            what = self.start_doc.get("description") or self.start_doc.get("mc_beamline", {}).get("sample", "")
            path = self.figure_dir / f"{self.start_doc['uid'][:8]}_assembly.png"
            self.figure_path = assembly_figure(analysis.t_s, fractions, symmetry,
                                               f"{what}: {analysis.n_frames} frames", path)
        except Exception as exc:  # noqa: BLE001 - a plot never stops the analysis
            self._record("figure", exc)


assembly_router = LiveAssembly.router
"""A RunRouter that runs :class:`LiveAssembly` on every assembly run (:meth:`QueuedRunAnalysis.router`)."""


__all__ = ["LiveAssembly", "assembly_router"]
