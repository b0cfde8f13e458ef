"""Derived runs: the results of a live analysis as a Bluesky run stored next to the raw run.

A derived run's start document names the raw run (``mc_beamline.raw_uid``) and the
analysis (``mc_beamline.analysis``); its streams hold the numbers per analysed unit
(condition, frame, map); the stop document carries the whole result under the analysis's
key and the errors met (``analysis_errors``), so that ``mc-beamline results`` exports
exactly what was computed live.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

from event_model import ComposeRunBundle, DocumentNames, compose_run, schema_validators

DERIVED_NAMESPACE = uuid.UUID("0b7c1c5e-2f0a-4f57-9a0e-5c3d1e8a7b21")
"""Namespace of derived-run uids (uuid5 of the raw uid and the analysis)."""

Streams = Callable[[ComposeRunBundle], Iterator[tuple[str, dict]]]
"""``streams(bundle)`` yields the descriptor and event documents of a derived run's streams."""


def derived_uid(raw_uid: str, analysis: str) -> str:
    """The uid of the derived run of analysis ``analysis`` of raw run ``raw_uid``: always the same,
    so that a catalog can never hold two (Tiled refuses a second run with the same uid)."""
    return str(uuid.uuid5(DERIVED_NAMESPACE, f"{raw_uid}/{analysis}"))


def derived_run_documents(raw_start: dict, *, plan_name: str, analysis: str, result_key: str, result: dict | None,
                          errors: list[dict], streams: Streams | None = None) -> Iterator[tuple[str, dict]]:
    """Documents of the derived run of ``raw_start``: ``streams(bundle)`` (None: no stream),
    then ``result`` under ``result_key`` and ``errors`` in the stop document."""
    bundle = compose_run(uid=derived_uid(raw_start["uid"], analysis), metadata={
        "plan_name": plan_name,
        "mc_beamline": {"analysis": analysis, "raw_uid": raw_start["uid"],
                        "experiment": raw_start.get("mc_beamline", {}).get("experiment")},
    })
    yield "start", bundle.start_doc
    if streams is not None:
        yield from streams(bundle)
    stop = bundle.compose_stop(
        exit_status="success" if not errors else "fail",
        reason="" if not errors else f"{len(errors)} analysis error(s); first: {errors[0]['message']}",
    )
    stop[result_key] = result
    stop["analysis_errors"] = errors
    schema_validators[DocumentNames.stop].validate(stop)
    yield "stop", stop


def row_stream(bundle: ComposeRunBundle, stream: str, units: dict[str, str | None],
               rows: list[dict[str, float]]) -> Iterator[tuple[str, dict]]:
    """A stream of scalar rows, one event each (data keys and units from ``units``, None = no
    unit); nothing at all when there are no rows."""
    if not rows:
        return
    desc = bundle.compose_descriptor(
        name=stream,
        data_keys={k: {"source": "analysis", "dtype": "number", "shape": [], "dtype_numpy": "<f8",
                       **({"units": unit} if unit else {})} for k, unit in units.items()},
    )
    yield "descriptor", desc.descriptor_doc
    for row in rows:
        now = time.time()
        yield "event", desc.compose_event(data=row, timestamps={k: now for k in row})


__all__ = ["DERIVED_NAMESPACE", "Streams", "derived_uid", "derived_run_documents", "row_stream"]
