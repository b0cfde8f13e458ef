"""Ophyd devices of the mesocrystal nanodiffraction beamline, one module per instrument.

ophyd talks Channel Access through caproto (no pyepics): importing this package sets
``OPHYD_CONTROL_LAYER=caproto`` unless the environment already chose a layer.

>>> from mc_beamline.devices import make_devices
>>> bl = make_devices("MC:")
>>> bl.connect_all(timeout=10)          # one clear error if the IOC is not running
>>> bl.stage.x.set(3.2).wait(5); bl.detector, bl.beam
"""

import os

os.environ.setdefault("OPHYD_CONTROL_LAYER", "caproto")

from mc_beamline.devices.assembly_cell import AssemblyCell  # noqa: E402
from mc_beamline.devices.beam import BeamMonitor  # noqa: E402
from mc_beamline.devices.beamline import Beamline, BeamlineConnectionError, connect_all, make_devices  # noqa: E402
from mc_beamline.devices.detector import DATASET, RESOURCE_SPEC, PixelDetector  # noqa: E402
from mc_beamline.devices.flow_reactor import FlowReactor  # noqa: E402
from mc_beamline.devices.stage import NanofocusStage  # noqa: E402

__all__ = [
    "AssemblyCell", "BeamMonitor", "Beamline", "BeamlineConnectionError", "FlowReactor", "NanofocusStage",
    "PixelDetector", "connect_all", "make_devices", "DATASET", "RESOURCE_SPEC",
]
