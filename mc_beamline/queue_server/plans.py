"""The plans that the queue (and IPython) offer, with typed, range-checked parameters.

bluesky-queueserver reads the signature and the annotation decorator: a queue client
sees each parameter's type, unit (in its description) and limits, and a submission with a
wrong type, a value outside the limits or an unknown device is refused when it is added to
the queue, before it can run. Limits that depend on the beamline (the stage's soft limits)
are checked by the plan itself before anything moves (:mod:`mc_beamline.plans.validation`).

No ``from __future__ import annotations`` here: the queue server needs real type objects.
"""

import typing

from bluesky_queueserver import parameter_annotation_decorator

from mc_beamline.plans import raster
from mc_beamline.plans.assembly_series import LATTICES, MAX_FRAMES, SAMPLES
from mc_beamline.plans.assembly_series import assembly_series as _assembly_series
from mc_beamline.plans.flow_series import DEFAULT_TEMPERATURE_BAND_C, DEFAULT_TEMPERATURE_RESUME_S, MIN_FLUSH_VOLUMES
from mc_beamline.plans.flow_series import flow_series as _flow_series

DETECTORS = ["det"]
"""Names of the detectors a queued plan may use (names in the startup namespace)."""
STAGES = ["stage"]
"""Names of the sample stages a queued plan may use."""
REACTORS = ["reactor"]
"""Names of the flow reactors a queued plan may use."""
CELLS = ["assembly"]
"""Names of the self-assembly cells a queued plan may use."""


@parameter_annotation_decorator({
    "description": "Nanodiffraction raster: ny x nx points, step_um apart, one detector frame per point; "
                   "stored in Tiled with the detector geometry in the start metadata.",
    "parameters": {
        "detector": {"description": "pixel detector", "annotation": "Detectors",
                     "devices": {"Detectors": DETECTORS}},
        "stage": {"description": "nanofocus sample stage (x, y in µm)", "annotation": "Stages",
                  "devices": {"Stages": STAGES}},
        "ny": {"description": "rows (along y)", "min": 1, "max": raster.MAX_RASTER_POINTS},
        "nx": {"description": "columns (along x)", "min": 1, "max": raster.MAX_RASTER_POINTS},
        "step_um": {"description": "distance between neighbouring points, µm", "min": 0.001, "max": 100.0},
        "center_x_um": {"description": "raster centre x, µm (must keep the raster in the stage limits)"},
        "center_y_um": {"description": "raster centre y, µm (must keep the raster in the stage limits)"},
        "snake": {"description": "reverse every other row"},
        "exposure_s": {"description": "exposure per point, s (default: the detector's setting)",
                       "min": 0.0001, "max": 3600.0},
        "sample": {"description": "sample description for the metadata"},
        "md": {"description": "extra start-document metadata"},
    },
})
def nanodiffraction_raster(
    detector,
    stage,
    *,
    ny: int = 35,
    nx: int = 51,
    step_um: float = 0.4,
    center_x_um: float = 0.0,
    center_y_um: float = 0.0,
    snake: bool = True,
    exposure_s: typing.Optional[float] = None,
    sample: str = "PbS-TTFDA mesocrystal film",
    md: typing.Optional[dict] = None,
):
    """Raster the sample through the nanofocus beam, one detector frame per point.

    See :func:`mc_beamline.plans.raster.nanodiffraction_raster`; out-of-range arguments
    are refused with a :class:`~mc_beamline.plans.PlanArgumentError` before anything moves.
    """
    return (yield from raster.nanodiffraction_raster(
        detector, stage, ny=ny, nx=nx, step_um=step_um, center_x_um=center_x_um,
        center_y_um=center_y_um, snake=snake, exposure_s=exposure_s, sample=sample, md=md,
    ))


@parameter_annotation_decorator({
    "description": "Flow-synthesis series: every combination of nucleation temperature, growth temperature "
                   "and reaction time; waits for thermal settling, flushes the reactor, records one UV-Vis "
                   "spectrum and one SAXS curve per condition; stored in Tiled.",
    "parameters": {
        "reactor": {"description": "continuous-flow reactor with UV-Vis and SAXS flow cells",
                    "annotation": "Reactors", "devices": {"Reactors": REACTORS}},
        "nucleation_temperatures_c": {"description": "nucleation-chamber temperatures, °C (20-400)"},
        "growth_temperatures_c": {"description": "growth-oven temperatures, °C (20-400, not above the "
                                                 "nucleation temperatures)"},
        "reaction_times_s": {"description": "reaction times, s (> 0, within the pumps' range)"},
        "flush_volumes": {"description": "reactor volumes flushed after every change (at least 3)",
                          "min": MIN_FLUSH_VOLUMES, "max": 1000.0},
        "cd_fraction": {"description": "share of the total flow from the Cd pump (between 0 and 1)",
                        "min": 0.001, "max": 0.999},
        "allow_growth_above_nucleation": {"description": "accept growth temperatures above the nucleation "
                                                         "temperature"},
        "temperature_band_c": {"description": "a heater further than this from its set point while a condition "
                                              "is flushed and measured suspends the run, °C",
                               "min": 0.01, "max": 100.0},
        "temperature_resume_s": {"description": "time a heater must be back in its band before the run resumes "
                                                "(and flushes again), s", "min": 0.0, "max": 3600.0},
        "integration_time_s": {"description": "UV-Vis integration time, s (default: the spectrometer's setting)",
                               "min": 0.0001, "max": 10.0},
        "saxs_exposure_s": {"description": "SAXS exposure, s (default: the detector's setting)",
                            "min": 0.001, "max": 3600.0},
        "sample": {"description": "sample description for the metadata"},
        "md": {"description": "extra start-document metadata"},
    },
})
def flow_series(
    reactor,
    nucleation_temperatures_c: typing.List[float],
    growth_temperatures_c: typing.List[float],
    reaction_times_s: typing.List[float],
    *,
    flush_volumes: float = 3.0,
    cd_fraction: float = 0.5,
    allow_growth_above_nucleation: bool = False,
    temperature_band_c: float = DEFAULT_TEMPERATURE_BAND_C,
    temperature_resume_s: float = DEFAULT_TEMPERATURE_RESUME_S,
    integration_time_s: typing.Optional[float] = None,
    saxs_exposure_s: typing.Optional[float] = None,
    sample: str = "CdSe from Cd oleate + TOP-Se in octadecene",
    md: typing.Optional[dict] = None,
):
    """Flow-synthesis series over T_nuc x T_growth x reaction time.

    See :func:`mc_beamline.plans.flow_series.flow_series`; bad arguments (temperatures out
    of range, growth above nucleation, unreachable reaction times) are refused with a
    :class:`~mc_beamline.plans.PlanArgumentError` before anything moves.
    """
    return (yield from _flow_series(
        reactor, nucleation_temperatures_c, growth_temperatures_c, reaction_times_s,
        flush_volumes=flush_volumes, cd_fraction=cd_fraction,
        allow_growth_above_nucleation=allow_growth_above_nucleation, temperature_band_c=temperature_band_c,
        temperature_resume_s=temperature_resume_s, integration_time_s=integration_time_s,
        saxs_exposure_s=saxs_exposure_s, sample=sample, md=md,
    ))


@parameter_annotation_decorator({
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
        "md": {"description": "extra start-document metadata"},
    },
})
def assembly_series(
    cell,
    *,
    sample: str = "colloid",
    lattice: str = "fcc",
    flocculant_mm: float = 50.0,
    addition_time_s: float = 60.0,
    n_frames: int = 30,
    interval_s: float = 10.0,
    exposure_s: float = 1.0,
    baseline_frames: int = 1,
    ring_q_nm: typing.Optional[float] = None,
    description: str = "",
    md: typing.Optional[dict] = None,
):
    """Time-resolved SAXS of self-assembly after a flocculant addition.

    See :func:`mc_beamline.plans.assembly_series.assembly_series`; a dose the pump cannot
    deliver, or overlapping frames, is refused with a
    :class:`~mc_beamline.plans.PlanArgumentError` before anything moves.
    """
    return (yield from _assembly_series(
        cell, sample=sample, lattice=lattice, flocculant_mm=flocculant_mm, addition_time_s=addition_time_s,
        n_frames=n_frames, interval_s=interval_s, exposure_s=exposure_s, baseline_frames=baseline_frames,
        ring_q_nm=ring_q_nm, description=description, md=md,
    ))


QUEUE_PLANS = {"nanodiffraction_raster": nanodiffraction_raster, "flow_series": flow_series,
               "assembly_series": assembly_series}
"""Every plan the startup offers, by name (the permissions allow exactly these)."""

__all__ = ["nanodiffraction_raster", "flow_series", "assembly_series", "QUEUE_PLANS", "DETECTORS", "STAGES",
           "REACTORS", "CELLS"]
