"""Beam status: storage-ring current (mA), photon energy (keV) and experiment shutter."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO


class BeamMonitor(Device):
    """Ring current, energy and shutter of the beamline, ``{prefix}`` = ``MC:BEAM:``.

    ``ring_current`` (mA) is monitored, so a bluesky suspender can watch it, e.g.
    ``SuspendFloor(beam.ring_current, 90, resume_thresh=95)``. ``shutter.set(1)`` opens
    the shutter; the status completes when the readback has followed (put-completion).
    The value is 1 for open, 0 for closed.
    """

    ring_current = Cpt(EpicsSignalRO, "RingCurrent", kind="hinted", auto_monitor=True,
                       doc="storage-ring current (mA)")
    energy = Cpt(EpicsSignalRO, "Energy_RBV", kind="config", auto_monitor=True, doc="photon energy (keV)")
    shutter = Cpt(EpicsSignal, "Shutter_RBV", write_pv="Shutter", kind="normal", auto_monitor=True,
                  put_complete=True, doc="experiment shutter: 1 open, 0 closed")
    beam_available = Cpt(EpicsSignalRO, "BeamAvailable_RBV", kind="omitted", auto_monitor=True,
                         doc="1 if current > 1 mA and the shutter is open")


class SimBeamMonitor(BeamMonitor):
    """:class:`BeamMonitor` on the simulated IOC, whose ``ring_current`` is writable.

    ``beam.ring_current.put(10.0)`` simulates a beam loss (for suspenders in tests and
    demos); on real hardware the ring current is read-only.
    """

    ring_current = Cpt(EpicsSignal, "RingCurrent", kind="hinted", auto_monitor=True,
                       doc="storage-ring current (mA); writable to simulate a beam loss")


__all__ = ["BeamMonitor", "SimBeamMonitor"]
