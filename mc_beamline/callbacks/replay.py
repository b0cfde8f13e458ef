"""Stored analysis results and replays of stored runs (`mc-beamline results` / `replay`).

``stored_results`` exports what the live analysis computed during a run (XCCA for rasters,
MSC and SAXS sizes for flow series, phases and ring symmetry for assembly series), as
stored in Tiled in the derived run that names the raw run. ``replay`` runs the raw run's
documents from Tiled through the same live analysis and returns the same JSON; both use the
same analysis code on the same frames, so they agree exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mc_beamline.callbacks.experiments import experiment_of
from mc_beamline.callbacks.queued_analysis import QueuedRunAnalysis
from mc_beamline.storage.runs import (
    RunNotFoundError,
    derived_runs,
    plain,
    raw_run,
    run_documents,
)


def stored_results(client: Any, uid: str) -> dict:
    """The analysis result computed live for raw run ``uid`` (the newest, if it was analysed twice)."""
    raw = raw_run(client, uid)
    experiment = experiment_of(raw.metadata["start"])
    if experiment is None:
        raise RunNotFoundError(f"Run {uid} is not a raster, flow or assembly run; it has no live analysis.")
    runs = derived_runs(client, raw.metadata["start"]["uid"], experiment.analysis_name)
    if not runs:
        raise RunNotFoundError(f"Run {uid} has no stored analysis results (was it analysed live?).")
    newest = max(runs, key=lambda run: run.metadata["start"]["time"])
    stop = newest.metadata["stop"]
    if stop.get(experiment.result_key) is None:
        errors = stop.get("analysis_errors") or []
        first = errors[0]["message"] if errors else "no result"
        raise RunNotFoundError(f"The live analysis of run {uid} produced no result: {first}.")
    return plain(stop[experiment.result_key])


def replay_live(client: Any, uid: str, publish=None, timeout_s: float = 600.0, **live_options) -> QueuedRunAnalysis:
    """Run stored run ``uid``'s documents through its live analysis (XCCA, flow or assembly); return it.

    ``publish`` receives the derived run's documents (None: they are dropped). Frames and
    arrays the documents do not carry are read from Tiled. ``live_options`` go to the
    analysis (e.g. ``prefetch=0`` for the XCCA analysis: no read-ahead threads). Raises
    :class:`RunNotFoundError` for a run without a live analysis and :class:`TimeoutError`
    after ``timeout_s`` seconds.
    """
    raw = raw_run(client, uid)
    start = plain(raw.metadata["start"])
    experiment = experiment_of(start)
    if experiment is None:
        raise RunNotFoundError(
            f"Run {uid} is not a raster, flow or assembly run; there is no live analysis to replay.")

    def from_tiled(key: str, seq_num: int) -> np.ndarray:
        return np.asarray(raw["primary"][key][seq_num - 1])

    live = experiment.live(start, publish=publish, array_fallback=from_tiled, **live_options)
    for name, doc in run_documents(client, uid):
        if name != "start":
            live(name, doc)
    if not live.wait(timeout_s):
        raise TimeoutError(f"The replay of run {uid} did not finish within {timeout_s:.0f} s.")
    return live


def replay(client: Any, uid: str, timeout_s: float = 600.0) -> dict:
    """Replay stored run ``uid`` through its live analysis (XCCA, flow or assembly) and return its result."""
    live = replay_live(client, uid, timeout_s=timeout_s)
    if live.result is None:
        first = live.errors[0]["message"] if live.errors else "no result"
        raise RuntimeError(f"The replay of run {uid} produced no result: {first}.")
    return live.result


__all__ = ["RunNotFoundError", "replay", "replay_live", "stored_results"]
