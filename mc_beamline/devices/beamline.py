"""Factory for the beamline's devices and a connection check with one clear error."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mc_beamline.devices.assembly_cell import AssemblyCell
from mc_beamline.devices.beam import BeamMonitor
from mc_beamline.devices.detector import PixelDetector
from mc_beamline.devices.flow_reactor import FlowReactor
from mc_beamline.devices.stage import NanofocusStage


class BeamlineConnectionError(ConnectionError):
    """The beamline IOC does not answer (not running, wrong prefix or CA address list)."""


@dataclass
class Beamline:
    """The devices of one beamline: ``stage``, ``detector``, ``beam``, the flow ``reactor`` and the
    self-``assembly`` cell."""

    prefix: str
    stage: NanofocusStage
    detector: PixelDetector
    beam: BeamMonitor
    reactor: FlowReactor | None = None
    assembly: AssemblyCell | None = None

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


def make_devices(prefix: str = "MC:") -> Beamline:
    """Create (not connect) the beamline's devices for PV prefix ``prefix``.

    Names: ``stage`` (motors ``stage_x``, ``stage_y``, ``stage_z``), ``det`` (image data
    key ``det_image``), ``beam``, ``reactor`` (continuous-flow reactor under
    ``{prefix}REACTOR:``, see :mod:`mc_beamline.devices.flow_reactor`) and ``assembly``
    (self-assembly cell under ``{prefix}ASSEMBLY:``, see :mod:`mc_beamline.devices.assembly_cell`).
    """
    return Beamline(
        prefix=prefix,
        stage=NanofocusStage(f"{prefix}STAGE:", name="stage"),
        detector=PixelDetector(f"{prefix}DET:", name="det"),
        beam=BeamMonitor(f"{prefix}BEAM:", name="beam"),
        reactor=FlowReactor(f"{prefix}REACTOR:", name="reactor"),
        assembly=AssemblyCell(f"{prefix}ASSEMBLY:", name="assembly"),
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
            raise BeamlineConnectionError(
                f"The beamline IOC does not answer for prefix {beamline.prefix!r} within {timeout:g} s "
                f"({len(missing)} PVs unreachable, e.g. {example}; EPICS_CA_ADDR_LIST={addr}, "
                f"EPICS_CA_SERVER_PORT={port}): start it with `mc-beamline iocs`."
            ) from None


def _signals(device):
    for walk in device.walk_signals(include_lazy=False):
        if hasattr(walk.item, "pvname"):
            yield walk.item


__all__ = ["Beamline", "BeamlineConnectionError", "make_devices", "connect_all"]
