"""Fly-scan nanodiffraction raster: continuous x motion, one gated exposure per map pixel.

The same map as :func:`~mc_beamline.plans.raster.nanodiffraction_raster` (same arguments,
same validation, same start metadata plus ``mc_beamline.fly``): rows along y, columns along
x, end points included. Each row is flown at ``step_um / exposure_s`` µm/s; the stage
controller's position compare opens one detector gate per pixel, centred on it, and the
detector writes the frames of the whole map into one file while the stage turns around
(outside the map) and flies the next row. The frames written so far are collected (events
with the measured positions, one Datum each) while the next row flies, so storing them
does not lengthen the turnarounds.
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from mc_beamline.devices.fly_raster import FlyRow, fly_raster_flyer
from mc_beamline.plans.raster import (
    DEVICE_WAIT_S,
    RasterSpec,
    check_raster_limits,
    detector_geometry,
    raster_start_metadata,
    soft_limits,
)
from mc_beamline.plans.readiness import wait_for_devices
from mc_beamline.plans.validation import (
    PlanArgumentError,
    require_positive,
    require_within,
)


def fly_rows(spec: RasterSpec, exposure_s: float, accel_time_s: float) -> list[FlyRow]:
    """The rows of ``spec`` in travel order (odd rows reversed when it snakes), each flown at
    ``spec.step_um / exposure_s`` µm/s with ``exposure_s`` gates by an x axis with acceleration
    time ``accel_time_s`` (s)."""
    xs, ys = spec.x_um, spec.y_um
    velocity = spec.step_um / exposure_s
    rows = []
    for i, y in enumerate(ys):
        backwards = spec.snake and i % 2 == 1
        first, step = (float(xs[-1]), -spec.step_um) if backwards else (float(xs[0]), spec.step_um)
        rows.append(FlyRow(i, float(y), first, step, spec.nx, exposure_s, velocity, accel_time_s,
                           spec.ny * spec.nx, last=i == spec.ny - 1))
    return rows


def nanodiffraction_fly_raster(
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
    """Fly the sample through the nanofocus beam, one gated detector frame per map pixel.

    Parameters are those of :func:`~mc_beamline.plans.raster.nanodiffraction_raster`:
    detector, stage, ``ny`` x ``nx`` points ``step_um`` apart around (``center_x_um``,
    ``center_y_um``) µm, ``snake`` rows, ``exposure_s`` per pixel (s; default the detector's
    setting), ``sample`` and extra ``md``.

    Refused before anything moves (:class:`PlanArgumentError`): arguments the step raster
    refuses, a map outside the stage's soft limits, a row whose turnarounds (run-up and
    run-down at the x axis' acceleration time) leave the x limits, and a velocity
    ``step_um / exposure_s`` above the x axis' maximum (VMAX). Start metadata: the step
    raster's, plus ``mc_beamline.fly = {"velocity_um_s", "accel_time_s", "run_up_um"}``.
    """
    spec = RasterSpec(ny, nx, step_um, center_x_um, center_y_um, bool(snake))
    if exposure_s is not None:
        exposure_s = require_positive("exposure_s", exposure_s, " s")
    flyer = fly_raster_flyer(detector, stage)
    yield from wait_for_devices(detector, stage, flyer, timeout_s=DEVICE_WAIT_S)
    yield from check_raster_limits(spec, stage)
    exposure = exposure_s if exposure_s is not None else float((yield from bps.rd(detector.acquire_time)))
    accel_s = float((yield from bps.rd(stage.x.acceleration)))
    rows = fly_rows(spec, exposure, accel_s)
    velocity = rows[0].velocity_um_s
    vmax = float((yield from bps.rd(flyer.x_max_velocity)))
    if vmax > 0 and velocity > vmax:
        raise PlanArgumentError(
            f"Flying {spec.step_um:g} µm per {exposure:g} s exposure needs {velocity:g} µm/s, faster than the "
            f"x axis' maximum {vmax:g} µm/s; use a longer exposure or the step raster. Nothing was moved.")
    x_limits = yield from soft_limits(stage.x)
    profiles = [row.profile() for row in rows]
    low = min(min(p.start_um, p.end_um) for p in profiles)
    high = max(max(p.start_um, p.end_um) for p in profiles)
    require_within("stage x with the fly turnarounds", low, high, x_limits, " µm")

    geometry = yield from detector_geometry(detector)
    yield from bps.mv(detector.acquire_time, exposure)
    plan_md = raster_start_metadata(
        "nanodiffraction_fly_raster", spec, exposure, detector, stage, geometry, sample, md,
        fly={"velocity_um_s": velocity, "accel_time_s": accel_s, "run_up_um": profiles[0].run_up_um})

    @bpp.stage_decorator([flyer])
    @bpp.run_decorator(md=plan_md)
    def fly():
        for row in rows:
            yield from bps.prepare(flyer, row, wait=True)
            yield from bps.kickoff(flyer, wait=True)
            if row.index > 0:  # the earlier rows' frames are stored while this row flies
                yield from bps.collect(flyer)
            yield from bps.complete(flyer, wait=True)
        yield from bps.collect(flyer)

    return (yield from fly())


__all__ = ["fly_rows", "nanodiffraction_fly_raster"]
