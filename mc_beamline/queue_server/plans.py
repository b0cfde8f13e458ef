"""The plans that the queue (and IPython) offer, with typed, range-checked parameters.

Each queued plan is the plan of :mod:`mc_beamline.plans` itself, with its signature
(parameter names, order, defaults and types, see :func:`queue_plan`); this module adds only
what the queue needs: the device names and choices a parameter accepts, limits and short
descriptions. bluesky-queueserver reads both: a queue client sees each parameter's type,
unit (in its description) and limits, and a submission with a wrong type, a value outside
the limits or an unknown device is refused when it is added to the queue, before it can
run. Limits that depend on the beamline (the stage's soft limits) are checked by the plan
itself before anything moves (:mod:`mc_beamline.plans.validation`).
"""

import collections.abc
import inspect
import types
import typing

from bluesky_queueserver import parameter_annotation_decorator

from mc_beamline import plans
from mc_beamline.plans.assembly_series import LATTICES, MAX_FRAMES, SAMPLES
from mc_beamline.materials.cdse import MSC_FAMILY_NM
from mc_beamline.plans.adaptive_flow import MAX_ADAPTIVE_CONDITIONS
from mc_beamline.plans.flow_series import MIN_FLUSH_VOLUMES
from mc_beamline.plans.raster import MAX_RASTER_POINTS

DETECTORS = ["det"]
"""Names of the detectors a queued plan may use (names in the startup namespace)."""
STAGES = ["stage"]
"""Names of the sample stages a queued plan may use."""
REACTORS = ["reactor"]
"""Names of the flow reactors a queued plan may use."""
CELLS = ["assembly"]
"""Names of the self-assembly cells a queued plan may use."""


def _queue_type(hint):
    """A type hint of a plan as the queue server checks it: ``X | None`` as ``typing.Optional[X]``
    and a sequence as ``typing.List`` (a submission carries JSON lists)."""
    if isinstance(hint, types.UnionType):
        return typing.Union[tuple(_queue_type(arg) for arg in typing.get_args(hint))]
    if typing.get_origin(hint) is collections.abc.Sequence:
        (item,) = typing.get_args(hint)
        return typing.List[item]
    return hint


def queue_signature(plan) -> inspect.Signature:
    """The signature of ``plan`` with its type hints as real types in the queue's form.

    The plans postpone their annotations (``from __future__ import annotations``); the queue
    server needs type objects.
    """
    hints = typing.get_type_hints(plan)
    signature = inspect.signature(plan)
    return signature.replace(parameters=[
        p.replace(annotation=_queue_type(hints[p.name])) if p.name in hints else p
        for p in signature.parameters.values()
    ])


def queue_plan(plan, annotation: dict):
    """``plan`` as the queue offers it: same name, parameters and defaults, plus ``annotation``.

    ``annotation`` is the argument of bluesky-queueserver's ``parameter_annotation_decorator``
    (plan description; per parameter a description, ``min``/``max`` and the device names or
    choices it accepts); naming a parameter the plan does not have raises ``ValueError``.
    """
    queued = parameter_annotation_decorator(annotation)(plan)
    queued.__signature__ = queue_signature(plan)
    queued.__module__ = __name__  # where the queue's plan list says it comes from
    return queued


_SAMPLE = {"description": "sample description for the metadata"}
_MD = {"description": "extra start-document metadata"}

_RASTER_PARAMETERS = {  # the step and the fly raster take the same arguments
    "detector": {"description": "pixel detector", "annotation": "Detectors",
                 "devices": {"Detectors": DETECTORS}},
    "stage": {"description": "nanofocus sample stage (x, y in µm)", "annotation": "Stages",
              "devices": {"Stages": STAGES}},
    "ny": {"description": "rows (along y)", "min": 1, "max": MAX_RASTER_POINTS},
    "nx": {"description": "columns (along x)", "min": 1, "max": MAX_RASTER_POINTS},
    "step_um": {"description": "distance between neighbouring points, µm", "min": 0.001, "max": 100.0},
    "center_x_um": {"description": "raster centre x, µm (must keep the raster in the stage limits)"},
    "center_y_um": {"description": "raster centre y, µm (must keep the raster in the stage limits)"},
    "snake": {"description": "reverse every other row"},
    "exposure_s": {"description": "exposure per point, s (default: the detector's setting)",
                   "min": 0.0001, "max": 3600.0},
    "sample": _SAMPLE,
    "md": _MD,
}

nanodiffraction_raster = queue_plan(plans.nanodiffraction_raster, {
    "description": "Nanodiffraction raster: ny x nx points, step_um apart, one detector frame per point; "
                   "stored in Tiled with the detector geometry in the start metadata.",
    "parameters": _RASTER_PARAMETERS,
})

nanodiffraction_fly_raster = queue_plan(plans.nanodiffraction_fly_raster, {
    "description": "Fly-scan nanodiffraction raster: the same map as nanodiffraction_raster, each row flown at "
                   "step_um / exposure_s with one gated detector frame per point at its measured position; "
                   "refused before anything moves if too fast for the stage or if its turnarounds leave the "
                   "stage limits.",
    "parameters": _RASTER_PARAMETERS,
})

_FLOW_PARAMETERS = {  # the flow series and the adaptive flow series share these
    "reactor": {"description": "continuous-flow reactor with UV-Vis and SAXS flow cells",
                "annotation": "Reactors", "devices": {"Reactors": REACTORS}},
    "flush_volumes": {"description": "reactor volumes flushed after every change (at least 3)",
                      "min": MIN_FLUSH_VOLUMES, "max": 1000.0},
    "cd_fraction": {"description": "share of the total flow from the Cd pump (between 0 and 1)",
                    "min": 0.001, "max": 0.999},
    "temperature_band_c": {"description": "a heater further than this from its set point while a condition "
                                          "is flushed and measured suspends the run, °C",
                           "min": 0.01, "max": 100.0},
    "temperature_resume_s": {"description": "time a heater must be back in its band before the run resumes "
                                            "(and flushes again), s", "min": 0.0, "max": 3600.0},
    "integration_time_s": {"description": "UV-Vis integration time, s (default: the spectrometer's setting)",
                           "min": 0.0001, "max": 10.0},
    "saxs_exposure_s": {"description": "SAXS exposure, s (default: the detector's setting)",
                        "min": 0.001, "max": 3600.0},
    "sample": _SAMPLE,
    "md": _MD,
}

flow_series = queue_plan(plans.flow_series, {
    "description": "Flow-synthesis series: every combination of nucleation temperature, growth temperature "
                   "and reaction time; waits for thermal settling, flushes the reactor, records one UV-Vis "
                   "spectrum and one SAXS curve per condition; stored in Tiled.",
    "parameters": {
        **_FLOW_PARAMETERS,
        "nucleation_temperatures_c": {"description": "nucleation-chamber temperatures, °C (20-400)"},
        "growth_temperatures_c": {"description": "growth-oven temperatures, °C (20-400, not above the "
                                                 "nucleation temperatures)"},
        "reaction_times_s": {"description": "reaction times, s (> 0, within the pumps' range)"},
        "allow_growth_above_nucleation": {"description": "accept growth temperatures above the nucleation "
                                                         "temperature"},
    },
})

adaptive_raster = queue_plan(plans.adaptive_raster, {
    "description": "Adaptive nanodiffraction raster on the ny x nx grid: survey every stride-th row and column, "
                   "then the live XCCA of each frame chooses where to refine (cells around the [110] zone, domain "
                   "boundaries, the zone's edges) until c/a, orientational disorder and misorientation spread "
                   "settle or budget_fraction of the grid is measured; one run, the decisions stored in it.",
    "parameters": {
        **{k: v for k, v in _RASTER_PARAMETERS.items() if k != "snake"},
        "stride": {"description": "the survey measures every stride-th row and column (fine steps)",
                   "min": 1, "max": 1000},
        "budget_fraction": {"description": "most points measured, as a share of the ny x nx grid",
                            "min": 0.001, "max": 1.0},
    },
})

adaptive_flow_series = queue_plan(plans.adaptive_flow_series, {
    "description": "Adaptive flow series: at one reaction time, the live UV-Vis analysis chooses each next "
                   "nucleation temperature (bisection) until both edges of the window in which an MSC family "
                   "persists are known within tolerance_c, or max_conditions are measured; each condition is "
                   "settled, flushed and recorded as in flow_series; the decisions are stored in the run.",
    "parameters": {
        **_FLOW_PARAMETERS,
        "reaction_time_s": {"description": "reaction time of every condition, s (within the pumps' range)",
                            "min": 0.001, "max": 3600.0},
        "growth_temperature_c": {"description": "growth-oven temperature, °C (the oven runs at the nucleation "
                                                "temperature where that is lower)", "min": 20.0, "max": 400.0},
        "low_c": {"description": "lowest nucleation temperature searched, °C", "min": 20.0, "max": 400.0},
        "high_c": {"description": "highest nucleation temperature searched, °C", "min": 20.0, "max": 400.0},
        "tolerance_c": {"description": "each edge is located within ± this, °C", "min": 0.01, "max": 380.0},
        "max_conditions": {"description": "most conditions measured", "min": 1, "max": MAX_ADAPTIVE_CONDITIONS},
        "family": {"description": "MSC family whose window is searched", "annotation": "Families",
                   "enums": {"Families": list(MSC_FAMILY_NM)}},
    },
})

assembly_series = queue_plan(plans.assembly_series, {
    "description": "Self-assembly series: a fresh sample, baseline SAXS frames, then flocculant added over "
                   "addition_time_s while frames are taken every interval_s; stored in Tiled with the 2D "
                   "detector geometry.",
    "parameters": {
        "cell": {"description": "self-assembly cell with flocculant pump and 2D SAXS camera",
                 "annotation": "Cells", "devices": {"Cells": CELLS}},
        "sample": {"description": f"sample: {', '.join(SAMPLES)}", "annotation": "Samples",
                   "enums": {"Samples": list(SAMPLES)}},
        "lattice": {"description": f"supercrystal lattice of the colloid: {', '.join(LATTICES)}",
                    "annotation": "Lattices", "enums": {"Lattices": list(LATTICES)}},
        "flocculant_mm": {"description": "flocculant concentration after the addition, mM (below the stock)",
                          "min": 0.001, "max": 10000.0},
        "addition_time_s": {"description": "duration of the addition, s (sets the pump rate)",
                            "min": 0.001, "max": 86400.0},
        "n_frames": {"description": "frames from the start of the addition on", "min": 1, "max": MAX_FRAMES},
        "interval_s": {"description": "time between two frames, s (at least the exposure)",
                       "min": 0.001, "max": 86400.0},
        "exposure_s": {"description": "exposure per frame, s", "min": 0.001, "max": 3600.0},
        "baseline_frames": {"description": "frames before the addition", "min": 0, "max": MAX_FRAMES},
        "ring_q_nm": {"description": "superlattice ring for the symmetry analysis, nm⁻¹ (default: found)",
                      "min": 0.001, "max": 100.0},
        "description": {"description": "free text for the metadata"},
        "md": _MD,
    },
})

QUEUE_PLANS = {"nanodiffraction_raster": nanodiffraction_raster,
               "nanodiffraction_fly_raster": nanodiffraction_fly_raster, "flow_series": flow_series,
               "adaptive_raster": adaptive_raster, "adaptive_flow_series": adaptive_flow_series,
               "assembly_series": assembly_series}
"""Every plan the startup offers, by name (the permissions allow exactly these)."""

__all__ = ["nanodiffraction_raster", "nanodiffraction_fly_raster", "adaptive_raster", "flow_series",
           "adaptive_flow_series",
           "assembly_series", "QUEUE_PLANS", "queue_plan",
           "queue_signature", "DETECTORS", "STAGES", "REACTORS", "CELLS"]
