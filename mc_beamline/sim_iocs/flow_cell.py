"""Instruments on a sample cell of a :class:`ScaledTimeIOC`: exposures and the SAXS detector PVs.

Both the flow reactor's SAXS flow cell and the assembly cell's camera serve the same SAXS
PVs (times in *simulated* s, q in nm⁻¹, intensities in cm⁻¹):

====================  ==============================================================
Q_RBV                 waveform, the q axis of the curves, nm⁻¹
Intensity_RBV         waveform, azimuthally averaged absolute intensity, cm⁻¹
Sigma_RBV             waveform, standard deviation of the intensity, cm⁻¹
AcquireTime           exposure, s (control limits [1e-3, 3600]; refused outside)
AcquireTime_RBV       accepted exposure, s
Acquire               enum Done/Acquire; put-completion when the exposure is published
AcquireCount_RBV      number of exposures taken
Status_RBV            last event or failure, one sentence
====================  ==============================================================
"""

from __future__ import annotations

import asyncio

import numpy as np
from caproto.server import PVGroup, pvproperty

from mc_beamline.sim_iocs.pv_helpers import (
    LimitedSetpoint,
    enum_pv,
    text_pv,
    waveform_pv,
)
from mc_beamline.sim_iocs.scaled_time import ScaledTimeIOC


class CellInstrument(PVGroup):
    """An instrument on the cell of its parent :class:`ScaledTimeIOC`: one acquisition at a
    time, exposures in simulated time. A subclass defines the text PV ``status``
    (Status_RBV), on which a failed acquisition is reported."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._busy: asyncio.Event | None = None

    @property
    def cell(self) -> ScaledTimeIOC:
        """The simulation the instrument belongs to."""
        return self.parent

    async def exposure(self, seconds: float) -> None:
        """Wait ``seconds`` simulated s (in wall-clock time at the cell's TimeScale)."""
        wall = seconds * self.cell.time_scale_value
        if wall > 0:
            await asyncio.sleep(wall)

    async def acquire_once(self, instance, value, measure) -> str:
        """The put of an enum Done/Acquire PV ``instance``: run ``measure`` (a coroutine
        function) for a put of Acquire, unless an acquisition is already running, then
        complete with it. Returns the PV's new value, ``"Done"``."""
        if value not in (1, "1", "Acquire"):
            return "Done"
        if self._busy is not None:
            await self._busy.wait()
            return "Done"
        done = self._busy = asyncio.Event()
        await instance.write("Acquire", verify_value=False)
        try:
            await measure()
        except Exception as exc:  # reported on Status_RBV; the IOC keeps running
            await self.status.write(f"Acquisition failed: {type(exc).__name__}: {exc}"[:255])
        finally:
            self._busy = None
            done.set()
        return "Done"


def curve_pvs(q_nm: np.ndarray) -> tuple[pvproperty, pvproperty, pvproperty]:
    """Q_RBV (holding ``q_nm``, nm⁻¹), Intensity_RBV and Sigma_RBV (cm⁻¹) of a SAXS curve on ``q_nm``."""
    n = q_nm.size
    return (waveform_pv("Q_RBV", n, "1/nm", "Scattering vector (nm⁻¹)", value=q_nm),
            waveform_pv("Intensity_RBV", n, "1/cm", "Azimuthally averaged absolute intensity (cm⁻¹)"),
            waveform_pv("Sigma_RBV", n, "1/cm", "Standard deviation of the intensity (cm⁻¹)"))


class SaxsInstrument(CellInstrument):
    """The SAXS PVs of the module docstring but the curves; a subclass adds them with
    ``q, intensity, sigma = curve_pvs(q_nm)`` and implements :meth:`measure`."""

    acquire_time = pvproperty(name="AcquireTime", value=1.0, precision=4, units="s", dtype=LimitedSetpoint,
                              lower_ctrl_limit=1e-3, upper_ctrl_limit=3600.0, doc="Exposure (s)")
    acquire_time_rbv = pvproperty(name="AcquireTime_RBV", value=1.0, precision=4, units="s", read_only=True)
    acquire = enum_pv("Acquire", "Done", ("Done", "Acquire"), doc="Record one exposure of AcquireTime")
    acquire_count = pvproperty(name="AcquireCount_RBV", value=0, read_only=True)
    status = text_pv("Status_RBV", "Idle.")

    async def measure(self) -> None:
        """Take one exposure of AcquireTime and publish it."""
        raise NotImplementedError

    @acquire_time.putter
    async def acquire_time(self, instance, value):
        value = float(value)
        await self.acquire_time_rbv.write(value)
        return value

    @acquire.putter
    async def acquire(self, instance, value):
        return await self.acquire_once(instance, value, self.measure)


__all__ = ["CellInstrument", "SaxsInstrument", "curve_pvs"]
