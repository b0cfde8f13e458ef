"""The document handling every per-run live analysis shares: a queue and one worker thread.

A :class:`QueuedRunAnalysis` receives the documents of one run (a RunRouter made by
:func:`analysis_router` gives each run its own). Its ``__call__`` only queues a document
and returns at once, so the RunEngine is never slowed; a worker thread takes the
documents in order and hands them to :meth:`~QueuedRunAnalysis._document` (by default:
every primary-stream event, also those inside event pages, to
:meth:`~QueuedRunAnalysis._event`). At the stop document it finishes any pending work,
computes the result, publishes the derived run's documents and marks the analysis done.
Exceptions are recorded with the results
(:func:`~mc_beamline.callbacks.analysis_errors.record_error`) and never reach the RunEngine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from event_model import RunRouter

from mc_beamline.callbacks.analysis_errors import record_error

logger = logging.getLogger(__name__)

Publisher = Callable[[str, dict], None]
ArrayFallback = Callable[[str, int], np.ndarray]


class QueuedRunAnalysis:
    """Base of the live analyses (see the module docstring).

    Parameters
    ----------
    start_doc : the raw run's start document (``mc_beamline.keys`` name the data keys).
    publish : where the derived run's documents go (e.g. a TiledWriter), or None.
    figure_dir : directory for live figures (PNG), or None for none.
    array_fallback : ``fallback(key, seq_num) -> array`` for array data an event does not
        carry and no local file holds (e.g. read from Tiled in a replay).

    Subclasses set :attr:`WHAT` and implement :meth:`_event` (or :meth:`_document`),
    :meth:`_compute_result` and :meth:`_result_documents`; they call :meth:`_start_worker`
    at the end of ``__init__``. Work a subclass keeps pending between documents is done in
    :meth:`_step`, its resources are released in :meth:`_close`.
    """

    WHAT = "Live analysis"
    """Names the analysis in log lines and in the worker thread's name."""
    EXPERIMENT = ""
    """The experiment whose runs it analyses (start metadata ``mc_beamline.experiment``)."""

    @classmethod
    def handles(cls, start_doc: dict) -> bool:
        """Whether ``start_doc`` starts a run of this analysis's experiment."""
        return bool(cls.EXPERIMENT) and start_doc.get("mc_beamline", {}).get("experiment") == cls.EXPERIMENT

    def __init__(self, start_doc: dict, *, publish: Publisher | None = None, figure_dir: Path | None = None,
                 array_fallback: ArrayFallback | None = None):
        self.start_doc = start_doc
        self.publish = publish
        self.figure_dir = Path(figure_dir) if figure_dir else None
        self.array_fallback = array_fallback
        self.errors: list[dict] = []
        self.result: dict | None = None
        self.result_at: float | None = None
        """Wall-clock time (s since the epoch) the result was computed, before the figure and storing."""
        self.figure_path: Path | None = None
        self.keys = dict(start_doc.get("mc_beamline", {}).get("keys", {}))
        self._primary: set[str] = set()
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Event()

    def _start_worker(self) -> None:
        name = f"{self.WHAT.split()[0].lower()}-{self.start_doc['uid'][:8]}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    @classmethod
    def router(cls, publish: Publisher | None = None, figure_dir: Path | None = None,
               on_run: Callable[[QueuedRunAnalysis], None] | None = None, **options) -> RunRouter:
        """A RunRouter that runs this analysis on every run of its experiment (subscribe it to
        the RunEngine); ``on_run`` receives each new analysis (e.g. to wait for its result),
        ``options`` go to the analysis."""
        return analysis_router(cls, on_run=on_run, publish=publish, figure_dir=figure_dir, **options)

    # ------------------------------------------------------------- callback side
    def __call__(self, name: str, doc: dict) -> None:
        """Queue a document (with the time it arrived); returns at once."""
        self._queue.put((name, doc, time.perf_counter()))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stop document has been processed; True if it has."""
        return self._done.wait(timeout)

    # --------------------------------------------------------------- worker side
    def _record(self, where: str, exc: BaseException, seq_num: int | None = None) -> None:
        record_error(self.errors, logger, f"{self.WHAT} of run {self.start_doc['uid'][:8]}", where, exc, seq_num)

    def _work(self) -> None:
        while True:
            if self._step(idle=self._queue.empty()):
                continue
            name, doc, queued = self._queue.get()
            if name == "stop":
                while self._step(idle=True):
                    pass
                self._finish()
                return
            try:
                self._document(name, doc, queued)
            except Exception as exc:  # noqa: BLE001
                self._record(name, exc, doc.get("seq_num") if isinstance(doc.get("seq_num"), int) else None)

    def _array(self, data: dict, role: str, seq_num: int, dtype=None) -> np.ndarray | None:
        """The array of data key ``keys[role]`` in an event (or from the fallback), or None."""
        key = self.keys.get(role)
        if key is None:
            return None
        value = data.get(key)
        if value is None and self.array_fallback is not None:
            value = self.array_fallback(key, seq_num)
        return None if value is None else np.asarray(value, dtype=dtype)

    def _finish(self) -> None:
        try:
            self._close()
        except Exception as exc:  # noqa: BLE001
            self._record("close", exc)
        try:
            self.result = self._compute_result()
        except Exception as exc:  # noqa: BLE001
            self._record("result", exc)
        self.result_at = time.time()
        self._after_result()
        try:
            if self.publish is not None:  # also without a result: the errors are stored
                for name, doc in self._result_documents():
                    self.publish(name, doc)
        except Exception as exc:  # noqa: BLE001
            self._record("publish", exc)
        finally:
            self._done.set()

    # ----------------------------------------------------------- subclass hooks
    def _document(self, name: str, doc: dict, queued: float) -> None:
        """Take one document (``queued``: its arrival, ``time.perf_counter()`` seconds).

        By default every primary-stream event goes to :meth:`_event`.
        """
        if name == "descriptor" and doc.get("name") == "primary":
            self._primary.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self._primary:
            self._event(doc)
        elif name == "event_page" and doc["descriptor"] in self._primary:
            for i, seq_num in enumerate(doc["seq_num"]):
                self._event({"seq_num": seq_num, "data": {k: v[i] for k, v in doc["data"].items()}})

    def _event(self, doc: dict) -> None:
        """Analyse one primary event (``seq_num`` and ``data``)."""
        raise NotImplementedError

    def _step(self, idle: bool) -> bool:
        """Do one unit of pending work, if any; True if it did (``idle``: no document waits)."""
        return False

    def _close(self) -> None:
        """Release what the analysis held for its documents (called once, before the result)."""

    def _compute_result(self) -> dict | None:
        """The JSON-ready result at the stop document."""
        raise NotImplementedError

    def _after_result(self) -> None:
        """Called once the result is known (e.g. to draw the final figure)."""

    def _result_documents(self) -> Iterator[tuple[str, dict]]:
        """The derived run's documents holding :attr:`result` and :attr:`errors`."""
        raise NotImplementedError


def analysis_router(*live_classes: type[QueuedRunAnalysis],
                    on_run: Callable[[QueuedRunAnalysis], None] | None = None, **options) -> RunRouter:
    """A RunRouter that gives every run one of ``live_classes`` handles its own analysis,
    ``live_class(start_doc, **options)``; ``on_run`` receives each new analysis."""

    def factory(name: str, start_doc: dict):
        for live_class in live_classes:
            if live_class.handles(start_doc):
                live = live_class(start_doc, **options)
                if on_run is not None:
                    on_run(live)
                return [live], []
        return [], []

    return RunRouter([factory])


__all__ = ["ArrayFallback", "Publisher", "QueuedRunAnalysis", "analysis_router"]
