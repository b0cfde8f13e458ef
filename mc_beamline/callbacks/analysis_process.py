"""Live analysis in a separate process, so it never competes with the RunEngine for the GIL.

:class:`AnalysisProcess` is a RunEngine callback that only puts documents on a queue. A
child process (started with ``spawn``: the parent runs CA and ophyd threads, which ``fork``
would copy half-way) runs the same :func:`~mc_beamline.callbacks.live_xcca.xcca_router`,
publishes the derived runs to Tiled through its own client, and reports each finished
analysis back. If the child dies, the scan does not notice; :meth:`AnalysisProcess.summary`
then says so.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import sys
import time
from pathlib import Path


def _serve(docs, reports, tiled_uri: str, api_key: str, figure_dir: str | None) -> None:
    """Child process: documents in, derived runs to Tiled, one report per finished run."""
    from tiled.client import from_uri

    from mc_beamline.callbacks.live_xcca import xcca_router
    from mc_beamline.storage import tiled_writer

    client = from_uri(tiled_uri, api_key=api_key)
    live_runs = {}
    router = xcca_router(publish=tiled_writer(client), figure_dir=Path(figure_dir) if figure_dir else None,
                         on_run=lambda live: live_runs.__setitem__(live.start_doc["uid"], live))
    with client.context:
        while True:
            item = docs.get()
            if item is None:
                break
            name, doc = item
            router(name, doc)
            if name == "stop" and doc["run_start"] in live_runs:
                live = live_runs.pop(doc["run_start"])
                live.wait()
                reports.put({
                    "uid": doc["run_start"],
                    "result": live.result,
                    "errors": live.errors,
                    "figure": str(live.figure_path) if live.figure_path else None,
                    "frame_latency_s": live.frame_latency_s,
                    "result_at": live.result_at,
                    "stored_at": time.time(),
                })
    # Everything is stored and reported: skip the interpreter's module teardown (0.65 s
    # measured for this process) once the reports have reached the pipe.
    reports.close()
    reports.join_thread()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def report_lags_s(report: dict, scan_end: float) -> tuple[float, float]:
    """Seconds from ``scan_end`` (s since the epoch) until a report's result was computed
    and until it was stored with its figure (0 where that came first)."""
    computed = report["result_at"] or scan_end
    return max(0.0, computed - scan_end), max(0.0, report["stored_at"] - scan_end)


class AnalysisProcess:
    """RunEngine callback that runs the live analysis in a child process.

    Parameters
    ----------
    tiled_uri, api_key : the Tiled server where derived runs are stored.
    figure_dir : where live figures go (None: no figures).
    """

    def __init__(self, tiled_uri: str, api_key: str, figure_dir: Path | None = None):
        ctx = multiprocessing.get_context("spawn")
        self._docs = ctx.Queue()
        self._reports = ctx.Queue()
        self._reported: dict[str, dict] = {}
        self._process = ctx.Process(
            target=_serve, name="mc-live-analysis", daemon=True,
            args=(self._docs, self._reports, tiled_uri, api_key, str(figure_dir) if figure_dir else None),
        )
        self._process.start()

    def __call__(self, name: str, doc: dict) -> None:
        self._docs.put((name, doc))

    def summary(self, uid: str, timeout: float) -> dict:
        """The report of run ``uid``, waiting up to ``timeout`` s: result, errors, figure,
        frame latencies (s), and when (s since the epoch) the result was computed
        (``result_at``) and when it was stored with its figure (``stored_at``)."""
        while uid not in self._reported:
            if not self._process.is_alive() and self._reports.empty():
                raise RuntimeError(f"The live-analysis process ended (exit code {self._process.exitcode}) "
                                   f"before reporting run {uid}.")
            try:
                report = self._reports.get(timeout=min(timeout, 1.0))
            except queue.Empty:
                timeout -= 1.0
                if timeout <= 0:
                    raise TimeoutError(f"The live analysis of run {uid} did not finish in time.") from None
                continue
            self._reported[report["uid"]] = report
        return self._reported.pop(uid)

    def close(self, timeout: float = 30.0) -> None:
        """Let the child finish what it has and stop."""
        if self._process.is_alive():
            self._docs.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)

    def __enter__(self) -> "AnalysisProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
