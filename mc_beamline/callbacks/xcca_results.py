"""XCCA results as a derived Bluesky run, stored in Tiled next to the raw run.

The derived run names its raw run in ``start["mc_beamline"]["raw_uid"]`` and holds

* stream ``ccf``: one event with the averaged CCF (``delta_deg``, ``value``; NaN = undefined);
* stream ``frames``: one row per analysed frame (one event page) (index, selected, ψ, domain, peak counts);
* stream ``maps``: one event with the SL orientation map and the domain labels (rows x columns);
* the stop document: the whole ``mc-beamline xcca`` result (``xcca_result``) and the
  errors met during the analysis (``analysis_errors``), so that ``mc-beamline results``
  exports exactly what was computed live.
"""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import numpy as np

from mc_beamline.callbacks.derived_runs import derived_run_documents

ANALYSIS_NAME = "xcca"
RESULT_KEY = "xcca_result"


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def xcca_result_documents(
    raw_start: dict, result: dict | None, maps: dict[str, np.ndarray] | None, errors: list[dict]
) -> Iterator[tuple[str, dict]]:
    """Documents of the derived run holding ``result`` (the RESULT.json dict) of raw run ``raw_start``.

    ``maps`` holds raster-shaped arrays (``orientation_deg``, ``domain``) or is None. Without
    a result (the analysis failed) the derived run holds only the errors, in its stop document.
    """
    streams = None if result is None else (lambda bundle: _result_streams(bundle, result, maps))
    return derived_run_documents(raw_start, plan_name="xcca_analysis", analysis=ANALYSIS_NAME, result_key=RESULT_KEY,
                                 result=result, errors=errors, streams=streams)


def _result_streams(bundle, result: dict, maps: dict[str, np.ndarray] | None) -> Iterator[tuple[str, dict]]:
    """Streams ``ccf``, ``frames`` and ``maps`` of the derived run."""
    now = time.time()

    n = len(result["ccf"]["delta_deg"])
    ccf = bundle.compose_descriptor(
        name="ccf",
        data_keys={
            "delta_deg": {"source": "analysis", "dtype": "array", "shape": [n], "dtype_numpy": "<f8", "units": "deg"},
            "value": {"source": "analysis", "dtype": "array", "shape": [n], "dtype_numpy": "<f8"},
        },
    )
    yield "descriptor", ccf.descriptor_doc
    yield "event", ccf.compose_event(
        data={"delta_deg": np.asarray(result["ccf"]["delta_deg"], dtype=float),
              "value": np.array([_nan(v) for v in result["ccf"]["value"]])},
        timestamps={"delta_deg": now, "value": now},
    )

    frame_keys = {
        "index": ("integer", "<i8", None),
        "selected": ("integer", "<i8", None),
        "psi_deg": ("number", "<f8", "deg"),
        "domain": ("integer", "<i8", None),
        "n_sl_peaks": ("integer", "<i8", None),
        "n_al_peaks": ("integer", "<i8", None),
    }
    frames = bundle.compose_descriptor(
        name="frames",
        data_keys={k: {"source": "analysis", "dtype": dt, "shape": [], "dtype_numpy": np_dt, **({"units": u} if u else {})}
                   for k, (dt, np_dt, u) in frame_keys.items()},
    )
    yield "descriptor", frames.descriptor_doc
    rows = result["frames"]
    if rows:
        columns = {
            "index": [int(f["index"]) for f in rows],
            "selected": [int(bool(f["selected"])) for f in rows],
            "psi_deg": [_nan(f["psi_deg"]) for f in rows],
            "domain": [-1 if f["domain"] is None else int(f["domain"]) for f in rows],
            "n_sl_peaks": [len(f["sl_peaks_deg"]) for f in rows],
            "n_al_peaks": [len(f["al_peaks_deg"]) for f in rows],
        }
        yield "event_page", frames.compose_event_page(
            data=columns,
            timestamps={k: [now] * len(rows) for k in columns},
            seq_num=list(range(1, len(rows) + 1)),
            time=[now] * len(rows),
            uid=[str(uuid.uuid4()) for _ in rows],
        )

    if maps:
        maps_desc = bundle.compose_descriptor(
            name="maps",
            data_keys={
                key: {"source": "analysis", "dtype": "array", "shape": list(arr.shape), "dtype_numpy": arr.dtype.str}
                for key, arr in maps.items()
            },
        )
        yield "descriptor", maps_desc.descriptor_doc
        yield "event", maps_desc.compose_event(data=dict(maps), timestamps={k: now for k in maps})
