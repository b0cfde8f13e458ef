"""Nanofocus sample stage: three piezo axes (motor records), positions in µm."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor


class NanofocusStage(Device):
    """Piezo stage under the nanofocused beam.

    Components are :class:`ophyd.EpicsMotor` on ``{prefix}X``, ``{prefix}Y`` and
    ``{prefix}Z`` (e.g. ``MC:STAGE:X``): x horizontal, y vertical, z along the beam. User
    units are µm; soft limits come from the records' HLM/LLM (default ±50 µm for x, y and
    ±500 µm for z) and ophyd refuses a move outside them with ``LimitError``.

    Example
    -------
    >>> stage = NanofocusStage("MC:STAGE:", name="stage")
    >>> stage.wait_for_connection(timeout=5)
    >>> stage.x.set(3.2).wait(timeout=5)
    """

    x = Cpt(EpicsMotor, "X", kind="hinted", doc="sample x (horizontal), µm")
    y = Cpt(EpicsMotor, "Y", kind="hinted", doc="sample y (vertical), µm")
    z = Cpt(EpicsMotor, "Z", kind="normal", doc="sample z (along the beam), µm")

    @property
    def position(self) -> tuple[float, float, float]:
        """Current readbacks (x, y, z) in µm (from the CA monitors, no network access)."""
        return (self.x.position, self.y.position, self.z.position)


__all__ = ["NanofocusStage"]
