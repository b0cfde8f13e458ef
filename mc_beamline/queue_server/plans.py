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

from ..plans import raster

DETECTORS = ["det"]
"""Names of the detectors a queued plan may use (names in the startup namespace)."""
STAGES = ["stage"]
"""Names of the sample stages a queued plan may use."""


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


QUEUE_PLANS = {"nanodiffraction_raster": nanodiffraction_raster}
"""Every plan the startup offers, by name (the permissions allow exactly these)."""

__all__ = ["nanodiffraction_raster", "QUEUE_PLANS", "DETECTORS", "STAGES"]
