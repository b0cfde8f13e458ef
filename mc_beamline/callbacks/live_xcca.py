"""Live XCCA of nanodiffraction rasters: documents in, structure out, scan never disturbed.

:func:`xcca_router` returns a RunRouter that gives every raster run (start metadata
``mc_beamline.experiment == "raster"``) its own :class:`LiveXcca`. The callback only
queues documents; a worker thread locates each frame (HDF5 file, or Tiled in a remote
replay), feeds :class:`~mc_beamline.analysis.xcca.pipeline.XccaAnalysis`, redraws the live
figure now and then, and at the stop document computes the result and publishes it as a
derived run. A run of the adaptive raster (start metadata ``mc_beamline.raster_search``)
places each frame by the fine-grid index its event carries (``mc_beamline.index_key``)
rather than by its sequence number, and re-derives every decision of the search from the
frames (:class:`~mc_beamline.analysis.adaptive.raster_search.RasterSearchFollower`); the
result's ``raster_search`` holds them. While it analyses a frame, a few threads decompress
the next ones (at most ``prefetch`` frames ahead, in a few reused arrays, so memory stays
bounded); frames are analysed in event order. Any exception in the analysis is logged and recorded next to the
results; it never reaches the RunEngine, so the scan goes on.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from mc_beamline.analysis.adaptive.raster_search import RasterSearchFollower, RasterSearchSpec
from mc_beamline.analysis.detector.masks import decode_mask, load_mask
from mc_beamline.analysis.xcca.pipeline import XccaAnalysis, XccaDetails
from mc_beamline.callbacks.frame_locator import FrameLocator, PendingFrame
from mc_beamline.callbacks.queued_analysis import (
    ArrayFallback,
    Publisher,
    QueuedRunAnalysis,
)
from mc_beamline.callbacks.xcca_results import xcca_result_documents
from mc_beamline.instrument.geometry import DetectorGeometry
from mc_beamline.io.result_json import json_ready

DEFAULT_Q_SL = 1.72
DEFAULT_Q_AL = 18.3


CORRECTION_KEYS = ("correct_solid_angle", "polarization_factor", "hot_pixel_frames")
"""Start-metadata keys under ``mc_beamline`` that set the intensity corrections of the run's
XCCA (the :class:`~mc_beamline.analysis.xcca.pipeline.XccaSettings` fields of the same
names); a key the run does not have keeps the default, as ``mc-beamline xcca`` without the
option does."""


def analysis_for_start(start_doc: dict, q_sl: float = DEFAULT_Q_SL, q_al: float = DEFAULT_Q_AL) -> XccaAnalysis:
    """An :class:`XccaAnalysis` configured from a raster run's start metadata (geometry, mask,
    scan, and the corrections of :data:`CORRECTION_KEYS`), so that live analysis, replay and
    ``mc-beamline xcca`` with the same options agree."""
    md = start_doc["mc_beamline"]
    geometry = DetectorGeometry.from_poni_text(md["detector_poni"])
    if md.get("detector_mask"):
        mask = decode_mask(md["detector_mask"], geometry.shape)
    elif md.get("detector_mask_file") and Path(md["detector_mask_file"]).is_file():
        mask = load_mask(md["detector_mask_file"], geometry.shape)
    else:
        mask = None
    corrections = {key: md[key] for key in CORRECTION_KEYS if key in md}
    return XccaAnalysis(geometry, mask, q_sl=q_sl, q_al=q_al, scan_shape=md["scan_shape"],
                        step_um=md["step_um"], snake=bool(md.get("snake", False)), **corrections)


class LiveXcca(QueuedRunAnalysis):
    """XCCA of one raster run, computed while its documents arrive.

    Parameters
    ----------
    start_doc : the raw run's start document.
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for the live figure (PNG), or None for no figure.
    array_fallback : ``fallback(key, seq_num) -> frame`` when a detector file is not readable here.
    redraw_s : least time between two redraws of the live figure, seconds.
    analysis_factory : builds the analysis from the start document (tests inject faults here).
    prefetch : most frames read ahead of the one being analysed (their decompression runs
        in ``min(prefetch, CPUs, 4)`` threads); 0: read each frame when it is analysed.
    """

    WHAT = "XCCA"
    EXPERIMENT = "raster"

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None, redraw_s: float = 10.0,
                 analysis_factory: Callable[[dict], XccaAnalysis] = analysis_for_start, prefetch: int = 2):
        super().__init__(start_doc, publish=publish, figure_dir=figure_dir, array_fallback=array_fallback)
        self.redraw_s = redraw_s
        self.frame_latency_s: list[float] = []
        self.analysis: XccaAnalysis | None = None
        self._prefetch = max(0, int(prefetch))
        workers = min(self._prefetch, os.cpu_count() or 1, 4)
        self._pool = (ThreadPoolExecutor(workers, thread_name_prefix=f"xcca-read-{start_doc['uid'][:8]}")
                      if workers else None)
        image_key = start_doc["mc_beamline"].get("image_key", "det_image")
        fallback = None if array_fallback is None else (lambda seq_num: array_fallback(image_key, seq_num))
        self._locator = FrameLocator(image_key, fallback=fallback,
                                     on_error=lambda seq_num, exc: self._record("frame", exc, seq_num),
                                     executor=self._pool, buffers=self._prefetch + 2)
        self._pending: deque[tuple[PendingFrame, float]] = deque()
        self._source = None  # (name, doc, iterator of the frames it makes available, queued)
        self._last_draw = time.monotonic()
        self._details: XccaDetails | None = None
        self._maps: dict[str, np.ndarray] | None = None
        md = start_doc["mc_beamline"]
        motors = md.get("motors", {})
        self._position_keys = (motors.get("x"), motors.get("y"))
        self._positions: dict[int, tuple[float, float]] = {}  # frame index -> measured (x, y), µm
        self._index_key = md.get("index_key") if md.get("raster_search") else None
        self._indices: dict[int, int] = {}  # seq_num -> fine-grid index (adaptive runs)
        self.follower: RasterSearchFollower | None = None
        try:
            self.analysis = analysis_factory(start_doc)
            if self._index_key is not None:
                self.follower = RasterSearchFollower(RasterSearchSpec(**md["raster_search"]), self.analysis)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised into the scan
            self._record("setup", exc)
        self._start_worker()

    # --------------------------------------------------------------- worker side
    def _document(self, name: str, doc: dict, queued: float) -> None:
        if self.analysis is not None:  # else set-up failed (recorded); reading frames would be wasted work
            self._record_positions(name, doc)
            self._source = (name, doc, self._locator.locate(name, doc), queued)

    def _record_positions(self, name: str, doc: dict) -> None:
        """Keep the frame index of every event (an adaptive run's fine-grid index) and its
        measured stage position (the motors' readbacks of a step raster, the latched encoder
        values of a fly raster) for the maps."""
        x_key, y_key = self._position_keys
        if name == "event":
            pages = {k: [v] for k, v in doc["data"].items()}
            seq_nums = [doc["seq_num"]]
        elif name == "event_page":
            pages, seq_nums = doc["data"], doc["seq_num"]
        else:
            return
        if self._index_key in pages:
            self._indices.update((int(s), int(i)) for s, i in zip(seq_nums, pages[self._index_key]))
        if x_key in pages and y_key in pages:
            for seq_num, x, y in zip(seq_nums, pages[x_key], pages[y_key]):
                self._positions[self._frame_index(int(seq_num))] = (float(x), float(y))

    def _frame_index(self, seq_num: int) -> int:
        """Raster index of the frame of event ``seq_num``: the event's fine-grid index in an
        adaptive run, ``seq_num - 1`` otherwise."""
        return self._indices[seq_num] if self._index_key is not None else seq_num - 1

    def _step(self, idle: bool) -> bool:
        """Keep up to ``prefetch`` located frames pending; analyse the oldest.

        A frame is analysed when the look-ahead is full, when no document is waiting (so a
        frame never waits for the next event), and before the stop document.
        """
        if self._pending and (len(self._pending) > self._prefetch or (self._source is None and idle)):
            self._analyse(*self._pending.popleft())
            return True
        if self._source is None:
            return False
        name, doc, frames, queued = self._source
        try:
            self._pending.append((next(frames), queued))
        except StopIteration:
            self._source = None
            self._maybe_draw()
        except Exception as exc:  # noqa: BLE001
            self._source = None
            self._record(name, exc, doc.get("seq_num") if isinstance(doc.get("seq_num"), int) else None)
        return True

    def _analyse(self, pending: PendingFrame, queued: float) -> None:
        try:
            frame = pending.result()  # None: not readable, recorded by the locator
        except Exception as exc:  # noqa: BLE001
            self._record("frame", exc, pending.seq_num)
            frame = None
        if frame is not None:
            try:
                index = self._frame_index(pending.seq_num)
                record = self.analysis.add_frame(index, frame)
            except Exception as exc:  # noqa: BLE001
                self._record("frame", exc, pending.seq_num)
            else:
                self._follow(index, record, pending.seq_num)
            self.frame_latency_s.append(time.perf_counter() - queued)
        del frame
        pending.release()  # its array is reused for a later frame unless something still refers to it
        self._maybe_draw()

    def _follow(self, index: int, record, seq_num: int) -> None:
        """Re-derive the adaptive search's next decision; after a mismatch (recorded) it stops following."""
        if self.follower is None:
            return
        try:
            self.follower.add(index, record)
        except Exception as exc:  # noqa: BLE001
            self._record("raster_search", exc, seq_num)
            self.follower = None

    def _maybe_draw(self) -> None:
        if self.figure_dir is not None and time.monotonic() - self._last_draw > self.redraw_s:
            self._draw()

    def _close(self) -> None:
        """No more frames: the reader's threads, files and frame arrays go before the result is computed."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._locator.close()

    def _compute_result(self) -> dict | None:
        if self.analysis is None:
            return None
        self._details = self.analysis.details()
        result = json_ready(self.analysis.result(self._details))
        if self._index_key is not None:  # null where the frames are not the ones the search chooses (recorded)
            result["raster_search"] = (None if self.follower is None
                                       else json_ready(self.follower.search.result().as_dict()))
        try:
            self._maps = orientation_maps(self.analysis, self._details, self._positions)
        except Exception as exc:  # noqa: BLE001 - the result is stored without the maps
            self._record("result", exc)
        return result

    def _after_result(self) -> None:
        if self.figure_dir is not None and self._details is not None:
            self._draw(details=self._details)

    def _result_documents(self):
        return xcca_result_documents(self.start_doc, self.result, self._maps, self.errors)

    def _draw(self, details: XccaDetails | None = None) -> None:
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


def orientation_maps(analysis: XccaAnalysis, details: XccaDetails,
                     positions: dict[int, tuple[float, float]] | None = None) -> dict[str, np.ndarray]:
    """Raster-shaped SL orientation (degrees, NaN where unknown) and domain labels (-1: none);
    with ``positions`` (frame index → measured stage (x, y), µm) also ``x_um`` and
    ``y_um``: where each map pixel was measured (NaN where no event said)."""
    orientation = np.full(details.shape, np.nan)
    for index, candidates in details.orientation.items():
        orientation[analysis.position(index)] = candidates[0]
    maps = {"orientation_deg": orientation, "domain": np.asarray(details.domains.labels, dtype=np.int64)}
    if positions:
        x_um, y_um = np.full(details.shape, np.nan), np.full(details.shape, np.nan)
        for index, (x, y) in positions.items():
            row, col = analysis.position(index)
            if 0 <= row < details.shape[0] and 0 <= col < details.shape[1]:
                x_um[row, col], y_um[row, col] = x, y
        maps.update(x_um=x_um, y_um=y_um)
    return maps


xcca_router = LiveXcca.router
"""A RunRouter that runs :class:`LiveXcca` on every raster run (:meth:`QueuedRunAnalysis.router`)."""


__all__ = ["CORRECTION_KEYS", "LiveXcca", "analysis_for_start", "orientation_maps", "xcca_router"]
