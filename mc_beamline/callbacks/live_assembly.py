"""Live analysis of self-assembly series: phase fractions, pathway, indexing and ring symmetry.

:func:`assembly_router` returns a RunRouter that gives every assembly run (start metadata
``mc_beamline.experiment == "assembly"``) its own :class:`LiveAssembly`. The callback only
queues documents; a worker thread analyses each frame as it arrives
(:class:`~mc_beamline.analysis.series.assembly_series.AssemblySeriesAnalysis`: the superlattice
ring's symmetry per frame, the phase fractions refitted every few frames), redraws the live
figure, and at the stop document publishes the whole result as a derived run. Exceptions
are recorded next to the results and never reach the RunEngine.

The 2D frames are not in the events: the camera writes them to an HDF5 file, and a
:class:`~mc_beamline.callbacks.frame_locator.FrameLocator` finds each one, live from the
Resource/Datum documents, in a replay from Tiled's StreamResource/StreamDatum (which come
after the events), reading the file or, where it is not readable here, Tiled. Frames are
analysed in event order, each with its event's curve, so live and replay compute the same.
Runs whose events hold the image itself are analysed as they come.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mc_beamline.analysis.series.assembly_series import AssemblySeriesAnalysis
from mc_beamline.callbacks.assembly_results import assembly_result_documents
from mc_beamline.callbacks.frame_locator import FrameLocator
from mc_beamline.callbacks.queued_analysis import (
    ArrayFallback,
    Publisher,
    QueuedRunAnalysis,
)
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.result_json import json_ready

SAMPLES_WITH_PHASES = ("colloid",)
"""Samples whose curves are fitted with the dilute/dense/crystal phase model (3D assemblies)."""
FRAME_DOCUMENTS = ("resource", "datum", "datum_page", "stream_resource", "stream_datum")
"""Documents that tell where the frames are (the events refer to them)."""


class LiveAssembly(QueuedRunAnalysis):
    """Analysis of one assembly run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document: ``mc_beamline.keys`` name the data keys
        (``intensity``, ``sigma``, ``image``, ``elapsed``; the image may be external),
        ``q_nm`` the q axis (nm⁻¹), ``poni`` the 2D detector's PONI text, ``sample`` the
        sample kind and ``ring_q_nm`` the superlattice ring (optional).
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live figure (PNG), or None for no figure.
    array_fallback : ``fallback(key, seq_num) -> array`` for array data an event does not carry
        and, for the frames, where the camera's file is not readable here (e.g. from Tiled).
    """

    EXPERIMENT = "assembly"
    WHAT = "Assembly analysis"

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None):
        super().__init__(start_doc, publish=publish, figure_dir=figure_dir, array_fallback=array_fallback)
        md = start_doc.get("mc_beamline", {})
        self.image_shape = tuple(md.get("image_shape") or ())
        self.analysis: AssemblySeriesAnalysis | None = None
        image_key = self.keys.get("image")
        fallback = None if array_fallback is None else (lambda seq_num: array_fallback(image_key, seq_num))
        self._locator = None if image_key is None else FrameLocator(image_key, fallback=fallback,
                                                                     on_error=self._unreadable_frame)
        self._external_image = False  # the primary descriptor says whether the frames are in a file
        self._waiting: dict[int, tuple] = {}  # seq_num -> (t, intensity, sigma) of events awaiting their frame
        self._frames: dict[int, np.ndarray] = {}  # frames located before their turn
        self._unreadable: set[int] = set()
        try:
            geometry = DetectorGeometry.from_poni_text(md["poni"]) if md.get("poni") else None
            self.analysis = AssemblySeriesAnalysis(
                np.asarray(md["q_nm"], dtype=float), geometry, ring_q_nm=md.get("ring_q_nm"),
                phases=md.get("sample") in SAMPLES_WITH_PHASES)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on, the result says why
            self._record("start", exc)
        self._start_worker()

    def _document(self, name: str, doc: dict, queued: float) -> None:
        if self.analysis is None:
            return
        if name == "descriptor" and doc.get("name") == "primary":
            key = doc.get("data_keys", {}).get(self.keys.get("image"), {})
            self._external_image = bool(key.get("external")) and self._locator is not None
        super()._document(name, doc, queued)  # events go to _event
        if name in FRAME_DOCUMENTS and self._locator is not None:
            self._locate(name, doc)

    def _event(self, doc: dict) -> None:
        data, seq_num = doc["data"], doc["seq_num"]
        try:
            t = float(data[self.keys["elapsed"]])
            intensity = self._array(data, "intensity", seq_num)
            sigma = self._array(data, "sigma", seq_num)
            # the image is in the camera's file, or (runs stored before it wrote files) in the event
            image = None if self._external_image else self._array(data, "image", seq_num)
        except Exception as exc:  # noqa: BLE001 - one bad frame does not end the analysis
            self._record("frame", exc, seq_num)
            return
        if self._external_image:
            self._waiting[seq_num] = (t, intensity, sigma)
            self._locate("event", doc)
        else:
            self._add_frame(seq_num, t, intensity, sigma, image)

    def _locate(self, name: str, doc: dict) -> None:
        """Feed a document to the frame locator; analyse the waiting events whose frames are found."""
        for seq_num, frame in self._locator(name, doc):
            if seq_num in self._waiting:
                self._frames[seq_num] = frame
        while self._waiting:
            seq_num = next(iter(self._waiting))
            if seq_num in self._unreadable:  # recorded by _unreadable_frame; the frame is left out
                self._unreadable.discard(seq_num)
                del self._waiting[seq_num]
            elif seq_num in self._frames:
                self._add_frame(seq_num, *self._waiting.pop(seq_num), self._frames.pop(seq_num))
            else:
                break

    def _unreadable_frame(self, seq_num: int, exc: Exception) -> None:
        self._record("frame", exc, seq_num)
        self._unreadable.add(seq_num)

    def _add_frame(self, seq_num: int, t: float, intensity, sigma, image) -> None:
        try:
            if image is not None and self.image_shape and image.ndim == 1:
                image = image.reshape(self.image_shape)
            self.analysis.add_frame(t, intensity, sigma, image)
        except Exception as exc:  # noqa: BLE001 - one bad frame does not end the analysis
            self._record("frame", exc, seq_num)
            return
        self._draw()

    def _close(self) -> None:
        """At the stop: events whose frame was never located get it from the fallback (or none);
        then the frame files are closed."""
        for seq_num in list(self._waiting):
            t, intensity, sigma = self._waiting.pop(seq_num)
            if seq_num in self._unreadable:
                continue
            try:
                image = self._frames.pop(seq_num) if seq_num in self._frames else self._array({}, "image", seq_num)
            except Exception as exc:  # noqa: BLE001
                self._record("frame", exc, seq_num)
                continue
            self._add_frame(seq_num, t, intensity, sigma, image)
        self._frames.clear()
        if self._locator is not None:
            self._locator.close()

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
