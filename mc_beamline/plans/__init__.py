"""Bluesky plans of the beamline."""

from .flow_series import FlowSeriesSpec, flow_series
from .raster import RasterSpec, nanodiffraction_raster
from .validation import PlanArgumentError

__all__ = ["FlowSeriesSpec", "RasterSpec", "flow_series", "nanodiffraction_raster", "PlanArgumentError"]
