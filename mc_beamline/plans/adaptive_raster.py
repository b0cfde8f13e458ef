"""Adaptive nanodiffraction raster: the live XCCA of each frame chooses where to measure next (seed 000).

The fine grid is the step raster of :func:`~mc_beamline.plans.nanodiffraction_raster`
(``ny`` x ``nx`` points, ``step_um`` apart). :class:`~mc_beamline.analysis.adaptive.raster_search.RasterSearch`
surveys it at ``stride`` times the step, refines around the points that show the [110] zone
and across domain boundaries, and stops when c/a, ΔΦ and the ψ spread have settled, when the
zone is mapped, or at ``budget_fraction`` of the full raster's points.

The loop is bluesky-adaptive's ``optimize_in_run`` (via
:func:`~mc_beamline.plans.optimization.optimize_in_one_run`): one Bluesky run whose
``primary`` stream holds one event per measured point (frame, stage readbacks and
``{stage}_grid_index``, the point's row-major index on the fine grid), and whose
``optimization`` stream holds each decision (suggestion ``grid_index``, ``round_end``;
outcome ``zone``, ``orientation_deg`` and, at a round's end, the round statistics). The plan
reads each frame back from the detector's file and analyses it with the same
:class:`~mc_beamline.analysis.xcca.pipeline.XccaAnalysis` as the live analysis, built from
the same start metadata; the start document's ``mc_beamline.raster_search`` holds the search
parameters, so the live XCCA (and a replay) re-derives every decision from the frames.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky_adaptive.protocols import OptimizationProblem
from ophyd import Signal

from mc_beamline.analysis.adaptive.raster_search import (
    ID_KEY,
    INDEX_KEY,
    RasterSearch,
    RasterSearchError,
    RasterSearchSpec,
    evaluate_point,
)
from mc_beamline.analysis.xcca.pipeline import XccaAnalysis
from mc_beamline.callbacks.live_xcca import analysis_for_start
from mc_beamline.io.frames import read_flushed_frame
from mc_beamline.plans.optimization import optimize_in_one_run
from mc_beamline.plans.raster import (
    DEVICE_WAIT_S,
    RasterSpec,
    check_raster_limits,
    detector_geometry,
    raster_start_metadata,
)
from mc_beamline.plans.readiness import wait_for_devices
from mc_beamline.plans.validation import PlanArgumentError, require_positive


class _FrameEvaluation:
    """bluesky-adaptive evaluation function: each measured point's frame, read back from the
    detector file (:func:`~mc_beamline.io.frames.read_flushed_frame`: right after the IOC
    flushed it, also where the live analysis holds the file open in this process), analysed
    by ``analysis`` → :func:`~mc_beamline.analysis.adaptive.raster_search.evaluate_point`."""

    def __init__(self, analysis: XccaAnalysis):
        self.analysis = analysis
        self.frames: dict[str, tuple[int, str, int]] = {}  # _id -> (grid index, file, frame in file)

    def __call__(self, uid: Sequence[str], suggestions: Sequence[Mapping]) -> list[dict]:
        outcomes = []
        for suggestion in suggestions:
            index, path, frame_index = self.frames.pop(suggestion[ID_KEY])
            record = self.analysis.add_frame(index, read_flushed_frame(path, frame_index))
            outcomes.append(evaluate_point(suggestion, record, self.analysis))
        return outcomes


def adaptive_raster(
    detector,
    stage,
    *,
    ny: int = 35,
    nx: int = 51,
    step_um: float = 0.4,
    center_x_um: float = 0.0,
    center_y_um: float = 0.0,
    stride: int = 4,
    budget_fraction: float = 0.4,
    exposure_s: float | None = None,
    sample: str = "PbS-TTFDA mesocrystal film",
    md: dict | None = None,
):
    """Raster the sample adaptively on the ``ny`` x ``nx`` grid (``step_um`` µm), in one run.

    Parameters
    ----------
    detector, stage, ny, nx, step_um, center_x_um, center_y_um, exposure_s, sample, md :
        as in :func:`~mc_beamline.plans.nanodiffraction_raster` (the fine grid).
    stride : the survey measures every ``stride``-th row and column (fine steps, ≥ 1).
    budget_fraction : at most this share of the fine grid is measured, in (0, 1].

    Every argument is checked before anything moves; a bad one raises
    :class:`~mc_beamline.plans.PlanArgumentError` with one sentence. The derived run of the
    live XCCA holds the result of the measured frames and, under ``raster_search``, every
    decision with its reason and the statistics after each round.
    """
    spec = RasterSpec(ny, nx, step_um, center_x_um, center_y_um, snake=False)  # indices are row-major
    try:
        search_spec = RasterSearchSpec(spec.ny, spec.nx, stride, float(budget_fraction))
    except (RasterSearchError, TypeError, ValueError) as exc:
        raise PlanArgumentError(f"{str(exc).rstrip('.')}; nothing was moved.") from None
    if exposure_s is not None:
        exposure_s = require_positive("exposure_s", exposure_s, " s")
    ys, xs = spec.y_um, spec.x_um
    yield from wait_for_devices(detector, stage, timeout_s=DEVICE_WAIT_S)
    yield from check_raster_limits(spec, stage)
    geometry = yield from detector_geometry(detector)
    if exposure_s is not None:
        yield from bps.mv(detector.acquire_time, exposure_s)
    exposure = yield from bps.rd(detector.acquire_time)
    grid_index = Signal(name=f"{stage.name}_grid_index", value=-1, kind="hinted")
    plan_md = raster_start_metadata("adaptive_raster", spec, float(exposure), detector, stage, geometry, sample, md,
                                    adaptive=True, index_key=grid_index.name, raster_search=search_spec.as_dict())
    evaluation = _FrameEvaluation(analysis_for_start(plan_md))

    def acquire(suggestions, actuators, sensors=None, md=None):
        for suggestion in suggestions:
            index = int(suggestion[INDEX_KEY])
            row, col = divmod(index, spec.nx)
            yield from bps.mv(stage.y, float(ys[row]), stage.x, float(xs[col]))
            yield from bps.mv(grid_index, index)
            yield from bps.trigger_and_read([detector, stage.x, stage.y, grid_index])
            evaluation.frames[suggestion[ID_KEY]] = (index, *detector.last_frame)
        return tuple(s[ID_KEY] for s in suggestions)

    problem = OptimizationProblem(optimizer=RasterSearch(search_spec), actuators=[stage.x, stage.y],
                                  sensors=[detector], evaluation_function=evaluation, acquisition_plan=acquire)
    search = optimize_in_one_run(problem, search_spec.budget, plan_md)
    return (yield from bpp.stage_wrapper(search, [detector]))


__all__ = ["adaptive_raster"]
