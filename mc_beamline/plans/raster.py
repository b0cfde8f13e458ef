"""Nanodiffraction raster scans (seed 000: 13.6 x 20 µm in 400 nm steps, 35 x 51 points).

Rows run along the stage's y axis, columns along x; end points are included, so a
raster of ``ny`` x ``nx`` points spans (ny-1)·step by (nx-1)·step µm around its centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np

from mc_beamline.analysis.detector.masks import MaskError, encode_mask, load_mask
from mc_beamline.plans.readiness import wait_for_devices
from mc_beamline.plans.validation import (
    PlanArgumentError,
    require_count,
    require_finite,
    require_positive,
    require_within,
)

MAX_RASTER_POINTS = 250_000
DEVICE_WAIT_S = 30.0
"""How long a raster waits for its devices to answer before it fails, s."""


@dataclass(frozen=True)
class RasterSpec:
    """A validated raster: ``ny`` x ``nx`` points, ``step_um`` apart, centred on (x, y) µm."""

    ny: int = 35
    nx: int = 51
    step_um: float = 0.4
    center_x_um: float = 0.0
    center_y_um: float = 0.0
    snake: bool = True

    def __post_init__(self):
        ny = require_count("ny (rows)", self.ny, maximum=MAX_RASTER_POINTS)
        nx = require_count("nx (columns)", self.nx, maximum=MAX_RASTER_POINTS)
        if ny * nx > MAX_RASTER_POINTS:
            raise PlanArgumentError(f"A raster of {ny} x {nx} points is more than {MAX_RASTER_POINTS} points.")
        require_positive("step_um", self.step_um, " µm")
        require_finite("center_x_um", self.center_x_um, " µm")
        require_finite("center_y_um", self.center_y_um, " µm")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.ny), int(self.nx))

    def axis_um(self, n: int, center: float) -> np.ndarray:
        return center + (np.arange(n) - (n - 1) / 2) * self.step_um

    @property
    def y_um(self) -> np.ndarray:
        """Row positions in µm."""
        return self.axis_um(self.ny, self.center_y_um)

    @property
    def x_um(self) -> np.ndarray:
        """Column positions in µm."""
        return self.axis_um(self.nx, self.center_x_um)

    def metadata(self) -> dict[str, Any]:
        return {
            "scan_shape": list(self.shape),
            "step_um": float(self.step_um),
            "center_um": [float(self.center_x_um), float(self.center_y_um)],
            "snake": bool(self.snake),
        }


def soft_limits(motor):
    """The (low, high) soft limits of an EpicsMotor, µm, read inside the plan."""
    low = yield from bps.rd(motor.low_limit_travel)
    high = yield from bps.rd(motor.high_limit_travel)
    return float(low), float(high)


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
    exposure_s: float | None = None,
    sample: str = "PbS-TTFDA mesocrystal film",
    md: dict | None = None,
):
    """Raster the sample through the nanofocus beam, one detector frame per point.

    Parameters
    ----------
    detector : the pixel detector (``PixelDetector``).
    stage : the nanofocus stage (``NanofocusStage``, motors ``x`` and ``y`` in µm).
    ny, nx : number of rows (along y) and columns (along x); defaults: the seed's 35 x 51.
    step_um : distance between neighbouring points in µm (seed: 0.4).
    center_x_um, center_y_um : raster centre in µm.
    snake : alternate the direction of the fast (x) axis from row to row.
    exposure_s : detector exposure per point in s (default: leave the detector's setting).
    sample : sample description for the metadata.
    md : extra start-document metadata; its ``"mc_beamline"`` entries are added to the plan's
        own (e.g. ``{"mc_beamline": {"polarization_factor": 0.99}}`` sets a correction of the
        live analysis, see ``mc_beamline.callbacks.live_xcca.CORRECTION_KEYS``).

    The raster waits (up to 30 s) for the devices to answer, e.g. after an IOC restart, and
    is refused before anything moves if it leaves the stage's soft limits.
    Start metadata carry the scan shape, step, detector geometry (PONI text) and mask file
    under ``md["mc_beamline"]`` so that live analysis and replay need nothing else.
    """
    spec = RasterSpec(ny, nx, step_um, center_x_um, center_y_um, bool(snake))
    if exposure_s is not None:
        exposure_s = require_positive("exposure_s", exposure_s, " s")
    ys, xs = spec.y_um, spec.x_um
    yield from wait_for_devices(detector, stage, timeout_s=DEVICE_WAIT_S)
    yield from check_raster_limits(spec, stage)

    geometry = yield from detector_geometry(detector)
    if exposure_s is not None:
        yield from bps.mv(detector.acquire_time, exposure_s)
    exposure = yield from bps.rd(detector.acquire_time)
    plan_md = raster_start_metadata("nanodiffraction_raster", spec, float(exposure), detector, stage, geometry,
                                    sample, md)
    yield from bp.grid_scan(
        [detector],
        stage.y, float(ys[0]), float(ys[-1]), spec.ny,
        stage.x, float(xs[0]), float(xs[-1]), spec.nx,
        snake_axes=spec.snake,
        md=plan_md,
    )


def check_raster_limits(spec: RasterSpec, stage):
    """Refuse (before anything moves) a raster whose rows or columns leave the stage's soft limits."""
    for label, motor, axis in (("stage y", stage.y, spec.y_um), ("stage x", stage.x, spec.x_um)):
        limits = yield from soft_limits(motor)
        require_within(label, float(axis.min()), float(axis.max()), limits, " µm")


def raster_start_metadata(plan_name: str, spec: RasterSpec, exposure_s: float, detector, stage, geometry: dict,
                          sample: str, md: dict | None, **extra_mc) -> dict:
    """Start metadata of a raster run: scan, exposure (s), image key, motors and detector geometry
    under ``mc_beamline`` (plus ``extra_mc``); ``md`` adds to it (its ``mc_beamline`` entries too)."""
    plan_md = {
        "plan_name": plan_name,
        "sample": sample,
        "mc_beamline": {
            "experiment": "raster",
            **spec.metadata(),
            "exposure_s": float(exposure_s),
            "image_key": detector.image_key,
            "motors": {"x": stage.x.name, "y": stage.y.name},
            **geometry,
            **extra_mc,
        },
    }
    extra = dict(md or {})
    plan_md["mc_beamline"].update(extra.pop("mc_beamline", None) or {})
    plan_md.update(extra)
    return plan_md


def detector_geometry(detector):
    """Geometry metadata read from the detector over CA, inside the plan."""
    poni = yield from bps.rd(detector.poni_text)
    poni_file = yield from bps.rd(detector.poni_file)
    mask_file = yield from bps.rd(detector.mask_file)
    rows = yield from bps.rd(detector.array_size_y)
    cols = yield from bps.rd(detector.array_size_x)
    if not poni:
        raise PlanArgumentError(f"Detector {detector.name} reports no geometry (PONI); is its IOC configured?")
    shape = (int(rows), int(cols))
    geometry = {
        "detector_poni": poni,
        "detector_poni_file": poni_file,
        "detector_mask_file": mask_file,
        "detector_shape": list(shape),
    }
    try:  # the mask travels with the run so that replay elsewhere needs no file
        geometry["detector_mask"] = encode_mask(load_mask(mask_file, shape))
    except MaskError:
        pass  # analysis still drops gap pixels by their value
    return geometry


__all__ = ["RasterSpec", "check_raster_limits", "detector_geometry", "nanodiffraction_raster", "raster_start_metadata",
           "PlanArgumentError"]
