"""Nanofocus sample stage: three piezo axes (motor records), positions in µm."""

from __future__ import annotations

import time

import numpy as np

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor


MOVE_TIMEOUT_MARGIN_S = 5.0
"""Wall-clock seconds a move may take beyond its travel time (acceleration, settling, CA latency)."""
SLOWEST_VELOCITY_UM_S = 1.0
"""Velocity (µm/s) assumed for the timeout when the record's is unknown, and the lowest used."""
MAX_TRAVEL_UM = 500.0
"""Largest travel of an axis (z: ±500 µm), for a timeout when the position is unknown."""


class PiezoMotor(EpicsMotor):
    """:class:`ophyd.EpicsMotor` without a completion race of back-to-back moves.

    ``PositionerBase._done_moving`` first runs the pending move statuses and only then
    clears them. When the motion is fast, the RunEngine may already issue the next move
    (from its own thread) in between; that move "cancels" the old, already finished
    status again and ophyd logs ``InvalidState`` tracebacks. Here the pending statuses
    are detached before they are completed.

    Every move has a bound (`move_timeout`): a dead IOC fails the move in seconds.
    """

    def move(self, position, wait=True, timeout=None, **kwargs):
        """Move to ``position`` (µm); the move fails after a bound instead of waiting forever.

        The bound: ``timeout``, else the motor's ``timeout`` attribute if set, else
        `move_timeout`. A motor whose IOC died never reports the end of the move; bluesky
        then fails the run with the status' timeout rather than hanging.
        """
        if timeout is None:
            timeout = self.timeout if self.timeout is not None else self.move_timeout(position)
        return super().move(position, wait=wait, timeout=timeout, **kwargs)

    def move_timeout(self, position: float) -> float:
        """Seconds a move to ``position`` (µm) may take: travel at the record's velocity + margin.

        Uses the monitored readback and velocity (no network wait); a velocity below
        :data:`SLOWEST_VELOCITY_UM_S` counts as that, an unknown position as twice the
        largest travel.
        """
        try:
            current = float(self.user_readback.get(use_monitor=True))
            velocity = float(self.velocity.get(use_monitor=True))
        except Exception:  # noqa: BLE001 - not connected or no value yet: assume the slowest travel
            current, velocity = float("nan"), SLOWEST_VELOCITY_UM_S
        distance = abs(float(position) - current)
        if not np.isfinite(distance):
            distance = 2 * MAX_TRAVEL_UM
        return MOVE_TIMEOUT_MARGIN_S + distance / max(velocity, SLOWEST_VELOCITY_UM_S)

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
