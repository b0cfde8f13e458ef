"""Ophyd devices of the mesocrystal nanodiffraction beamline, one module per instrument.

ophyd talks Channel Access through caproto (no pyepics): importing this package sets
``OPHYD_CONTROL_LAYER=caproto`` unless the environment already chose a layer.

Each instrument with simulator-only parts has a class for real hardware and a ``Sim*``
subclass for the simulated IOC (e.g. :class:`SimFlowReactor`); ``make_devices(prefix,
sim=False)`` builds the former, the default ``sim=True`` the latter.

>>> from mc_beamline.devices import make_devices
>>> bl = make_devices("MC:")            # the simulated IOC of `mc-beamline iocs`
>>> bl.connect_all(timeout=10)          # one clear error if the IOC is not running
>>> bl.stage.x.set(3.2).wait(5); bl.detector, bl.beam
"""

import os

os.environ.setdefault("OPHYD_CONTROL_LAYER", "caproto")

from mc_beamline.devices.assembly_cell import AssemblyCell, SimAssemblyCell  # noqa: E402
from mc_beamline.devices.beam import BeamMonitor, SimBeamMonitor  # noqa: E402
from mc_beamline.devices.beamline import (  # noqa: E402
    Beamline,
    BeamlineConnectionError,
    connect_all,
    make_devices,
)
from mc_beamline.devices.detector import (  # noqa: E402
    DATASET,
    RESOURCE_SPEC,
    PixelDetector,
    SimPixelDetector,
)
from mc_beamline.devices.flow_reactor import FlowReactor, SimFlowReactor  # noqa: E402
from mc_beamline.devices.stage import NanofocusStage  # noqa: E402

__all__ = [
    "AssemblyCell", "BeamMonitor", "Beamline", "BeamlineConnectionError", "FlowReactor", "NanofocusStage",
    "PixelDetector", "SimAssemblyCell", "SimBeamMonitor", "SimFlowReactor", "SimPixelDetector", "connect_all",
    "make_devices", "DATASET", "RESOURCE_SPEC",
]
