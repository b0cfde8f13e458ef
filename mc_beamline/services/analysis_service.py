"""The analysis service: the live analyses of every experiment, fed by the document stream.

:class:`AnalysisService` subscribes to the beamline's document stream
(:mod:`mc_beamline.services.stream`) and gives every raw run of an experiment in
:data:`~mc_beamline.callbacks.experiments.EXPERIMENTS` its live analysis (the same
RunRouter the demo uses, :func:`~mc_beamline.callbacks.experiments.live_router`); each
analysis stores its derived run in Tiled when the run's stop document arrives.

Nothing is lost when the stream is not enough: a *catch-up* worker replays from Tiled
(:func:`~mc_beamline.callbacks.replay.replay_live`, the code behind ``mc-beamline replay``)

* at start, every finished raw run that has no finished derived run (the service was down,
  or killed while it analysed);
* every run whose stop document arrives without its start (the service came up mid-run);
* every run whose live analysis ended without a stored derived run (e.g. Tiled was down),
  found by a sweep every ``sweep_s`` seconds.

Every raw run ends with exactly one derived run: a derived run's uid is fixed by its raw
run (:func:`~mc_beamline.callbacks.derived_runs.derived_uid`), so Tiled refuses a second
one; the service never starts two analyses of one run, and an incomplete derived run left
by a crash is deleted before the run is analysed again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from mc_beamline.callbacks.derived_runs import derived_uid
from mc_beamline.callbacks.experiments import EXPERIMENTS, experiment_of, live_router
from mc_beamline.callbacks.replay import replay_live
from mc_beamline.storage import tiled_writer
from mc_beamline.storage.runs import derived_runs, plain

logger = logging.getLogger(__name__)

SWEEP_S = 60.0
"""Seconds between two searches of Tiled for raw runs without a derived run."""
STOP_WAIT_S = 120.0
"""Longest wait (s) for a run's stop document to reach Tiled before it is caught up."""
REPLAY_TIMEOUT_S = 1800.0
"""Longest catch-up of one run (s)."""

_CATCH_UP = "catch-up"


class AnalysisService:
    """Live analyses of the stream's runs, with catch-up from Tiled (see the module docstring).

    Parameters
    ----------
    client : Tiled client of the catalog (raw runs are read and derived runs written there).
    figure_dir : where live figures (PNG) go, or None for none.
    sweep_s : seconds between two searches for runs without a derived run.
    """

    def __init__(self, client: Any, *, figure_dir: Path | None = None, sweep_s: float = SWEEP_S) -> None:
        self.client = client
        self.figure_dir = figure_dir
        self.sweep_s = sweep_s
        self._writer = tiled_writer(client)
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._analyses: dict[str, Any] = {}
        """Raw uid -> its live analysis, or _CATCH_UP while it is replayed."""
        self._runs_of: dict[str, str] = {}
        """Descriptor, resource and stream-resource uid -> raw uid, for the runs analysed live."""
        self._todo: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._router = live_router(publish=self._publish, figure_dir=figure_dir, on_run=self._started)
        self._worker = threading.Thread(target=self._catch_up_loop, name="catch-up", daemon=True)
        self.caught_up: list[str] = []
        """Raw uids analysed by catch-up, in order."""

    # ------------------------------------------------------------------ storing
    def _publish(self, name: str, doc: dict) -> None:
        """Derived-run documents to Tiled; one writer for every analysis, one document at a time."""
        with self._write_lock:
            self._writer(name, doc)

    def _started(self, live: Any) -> None:
        with self._lock:
            self._analyses[live.start_doc["uid"]] = live

    # ------------------------------------------------------------- the stream
    def __call__(self, name: str, doc: dict) -> None:
        """One document from the stream (a RemoteDispatcher callback); returns quickly."""
        run = self._run_of(name, doc)
        if name == "start":
            if experiment_of(doc) is None or doc.get("mc_beamline", {}).get("analysis"):
                return
            with self._lock:
                if doc["uid"] in self._analyses:
                    return
            logger.info("Run %s (%s, scan %s) started: analysed live.", doc["uid"],
                        doc["mc_beamline"]["experiment"], doc.get("scan_id"))
            self._router(name, doc)
            return
        with self._lock:
            live = self._analyses.get(run) if run else None
        if run is None or live is None or live == _CATCH_UP:
            if name == "stop" and run is not None and live is None:
                self._todo.put((doc["run_start"], time.monotonic() + STOP_WAIT_S))
            return
        if name in ("descriptor", "resource", "stream_resource"):
            with self._lock:
                self._runs_of[doc["uid"]] = run
        self._router(name, doc)
        if name == "stop":
            with self._lock:
                self._runs_of = {k: v for k, v in self._runs_of.items() if v != run}
            logger.info("Run %s stopped (%s); its analysis finishes in the background.", run, doc.get("exit_status"))

    def _run_of(self, name: str, doc: dict) -> str | None:
        if name == "start":
            return doc["uid"]
        if name in ("stop", "descriptor", "resource", "stream_resource"):
            return doc.get("run_start")
        parent = {"event": "descriptor", "event_page": "descriptor", "datum": "resource",
                  "datum_page": "resource", "stream_datum": "stream_resource"}.get(name)
        with self._lock:
            return self._runs_of.get(doc.get(parent)) if parent else None

    # ---------------------------------------------------------------- catch-up
    def missing(self) -> list[str]:
        """Uids of the finished raw runs in Tiled without a finished derived run, oldest first."""
        from tiled.queries import Key

        found: dict[str, float] = {}
        for experiment in EXPERIMENTS.values():
            analysed = {plain(run.metadata["start"])["mc_beamline"]["raw_uid"]
                        for run in self._search(Key("start.mc_beamline.analysis") == experiment.analysis_name)
                        if run.metadata.get("stop")}
            for run in self._search(Key("start.mc_beamline.experiment") == experiment.name):
                start = run.metadata["start"]
                if start.get("mc_beamline", {}).get("analysis") is None and run.metadata.get("stop") \
                        and start["uid"] not in analysed:
                    found[start["uid"]] = float(start["time"])
        return sorted(found, key=lambda uid: (found[uid], uid))

    def _search(self, query: Any) -> list[Any]:
        results = self.client.search(query)
        return [results[key] for key in results]

    def catch_up(self, uid: str) -> bool:
        """Analyse stored raw run ``uid`` from Tiled unless it has a derived run or is being analysed;
        True if it was analysed now."""
        with self._lock:
            live = self._analyses.get(uid)
            if live == _CATCH_UP or (live is not None and not live.wait(0)):
                return False
            self._analyses[uid] = _CATCH_UP
        try:
            raw = self.client[uid]
            start = plain(raw.metadata["start"])
            experiment = experiment_of(start)
            if experiment is None or derived_runs(self.client, uid, experiment.analysis_name):
                return False
            self._drop_incomplete(uid, experiment.analysis_name)
            logger.info("Catching up on run %s (%s, scan %s) from Tiled.", uid, experiment.name, start.get("scan_id"))
            live = replay_live(self.client, uid, publish=self._publish, timeout_s=REPLAY_TIMEOUT_S,
                               figure_dir=self.figure_dir)
            for error in live.errors:
                logger.warning("Run %s: %s", uid, error.get("message"))
            self.caught_up.append(uid)
            return True
        finally:
            with self._lock:
                if self._analyses.get(uid) == _CATCH_UP:
                    del self._analyses[uid]

    def _drop_incomplete(self, uid: str, analysis: str) -> None:
        """Delete the derived run of ``uid`` that a crash left without its stop document."""
        duid = derived_uid(uid, analysis)
        if duid in self.client:
            logger.warning("Deleting the incomplete derived run %s of run %s.", duid, uid)
            self.client[duid].delete(recursive=True, external_only=False)

    def _catch_up_loop(self) -> None:
        next_sweep = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_sweep:
                try:
                    missing = self.missing()
                    self._forget_finished(set(missing))
                    for uid in missing:
                        if self._stopping.is_set():
                            return
                        self._guarded(uid)
                except Exception:  # noqa: BLE001 - Tiled away: try again at the next sweep
                    logger.exception("The search for runs without a derived run failed.")
                next_sweep = time.monotonic() + self.sweep_s
            try:
                uid, deadline = self._todo.get(timeout=min(1.0, self.sweep_s))
            except queue.Empty:
                continue
            if not self._stored_stop(uid):
                if time.monotonic() < deadline:
                    self._todo.put((uid, deadline))
                    self._stopping.wait(0.5)
                continue  # else: the sweep finds it once its stop document is stored
            self._guarded(uid)

    def _forget_finished(self, missing: set[str]) -> None:
        """Drop the finished live analyses whose derived runs are stored (the service runs for weeks)."""
        with self._lock:
            for uid, live in list(self._analyses.items()):
                if live != _CATCH_UP and uid not in missing and live.wait(0):
                    del self._analyses[uid]

    def _stored_stop(self, uid: str) -> bool:
        try:
            return bool(self.client[uid].metadata.get("stop"))
        except Exception:  # noqa: BLE001 - not there (yet), or Tiled away
            return False

    def _guarded(self, uid: str) -> None:
        try:
            self.catch_up(uid)
        except Exception:  # noqa: BLE001 - one run failing does not stop the others
            logger.exception("The catch-up of run %s failed; it is tried again at the next sweep.", uid)

    # ------------------------------------------------------------ the process
    def serve(self, address: str) -> None:
        """Consume the stream at ``address`` (``host:port`` of the proxy's output) until interrupted
        (KeyboardInterrupt, which SIGTERM raises in ``mc-beamline analysis serve``)."""
        import asyncio

        from bluesky.callbacks.zmq import RemoteDispatcher

        dispatcher = RemoteDispatcher(address, loop=asyncio.new_event_loop())
        dispatcher.subscribe(self)
        self._worker.start()
        logger.info("Analysis service consuming the document stream at %s.", address)
        try:
            dispatcher.start()
        except KeyboardInterrupt:
            logger.info("Analysis service stopping.")
        finally:
            self._stopping.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the live analyses in progress; True if none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            analyses = [a for a in self._analyses.values() if a != _CATCH_UP]
        return all(a.wait(max(0.0, deadline - time.monotonic())) for a in analyses)


__all__ = ["AnalysisService", "SWEEP_S"]
