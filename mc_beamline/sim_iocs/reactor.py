"""Simulated continuous-flow CdSe reactor with its UV-Vis and SAXS flow cells (seed 002).

PVs under ``{prefix}`` (e.g. ``MC:REACTOR:``); times are *simulated* seconds unless said
otherwise, flows in mL/min, volumes in mL, temperatures in °C:

===========================  ================================================================
TimeScale                    wall-clock seconds per simulated second (default 1; > 0). The
                             reactor (heaters, pumps, flushing) and the exposures of both
                             flow-cell instruments run that much faster or slower
SimTime_RBV                  simulated seconds since the IOC started
NucVolume_RBV                volume of the nucleation chamber, mL
GrowthVolume_RBV             volume of the growth oven up to the flow cells, mL
Volume_RBV                   total reactor volume (chamber + oven), mL
TotalFlow_RBV                sum of the actual pump flows, mL/min
ReactionTime_RBV             60 · Volume / TotalFlow, s (0 while nothing flows)
Dispensed_RBV                total volume pumped since the IOC started (both pumps), mL
FlushedVolume_RBV            volume pumped since the reactor conditions last changed, mL
CellAge_RBV                  FlushedVolume_RBV in reactor volumes
SimSeed_RBV                  seed of the measurement noise
CD:, SE:                     the two precursor pumps (Cd and Se stock), see below
NUC:, GROW:                  nucleation-chamber and growth-oven temperature controllers
UVVIS:                       UV-Vis spectrometer on the optical flow cell
SAXS:                        SAXS detector on the X-ray flow cell
===========================  ================================================================

Pumps (``CD:``, ``SE:``): ``Rate`` (set point, mL/min, control limits [RateMin, RateMax]),
``Rate_RBV`` (accepted set point), ``Run``/``Run_RBV``
(enum Stop/Run), ``Flow_RBV`` (actual flow: the rate while running, else 0),
``Dispensed_RBV`` (mL pumped since start, integrates in simulated time), ``RateMin_RBV``,
``RateMax_RBV`` (mL/min) and ``Stock_RBV`` (precursor concentration in the reservoir, mM).

Temperature controllers (``NUC:``, ``GROW:``): ``SP`` (set point, °C, control limits
20–400), ``SP_RBV``, ``T_RBV`` (readback with 0.01 °C sensor noise), ``TimeConstant``
(s), ``RampRate`` (largest heating/cooling rate, °C/min; 0: no limit), ``Tolerance`` (°C),
``SettleTime`` (s) and ``Settled_RBV`` (1 once the temperature has stayed within
Tolerance of SP for SettleTime; every put to SP clears it) and ``Disturbance`` (°C, a
simulated fault the controller cannot correct; default 0). The temperature follows
SP + Disturbance as a first-order lag of TimeConstant whose rate is capped at RampRate,
integrated exactly between updates.

UV-Vis (``UVVIS:``): ``Wavelength_RBV`` (waveform, 300–700 nm, 1 nm steps),
``Absorbance_RBV`` (waveform, decadic, 1 mm path), ``IntegrationTime`` (s, 0.1 ms–10 s),
``Acquire`` (enum Done/Acquire; put-completion when the spectrum is published),
``AcquireCount_RBV``, ``TakeDark``/``TakeReference`` (put 1, completes after one
integration), ``DarkValid_RBV``/``ReferenceValid_RBV`` (cleared when the integration
time changes), ``ReferenceCounts_RBV`` (counts per pixel of the reference spectrum, sets
the photon noise), ``PathLength_RBV`` (cm) and ``Status_RBV``. Acquire without a valid
dark and reference fails (Status_RBV says why) and leaves the spectrum unchanged.

SAXS (``SAXS:``): ``Q_RBV`` (waveform, nm⁻¹, 0.1–5 nm⁻¹), ``Intensity_RBV`` and
``Sigma_RBV`` (waveforms, cm⁻¹), ``AcquireTime`` (s), ``Acquire`` (as above),
``AcquireCount_RBV`` and ``Status_RBV``.

Flow-cell contents
------------------
Each fluid element is labelled with the reactor conditions (temperature readbacks and
pump flows) in force while it entered the reactor, and carries the steady-state product
of those conditions (:func:`mc_beamline.physics.flow_reactor.simulate`). The flow cells see
a mixture of the elements that entered earlier, weighted by the residence-time
distribution of ``TANKS_IN_SERIES`` ideal mixers in series in units of reactor volumes:
after one reactor volume 44 % of the old contents remain, after two 3 %, after three
0.09 %. Absorbance and SAXS intensity are linear in the concentrations, so the measured
curves are the weighted sums of the curves of each labelled element. A new label starts
when a temperature moves by more than ``TEMPERATURE_STEP_C`` or a flow by more than
``FLOW_STEP`` (relative) from the values at which the current label started; the current
label follows the latest readbacks until then.

Set points with control limits (Rate, SP, IntegrationTime, AcquireTime) refuse a put
outside them: the put completes, the value stays and the PV shows a MINOR alarm (status
LOW or HIGH) until the next accepted put.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType, SkipWrite
from caproto.server import PVGroup, PvpropertyDouble, SubGroup, pvproperty

from mc_beamline.physics import absorption, saxs_models
from mc_beamline.physics.flow_reactor import DEFAULT_REACTOR, FlowReactor, ReactorConditions, ReactorState, simulate

TICK_S = 0.05
"""Wall-clock period of the reactor simulation and its readback updates, s."""
MIN_TIME_SCALE = 1e-4
"""Smallest accepted TimeScale (10 000 simulated seconds per wall-clock second)."""
AMBIENT_C = 25.0
"""Temperature of the reactor at start-up, °C."""
TEMPERATURE_LIMITS_C = (20.0, 400.0)
"""Control limits of both temperature set points, °C."""
SENSOR_NOISE_C = 0.01
"""Standard deviation of the temperature readbacks, °C."""
PUMP_RATE_LIMITS_ML_MIN = (0.05, 10.0)
"""Smallest and largest set point of each pump, mL/min."""
TANKS_IN_SERIES = 5
"""Ideal mixers in series that model the reactor's residence-time distribution."""
TEMPERATURE_STEP_C = 0.2
FLOW_STEP = 0.005
HISTORY_VOLUMES = 12.0
"""Fluid that entered more than this many reactor volumes ago is forgotten (weight < 1e-18)."""
MIN_WEIGHT = 1e-6
"""Labels of smaller weight are left out of a measured mixture (the rest renormalised)."""
WAVELENGTH_NM = np.linspace(300.0, 700.0, 401)
Q_NM = saxs_models.default_q_nm(500)
PATH_CM = 0.1
REFERENCE_COUNTS_PER_S = 2e7
"""Reference-spectrum counts per pixel and second of integration."""
SAXS_COUNTS_PER_CM1_PER_S = 2e6
"""SAXS counts per q bin per cm⁻¹ of intensity and second of exposure."""
DEFAULT_SEED = 2002


class LimitedSetpoint(PvpropertyDouble):
    """A set point that reports its control limits but refuses an out-of-range put itself.

    A put outside [lower_ctrl_limit, upper_ctrl_limit] (or not finite) completes without
    changing the value, and the PV goes into a MINOR alarm (status LOW or HIGH) until the
    next accepted put. (caproto's own limit check leaves a put-callback unanswered.)
    """

    async def verify_value(self, value):
        value = float(value)
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        if not math.isfinite(value) or (lo < hi and not lo <= value <= hi):
            status = AlarmStatus.HIGH if value > hi else AlarmStatus.LOW
            await self.alarm.write(status=status, severity=AlarmSeverity.MINOR_ALARM)
            return SkipWrite
        if self.alarm.severity != AlarmSeverity.NO_ALARM:
            await self.alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)
        if self.putter is not None:
            return await self.putter(self, value)
        return value


def _enum(name: str, value: str, strings: tuple[str, ...], *, read_only: bool = False, doc: str = ""):
    return pvproperty(name=name, value=value, dtype=ChannelType.ENUM, enum_strings=strings,
                      read_only=read_only, doc=doc)


def _text(name: str, value: str = "", *, max_length: int = 256):
    return pvproperty(name=name, value=value, dtype=ChannelType.CHAR, max_length=max_length, read_only=True)


def _waveform(name: str, length: int, units: str, doc: str):
    return pvproperty(name=name, value=[0.0] * length, dtype=float, max_length=length, read_only=True,
                      units=units, doc=doc)


def _is_on(value) -> bool:
    return value in (1, "1", "Run", "Acquire")


# ------------------------------------------------------------------------- model
def first_order_step(temperature: float, setpoint: float, dt: float, tau: float, max_rate: float) -> float:
    """Temperature (°C) after ``dt`` s of a first-order lag (``tau`` s) capped at ``max_rate`` °C/s.

    Exact: the rate-limited (linear) part runs while |SP − T| > max_rate·tau, the
    exponential approach after it.
    """
    err = temperature - setpoint
    if err == 0.0 or dt <= 0.0:
        return temperature
    sign = 1.0 if err > 0 else -1.0
    mag = abs(err)
    tau = max(tau, 1e-9)
    if max_rate > 0 and math.isfinite(max_rate):
        knee = max_rate * tau
        if mag > knee:
            t_lin = (mag - knee) / max_rate
            if dt <= t_lin:
                return setpoint + sign * (mag - max_rate * dt)
            dt -= t_lin
            mag = knee
    return setpoint + sign * mag * math.exp(-dt / tau)


def fraction_older(theta: float, tanks: int = TANKS_IN_SERIES) -> float:
    """Fraction of the outflow that entered more than ``theta`` reactor volumes ago.

    Residence-time distribution of ``tanks`` ideal mixers in series (an Erlang
    distribution of mean 1): exp(−nθ) Σ_{k<n} (nθ)^k / k!.
    """
    if theta <= 0:
        return 1.0
    if not math.isfinite(theta):
        return 0.0
    x = tanks * theta
    term, total = 1.0, 1.0
    for k in range(1, tanks):
        term *= x / k
        total += term
    return math.exp(-x) * total


@dataclass(frozen=True)
class Label:
    """Conditions under which fluid entered the reactor: temperatures (°C), flows (mL/min)."""

    nucleation_c: float
    growth_c: float
    cd_ml_min: float
    se_ml_min: float

    def close_to(self, other: "Label") -> bool:
        def flow_close(a: float, b: float) -> bool:
            return abs(a - b) <= FLOW_STEP * max(abs(a), abs(b), 1e-9)

        return (abs(self.nucleation_c - other.nucleation_c) <= TEMPERATURE_STEP_C
                and abs(self.growth_c - other.growth_c) <= TEMPERATURE_STEP_C
                and flow_close(self.cd_ml_min, other.cd_ml_min) and flow_close(self.se_ml_min, other.se_ml_min))

    def key(self) -> tuple[float, float, float, float]:
        """Rounded values (0.01 °C, 1e-5 mL/min) under which the product is cached."""
        return (round(self.nucleation_c, 2), round(self.growth_c, 2),
                round(self.cd_ml_min, 5), round(self.se_ml_min, 5))


class FlowHistory:
    """What entered the reactor when: labelled stretches of the cumulative pumped volume.

    Parameters
    ----------
    reactor_volume_ml : volume from the mixing point to the flow cells, mL.
    initial : the label of the fluid that fills the reactor at start-up.
    """

    def __init__(self, reactor_volume_ml: float, initial: Label):
        self.reactor_volume_ml = float(reactor_volume_ml)
        self.volume_ml = 0.0
        self.last_change_ml = -math.inf
        # (start volume in mL, label at start, current label); the first starts at -inf
        self._segments: list[list] = [[-math.inf, initial, initial]]

    @property
    def current(self) -> Label:
        return self._segments[-1][2]

    @property
    def volume_since_change_ml(self) -> float:
        """Volume pumped since the current label started, mL (inf if never changed)."""
        return self.volume_ml - self.last_change_ml

    def advance(self, added_ml: float, label: Label) -> None:
        """``added_ml`` mL entered under ``label`` (the conditions now)."""
        seg = self._segments[-1]
        if label.close_to(seg[1]):
            seg[2] = label
        else:
            self._segments.append([self.volume_ml, label, label])
            self.last_change_ml = self.volume_ml
        self.volume_ml += max(added_ml, 0.0)
        horizon = self.volume_ml - HISTORY_VOLUMES * self.reactor_volume_ml
        while len(self._segments) > 1 and self._segments[1][0] <= horizon:
            self._segments.pop(0)
        self._segments[0][0] = -math.inf

    def mixture(self) -> list[tuple[Label, float]]:
        """(label, weight) of the contents of the flow cells; weights sum to 1."""
        out = []
        v = self.reactor_volume_ml
        ends = [s[0] for s in self._segments[1:]] + [self.volume_ml]
        for (start, _, label), end in zip(self._segments, ends):
            w = fraction_older((self.volume_ml - end) / v) - fraction_older((self.volume_ml - start) / v)
            if w > MIN_WEIGHT:
                out.append((label, w))
        total = sum(w for _, w in out)
        return [(label, w / total) for label, w in out]


class ReactorModel:
    """Steady-state products per label (cached) and the mixture in the flow cells."""

    def __init__(self, reactor: FlowReactor, cd_stock_mm: float, se_stock_mm: float, cache_size: int = 512):
        self.reactor = reactor
        self.cd_stock_mm = cd_stock_mm
        self.se_stock_mm = se_stock_mm
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size

    def state(self, label: Label) -> ReactorState:
        """Product of ``label``; a stopped pump contributes no precursor."""
        key = label.key()
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            return state
        tn, tg, qcd, qse = key
        eps = 1e-6  # a stopped pump: no flow and no precursor
        conditions = ReactorConditions(
            nucleation_temperature_c=min(max(tn, 0.0), 400.0), growth_temperature_c=min(max(tg, 0.0), 400.0),
            cd_flow_ml_min=max(qcd, eps), se_flow_ml_min=max(qse, eps),
            cd_stock_mm=self.cd_stock_mm if qcd > 0 else 0.0, se_stock_mm=self.se_stock_mm if qse > 0 else 0.0,
        )
        state = simulate(conditions, self.reactor)
        self._cache[key] = state
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return state

    def absorbance(self, mixture: list[tuple[Label, float]], wavelength_nm: np.ndarray) -> np.ndarray:
        """Noise-free absorbance of the flow-cell contents (1 mm path)."""
        return sum(w * absorption.absorbance(self.state(label).population, wavelength_nm, path_cm=PATH_CM)
                   for label, w in mixture)

    def saxs(self, mixture: list[tuple[Label, float]], q_nm: np.ndarray) -> np.ndarray:
        """Noise-free I(q) of the flow-cell contents, cm⁻¹."""
        return sum(w * saxs_models.reaction_intensity(self.state(label), q_nm) for label, w in mixture)


# ------------------------------------------------------------------------- PV groups
class PumpIOC(PVGroup):
    """One HPLC-type precursor pump: rate set point, run state, dispensed volume."""

    rate = pvproperty(name="Rate", value=1.0, precision=4, units="mL/min", dtype=LimitedSetpoint,
                      lower_ctrl_limit=PUMP_RATE_LIMITS_ML_MIN[0], upper_ctrl_limit=PUMP_RATE_LIMITS_ML_MIN[1],
                      doc="Flow set point (mL/min)")
    rate_rbv = pvproperty(name="Rate_RBV", value=1.0, precision=4, units="mL/min", read_only=True)
    run = _enum("Run", "Stop", ("Stop", "Run"), doc="Stop (0) or run (1) the pump")
    run_rbv = _enum("Run_RBV", "Stop", ("Stop", "Run"), read_only=True)
    flow_rbv = pvproperty(name="Flow_RBV", value=0.0, precision=4, units="mL/min", read_only=True)
    dispensed_rbv = pvproperty(name="Dispensed_RBV", value=0.0, precision=5, units="mL", read_only=True)
    rate_min_rbv = pvproperty(name="RateMin_RBV", value=PUMP_RATE_LIMITS_ML_MIN[0], precision=4, units="mL/min",
                              read_only=True)
    rate_max_rbv = pvproperty(name="RateMax_RBV", value=PUMP_RATE_LIMITS_ML_MIN[1], precision=4, units="mL/min",
                              read_only=True)
    stock_rbv = pvproperty(name="Stock_RBV", value=20.0, precision=3, units="mM", read_only=True)

    def __init__(self, *args, stock_mm: float = 20.0, description: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.description = description
        self.stock_mm = float(stock_mm)
        self.stock_rbv._data["value"] = self.stock_mm
        self.dispensed_ml = 0.0

    @property
    def flow_ml_min(self) -> float:
        """Actual flow, mL/min."""
        return float(self.rate_rbv.value) if _is_on(self.run_rbv.value) else 0.0

    @rate.putter
    async def rate(self, instance, value):
        value = float(value)
        if not math.isfinite(value):
            return instance.value
        await self.rate_rbv.write(value)
        if _is_on(self.run_rbv.value):
            await self.flow_rbv.write(value)
        await self.parent.publish()
        return value

    @run.putter
    async def run(self, instance, value):
        state = "Run" if _is_on(value) else "Stop"
        await self.run_rbv.write(state)
        await self.flow_rbv.write(self.flow_ml_min)
        await self.parent.publish()
        return state

    def step(self, dt: float) -> float:
        """Advance ``dt`` simulated s; return the volume pumped meanwhile, mL."""
        added = self.flow_ml_min * dt / 60.0
        self.dispensed_ml += added
        return added

    async def publish(self) -> None:
        if self.dispensed_rbv.value != self.dispensed_ml:
            await self.dispensed_rbv.write(self.dispensed_ml)


class TemperatureControllerIOC(PVGroup):
    """Heater with a first-order, rate-limited response and a settling indicator."""

    setpoint = pvproperty(name="SP", value=AMBIENT_C, precision=2, units="degC", dtype=LimitedSetpoint,
                          lower_ctrl_limit=TEMPERATURE_LIMITS_C[0], upper_ctrl_limit=TEMPERATURE_LIMITS_C[1],
                          doc="Temperature set point (°C)")
    setpoint_rbv = pvproperty(name="SP_RBV", value=AMBIENT_C, precision=2, units="degC", read_only=True)
    readback = pvproperty(name="T_RBV", value=AMBIENT_C, precision=3, units="degC", read_only=True,
                          doc="Measured temperature (°C)")
    time_constant = pvproperty(name="TimeConstant", value=10.0, precision=2, units="s",
                               doc="First-order time constant of the heater (simulated s)")
    ramp_rate = pvproperty(name="RampRate", value=30.0, precision=2, units="degC/min",
                           doc="Largest heating or cooling rate (°C per simulated minute; 0: no limit)")
    tolerance = pvproperty(name="Tolerance", value=0.5, precision=3, units="degC",
                           doc="Settled band around the set point (°C)")
    settle_time = pvproperty(name="SettleTime", value=30.0, precision=2, units="s",
                             doc="Time within Tolerance before Settled_RBV = 1 (simulated s)")
    settled = pvproperty(name="Settled_RBV", value=1, read_only=True,
                         doc="1 once T stayed within Tolerance of SP for SettleTime")
    disturbance = pvproperty(name="Disturbance", value=0.0, precision=2, units="degC",
                             doc="Simulated fault: offset the heater cannot correct, e.g. a failing "
                                 "element or a draught (°C; 0 = none)")

    def __init__(self, *args, description: str = "", ramp_rate_c_min: float = 30.0, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.description = description
        self.temperature_c = AMBIENT_C
        self.ramp_rate._data["value"] = float(ramp_rate_c_min)
        self._within_s = math.inf
        self._rng = np.random.default_rng(seed)

    def _positive(self, instance, value):
        value = float(value)
        return value if math.isfinite(value) and value >= 0 else instance.value

    @setpoint.putter
    async def setpoint(self, instance, value):
        value = float(value)
        if not math.isfinite(value):
            return instance.value
        self._within_s = 0.0
        await self.settled.write(0)
        await self.setpoint_rbv.write(value)
        return value

    @time_constant.putter
    async def time_constant(self, instance, value):
        return self._positive(instance, value)

    @ramp_rate.putter
    async def ramp_rate(self, instance, value):
        return self._positive(instance, value)

    @tolerance.putter
    async def tolerance(self, instance, value):
        return self._positive(instance, value)

    @settle_time.putter
    async def settle_time(self, instance, value):
        return self._positive(instance, value)

    @disturbance.putter
    async def disturbance(self, instance, value):
        value = float(value)
        return value if math.isfinite(value) else instance.value

    def step(self, dt: float) -> None:
        """Advance ``dt`` simulated s: the temperature follows SP + Disturbance."""
        sp = float(self.setpoint_rbv.value)
        target = sp + float(self.disturbance.value)
        self.temperature_c = first_order_step(self.temperature_c, target, dt, float(self.time_constant.value),
                                              float(self.ramp_rate.value) / 60.0)
        if abs(self.temperature_c - sp) <= float(self.tolerance.value):
            self._within_s += dt
        else:
            self._within_s = 0.0

    async def publish(self) -> None:
        reading = round(self.temperature_c + SENSOR_NOISE_C * self._rng.standard_normal(), 3)
        if reading != self.readback.value:
            await self.readback.write(reading)
        settled = 1 if self._within_s >= float(self.settle_time.value) else 0
        if settled != self.settled.value:
            await self.settled.write(settled)


class _FlowCellInstrument(PVGroup):
    """Shared acquisition logic of the two flow-cell instruments."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._busy: asyncio.Event | None = None

    @property
    def reactor(self) -> "FlowReactorIOC":
        return self.parent

    async def _exposure(self, seconds: float) -> None:
        wall = seconds * self.reactor.time_scale_value
        if wall > 0:
            await asyncio.sleep(wall)

    async def _acquire_once(self, instance, measure) -> str:
        """Run ``measure`` (a coroutine function) unless an acquisition is already running."""
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


class SpectrometerIOC(_FlowCellInstrument):
    """UV-Vis spectrometer on the optical flow cell (absorbance, 300–700 nm)."""

    wavelength = _waveform("Wavelength_RBV", WAVELENGTH_NM.size, "nm", "Wavelength axis (nm)")
    absorbance = _waveform("Absorbance_RBV", WAVELENGTH_NM.size, "", "Decadic absorbance, 1 mm path")
    integration_time = pvproperty(name="IntegrationTime", value=0.01, precision=4, units="s", dtype=LimitedSetpoint,
                                  lower_ctrl_limit=1e-4, upper_ctrl_limit=10.0, doc="Integration time (s)")
    integration_time_rbv = pvproperty(name="IntegrationTime_RBV", value=0.01, precision=4, units="s",
                                      read_only=True)
    acquire = _enum("Acquire", "Done", ("Done", "Acquire"), doc="Record one absorbance spectrum")
    acquire_count = pvproperty(name="AcquireCount_RBV", value=0, read_only=True)
    take_dark = _enum("TakeDark", "Done", ("Done", "Acquire"), doc="Record the dark spectrum")
    take_reference = _enum("TakeReference", "Done", ("Done", "Acquire"), doc="Record the reference spectrum")
    dark_valid = pvproperty(name="DarkValid_RBV", value=0, read_only=True)
    reference_valid = pvproperty(name="ReferenceValid_RBV", value=0, read_only=True)
    reference_counts = pvproperty(name="ReferenceCounts_RBV", value=0.0, precision=1, units="counts",
                                  read_only=True)
    path_length = pvproperty(name="PathLength_RBV", value=PATH_CM, precision=3, units="cm", read_only=True)
    status = _text("Status_RBV", "Take a dark and a reference spectrum.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wavelength._data["value"] = WAVELENGTH_NM.tolist()

    @integration_time.putter
    async def integration_time(self, instance, value):
        value = float(value)
        if value != instance.value:
            await self.dark_valid.write(0)
            await self.reference_valid.write(0)
            await self.status.write("Integration time changed: take a new dark and reference spectrum.")
        await self.integration_time_rbv.write(value)
        return value

    @take_dark.putter
    async def take_dark(self, instance, value):
        if not _is_on(value):
            return "Done"

        async def measure():
            await self._exposure(float(self.integration_time.value))
            await self.dark_valid.write(1)
            await self.status.write("Dark spectrum recorded.")

        return await self._acquire_once(instance, measure)

    @take_reference.putter
    async def take_reference(self, instance, value):
        if not _is_on(value):
            return "Done"

        async def measure():
            t = float(self.integration_time.value)
            await self._exposure(t)
            await self.reference_counts.write(REFERENCE_COUNTS_PER_S * t)
            await self.reference_valid.write(1)
            await self.status.write("Reference spectrum recorded.")

        return await self._acquire_once(instance, measure)

    @acquire.putter
    async def acquire(self, instance, value):
        if not _is_on(value):
            return "Done"

        async def measure():
            if not (self.dark_valid.value and self.reference_valid.value):
                await self.status.write("No valid dark and reference spectrum: take them before acquiring.")
                return
            t = float(self.integration_time.value)
            counter = int(self.acquire_count.value) + 1
            mixture = self.reactor.history.mixture()
            ref = float(self.reference_counts.value)
            job = self.reactor.run_in_worker(self.reactor.measure_absorbance, mixture, ref, counter)
            spectrum, _ = await asyncio.gather(job, self._exposure(t))
            await self.absorbance.write(spectrum.tolist())
            await self.acquire_count.write(counter)
            await self.status.write(f"Spectrum {counter} recorded.")

        return await self._acquire_once(instance, measure)


class SaxsIOC(_FlowCellInstrument):
    """SAXS detector on the X-ray (Kapton) flow cell: azimuthally integrated I(q)."""

    q = _waveform("Q_RBV", Q_NM.size, "1/nm", "Scattering vector (nm⁻¹)")
    intensity = _waveform("Intensity_RBV", Q_NM.size, "1/cm", "Absolute intensity (cm⁻¹)")
    sigma = _waveform("Sigma_RBV", Q_NM.size, "1/cm", "Standard deviation of the intensity (cm⁻¹)")
    acquire_time = pvproperty(name="AcquireTime", value=1.0, precision=4, units="s", dtype=LimitedSetpoint,
                              lower_ctrl_limit=1e-3, upper_ctrl_limit=3600.0, doc="Exposure (s)")
    acquire_time_rbv = pvproperty(name="AcquireTime_RBV", value=1.0, precision=4, units="s", read_only=True)
    acquire = _enum("Acquire", "Done", ("Done", "Acquire"), doc="Record one I(q) curve")
    acquire_count = pvproperty(name="AcquireCount_RBV", value=0, read_only=True)
    status = _text("Status_RBV", "Idle.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.q._data["value"] = Q_NM.tolist()

    @acquire_time.putter
    async def acquire_time(self, instance, value):
        value = float(value)
        await self.acquire_time_rbv.write(value)
        return value

    @acquire.putter
    async def acquire(self, instance, value):
        if not _is_on(value):
            return "Done"

        async def measure():
            t = float(self.acquire_time.value)
            counter = int(self.acquire_count.value) + 1
            mixture = self.reactor.history.mixture()
            job = self.reactor.run_in_worker(self.reactor.measure_saxs, mixture, t, counter)
            curve, _ = await asyncio.gather(job, self._exposure(t))
            await self.intensity.write(curve.intensity.tolist())
            await self.sigma.write(curve.sigma.tolist())
            await self.acquire_count.write(counter)
            await self.status.write(f"Curve {counter} recorded.")

        return await self._acquire_once(instance, measure)


class FlowReactorIOC(PVGroup):
    """The continuous-flow reactor: pumps, heaters, volumes and the two flow-cell instruments.

    Parameters
    ----------
    prefix : PV prefix, e.g. ``"MC:REACTOR:"``.
    reactor : chamber and oven volumes (default: the physics model's reactor).
    seed : seed of the measurement noise (spectrum ``n`` uses ``(seed, 1, n)``, SAXS curve
        ``n`` uses ``(seed, 2, n)``).
    """

    time_scale = pvproperty(name="TimeScale", value=1.0, precision=5,
                            doc="Wall-clock seconds per simulated second (> 0)")
    sim_time = pvproperty(name="SimTime_RBV", value=0.0, precision=2, units="s", read_only=True)
    nucleation_volume = pvproperty(name="NucVolume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    growth_volume = pvproperty(name="GrowthVolume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    volume = pvproperty(name="Volume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    total_flow = pvproperty(name="TotalFlow_RBV", value=0.0, precision=4, units="mL/min", read_only=True)
    reaction_time = pvproperty(name="ReactionTime_RBV", value=0.0, precision=3, units="s", read_only=True)
    dispensed = pvproperty(name="Dispensed_RBV", value=0.0, precision=5, units="mL", read_only=True)
    flushed_volume = pvproperty(name="FlushedVolume_RBV", value=0.0, precision=5, units="mL", read_only=True)
    cell_age = pvproperty(name="CellAge_RBV", value=0.0, precision=3, read_only=True,
                          doc="Reactor volumes pumped since the conditions last changed")
    sim_seed = pvproperty(name="SimSeed_RBV", value=DEFAULT_SEED, read_only=True)

    cd = SubGroup(PumpIOC, prefix="CD:", description="Cd precursor pump", stock_mm=20.0)
    se = SubGroup(PumpIOC, prefix="SE:", description="Se precursor pump", stock_mm=20.0)
    nucleation = SubGroup(TemperatureControllerIOC, prefix="NUC:", description="nucleation chamber",
                          ramp_rate_c_min=60.0, seed=1)
    growth = SubGroup(TemperatureControllerIOC, prefix="GROW:", description="growth oven",
                      ramp_rate_c_min=30.0, seed=2)
    uvvis = SubGroup(SpectrometerIOC, prefix="UVVIS:")
    saxs = SubGroup(SaxsIOC, prefix="SAXS:")

    def __init__(self, *args, reactor: FlowReactor = DEFAULT_REACTOR, seed: int = DEFAULT_SEED, **kwargs):
        super().__init__(*args, **kwargs)
        self.reactor = reactor
        self.seed = int(seed)
        self.sim_seed._data["value"] = self.seed
        self.nucleation_volume._data["value"] = reactor.nucleation_volume_ml
        self.growth_volume._data["value"] = reactor.growth_volume_ml
        self.volume._data["value"] = reactor.total_volume_ml
        self.model = ReactorModel(reactor, self.cd.stock_mm, self.se.stock_mm)
        self.history = FlowHistory(reactor.total_volume_ml, self.label())
        self.simulated_s = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-reactor")

    # ------------------------------------------------------------------ model
    @property
    def time_scale_value(self) -> float:
        return max(float(self.time_scale.value), MIN_TIME_SCALE)

    def label(self) -> Label:
        """The conditions now (heater temperatures, actual flows)."""
        return Label(self.nucleation.temperature_c, self.growth.temperature_c,
                     self.cd.flow_ml_min, self.se.flow_ml_min)

    def run_in_worker(self, func, *args):
        return asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def measure_absorbance(self, mixture, reference_counts: float, counter: int) -> np.ndarray:
        """Worker thread: noisy absorbance spectrum number ``counter`` of ``mixture``."""
        clean = self.model.absorbance(mixture, WAVELENGTH_NM)
        return absorption.noisy_absorbance(clean, np.random.default_rng((self.seed, 1, counter)),
                                           reference_counts=reference_counts)

    def measure_saxs(self, mixture, exposure_s: float, counter: int) -> saxs_models.SaxsCurve:
        """Worker thread: noisy SAXS curve number ``counter`` of ``mixture`` for ``exposure_s``."""
        clean = self.model.saxs(mixture, Q_NM)
        return saxs_models.measure(clean, Q_NM, np.random.default_rng((self.seed, 2, counter)),
                                   counts_per_cm1=SAXS_COUNTS_PER_CM1_PER_S * max(exposure_s, 1e-6))

    def step(self, dt: float) -> None:
        """Advance the reactor by ``dt`` simulated seconds."""
        self.simulated_s += dt
        added = self.cd.step(dt) + self.se.step(dt)
        self.nucleation.step(dt)
        self.growth.step(dt)
        self.history.advance(added, self.label())

    @property
    def dispensed_ml(self) -> float:
        """Volume pumped by both pumps since start-up, mL."""
        return self.cd.dispensed_ml + self.se.dispensed_ml

    async def publish(self) -> None:
        """Write the readbacks that changed since the last update."""
        q = self.cd.flow_ml_min + self.se.flow_ml_min
        values = {
            self.sim_time: self.simulated_s,
            self.total_flow: q,
            self.reaction_time: 60.0 * self.reactor.total_volume_ml / q if q > 0 else 0.0,
            self.dispensed: self.dispensed_ml,
            self.flushed_volume: min(self.history.volume_since_change_ml, self.dispensed_ml),
            self.cell_age: min(self.history.volume_since_change_ml, self.dispensed_ml) / self.reactor.total_volume_ml,
        }
        for pv, value in values.items():
            if pv.value != value:
                await pv.write(value)
        for group in (self.cd, self.se, self.nucleation, self.growth):
            await group.publish()

    @time_scale.putter
    async def time_scale(self, instance, value):
        value = float(value)
        if not math.isfinite(value) or value < MIN_TIME_SCALE:
            return instance.value
        return value

    @sim_time.startup
    async def sim_time(self, instance, async_lib):
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            dt = (now - last) / self.time_scale_value
            last = now
            try:
                self.step(dt)
                await self.publish()
            except Exception:  # never let the reactor die: report and go on
                self.log.exception("Reactor simulation step failed")

    def close(self) -> None:
        self._executor.shutdown(wait=True)


__all__ = [
    "FlowHistory", "FlowReactorIOC", "Label", "ReactorModel", "first_order_step", "fraction_older",
    "PUMP_RATE_LIMITS_ML_MIN", "TEMPERATURE_LIMITS_C", "WAVELENGTH_NM", "Q_NM", "TICK_S",
]
