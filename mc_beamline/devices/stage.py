"""Nanofocus sample stage: three piezo axes (motor records), positions in µm."""

from __future__ import annotations

import time

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor


class PiezoMotor(EpicsMotor):
    """:class:`ophyd.EpicsMotor` without a completion race of back-to-back moves.

    ``PositionerBase._done_moving`` first runs the pending move statuses and only then
    clears them. When the motion is fast, the RunEngine may already issue the next move
    (from its own thread) in between; that move "cancels" the old, already finished
    status again and ophyd logs ``InvalidState`` tracebacks. Here the pending statuses
    are detached before they are completed.
    """

    def _done_moving(self, success=True, timestamp=None, value=None, **kwargs):
        if success:
            self._run_subs(sub_type=self.SUB_DONE, timestamp=timestamp, value=value)
        pending = list(self._callbacks[self._SUB_REQ_DONE].values())
        self._reset_sub(self._SUB_REQ_DONE)
        timestamp = time.time() if timestamp is None else timestamp
        for callback in pending:
            callback(success=success, timestamp=timestamp, sub_type=self._SUB_REQ_DONE, obj=self)


class NanofocusStage(Device):
    """Piezo stage under the nanofocused beam.

    Components are :class:`PiezoMotor` (an :class:`ophyd.EpicsMotor`) on ``{prefix}X``, ``{prefix}Y`` and
    ``{prefix}Z`` (e.g. ``MC:STAGE:X``): x horizontal, y vertical, z along the beam. User
    units are µm; soft limits come from the records' HLM/LLM (default ±50 µm for x, y and
    ±500 µm for z) and ophyd refuses a move outside them with ``LimitError``.

    Example
    -------
    >>> stage = NanofocusStage("MC:STAGE:", name="stage")
    >>> stage.wait_for_connection(timeout=5)
    >>> stage.x.set(3.2).wait(timeout=5)
    """

    x = Cpt(PiezoMotor, "X", kind="hinted", doc="sample x (horizontal), µm")
    y = Cpt(PiezoMotor, "Y", kind="hinted", doc="sample y (vertical), µm")
    z = Cpt(PiezoMotor, "Z", kind="normal", doc="sample z (along the beam), µm")

    @property
    def position(self) -> tuple[float, float, float]:
        """Current readbacks (x, y, z) in µm (from the CA monitors, no network access)."""
        return (self.x.position, self.y.position, self.z.position)


__all__ = ["NanofocusStage", "PiezoMotor"]
