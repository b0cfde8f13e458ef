"""Fly-scan controller of the simulated nanofocus stage: one row at constant velocity with
position-compare gates and encoder capture.

PVs under ``{prefix}`` (e.g. ``MC:STAGE:FLY:``); positions in µm, times in s:

=========================  ==============================================================
FirstCenter                centre of the row's first pixel in travel order (x, µm)
Step                       distance between pixel centres (µm); its sign is the direction
NumPulses                  gates (pixels) in the row, 1 … MAX_PULSES
GateTime                   exposure per pixel, s (gate length in time)
Velocity                   x velocity across the row, µm/s (≤ the x motor's VMAX)
Go                         enum Done/Go; put 1 runs the row, put-completion at its end;
                           put 0 stops it
Busy_RBV                   1 while a row runs
PulseCount_RBV             gates fired in the last row
EncoderXOpen_RBV, ..Close  x encoder latched when each gate opened / closed (waveforms)
EncoderY_RBV               y encoder at each gate (waveform)
GateTimeStamp_RBV          wall-clock time (s since the epoch) each gate opened (waveform)
Message_RBV                why the last row was refused or stopped, or that it completed (ASCII)
=========================  ==============================================================

A row (:class:`~mc_beamline.physics.fly_motion.FlyRowProfile`): the x axis first moves to
the run-up start (outside the map) at its own velocity, then across the row at Velocity,
with the acceleration time of its ACCL; each gate opens at the servo tick after the axis
crossed the compare position. At each gate's closing edge the controller hands a
:class:`GatePulse` to every function in :attr:`FlyControllerIOC.gate_listeners` (the
detector, wired in the same process). A row that would leave the x soft limits, run faster
than VMAX or hold a gate longer than the pixel is refused before anything moves.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from mc_beamline.physics.fly_motion import FlyRowProfile
from mc_beamline.sim_iocs.pv_helpers import text_pv, waveform_pv

MAX_PULSES = 8192
"""Most gates in one row (length of the encoder waveforms)."""


@dataclass(frozen=True)
class GatePulse:
    """One gated exposure as the detector receives it."""

    index: int
    """Gate number within its row, from 0."""
    time_open: float
    """Wall-clock time the gate opened, s since the epoch."""
    exposure_s: float
    """Gate length, s."""
    x_open_um: float
    """x encoder at the opening edge, µm."""
    x_close_um: float
    """x encoder at the closing edge, µm."""
    y_um: float
    """y encoder during the gate, µm."""
    z_um: float
    """z encoder during the gate, µm."""


class FlyControllerIOC(PVGroup):
    """The stage controller's fly mode; a SubGroup of the stage whose ``x``, ``y`` and ``z``
    axes are :class:`~mc_beamline.sim_iocs.stage.SimMotorRecord` groups."""

    first_center = pvproperty(name="FirstCenter", value=0.0, precision=4, units="um")
    step = pvproperty(name="Step", value=0.4, precision=4, units="um")
    num_pulses = pvproperty(name="NumPulses", value=1)
    gate_time = pvproperty(name="GateTime", value=0.01, precision=5, units="s")
    velocity = pvproperty(name="Velocity", value=40.0, precision=3, units="um/s")
    go = pvproperty(name="Go", value="Done", dtype=ChannelType.ENUM, enum_strings=("Done", "Go"))
    busy = pvproperty(name="Busy_RBV", value=0, read_only=True)
    pulse_count = pvproperty(name="PulseCount_RBV", value=0, read_only=True)
    encoder_x_open = waveform_pv("EncoderXOpen_RBV", MAX_PULSES, "um", "x at each gate's opening edge")
    encoder_x_close = waveform_pv("EncoderXClose_RBV", MAX_PULSES, "um", "x at each gate's closing edge")
    encoder_y = waveform_pv("EncoderY_RBV", MAX_PULSES, "um", "y at each gate")
    gate_stamp = waveform_pv("GateTimeStamp_RBV", MAX_PULSES, "s", "wall-clock time each gate opened")
    message = text_pv("Message_RBV", "", max_length=512)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate_listeners: list[Callable[[GatePulse], None]] = []
        self._running = False
        self._stop = False

    # ------------------------------------------------------------------ row
    def _profile(self) -> FlyRowProfile:
        """The requested row; ValueError with the operator's sentence if it cannot run."""
        axis = self.parent.x
        f = axis.fields
        n = int(self.num_pulses.value)
        if not 1 <= n <= MAX_PULSES:
            raise ValueError(f"NumPulses must be 1 to {MAX_PULSES}, got {n}.")
        velocity = float(self.velocity.value)
        vmax = float(f.max_velocity.value or 0.0)
        if vmax > 0 and velocity > vmax:
            raise ValueError(f"Velocity {velocity:g} um/s is above the x axis' maximum {vmax:g} um/s.")
        profile = FlyRowProfile(float(self.first_center.value), float(self.step.value), n,
                                float(self.gate_time.value), velocity, float(f.seconds_to_velocity.value))
        low, high = axis._user_limits()
        lo, hi = sorted((profile.start_um, profile.end_um))
        if high > low and (lo < low or hi > high):
            raise ValueError(f"The row with its turnarounds spans {lo:g} to {hi:g} um, outside the x limits "
                             f"{low:g} to {high:g} um.")
        return profile

    async def _fly_row(self) -> str:
        try:
            profile = self._profile()
        except ValueError as exc:  # the PV holds ASCII text
            return f"Row refused: {exc}".replace("µ", "u").replace("…", " to ")
        axis = self.parent.x
        f = axis.fields
        if abs(axis.user_position - profile.start_um) > 1e-6:  # turnaround to the run-up start
            approach = await axis.start_user_move(axis.motor, profile.start_um)
            if approach is None:
                return "Row refused: the x axis refused the run-up start."
            await approach
        if self._stop:
            return "Row stopped before it started."
        saved_velocity = float(f.velocity.value)
        await f.velocity.write(profile.velocity_um_s)
        try:
            started = axis.next_profile()
            done = await axis.start_user_move(axis.motor, profile.end_um)
            if done is None:
                return "Row refused: the x axis refused the row's end."
            t0, _, _ = await started
            fired = await self._fire_gates(profile, t0, done)
            await done
        finally:
            await f.velocity.write(saved_velocity)
        if fired < profile.n_pixels:
            return f"Row stopped after {fired} of {profile.n_pixels} gates."
        return f"Row of {fired} gates done."

    async def _fire_gates(self, profile: FlyRowProfile, t0: float, done: asyncio.Future) -> int:
        """Hand each gate to the listeners at its closing edge; publish the encoder records."""
        loop = asyncio.get_running_loop()
        epoch_minus_loop = time.time() - loop.time()
        y, z = self.parent.y.user_position, self.parent.z.user_position
        records: list[GatePulse] = []
        for gate in profile.gates(resolution_um=float(self.parent.x.fields.motor_step_size.value or 0.0)):
            delay = t0 + gate.t_close_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stop or done.done():  # stopped: this gate never closed on its pixel
                break
            pulse = GatePulse(gate.index, t0 + gate.t_open_s + epoch_minus_loop, gate.duration_s,
                              gate.x_open_um, gate.x_close_um, y, z)
            records.append(pulse)
            for listener in self.gate_listeners:
                listener(pulse)
        await self.encoder_x_open.write([p.x_open_um for p in records] or [0.0])
        await self.encoder_x_close.write([p.x_close_um for p in records] or [0.0])
        await self.encoder_y.write([p.y_um for p in records] or [0.0])
        await self.gate_stamp.write([p.time_open for p in records] or [0.0])
        await self.pulse_count.write(len(records))
        return len(records)

    @go.putter
    async def go(self, instance, value):
        if value not in ("Go", 1):
            if self._running:
                self._stop = True
                self.parent.x._request_stop()
            return "Done"
        if self._running:
            return "Done"
        self._running, self._stop = True, False
        await self.pulse_count.write(0)
        await self.busy.write(1)
        try:
            message = await self._fly_row()
        except Exception as exc:  # never leave the controller busy
            message = f"Row failed: {type(exc).__name__}: {exc}"
        finally:
            self._running = False
            await self.busy.write(0)
        await self.message.write(message[:511])
        return "Done"


__all__ = ["FlyControllerIOC", "GatePulse", "MAX_PULSES"]
