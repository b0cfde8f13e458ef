"""Bluesky plans of the beamline."""

from .assembly_series import assembly_series
from .flow_series import FlowSeriesSpec, flow_series
from .raster import RasterSpec, nanodiffraction_raster
from .validation import PlanArgumentError

__all__ = ["FlowSeriesSpec", "assembly_series", "RasterSpec", "flow_series", "nanodiffraction_raster", "PlanArgumentError"]
