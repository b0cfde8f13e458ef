"""Flow-series results as a derived Bluesky run, stored in Tiled next to the raw run.

The derived run names its raw run in ``start["mc_beamline"]["raw_uid"]`` (``analysis``:
``"msc"``) and holds

* stream ``conditions``: one event per analysed condition: set points (°C, s), NC first
  exciton (nm) and diameter (nm), SAXS volume-weighted mean radius (nm) and the absorbance
  of every MSC family (0 where it was not found; NaN = not available);
* the stop document: the whole result (``msc_result``, the ``mc-beamline msc`` JSON with
  each spectrum's condition and SAXS result) and the errors met (``analysis_errors``), so
  that ``mc-beamline results`` exports exactly what was computed live.
"""

from __future__ import annotations

from typing import Iterator

from mc_beamline.callbacks.derived_runs import derived_run_documents, row_stream
from mc_beamline.materials.cdse import MSC_FAMILY_NM

ANALYSIS_NAME = "msc"
RESULT_KEY = "msc_result"


def _family_key(family: str) -> str:
    return "msc_" + family.replace("-", "_")


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def condition_row(entry: dict) -> dict[str, float]:
    """The ``conditions`` stream's data of one spectrum entry of the result."""
    cond, nc, saxs = entry["condition"], entry["nc"], entry.get("saxs")
    row = {
        "nucleation_temperature_c": float(cond["nucleation_temperature_c"]),
        "growth_temperature_c": float(cond["growth_temperature_c"]),
        "reaction_time_s": float(cond["reaction_time_s"]),
        "nc_wavelength_nm": _number(nc and nc["wavelength_nm"]),
        "nc_diameter_nm": _number(nc and nc["diameter_nm"]),
        "saxs_mean_radius_nm": _number(saxs and saxs["size_distribution"]["mean_radius_nm"]),
    }
    for family in MSC_FAMILY_NM:
        row[_family_key(family)] = max((p["absorbance"] for p in entry["msc"] if p["family"] == family), default=0.0)
    return row


_UNITS = {"nucleation_temperature_c": "degC", "growth_temperature_c": "degC", "reaction_time_s": "s",
          "nc_wavelength_nm": "nm", "nc_diameter_nm": "nm", "saxs_mean_radius_nm": "nm"}


def flow_result_documents(raw_start: dict, result: dict | None, errors: list[dict]) -> Iterator[tuple[str, dict]]:
    """Documents of the derived run holding ``result`` of raw run ``raw_start`` (None: errors only)."""
    units = {**_UNITS, **{_family_key(f): None for f in MSC_FAMILY_NM}}
    rows = [condition_row(entry) for entry in result["spectra"]] if result is not None else []
    return derived_run_documents(raw_start, plan_name="msc_analysis", analysis=ANALYSIS_NAME, result_key=RESULT_KEY,
                                 result=result, errors=errors,
                                 streams=lambda bundle: row_stream(bundle, "conditions", units, rows))


__all__ = ["ANALYSIS_NAME", "RESULT_KEY", "condition_row", "flow_result_documents"]
