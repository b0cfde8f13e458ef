"""Assembly-series results as a derived Bluesky run, stored in Tiled next to the raw run.

The derived run names its raw run in ``start["mc_beamline"]["raw_uid"]`` (``analysis``:
``"assembly"``) and holds

* stream ``frames``: one event per frame: time since the flocculant addition began (s),
  the NC number fractions in the dilute fluid, dense fluid and supercrystal (NaN for a
  sample without a phase analysis) and the superlattice ring's symmetry order and C_4,
  C_6, C_12 (NaN / −1 where the frame had no ring);
* the stop document: the whole result (``assembly_result``: the ``mc-beamline saxs`` JSON
  of the last frame plus ``series`` and ``symmetry``) and the errors met
  (``analysis_errors``), so that ``mc-beamline results`` exports exactly what was computed live.
"""

from __future__ import annotations

from typing import Iterator

from mc_beamline.callbacks.derived_runs import derived_run_documents, row_stream

ANALYSIS_NAME = "assembly"
RESULT_KEY = "assembly_result"

_KEYS = {"t_s": "s", "dilute": None, "dense": None, "crystal": None, "order": None, "c4": None, "c6": None,
         "c12": None}


def _number(value, missing: float = float("nan")) -> float:
    return missing if value is None else float(value)


def frame_rows(result: dict) -> list[dict[str, float]]:
    """The ``frames`` stream's data, one row per frame of ``result``."""
    series, symmetry = result.get("series"), result.get("symmetry")
    times = (series or symmetry or {}).get("t_s", [])
    rows = []
    for k, t in enumerate(times):
        row = {"t_s": float(t)}
        for phase in ("dilute", "dense", "crystal"):
            row[phase] = _number(series[phase][k]) if series else float("nan")
        row["order"] = _number(symmetry["order"][k], -1.0) if symmetry else -1.0
        for n in ("c4", "c6", "c12"):
            row[n] = _number(symmetry[n][k]) if symmetry else float("nan")
        rows.append(row)
    return rows


def assembly_result_documents(raw_start: dict, result: dict | None, errors: list[dict]
                              ) -> Iterator[tuple[str, dict]]:
    """Documents of the derived run holding ``result`` of raw run ``raw_start`` (None: errors only)."""
    rows = frame_rows(result) if result is not None else []
    return derived_run_documents(raw_start, plan_name="assembly_analysis", analysis=ANALYSIS_NAME,
                                 result_key=RESULT_KEY, result=result, errors=errors,
                                 streams=lambda bundle: row_stream(bundle, "frames", _KEYS, rows))


__all__ = ["ANALYSIS_NAME", "RESULT_KEY", "assembly_result_documents", "frame_rows"]
