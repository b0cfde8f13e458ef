"""Simulated nanofocus sample stage: three piezo axes served as EPICS motor records.

Each axis is a :class:`SimMotorRecord` PVGroup whose top-level PV (``{prefix}X``) is a
``motor`` record with the fields :class:`ophyd.EpicsMotor` uses (VAL, RBV, DMOV, MOVN,
VELO, ACCL, HLM, LLM, LVIO, STOP, EGU, HLS/LLS, MSTA, DIR, OFF, SET, HOMF/HOMR, CNEN,
TDIR, ...). Positions are in µm, velocities in µm/s, times in s.

Motion model
------------
* A put to VAL inside the soft limits [LLM, HLM] starts a trapezoidal move at VELO
  (acceleration time ACCL; :mod:`mc_beamline.physics.motion`); RBV/DRBV/RRBV are
  published every 10 ms while moving (and exactly once at the end), then the axis
  settles for DLY seconds before DMOV returns to 1. The put-completion of VAL arrives
  when DMOV goes to 1.
* DMOV always pulses 1 → 0 → 1 for an accepted put, even for a zero-length move, as a
  real motor record does (ophyd's ``EpicsMotor`` waits for that transition).
* A VAL outside [LLM, HLM] (or not finite) is refused: LVIO = 1, VAL keeps its old
  value, nothing moves, the readback goes into a MINOR alarm and DMOV pulses so that an
  ``EpicsMotor.set`` that bypassed ophyd's own limit check still completes, as failed.
  The VAL channel also reports [LLM, HLM] as its control limits, so ophyd refuses such
  a move before it is sent (``LimitError``).
* The piezo has a physical travel range beyond the soft limits; a move that reaches it
  stops there with HLS/LLS = 1 (ophyd then reports the move as failed).
* STOP = 1 (or SPMG = Stop) halts the axis where it is.

User and dial coordinates follow the motor record: ``user = ±dial + OFF`` (sign from
DIR); SET = "Set" redefines the user position (changing OFF, or the dial position when
FOFF = "Frozen") without moving.
"""

from __future__ import annotations

import asyncio
import math

from caproto import AlarmSeverity, AlarmStatus, SkipWrite
from caproto.server import PVGroup, PvpropertyDouble, SubGroup, pvproperty

from mc_beamline.physics.motion import move_duration, move_progress
from mc_beamline.sim_iocs.fly_controller import FlyControllerIOC

TICK_S = 0.01
"""Readback update period while moving (100 Hz)."""

# MSTA bits (motor record "Motor Status")
MSTA_DIRECTION = 1 << 0
MSTA_DONE = 1 << 1
MSTA_PLUS_LS = 1 << 2
MSTA_HOMELS = 1 << 3
MSTA_POSITION = 1 << 5
MSTA_HOME = 1 << 7
MSTA_PRESENT = 1 << 8
MSTA_PROBLEM = 1 << 9
MSTA_MOVING = 1 << 10
MSTA_GAIN_SUPPORT = 1 << 11
MSTA_MINUS_LS = 1 << 13
MSTA_HOMED = 1 << 14


class MotorValueData(PvpropertyDouble):
    """VAL of a simulated motor record.

    The channel reports the user soft limits as control limits (so that clients such as
    ophyd check them), but caproto must not refuse out-of-range writes by itself: the
    record does that, setting LVIO, like the real motor record.
    """

    async def verify_value(self, value):
        if self.putter is not None:
            return await self.putter(self, value)
        return value


async def _put_non_negative(fields, instance, value):
    """Field putter of a time (ACCL, DLY): at least 0; a value that is not finite is refused."""
    return max(float(value), 0.0) if math.isfinite(value) else instance.value


async def _put_dial_limit(fields, instance, value):
    """Field putter of DHLM / DLLM: store the dial limit, publish the user limits."""
    await instance.write(float(value), verify_value=False)
    await fields.parent.group._publish_limits()
    return SkipWrite


async def _put_home(fields, instance, value):
    """Field putter of HOMF / HOMR: start a home search."""
    if value:
        await instance.write(1, verify_value=False)
        await fields.parent.group._home()
    return SkipWrite


class SimMotorRecord(PVGroup):
    """One simulated piezo axis as an EPICS motor record (PV name = the group prefix).

    Parameters
    ----------
    description : DESC of the record.
    user_limits : (low, high) soft limits in µm (LLM, HLM).
    travel_range : (low, high) physical travel of the piezo in dial µm (hard limits).
    velocity : VELO in µm/s.
    max_velocity : VMAX in µm/s.
    accel_time : ACCL in s.
    settle_time : DLY in s, waited after motion before DMOV = 1.
    resolution : MRES in µm (raw readback step).
    precision : PREC (digits).
    """

    motor = pvproperty(value=0.0, name="", record="motor", dtype=MotorValueData, precision=4, units="um")

    def __init__(
        self,
        *args,
        description: str = "piezo axis",
        user_limits: tuple[float, float] = (-50.0, 50.0),
        travel_range: tuple[float, float] = (-60.0, 60.0),
        velocity: float = 200.0,
        max_velocity: float = 2000.0,
        accel_time: float = 0.001,
        settle_time: float = 0.002,
        resolution: float = 1e-4,
        precision: int = 4,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.defaults = dict(
            description=description,
            user_limits=tuple(map(float, user_limits)),
            velocity=float(velocity),
            max_velocity=float(max_velocity),
            accel_time=float(accel_time),
            settle_time=float(settle_time),
            resolution=float(resolution),
            precision=int(precision),
        )
        self.travel_range = (float(travel_range[0]), float(travel_range[1]))
        self._dial = 0.0  # current dial position (µm), the truth the readbacks publish
        self._dial_target = 0.0
        self._wake = asyncio.Event()
        self._stop_requested = False
        self._waiters: list[asyncio.Future] = []
        self._homing = False
        self._status_bits = MSTA_DONE | MSTA_PRESENT | MSTA_GAIN_SUPPORT
        self._profile_waiters: list[asyncio.Future] = []

    # ------------------------------------------------------------------ coordinates
    @property
    def fields(self):
        return self.motor.field_inst

    @property
    def _sign(self) -> float:
        return -1.0 if self.fields.user_direction.value in ("Neg", 1) else 1.0

    def user_from_dial(self, dial: float) -> float:
        return self._sign * dial + self.fields.user_offset.value

    def dial_from_user(self, user: float) -> float:
        return (user - self.fields.user_offset.value) * self._sign

    @property
    def user_position(self) -> float:
        """Current user readback position (µm), as published on RBV."""
        return self.user_from_dial(self._dial)

    @property
    def moving(self) -> bool:
        return self.fields.done_moving_to_value.value == 0

    def _user_limits(self) -> tuple[float, float]:
        f = self.fields
        a = self.user_from_dial(f.dial_low_limit.value)
        b = self.user_from_dial(f.dial_high_limit.value)
        return (min(a, b), max(a, b))

    async def _publish_limits(self) -> None:
        f = self.fields
        low, high = self._user_limits()
        # VAL's control limits first: clients (ophyd) re-read them when HLM/LLM change.
        await self.motor.write_metadata(lower_ctrl_limit=low, upper_ctrl_limit=high)
        await f.user_low_limit.write(low, verify_value=False)
        await f.user_high_limit.write(high, verify_value=False)

    async def _publish_readback(self) -> None:
        f = self.fields
        user = self.user_from_dial(self._dial)
        res = f.motor_step_size.value or 1e-4
        await f.dial_readback_value.write(self._dial, verify_value=False)
        await f.raw_readback_value.write(int(round(self._dial / res)), verify_value=False)
        await f.difference_dval_drbv.write(self._dial_target - self._dial, verify_value=False)
        await f.user_readback_value.write(user, verify_value=False)

    async def _set_status(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        bits = (self._status_bits & ~clear_bits) | set_bits
        if bits != self._status_bits or self.fields.motor_status.value != bits:
            self._status_bits = bits
            await self.fields.motor_status.write(bits, verify_value=False)

    # ---------------------------------------------------------------------- startup
    @motor.startup
    async def motor(self, instance, async_lib):
        d = self.defaults
        f = self.fields
        await f.description.write(d["description"], verify_value=False)
        await f.engineering_units.write("um", verify_value=False)
        await f.display_precision.write(d["precision"], verify_value=False)
        await f.motor_step_size.write(d["resolution"], verify_value=False)
        await f.encoder_step_size.write(d["resolution"], verify_value=False)
        await f.readback_step_size.write(d["resolution"], verify_value=False)
        await f.retry_deadband.write(d["resolution"], verify_value=False)
        await f.velocity.write(d["velocity"], verify_value=False)
        await f.base_velocity.write(0.0, verify_value=False)
        await f.max_velocity.write(d["max_velocity"], verify_value=False)
        await f.home_velocity.write(d["velocity"], verify_value=False)
        await f.jog_velocity.write(d["velocity"], verify_value=False)
        await f.seconds_to_velocity.write(d["accel_time"], verify_value=False)
        await f.readback_settle_time.write(d["settle_time"], verify_value=False)
        await f.tweak_step_size.write(1.0, verify_value=False)
        await f.enable_control.write("Enable", verify_value=False)
        low, high = d["user_limits"]
        await f.dial_low_limit.write(low, verify_value=False)
        await f.dial_high_limit.write(high, verify_value=False)
        await f.limit_violation.write(0, verify_value=False)
        await f.done_moving_to_value.write(1, verify_value=False)
        await f.motor_is_moving.write(0, verify_value=False)
        await f.motion_in_progress.write(0, verify_value=False)
        await f.user_high_limit_switch.write(0, verify_value=False)
        await f.user_low_limit_switch.write(0, verify_value=False)
        for p in (instance, f.user_readback_value, f.dial_readback_value, f.user_high_limit, f.user_low_limit,
                  f.dial_desired_value, f.dial_high_limit, f.dial_low_limit):
            await p.write_metadata(units="um", precision=d["precision"])
        await self._publish_limits()
        await self._publish_readback()
        await self._set_status()
        await self._motion_loop()

    # ----------------------------------------------------------------------- motion
    def _command(self, dial_target: float) -> asyncio.Future:
        """Start (or re-target) a move; the future resolves when DMOV returns to 1."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._dial_target = dial_target
        self._stop_requested = False
        self._wake.set()
        return fut

    async def _motion_loop(self) -> None:
        while True:
            await self._wake.wait()
            try:
                await self._run_move()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the axis die: report and stay done
                self.log.exception("Motion of %s failed", self.prefix)
                await self.fields.done_moving_to_value.write(1, verify_value=False)
                self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @staticmethod
    async def _set(channel, value) -> None:
        """Write a field only if its value changes (fewer monitor updates per move)."""
        if channel.value != value:
            await channel.write(value, verify_value=False)

    async def _run_move(self) -> None:
        f = self.fields
        loop = asyncio.get_running_loop()
        await self._set(f.done_moving_to_value, 0)
        await self._set(f.motion_in_progress, 1)
        bits = self._status_bits & ~(MSTA_DONE | MSTA_PLUS_LS | MSTA_MINUS_LS)
        hit_switch = 0
        while True:  # one iteration per (re)planned move
            self._wake.clear()
            start = self._dial
            lo, hi = self.travel_range
            target = min(max(self._dial_target, lo), hi)
            hit_switch = 1 if self._dial_target > hi else -1 if self._dial_target < lo else 0
            distance = abs(target - start)
            direction = 1.0 if target >= start else -1.0
            velocity = max(float(f.velocity.value), 1e-6)
            accel_time = max(float(f.seconds_to_velocity.value), 0.0)
            total = move_duration(distance, velocity, accel_time)
            if distance > 0:
                positive = direction * self._sign > 0
                await self._set(f.direction_of_travel, 1 if positive else 0)
                await self._set(f.motor_is_moving, 1)
                bits = (bits | MSTA_MOVING | MSTA_DIRECTION) if positive else ((bits | MSTA_MOVING) & ~MSTA_DIRECTION)
            await self._set_status(set_bits=bits, clear_bits=~bits)
            t0 = loop.time()
            self._profile_started(t0, start, target)
            interrupted = False
            while True:  # readback updates every TICK_S until the profile ends
                remaining = total - (loop.time() - t0)
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(TICK_S, remaining))
                    interrupted = True
                except asyncio.TimeoutError:
                    pass
                elapsed = loop.time() - t0
                if interrupted or elapsed < total:
                    self._dial = start + direction * move_progress(elapsed, distance, velocity, accel_time)
                    await self._publish_readback()
                if interrupted:
                    break
            if interrupted:
                if self._stop_requested:
                    self._dial_target = self._dial
                continue  # re-plan from the current position
            self._dial = target
            await self._publish_readback()
            await self._set(f.motor_is_moving, 0)
            bits &= ~MSTA_MOVING
            await self._set_status(set_bits=bits, clear_bits=~bits)
            settle = max(float(f.readback_settle_time.value), 0.0)
            if settle > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=settle)
                except asyncio.TimeoutError:
                    pass
            if self._wake.is_set():
                if self._stop_requested:
                    self._dial_target = self._dial
                continue
            break
        await self._set(f.user_high_limit_switch, 1 if hit_switch * self._sign > 0 else 0)
        await self._set(f.user_low_limit_switch, 1 if hit_switch * self._sign < 0 else 0)
        bits |= MSTA_DONE
        if hit_switch:
            bits |= MSTA_PLUS_LS if hit_switch > 0 else MSTA_MINUS_LS
        if self._homing:
            self._homing = False
            bits |= MSTA_HOMED
            await self._set(f.at_home, 1)
            await self._set(f.home_forward, 0)
            await self._set(f.home_reverse, 0)
        else:
            await self._set(f.at_home, 0)
        await self._set_status(set_bits=bits, clear_bits=~bits)
        await self._set(f.motion_in_progress, 0)
        await f.done_moving_to_value.write(1, verify_value=False)
        self._stop_requested = False
        self._resolve_waiters()

    async def _refuse(self, instance) -> None:
        """Limit violation: flag LVIO, raise an alarm on the readback, pulse DMOV."""
        f = self.fields
        await f.limit_violation.write(1, verify_value=False)
        await f.user_readback_value.alarm.write(status=AlarmStatus.SOFT, severity=AlarmSeverity.MINOR_ALARM)
        await f.done_moving_to_value.write(0, verify_value=False)
        await f.done_moving_to_value.write(1, verify_value=False)

    async def _clear_violation(self) -> None:
        f = self.fields
        if f.limit_violation.value:
            await f.limit_violation.write(0, verify_value=False)
        alarm = f.user_readback_value.alarm
        if alarm.severity != AlarmSeverity.NO_ALARM:
            await alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)

    async def move_user(self, instance, value: float) -> bool:
        """Validate a user-coordinate target, start the move and wait for it. False if refused."""
        done = await self.start_user_move(instance, value)
        if done is None:
            return False
        await done
        return True

    async def start_user_move(self, instance, value: float) -> asyncio.Future | None:
        """Validate a user-coordinate target and start the move; the future resolves when DMOV
        returns to 1. None (and LVIO) if refused."""
        value = float(value)
        low, high = self._user_limits()
        if not math.isfinite(value) or (high > low and not (low <= value <= high)):
            await self._refuse(instance)
            return None
        await self._clear_violation()
        await instance.write(value, verify_value=False)
        dial = self.dial_from_user(value)
        await self.fields.dial_desired_value.write(dial, verify_value=False)
        return self._command(dial)

    def next_profile(self) -> asyncio.Future:
        """A future that resolves when the next motion profile starts, with (loop time, start,
        target) in dial µm: what a controller that fires on positions needs to follow the axis."""
        fut = asyncio.get_running_loop().create_future()
        self._profile_waiters.append(fut)
        return fut

    def _profile_started(self, t0: float, start: float, target: float) -> None:
        waiters, self._profile_waiters = self._profile_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result((t0, start, target))

    # ------------------------------------------------------------------- VAL putter
    @motor.putter
    async def motor(self, instance, value):
        value = float(value)
        f = self.fields
        if f.set_use_switch.value in ("Set", 1):
            if not math.isfinite(value):
                return SkipWrite
            if f.offset_freeze_switch.value in ("Frozen", 1):
                self._dial = self.dial_from_user(value)
                self._dial_target = self._dial
            else:
                await f.user_offset.write(value - self._sign * self._dial, verify_value=False)
            await instance.write(value, verify_value=False)
            await self._publish_limits()
            await self._publish_readback()
            return SkipWrite
        await self.move_user(instance, value)
        return SkipWrite

    # --------------------------------------------------------------- field putters
    def _request_stop(self) -> None:
        """Halt the axis where it is (STOP, or SPMG = Stop / Pause)."""
        self._stop_requested = True
        self._dial_target = self._dial
        if self.moving:
            self._wake.set()

    async def _set_user_limit(self, value: float, high: bool) -> None:
        """HLM (``high``) or LLM put: set the dial limit it maps to (DIR decides which)."""
        f = self.fields
        dial = self.dial_from_user(float(value))
        target = f.dial_high_limit if (self._sign > 0) == high else f.dial_low_limit
        await target.write(dial, verify_value=False)
        await self._publish_limits()

    async def _user_coordinates_changed(self) -> None:
        """OFF or DIR changed: VAL, the limits and the readbacks follow in user coordinates."""
        await self.motor.write(self.user_from_dial(self._dial_target), verify_value=False)
        await self._publish_limits()
        await self._publish_readback()

    async def _tweak(self, sign: float) -> None:
        """TWF (``sign`` +1) or TWR (−1): move by TWV from VAL."""
        await self.move_user(self.motor, self.motor.value + sign * abs(self.fields.tweak_step_size.value))

    @motor.fields.stop.putter
    async def motor(fields, instance, value):
        if value:
            fields.parent.group._request_stop()
        return 0

    @motor.fields.stop_pause_move_go.putter
    async def motor(fields, instance, value):
        if value in ("Stop", 0, "Pause", 1):
            fields.parent.group._request_stop()
        return value

    @motor.fields.velocity.putter
    async def motor(fields, instance, value):
        vmax = fields.max_velocity.value or float("inf")
        vmin = max(fields.base_velocity.value, 1e-6)
        if not math.isfinite(value):
            return fields.velocity.value
        return min(max(float(value), vmin), vmax)

    motor.fields.seconds_to_velocity.putter(_put_non_negative)
    motor.fields.readback_settle_time.putter(_put_non_negative)

    @motor.fields.user_high_limit.putter
    async def motor(fields, instance, value):
        await fields.parent.group._set_user_limit(value, high=True)
        return SkipWrite

    @motor.fields.user_low_limit.putter
    async def motor(fields, instance, value):
        await fields.parent.group._set_user_limit(value, high=False)
        return SkipWrite

    motor.fields.dial_high_limit.putter(_put_dial_limit)
    motor.fields.dial_low_limit.putter(_put_dial_limit)

    @motor.fields.user_offset.putter
    async def motor(fields, instance, value):
        await instance.write(float(value), verify_value=False)
        await fields.parent.group._user_coordinates_changed()
        return SkipWrite

    @motor.fields.user_direction.putter
    async def motor(fields, instance, value):
        await instance.write(value, verify_value=False)
        await fields.parent.group._user_coordinates_changed()
        return SkipWrite

    @motor.fields.dial_desired_value.putter
    async def motor(fields, instance, value):
        self = fields.parent.group
        await self.move_user(self.motor, self.user_from_dial(float(value)))
        return SkipWrite

    @motor.fields.relative_value.putter
    async def motor(fields, instance, value):
        self = fields.parent.group
        if value:
            await self.move_user(self.motor, self.motor.value + float(value))
        return 0.0

    @motor.fields.tweak_motor_forward.putter
    async def motor(fields, instance, value):
        if value:
            await fields.parent.group._tweak(1.0)
        return 0

    @motor.fields.tweak_motor_reverse.putter
    async def motor(fields, instance, value):
        if value:
            await fields.parent.group._tweak(-1.0)
        return 0

    motor.fields.home_forward.putter(_put_home)
    motor.fields.home_reverse.putter(_put_home)

    async def _home(self) -> None:
        """Home search: move to the home switch at dial 0 and mark the axis homed."""
        self._homing = True
        await self._clear_violation()
        await self.motor.write(self.user_from_dial(0.0), verify_value=False)
        await self._command(0.0)


class NanofocusStageIOC(PVGroup):
    """Nanofocus sample stage: piezo axes X, Y (±50 µm) and Z (±500 µm), positions in µm.

    PVs: ``{prefix}X``, ``{prefix}Y``, ``{prefix}Z`` (motor records, with fields) and the
    fly-scan controller under ``{prefix}FLY:`` (:mod:`.fly_controller`).
    """

    x = SubGroup(SimMotorRecord, prefix="X", description="sample x (horizontal)",
                 user_limits=(-50.0, 50.0), travel_range=(-60.0, 60.0))
    y = SubGroup(SimMotorRecord, prefix="Y", description="sample y (vertical)",
                 user_limits=(-50.0, 50.0), travel_range=(-60.0, 60.0))
    z = SubGroup(SimMotorRecord, prefix="Z", description="sample z (along the beam)",
                 user_limits=(-500.0, 500.0), travel_range=(-600.0, 600.0))
    fly = SubGroup(FlyControllerIOC, prefix="FLY:")

    def positions(self) -> tuple[float, float, float]:
        """Current user readback positions (x, y, z) in µm."""
        return (self.x.user_position, self.y.user_position, self.z.user_position)

    @property
    def axes(self) -> dict[str, SimMotorRecord]:
        return {"x": self.x, "y": self.y, "z": self.z}


__all__ = ["NanofocusStageIOC", "SimMotorRecord", "MotorValueData", "TICK_S"]

