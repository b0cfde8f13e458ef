"""Bluesky plans of the beamline."""

from .raster import RasterSpec, nanodiffraction_raster
from .validation import PlanArgumentError

__all__ = ["RasterSpec", "nanodiffraction_raster", "PlanArgumentError"]
