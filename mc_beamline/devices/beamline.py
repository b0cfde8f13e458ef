"""Factory for the beamline's devices and a connection check with one clear error."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mc_beamline.devices.assembly_cell import AssemblyCell, SimAssemblyCell
from mc_beamline.devices.beam import BeamMonitor, SimBeamMonitor
from mc_beamline.devices.ca_session import close_at_exit
from mc_beamline.devices.detector import PixelDetector, SimPixelDetector
from mc_beamline.devices.flow_reactor import FlowReactor, SimFlowReactor
from mc_beamline.devices.stage import NanofocusStage


class BeamlineConnectionError(ConnectionError):
    """The beamline IOC does not answer (not running, wrong prefix or CA address list)."""


@dataclass
class Beamline:
    """The devices of one beamline: ``stage``, ``detector``, ``beam``, the flow ``reactor`` and the
    self-``assembly`` cell; ``sim`` is true when they are the simulated IOC's ``Sim*`` classes."""

    prefix: str
    """PV prefix of the beamline, e.g. ``MC:``."""
    stage: NanofocusStage
    """Nanofocus sample stage (x, y, z in µm)."""
    detector: PixelDetector
    """2D pixel detector writing HDF5 frames."""
    beam: BeamMonitor
    """Ring current and shutter."""
    reactor: FlowReactor | None = None
    """Continuous-flow reactor with its UV-Vis and SAXS flow cells, if the beamline has one."""
    assembly: AssemblyCell | None = None
    """Self-assembly cell with flocculant pump and SAXS camera, if the beamline has one."""
    sim: bool = False
    """Whether the devices are the simulated IOC's ``Sim*`` classes."""

    def as_dict(self) -> dict:
        devices = {"stage": self.stage, "detector": self.detector, "beam": self.beam}
        if self.reactor is not None:
            devices["reactor"] = self.reactor
        if self.assembly is not None:
            devices["assembly"] = self.assembly
        return devices

    def __iter__(self):
        return iter(self.as_dict().values())

    def __getitem__(self, key: str):
        return self.as_dict()[key]

    def connect_all(self, timeout: float = 10.0) -> "Beamline":
        """Wait until every PV is connected; raise :class:`BeamlineConnectionError` otherwise."""
        connect_all(self, timeout=timeout)
        return self


def make_devices(prefix: str = "MC:", sim: bool = True) -> Beamline:
    """Create (not connect) the beamline's devices for PV prefix ``prefix``.

    Names: ``stage`` (motors ``stage_x``, ``stage_y``, ``stage_z``), ``det`` (image data
    key ``det_image``), ``beam``, ``reactor`` (continuous-flow reactor under
    ``{prefix}REACTOR:``, see :mod:`mc_beamline.devices.flow_reactor`) and ``assembly``
    (self-assembly cell under ``{prefix}ASSEMBLY:``, see :mod:`mc_beamline.devices.assembly_cell`).

    ``sim=True`` (the default: the IOC of ``mc-beamline iocs``) builds the ``Sim*`` classes
    with the simulator-only signals and methods (time scale, seeds, ...); ``sim=False``
    builds the classes for real hardware, which need none of those PVs.

    The CA client is disconnected when the interpreter exits (no traceback flood from
    packets arriving during shutdown; see :mod:`mc_beamline.devices.ca_session`).
    """
    close_at_exit()
    detector, beam, reactor, assembly = (
        (SimPixelDetector, SimBeamMonitor, SimFlowReactor, SimAssemblyCell) if sim
        else (PixelDetector, BeamMonitor, FlowReactor, AssemblyCell))
    return Beamline(
        prefix=prefix,
        stage=NanofocusStage(f"{prefix}STAGE:", name="stage"),
        detector=detector(f"{prefix}DET:", name="det"),
        beam=beam(f"{prefix}BEAM:", name="beam"),
        reactor=reactor(f"{prefix}REACTOR:", name="reactor"),
        assembly=assembly(f"{prefix}ASSEMBLY:", name="assembly"),
        sim=sim,
    )


def connect_all(beamline: Beamline, timeout: float = 10.0) -> None:
    """Wait up to ``timeout`` seconds in total for all devices of ``beamline`` to connect.

    Raises
    ------
    BeamlineConnectionError
        One sentence naming the prefix, an unreachable PV and the CA settings in use.
    """
    deadline = time.monotonic() + timeout
    for device in beamline:
        try:
            device.wait_for_connection(timeout=max(deadline - time.monotonic(), 0.1))
        except Exception:
            missing = [sig.pvname for sig in _signals(device) if not sig.connected]
            example = missing[0] if missing else device.prefix
            addr = os.environ.get("EPICS_CA_ADDR_LIST", "") or "auto"
            port = os.environ.get("EPICS_CA_SERVER_PORT", "5064")
            advice = "start it with `mc-beamline iocs`" if beamline.sim else "check that the beamline's IOCs run"
            raise BeamlineConnectionError(
                f"The beamline IOC does not answer for prefix {beamline.prefix!r} within {timeout:g} s "
                f"({len(missing)} PVs unreachable, e.g. {example}; EPICS_CA_ADDR_LIST={addr}, "
                f"EPICS_CA_SERVER_PORT={port}): {advice}."
            ) from None


def _signals(device):
    for walk in device.walk_signals(include_lazy=False):
        if hasattr(walk.item, "pvname"):
            yield walk.item


__all__ = ["Beamline", "BeamlineConnectionError", "make_devices", "connect_all"]
