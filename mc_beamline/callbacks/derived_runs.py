"""Derived runs: the results of a live analysis as a Bluesky run stored next to the raw run.

A derived run's start document names the raw run (``mc_beamline.raw_uid``) and the
analysis (``mc_beamline.analysis``); one stream holds a row of numbers per analysed unit
(condition, frame); the stop document carries the whole result under the analysis's key
and the errors met (``analysis_errors``), so that ``mc-beamline results`` exports exactly
what was computed live.
"""

from __future__ import annotations

import time
from typing import Iterator

from event_model import DocumentNames, compose_run, schema_validators


def derived_run_documents(raw_start: dict, *, plan_name: str, analysis: str, result_key: str, stream: str,
                          units: dict[str, str | None], rows: list[dict[str, float]], result: dict | None,
                          errors: list[dict]) -> Iterator[tuple[str, dict]]:
    """Documents of the derived run of ``raw_start``: ``rows`` in ``stream`` (data keys and
    units from ``units``, None = no unit), ``result`` and ``errors`` in the stop document."""
    bundle = compose_run(metadata={
        "plan_name": plan_name,
        "mc_beamline": {"analysis": analysis, "raw_uid": raw_start["uid"],
                        "experiment": raw_start.get("mc_beamline", {}).get("experiment")},
    })
    yield "start", bundle.start_doc
    if rows:
        desc = bundle.compose_descriptor(
            name=stream,
            data_keys={k: {"source": "analysis", "dtype": "number", "shape": [], "dtype_numpy": "<f8",
                           **({"units": unit} if unit else {})} for k, unit in units.items()},
        )
        yield "descriptor", desc.descriptor_doc
        for row in rows:
            now = time.time()
            yield "event", desc.compose_event(data=row, timestamps={k: now for k in row})
    stop = bundle.compose_stop(
        exit_status="success" if not errors else "fail",
        reason="" if not errors else f"{len(errors)} analysis error(s); first: {errors[0]['message']}",
    )
    stop[result_key] = result
    stop["analysis_errors"] = errors
    schema_validators[DocumentNames.stop].validate(stop)
    yield "stop", stop


__all__ = ["derived_run_documents"]
