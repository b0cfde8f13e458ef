"""Live XCCA of nanodiffraction rasters: documents in, structure out, scan never disturbed.

:func:`xcca_router` returns a RunRouter that gives every raster run (start metadata
``mc_beamline.experiment == "raster"``) its own :class:`LiveXcca`. The callback only
queues documents; a worker thread locates each frame (HDF5 file, or Tiled in a remote
replay), feeds :class:`~mc_beamline.analysis.xcca.pipeline.XccaAnalysis`, redraws the live
figure now and then, and at the stop document computes the result and publishes it as a
derived run. While it analyses a frame, a few threads decompress the next ones (at most
``prefetch`` frames ahead, in a few reused arrays, so memory stays bounded); frames are
analysed in event order. Any exception in the analysis is logged and recorded next to the
results; it never reaches the RunEngine, so the scan goes on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from event_model import RunRouter

from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.analysis.detector.masks import decode_mask, load_mask
from mc_beamline.analysis.xcca.pipeline import XccaAnalysis
from mc_beamline.callbacks.frame_locator import FrameLocator, PendingFrame
from mc_beamline.io.result_json import json_ready
from mc_beamline.callbacks.analysis_errors import record_error
from mc_beamline.callbacks.xcca_results import xcca_result_documents

logger = logging.getLogger(__name__)

Publisher = Callable[[str, dict], None]

DEFAULT_Q_SL = 1.72
DEFAULT_Q_AL = 18.3


def is_raster_run(start_doc: dict) -> bool:
    return start_doc.get("mc_beamline", {}).get("experiment") == "raster"


def analysis_for_start(start_doc: dict, q_sl: float = DEFAULT_Q_SL, q_al: float = DEFAULT_Q_AL) -> XccaAnalysis:
    """An :class:`XccaAnalysis` configured from a raster run's start metadata."""
    md = start_doc["mc_beamline"]
    geometry = DetectorGeometry.from_poni_text(md["detector_poni"])
    if md.get("detector_mask"):
        mask = decode_mask(md["detector_mask"], geometry.shape)
    elif md.get("detector_mask_file") and Path(md["detector_mask_file"]).is_file():
        mask = load_mask(md["detector_mask_file"], geometry.shape)
    else:
        mask = None
    return XccaAnalysis(geometry, mask, q_sl=q_sl, q_al=q_al, scan_shape=md["scan_shape"],
                        step_um=md["step_um"], snake=bool(md.get("snake", False)))


class LiveXcca:
    """XCCA of one raster run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document.
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live figure (PNG), or None for no figure.
    redraw_s : least time between two redraws of the live figure, seconds.
    analysis_factory : builds the analysis from the start document (tests inject faults here).
    frame_fallback : ``fallback(seq_num) -> frame`` when a detector file is not readable here.
    prefetch : most frames read ahead of the one being analysed (their decompression runs
        in ``min(prefetch, CPUs, 4)`` threads); 0: read each frame when it is analysed.
    """

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 redraw_s: float = 10.0, analysis_factory: Callable[[dict], XccaAnalysis] = analysis_for_start,
                 frame_fallback: Callable[[int], np.ndarray] | None = None, prefetch: int = 2):
        self.start_doc = start_doc
        self.publish = publish
        self.figure_dir = Path(figure_dir) if figure_dir else None
        self.redraw_s = redraw_s
        self.errors: list[dict] = []
        self.result: dict | None = None
        self.figure_path: Path | None = None
        self.frame_latency_s: list[float] = []
        self.analysis: XccaAnalysis | None = None
        self._prefetch = max(0, int(prefetch))
        workers = min(self._prefetch, os.cpu_count() or 1, 4)
        self._pool = (ThreadPoolExecutor(workers, thread_name_prefix=f"xcca-read-{start_doc['uid'][:8]}")
                      if workers else None)
        self._locator = FrameLocator(start_doc["mc_beamline"].get("image_key", "det_image"), fallback=frame_fallback,
                                     on_error=lambda seq_num, exc: self._record("frame", exc, seq_num),
                                     executor=self._pool, buffers=self._prefetch + 2)
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._last_draw = time.monotonic()
        try:
            self.analysis = analysis_factory(start_doc)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised into the scan
            self._record("setup", exc)
        self._worker = threading.Thread(target=self._work, name=f"xcca-{start_doc['uid'][:8]}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------- callback side
    def __call__(self, name: str, doc: dict) -> None:
        """Queue a document; returns at once."""
        self._queue.put((name, doc, time.perf_counter()))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stop document has been processed; True if it has."""
        return self._done.wait(timeout)

    # --------------------------------------------------------------- worker side
    def _record(self, where: str, exc: BaseException, seq_num: int | None = None) -> None:
        record_error(self.errors, logger, f"XCCA of run {self.start_doc['uid'][:8]}", where, exc, seq_num)

    def _work(self) -> None:
        """Take documents in order; keep up to ``prefetch`` located frames pending; analyse the oldest.

        A frame is analysed when the look-ahead is full, when no document is waiting (so a
        frame never waits for the next event), and before the stop document.
        """
        pending: deque[tuple[PendingFrame, float]] = deque()
        source = None  # (name, doc, iterator of the frames it makes available, queued)
        while True:
            if pending and (len(pending) > self._prefetch or (source is None and self._queue.empty())):
                self._analyse(*pending.popleft())
                continue
            if source is not None:
                name, doc, frames, queued = source
                try:
                    pending.append((next(frames), queued))
                except StopIteration:
                    source = None
                    self._maybe_draw()
                except Exception as exc:  # noqa: BLE001
                    source = None
                    self._record(name, exc, doc.get("seq_num") if isinstance(doc.get("seq_num"), int) else None)
                continue
            name, doc, queued = self._queue.get()
            if name == "stop":
                while pending:
                    self._analyse(*pending.popleft())
                self._finish(doc)
                return
            if self.analysis is not None:  # else set-up failed (recorded); reading frames would be wasted work
                source = (name, doc, self._locator.locate(name, doc), queued)

    def _analyse(self, pending: PendingFrame, queued: float) -> None:
        try:
            frame = pending.result()  # None: not readable, recorded by the locator
        except Exception as exc:  # noqa: BLE001
            self._record("frame", exc, pending.seq_num)
            frame = None
        if frame is not None:
            try:
                self.analysis.add_frame(pending.seq_num - 1, frame)
            except Exception as exc:  # noqa: BLE001
                self._record("frame", exc, pending.seq_num)
            self.frame_latency_s.append(time.perf_counter() - queued)
        del frame
        pending.release()  # its array is reused for a later frame unless something still refers to it
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if self.figure_dir is not None and time.monotonic() - self._last_draw > self.redraw_s:
            self._draw()

    def _finish(self, stop_doc: dict) -> None:
        maps = None
        try:  # no more frames: the reader's threads, files and frame arrays go before the result is computed
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._locator.close()
        except Exception as exc:  # noqa: BLE001
            self._record("close", exc)
        try:
            if self.analysis is not None:
                details = self.analysis.details()
                self.result = json_ready(self.analysis.result(details))
                maps = orientation_maps(self.analysis, details)
                if self.figure_dir is not None:
                    self._draw(details=details)
        except Exception as exc:  # noqa: BLE001
            self._record("result", exc)
        try:
            if self.publish is not None:  # also without a result: the errors are stored
                for name, doc in xcca_result_documents(self.start_doc, self.result, maps, self.errors):
                    self.publish(name, doc)
        except Exception as exc:  # noqa: BLE001
            self._record("publish", exc)
        finally:
            self._done.set()

    def _draw(self, details: dict | None = None) -> None:
        """Redraw the figure: the cheap running view during the scan, the full one with ``details``."""
        from mc_beamline.io.figures import xcca_figure, xcca_running_figure

        path = self.figure_dir / f"{self.start_doc['uid'][:8]}_xcca.png"
        try:
            if details is None:
                self.figure_path = xcca_running_figure(self.analysis, path)
            else:
                self.figure_path = xcca_figure(self.analysis, details, path)
        except Exception as exc:  # noqa: BLE001 - a plot never stops the analysis
            self._record("figure", exc)
        self._last_draw = time.monotonic()


def orientation_maps(analysis: XccaAnalysis, details: dict) -> dict[str, np.ndarray]:
    """Raster-shaped SL orientation (degrees, NaN where unknown) and domain labels (-1: none)."""
    shape = tuple(details["shape"])
    orientation = np.full(shape, np.nan)
    for index, candidates in details["orientation"].items():
        orientation[analysis.position(index)] = candidates[0]
    return {"orientation_deg": orientation, "domain": np.asarray(details["domains"].labels, dtype=np.int64)}


def xcca_router(publish: Publisher | None = None, figure_dir: Path | None = None,
                on_run: Callable[[LiveXcca], None] | None = None, **live_options) -> RunRouter:
    """A RunRouter that runs :class:`LiveXcca` on every raster run (subscribe it to the RunEngine).

    ``on_run`` receives each new :class:`LiveXcca` (e.g. to wait for its result later);
    ``live_options`` are passed to it (``redraw_s``, ``analysis_factory``, ...).
    """

    def factory(name: str, start_doc: dict):
        if not is_raster_run(start_doc):
            return [], []
        live = LiveXcca(start_doc, publish=publish, figure_dir=figure_dir, **live_options)
        if on_run is not None:
            on_run(live)
        return [live], []

    return RunRouter([factory])
