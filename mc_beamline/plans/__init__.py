"""Bluesky plans of the beamline."""

from mc_beamline.plans.adaptive_flow import adaptive_flow_series
from mc_beamline.plans.adaptive_raster import adaptive_raster
from mc_beamline.plans.assembly_series import assembly_series
from mc_beamline.plans.flow_series import FlowSeriesSpec, flow_series
from mc_beamline.plans.fly_raster import nanodiffraction_fly_raster
from mc_beamline.plans.raster import RasterSpec, nanodiffraction_raster
from mc_beamline.plans.validation import PlanArgumentError

__all__ = ["FlowSeriesSpec", "adaptive_flow_series", "adaptive_raster", "assembly_series", "RasterSpec", "flow_series", "nanodiffraction_raster",
           "nanodiffraction_fly_raster", "PlanArgumentError"]
