"""Simulated beam status: storage-ring current, photon energy and the experiment shutter.

PVs (``{prefix}`` is e.g. ``MC:BEAM:``):

================  ===================================================================
RingCurrent       storage-ring current in mA (default 100); writable so that tests and
                  demos can simulate a beam loss for bluesky suspenders
Energy_RBV        photon energy in keV (from the detector geometry's wavelength)
Shutter           enum Closed/Open, the requested state; put-completion when the
                  readback follows (after ``SHUTTER_MOVE_S``)
Shutter_RBV       enum Closed/Open, the actual state
BeamAvailable_RBV 1 if the current is above 1 mA and the shutter is open
================  ===================================================================

The frames of the simulated detector do not depend on these PVs: they are for
suspenders and interlock logic in plans.
"""

from __future__ import annotations

import asyncio
import math

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

SHUTTER_MOVE_S = 0.02
"""Time the simulated fast shutter needs to open or close (s)."""


class BeamIOC(PVGroup):
    """Storage-ring current, photon energy and shutter."""

    ring_current = pvproperty(name="RingCurrent", value=100.0, precision=2, units="mA",
                              doc="Storage-ring current (mA)")
    energy = pvproperty(name="Energy_RBV", value=12.4, precision=4, units="keV", read_only=True)
    shutter = pvproperty(name="Shutter", value="Open", dtype=ChannelType.ENUM, enum_strings=("Closed", "Open"),
                         doc="Experiment shutter request")
    shutter_rbv = pvproperty(name="Shutter_RBV", value="Open", dtype=ChannelType.ENUM,
                             enum_strings=("Closed", "Open"), read_only=True)
    beam_available = pvproperty(name="BeamAvailable_RBV", value=1, read_only=True)

    def __init__(self, *args, energy_kev: float = 12.4, **kwargs):
        super().__init__(*args, **kwargs)
        self.energy._data["value"] = float(energy_kev)

    async def _update_available(self, current: float | None = None) -> None:
        current = self.ring_current.value if current is None else current
        ok = current > 1.0 and self.shutter_rbv.value == "Open"
        await self.beam_available.write(1 if ok else 0)

    @ring_current.putter
    async def ring_current(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < 0:
            return instance.value
        await self._update_available(value)
        return value

    @shutter.putter
    async def shutter(self, instance, value):
        state = "Open" if value in ("Open", 1) else "Closed"
        await instance.write(state, verify_value=False)
        if self.shutter_rbv.value != state:
            await asyncio.sleep(SHUTTER_MOVE_S)
            await self.shutter_rbv.write(state)
        await self._update_available()
        return state


__all__ = ["BeamIOC", "SHUTTER_MOVE_S"]
