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
of those conditions (:func:`mc_beamline.physics.flow_reactor.simulate`); the flow cells see
a mixture of the elements that entered earlier, weighted by the residence-time
distribution (:mod:`mc_beamline.physics.reactor_dynamics`): after one reactor volume 44 %
of the old contents remain, after two 3 %, after three 0.09 %.

Set points with control limits (Rate, SP, IntegrationTime, AcquireTime) refuse a put
outside them: the put completes, the value stays and the PV shows a MINOR alarm (status
LOW or HIGH) until the next accepted put.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
from caproto.server import PVGroup, SubGroup, pvproperty

from mc_beamline.physics import absorption, saxs_models
from mc_beamline.physics.flow_reactor import (
    DEFAULT_REACTOR,
    FlowReactor,
    reaction_time_s,
)
from mc_beamline.physics.reactor_dynamics import (
    PATH_CM,
    FlowHistory,
    Label,
    ReactorModel,
    first_order_step,
)
from mc_beamline.sim_iocs.flow_cell import CellInstrument, SaxsInstrument, curve_pvs
from mc_beamline.sim_iocs.pv_helpers import (
    LimitedSetpoint,
    enum_pv,
    text_pv,
    waveform_pv,
)
from mc_beamline.sim_iocs.scaled_time import ScaledTimeIOC

AMBIENT_C = 25.0
"""Temperature of the reactor at start-up, °C."""
TEMPERATURE_LIMITS_C = (20.0, 400.0)
"""Control limits of both temperature set points, °C."""
SENSOR_NOISE_C = 0.01
"""Standard deviation of the temperature readbacks, °C."""
PUMP_RATE_LIMITS_ML_MIN = (0.05, 10.0)
"""Smallest and largest set point of each pump, mL/min."""
WAVELENGTH_NM = np.linspace(300.0, 700.0, 401)
"""Wavelength axis of the UV-Vis spectrometer, nm."""
Q_NM = saxs_models.default_q_nm(500)
"""q axis of the SAXS curves: 500 points, 0.1–5 nm⁻¹."""
REFERENCE_COUNTS_PER_S = 2e7
"""Reference-spectrum counts per pixel and second of integration."""
SAXS_COUNTS_PER_CM1_PER_S = 2e6
"""SAXS counts per q bin per cm⁻¹ of intensity and second of exposure."""
DEFAULT_SEED = 2002
"""Default seed of the measurement noise."""


def _running(value) -> bool:
    return value in (1, "1", "Run")


async def _put_non_negative(group, instance, value):
    """Putter of a heater parameter: a negative or non-finite put keeps the old value."""
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else instance.value


# ------------------------------------------------------------------------- PV groups
class PumpIOC(PVGroup):
    """One HPLC-type precursor pump: rate set point, run state, dispensed volume."""

    rate = pvproperty(name="Rate", value=1.0, precision=4, units="mL/min", dtype=LimitedSetpoint,
                      lower_ctrl_limit=PUMP_RATE_LIMITS_ML_MIN[0], upper_ctrl_limit=PUMP_RATE_LIMITS_ML_MIN[1],
                      doc="Flow set point (mL/min)")
    rate_rbv = pvproperty(name="Rate_RBV", value=1.0, precision=4, units="mL/min", read_only=True)
    run = enum_pv("Run", "Stop", ("Stop", "Run"), doc="Stop (0) or run (1) the pump")
    run_rbv = enum_pv("Run_RBV", "Stop", ("Stop", "Run"), read_only=True)
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
        return float(self.rate_rbv.value) if _running(self.run_rbv.value) else 0.0

    @rate.putter
    async def rate(self, instance, value):
        value = float(value)
        if not math.isfinite(value):
            return instance.value
        await self.rate_rbv.write(value)
        if _running(self.run_rbv.value):
            await self.flow_rbv.write(value)
        await self.parent.publish()
        return value

    @run.putter
    async def run(self, instance, value):
        state = "Run" if _running(value) else "Stop"
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
    time_constant = pvproperty(put=_put_non_negative, name="TimeConstant", value=10.0, precision=2, units="s",
                               doc="First-order time constant of the heater (simulated s)")
    ramp_rate = pvproperty(put=_put_non_negative, name="RampRate", value=30.0, precision=2, units="degC/min",
                           doc="Largest heating or cooling rate (°C per simulated minute; 0: no limit)")
    tolerance = pvproperty(put=_put_non_negative, name="Tolerance", value=0.5, precision=3, units="degC",
                           doc="Settled band around the set point (°C)")
    settle_time = pvproperty(put=_put_non_negative, name="SettleTime", value=30.0, precision=2, units="s",
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

    @setpoint.putter
    async def setpoint(self, instance, value):
        value = float(value)
        if not math.isfinite(value):
            return instance.value
        self._within_s = 0.0
        await self.settled.write(0)
        await self.setpoint_rbv.write(value)
        return value

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


class SpectrometerIOC(CellInstrument):
    """UV-Vis spectrometer on the optical flow cell (absorbance, 300–700 nm)."""

    wavelength = waveform_pv("Wavelength_RBV", WAVELENGTH_NM.size, "nm", "Wavelength axis (nm)", value=WAVELENGTH_NM)
    absorbance = waveform_pv("Absorbance_RBV", WAVELENGTH_NM.size, "", "Decadic absorbance, 1 mm path")
    integration_time = pvproperty(name="IntegrationTime", value=0.01, precision=4, units="s", dtype=LimitedSetpoint,
                                  lower_ctrl_limit=1e-4, upper_ctrl_limit=10.0, doc="Integration time (s)")
    integration_time_rbv = pvproperty(name="IntegrationTime_RBV", value=0.01, precision=4, units="s",
                                      read_only=True)
    acquire = enum_pv("Acquire", "Done", ("Done", "Acquire"), doc="Record one absorbance spectrum")
    acquire_count = pvproperty(name="AcquireCount_RBV", value=0, read_only=True)
    take_dark = enum_pv("TakeDark", "Done", ("Done", "Acquire"), doc="Record the dark spectrum")
    take_reference = enum_pv("TakeReference", "Done", ("Done", "Acquire"), doc="Record the reference spectrum")
    dark_valid = pvproperty(name="DarkValid_RBV", value=0, read_only=True)
    reference_valid = pvproperty(name="ReferenceValid_RBV", value=0, read_only=True)
    reference_counts = pvproperty(name="ReferenceCounts_RBV", value=0.0, precision=1, units="counts",
                                  read_only=True)
    path_length = pvproperty(name="PathLength_RBV", value=PATH_CM, precision=3, units="cm", read_only=True)
    status = text_pv("Status_RBV", "Take a dark and a reference spectrum.")

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
        return await self.acquire_once(instance, value, self.record_dark)

    @take_reference.putter
    async def take_reference(self, instance, value):
        return await self.acquire_once(instance, value, self.record_reference)

    @acquire.putter
    async def acquire(self, instance, value):
        return await self.acquire_once(instance, value, self.record_spectrum)

    async def record_dark(self) -> None:
        """Integrate once and mark the dark spectrum valid."""
        await self.exposure(float(self.integration_time.value))
        await self.dark_valid.write(1)
        await self.status.write("Dark spectrum recorded.")

    async def record_reference(self) -> None:
        """Integrate once and record the reference counts (they set the photon noise)."""
        t = float(self.integration_time.value)
        await self.exposure(t)
        await self.reference_counts.write(REFERENCE_COUNTS_PER_S * t)
        await self.reference_valid.write(1)
        await self.status.write("Reference spectrum recorded.")

    async def record_spectrum(self) -> None:
        """Integrate once and publish the absorbance of the flow-cell contents (needs a dark and
        a reference spectrum)."""
        if not (self.dark_valid.value and self.reference_valid.value):
            await self.status.write("No valid dark and reference spectrum: take them before acquiring.")
            return
        t = float(self.integration_time.value)
        counter = int(self.acquire_count.value) + 1
        mixture = self.cell.history.mixture()
        ref = float(self.reference_counts.value)
        job = self.cell.run_in_worker(self.cell.measure_absorbance, mixture, ref, counter)
        spectrum, _ = await asyncio.gather(job, self.exposure(t))
        await self.absorbance.write(spectrum.tolist())
        await self.acquire_count.write(counter)
        await self.status.write(f"Spectrum {counter} recorded.")


class SaxsIOC(SaxsInstrument):
    """SAXS detector on the X-ray (Kapton) flow cell: azimuthally integrated I(q)."""

    q, intensity, sigma = curve_pvs(Q_NM)

    async def measure(self) -> None:
        """Expose for AcquireTime and publish I(q) of the flow-cell contents."""
        t = float(self.acquire_time.value)
        counter = int(self.acquire_count.value) + 1
        mixture = self.cell.history.mixture()
        job = self.cell.run_in_worker(self.cell.measure_saxs, mixture, t, counter)
        curve, _ = await asyncio.gather(job, self.exposure(t))
        await self.intensity.write(curve.intensity.tolist())
        await self.sigma.write(curve.sigma.tolist())
        await self.acquire_count.write(counter)
        await self.status.write(f"Curve {counter} recorded.")


class FlowReactorIOC(ScaledTimeIOC):
    """The continuous-flow reactor: pumps, heaters, volumes and the two flow-cell instruments.

    Parameters
    ----------
    prefix : PV prefix, e.g. ``"MC:REACTOR:"``.
    reactor : chamber and oven volumes (default: the physics model's reactor).
    seed : seed of the measurement noise (spectrum ``n`` uses ``(seed, 1, n)``, SAXS curve
        ``n`` uses ``(seed, 2, n)``).
    """

    nucleation_volume = pvproperty(name="NucVolume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    growth_volume = pvproperty(name="GrowthVolume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    volume = pvproperty(name="Volume_RBV", value=0.0, precision=4, units="mL", read_only=True)
    total_flow = pvproperty(name="TotalFlow_RBV", value=0.0, precision=4, units="mL/min", read_only=True)
    reaction_time = pvproperty(name="ReactionTime_RBV", value=0.0, precision=3, units="s", read_only=True)
    dispensed = pvproperty(name="Dispensed_RBV", value=0.0, precision=5, units="mL", read_only=True)
    flushed_volume = pvproperty(name="FlushedVolume_RBV", value=0.0, precision=5, units="mL", read_only=True)
    cell_age = pvproperty(name="CellAge_RBV", value=0.0, precision=3, read_only=True,
                          doc="Reactor volumes pumped since the conditions last changed")

    cd = SubGroup(PumpIOC, prefix="CD:", description="Cd precursor pump", stock_mm=20.0)
    se = SubGroup(PumpIOC, prefix="SE:", description="Se precursor pump", stock_mm=20.0)
    nucleation = SubGroup(TemperatureControllerIOC, prefix="NUC:", description="nucleation chamber",
                          ramp_rate_c_min=60.0, seed=1)
    growth = SubGroup(TemperatureControllerIOC, prefix="GROW:", description="growth oven",
                      ramp_rate_c_min=30.0, seed=2)
    uvvis = SubGroup(SpectrometerIOC, prefix="UVVIS:")
    saxs = SubGroup(SaxsIOC, prefix="SAXS:")

    def __init__(self, *args, reactor: FlowReactor = DEFAULT_REACTOR, seed: int = DEFAULT_SEED, **kwargs):
        super().__init__(*args, seed=seed, worker_name="mc-reactor", **kwargs)
        self.reactor = reactor
        self.nucleation_volume._data["value"] = reactor.nucleation_volume_ml
        self.growth_volume._data["value"] = reactor.growth_volume_ml
        self.volume._data["value"] = reactor.total_volume_ml
        self.model = ReactorModel(reactor, self.cd.stock_mm, self.se.stock_mm)
        self.history = FlowHistory(reactor.total_volume_ml, self.label())

    # ------------------------------------------------------------------ model
    def label(self) -> Label:
        """The conditions now (heater temperatures, actual flows)."""
        return Label(self.nucleation.temperature_c, self.growth.temperature_c,
                     self.cd.flow_ml_min, self.se.flow_ml_min)

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
            self.reaction_time: reaction_time_s(q, self.reactor) if q > 0 else 0.0,
            self.dispensed: self.dispensed_ml,
            self.flushed_volume: min(self.history.volume_since_change_ml, self.dispensed_ml),
            self.cell_age: min(self.history.volume_since_change_ml, self.dispensed_ml) / self.reactor.total_volume_ml,
        }
        for pv, value in values.items():
            if pv.value != value:
                await pv.write(value)
        for group in (self.cd, self.se, self.nucleation, self.growth):
            await group.publish()


__all__ = [
    "FlowReactorIOC", "PumpIOC", "SaxsIOC", "SpectrometerIOC", "TemperatureControllerIOC",
    "PUMP_RATE_LIMITS_ML_MIN", "TEMPERATURE_LIMITS_C", "WAVELENGTH_NM", "Q_NM",
]
