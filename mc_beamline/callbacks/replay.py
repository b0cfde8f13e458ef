"""Stored analysis results and replays of stored runs (`mc-beamline results` / `replay`).

``results`` exports what the live analysis computed during a run (XCCA for rasters, MSC
and SAXS sizes for flow series, phases and ring symmetry for assembly series), as stored in Tiled in the derived run that names the raw run. ``replay`` runs the raw run's documents from Tiled
through the same live callback and returns the same JSON; both use the same analysis code
on the same frames, so they agree exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mc_beamline.callbacks import assembly_results, flow_results, xcca_results
from mc_beamline.callbacks.live_assembly import LiveAssembly, is_assembly_run
from mc_beamline.callbacks.live_flow import LiveFlow, is_flow_run
from mc_beamline.callbacks.live_xcca import LiveXcca, is_raster_run
from mc_beamline.storage import run_documents

ANALYSES = {
    "raster": (xcca_results.ANALYSIS_NAME, "xcca_result"),
    "flow": (flow_results.ANALYSIS_NAME, flow_results.RESULT_KEY),
    "assembly": (assembly_results.ANALYSIS_NAME, assembly_results.RESULT_KEY),
}
"""Per experiment: the name of its live analysis and the stop-document key of its result."""


class RunNotFoundError(LookupError):
    """A run uid (or its stored results) that the catalog does not hold."""


def _raw_run(client: Any, uid: str):
    try:
        return client[uid]
    except KeyError:
        raise RunNotFoundError(f"No run {uid} in the catalog.") from None


def stored_results(client: Any, uid: str) -> dict:
    """The analysis result computed live for raw run ``uid`` (the newest, if it was analysed twice)."""
    from tiled.queries import Key

    raw = _raw_run(client, uid)
    experiment = raw.metadata["start"].get("mc_beamline", {}).get("experiment")
    if experiment not in ANALYSES:
        raise RunNotFoundError(f"Run {uid} is not a raster, flow or assembly run; it has no live analysis.")
    analysis_name, result_key = ANALYSES[experiment]
    found = client.search(Key("mc_beamline.raw_uid") == raw.metadata["start"]["uid"])
    found = found.search(Key("mc_beamline.analysis") == analysis_name)
    runs = [found[key] for key in found]
    runs = [run for run in runs if run.metadata.get("stop")]
    if not runs:
        raise RunNotFoundError(f"Run {uid} has no stored analysis results (was it analysed live?).")
    newest = max(runs, key=lambda run: run.metadata["start"]["time"])
    stop = newest.metadata["stop"]
    if stop.get(result_key) is None:
        errors = stop.get("analysis_errors") or []
        first = errors[0]["message"] if errors else "no result"
        raise RunNotFoundError(f"The live analysis of run {uid} produced no result: {first}.")
    return _plain(stop[result_key])


def _plain(value):
    """Tiled metadata as plain Python containers (its DictView/ListView are read-only wrappers)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [_plain(v) for v in value]
    return value


def replay_live(client: Any, uid: str, publish=None, timeout_s: float = 600.0, **live_options):
    """Run stored run ``uid``'s documents through its live callback (XCCA, flow or assembly); return it.

    ``publish`` receives the derived run's documents (None: they are dropped). Frames and
    arrays the documents do not carry are read from Tiled. ``live_options`` go to the
    callback (e.g. ``prefetch=0`` for the XCCA callback: no read-ahead threads). Raises :class:`RunNotFoundError`
    for a run without a live analysis and :class:`TimeoutError` after ``timeout_s`` seconds.
    """
    raw = _raw_run(client, uid)
    start = _plain(raw.metadata["start"])
    if is_raster_run(start):
        image_key = start["mc_beamline"].get("image_key", "det_image")

        def from_tiled(seq_num: int) -> np.ndarray:
            return np.asarray(raw["primary"][image_key][seq_num - 1])

        live = LiveXcca(start, publish=publish, frame_fallback=from_tiled, **live_options)
    elif is_flow_run(start) or is_assembly_run(start):
        live_class = LiveFlow if is_flow_run(start) else LiveAssembly
        live = live_class(start, publish=publish,
                          array_fallback=lambda key, seq_num: np.asarray(raw["primary"][key][seq_num - 1]),
                          **live_options)
    else:
        raise RunNotFoundError(
            f"Run {uid} is not a raster, flow or assembly run; there is no live analysis to replay.")
    for name, doc in run_documents(client, uid):
        if name != "start":
            live(name, doc)
    if not live.wait(timeout_s):
        raise TimeoutError(f"The replay of run {uid} did not finish within {timeout_s:.0f} s.")
    return live


def replay(client: Any, uid: str, timeout_s: float = 600.0) -> dict:
    """Replay stored run ``uid`` through its live callback (XCCA, flow or assembly) and return its result."""
    live = replay_live(client, uid, timeout_s=timeout_s)
    if live.result is None:
        first = live.errors[0]["message"] if live.errors else "no result"
        raise RuntimeError(f"The replay of run {uid} produced no result: {first}.")
    return live.result
