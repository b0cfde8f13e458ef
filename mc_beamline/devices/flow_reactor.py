"""Continuous-flow reactor: precursor pumps, heaters and the UV-Vis and SAXS flow cells.

``FlowReactor("MC:REACTOR:", name="reactor")`` groups

* ``nucleation``, ``growth``: :class:`Heater` positioners (°C). A move completes once
  the readback is within ``atol`` of the set point *and* the controller reports it has
  stayed inside its tolerance band for its settle time (``Settled_RBV``).
* ``pumps``: :class:`PumpPair`, a pseudo positioner whose axis ``reaction_time`` (s) sets
  the two :class:`Pump` rates (mL/min): total flow = 60 · reactor volume / reaction time,
  split ``cd_fraction`` : ``1 − cd_fraction``. ``pumps.cd`` and ``pumps.se`` are
  positioners of their own (rate set point and readback, mL/min).
* ``flush``: :class:`FlushCounter`; ``flush.set(volume_ml)`` completes when the pumps have
  dispensed that many mL more.
* ``uvvis``: :class:`FlowCellSpectrometer` (absorbance waveform over 300–700 nm).
* ``saxs``: :class:`FlowCellSaxs` (I(q), σ(q) and q waveforms, q in nm⁻¹, I in cm⁻¹).

These classes hold only what the real reactor has. :class:`SimFlowReactor` (with
:class:`SimHeater` controllers) adds the simulator-only parts: the simulated reactor runs on
simulated time, ``time_scale`` wall-clock seconds per simulated second, and its waits and
timeouts are scaled with it (on real hardware the scale is 1).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, PVPositionerIsClose, Signal
from ophyd.pseudopos import (
    PseudoPositioner,
    PseudoSingle,
    pseudo_position_argument,
    real_position_argument,
)
from ophyd.status import DeviceStatus, SubscriptionStatus

PUT_TIMEOUT_S = 10.0
"""Wall-clock margin added to every acquisition and flush timeout, s."""
HEATER_TIMEOUT_S = 3600.0
"""Longest heater move (ramp and settling, wall clock) before it fails instead of waiting forever, s."""


class _MoveFailsWhenDisconnected:
    """A :class:`~ophyd.PVPositioner` whose move in progress fails as soon as its readback
    PV disconnects: a controller that stopped answering can never complete it, and a
    heater's timeout (an hour) would otherwise hold the run that long."""

    def _watch_connection(self) -> None:
        self.readback.subscribe(self._readback_connection, event_type=self.readback.SUB_META, run=False)

    def _readback_connection(self, *args, connected=None, **kwargs) -> None:
        if connected is False and self.moving:
            self._done_moving(success=False)


class Heater(_MoveFailsWhenDisconnected, PVPositionerIsClose):
    """Temperature controller (``{prefix}`` e.g. ``MC:REACTOR:NUC:``), positions in °C.

    Parameters
    ----------
    atol : readback tolerance in °C for a move to count as done (default 0.5 °C).
    settle_time : extra wall-clock seconds waited after the move (ophyd's settle time;
        thermal settling is judged by the controller, see ``settle_time_s``).
    timeout : wall-clock seconds a move may take before it fails (a heater that never
        settles ends the run instead of hanging it).

    The device reads as ``{name}`` (readback) and ``{name}_setpoint``.
    """

    setpoint = Cpt(EpicsSignal, "SP", kind="normal", auto_monitor=True, doc="set point (°C)")
    readback = Cpt(EpicsSignalRO, "T_RBV", kind="hinted", auto_monitor=True, doc="temperature (°C)")
    settled = Cpt(EpicsSignalRO, "Settled_RBV", kind="omitted", auto_monitor=True,
                  doc="1 once the temperature stayed within tolerance for the settle time")
    tolerance = Cpt(EpicsSignal, "Tolerance", kind="config", doc="controller's settled band (°C)")
    settle_time_s = Cpt(EpicsSignal, "SettleTime", kind="config", doc="time within tolerance (simulated s)")
    ramp_rate = Cpt(EpicsSignal, "RampRate", kind="config", doc="largest ramp rate (°C per simulated minute)")

    atol = 0.5
    rtol = 0.0

    def __init__(self, prefix: str = "", *, name: str, egu: str = "degC", timeout: float = HEATER_TIMEOUT_S,
                 **kwargs):
        self._last_settled = False
        super().__init__(prefix, name=name, egu=egu, timeout=timeout, **kwargs)
        self.readback.name = self.name
        self.done.kind = "omitted"
        self._watch_connection()

    def done_comparator(self, readback, setpoint) -> bool:
        return bool(self._last_settled) and abs(float(readback) - float(setpoint)) <= self.atol

    def _update_setpoint(self, *args, value, **kwargs) -> None:
        # a new set point restarts the controller's settling: wait for Settled_RBV to rise again
        self._last_settled = False
        super()._update_setpoint(*args, value=value, **kwargs)

    @settled.sub_value
    def _update_settled(self, *args, value, **kwargs) -> None:
        self._last_settled = bool(value)
        self._update_done()


class SimHeater(Heater):
    """:class:`Heater` of the simulated IOC, which also exposes its plant model's time constant."""

    time_constant = Cpt(EpicsSignal, "TimeConstant", kind="config", doc="first-order time constant (simulated s)")


class Pump(_MoveFailsWhenDisconnected, PVPositionerIsClose):
    """Precursor pump (``{prefix}`` e.g. ``MC:REACTOR:CD:``), positions are rates in mL/min.

    The rate readback is the accepted set point; ``flow`` is the actual flow (0 while the
    pump is stopped) and ``dispensed`` the volume pumped since the IOC started (mL).
    A pump takes a new rate or run state at once: a move or a start/stop that has not
    completed after ``timeout`` (default :data:`PUT_TIMEOUT_S`) s fails instead of waiting
    for a pump that stopped answering.
    ``limits`` are the pump's smallest and largest rate, from the IOC.
    """

    setpoint = Cpt(EpicsSignal, "Rate", kind="normal", auto_monitor=True, doc="rate set point (mL/min)")
    readback = Cpt(EpicsSignalRO, "Rate_RBV", kind="hinted", auto_monitor=True, doc="accepted rate (mL/min)")
    flow = Cpt(EpicsSignalRO, "Flow_RBV", kind="normal", auto_monitor=True, doc="actual flow (mL/min)")
    running = Cpt(EpicsSignal, "Run_RBV", write_pv="Run", kind="config", auto_monitor=True, put_complete=True,
                  write_timeout=PUT_TIMEOUT_S,
                  doc="1 running, 0 stopped")
    dispensed = Cpt(EpicsSignalRO, "Dispensed_RBV", kind="omitted", auto_monitor=True, doc="pumped volume (mL)")
    rate_min = Cpt(EpicsSignalRO, "RateMin_RBV", kind="config", doc="smallest rate (mL/min)")
    rate_max = Cpt(EpicsSignalRO, "RateMax_RBV", kind="config", doc="largest rate (mL/min)")
    stock = Cpt(EpicsSignalRO, "Stock_RBV", kind="config", doc="precursor concentration in the reservoir (mM)")

    atol = 1e-6
    rtol = 1e-6

    def __init__(self, prefix: str = "", *, name: str, egu: str = "mL/min", timeout: float = PUT_TIMEOUT_S,
                 **kwargs):
        self._move_lock = threading.Lock()
        self._move_pending = False
        super().__init__(prefix, name=name, egu=egu, timeout=timeout, **kwargs)
        self.readback.name = self.name
        self.done.kind = "omitted"
        self._watch_connection()

    def _setup_move(self, position) -> None:
        """Put the new rate (mL/min); from here on the move's status may finish."""
        with self._move_lock:
            self._move_pending = True
        super()._setup_move(position)

    def _done_moving(self, **kwargs) -> None:
        """Finish the pending move once; calls with no move pending are ignored.

        An IOC posts the rate set point again when only its alarm state changes (and may
        post it after the readback), so ``done`` can fall and rise twice for one move, and
        ophyd would finish the move's status twice (an ``InvalidState`` traceback from a
        monitor thread). The move becomes pending when its rate is put (:meth:`_setup_move`),
        after its status is subscribed, so a late post of the previous move cannot use it
        up. The lock only guards the flag: no callback runs while it is held.
        """
        with self._move_lock:
            pending, self._move_pending = self._move_pending, False
        if pending:
            super()._done_moving(**kwargs)

    @property
    def limits(self) -> tuple[float, float]:
        """(smallest, largest) rate in mL/min."""
        return (float(self.rate_min.get()), float(self.rate_max.get()))


class PumpPair(PseudoPositioner):
    """The two pumps and the reaction time they set (``{prefix}`` e.g. ``MC:REACTOR:``).

    ``reaction_time.set(t)`` (s) sets the total flow Q = 60 · V / t (V = reactor volume in
    mL, from the IOC) split ``cd_fraction`` : ``1 − cd_fraction`` between the Cd and Se
    pumps; the readback is 60 · V / (rate_cd + rate_se). The pumps' run state is not
    changed: start them with ``pumps.start()``.
    """

    reaction_time = Cpt(PseudoSingle, egu="s", kind="hinted")
    cd = Cpt(Pump, "CD:", doc="Cd precursor pump")
    se = Cpt(Pump, "SE:", doc="Se precursor pump")
    volume = Cpt(EpicsSignalRO, "Volume_RBV", kind="config", auto_monitor=True, doc="reactor volume (mL)")
    cd_fraction = Cpt(Signal, value=0.5, kind="config", doc="share of the total flow from the Cd pump")

    def _volume_ml(self) -> float:
        return float(self.volume.get())

    @pseudo_position_argument
    def forward(self, pseudo_pos):
        t = float(pseudo_pos.reaction_time)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"{self.name}: the reaction time must be a positive number of s, got {t!r}.")
        q = 60.0 * self._volume_ml() / t
        f = float(self.cd_fraction.get())
        return self.RealPosition(cd=q * f, se=q * (1.0 - f))

    @real_position_argument
    def inverse(self, real_pos):
        q = float(real_pos.cd) + float(real_pos.se)
        return self.PseudoPosition(reaction_time=60.0 * self._volume_ml() / q if q > 0 else math.inf)

    def reaction_time_limits(self, cd_fraction: float | None = None) -> tuple[float, float]:
        """(shortest, longest) reaction time in s the pumps' rate limits allow at ``cd_fraction``."""
        f = float(self.cd_fraction.get()) if cd_fraction is None else float(cd_fraction)
        cd_lo, cd_hi = self.cd.limits
        se_lo, se_hi = self.se.limits
        q_max = min(cd_hi / f, se_hi / (1.0 - f))
        q_min = max(cd_lo / f, se_lo / (1.0 - f))
        v = self._volume_ml()
        return 60.0 * v / q_max, 60.0 * v / q_min

    def start(self) -> DeviceStatus:
        """Start both pumps; the status completes when both report running."""
        return self.cd.running.set(1) & self.se.running.set(1)


class FlushCounter(Device):
    """Waits for the pumps to push a volume through the reactor (``{prefix}`` e.g. ``MC:REACTOR:``).

    ``set(volume_ml)`` records the total dispensed volume and completes when it has grown
    by ``volume_ml`` mL. ``flushed`` (mL) follows the volume pumped since that start while
    the flush runs and keeps the value reached when it completed (the readback updates in
    steps, so it can exceed ``target``).
    """

    dispensed = Cpt(EpicsSignalRO, "Dispensed_RBV", kind="omitted", auto_monitor=True,
                    doc="total volume pumped by both pumps (mL)")
    total_flow = Cpt(EpicsSignalRO, "TotalFlow_RBV", kind="omitted", auto_monitor=True, doc="total flow (mL/min)")
    target = Cpt(Signal, value=0.0, kind="normal", doc="volume requested by the last flush (mL)")
    flushed = Cpt(Signal, value=0.0, kind="hinted", doc="volume pumped since the last flush began (mL)")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.time_scale_signal = None
        self._start_ml: float | None = None
        self.dispensed.subscribe(self._track, run=False)

    def _track(self, *args, value, **kwargs) -> None:
        start = self._start_ml
        if start is not None:
            self.flushed.put(float(value) - start)

    def set(self, volume_ml: float) -> SubscriptionStatus:
        """Wait until another ``volume_ml`` mL have been pumped (fails if nothing flows)."""
        volume_ml = float(volume_ml)
        if not (math.isfinite(volume_ml) and volume_ml >= 0):
            raise ValueError(f"{self.name}: the flush volume must be a non-negative number of mL, got {volume_ml!r}.")
        start = float(self.dispensed.get(use_monitor=False))
        flow = float(self.total_flow.get(use_monitor=False))
        if volume_ml > 0 and flow <= 0:
            raise RuntimeError(
                f"{self.name}: nothing flows (both pumps stopped), so {volume_ml:g} mL cannot be flushed.")
        scale = float(self.time_scale_signal.get()) if self.time_scale_signal is not None else 1.0
        expected = 60.0 * volume_ml / flow * scale if volume_ml > 0 else 0.0
        self._start_ml = start
        self.flushed.put(0.0)
        self.target.put(volume_ml)
        goal = start + volume_ml

        def reached(*args, value, **kwargs) -> bool:
            if float(value) < goal - 1e-12:
                return False
            if self._start_ml == start:  # freeze the reading at completion
                self.flushed.put(float(value) - start)
                self._start_ml = None
            return True

        return SubscriptionStatus(self.dispensed, reached, run=True, timeout=PUT_TIMEOUT_S + 3.0 * expected)


class _FlowCellInstrument(Device):
    """Triggerable flow-cell instrument; readings are waveforms read fresh after each trigger."""

    acquire = Cpt(EpicsSignal, "Acquire", kind="omitted", put_complete=True)
    acquire_count = Cpt(EpicsSignalRO, "AcquireCount_RBV", kind="normal", doc="number of the last measurement")
    status_message = Cpt(EpicsSignalRO, "Status_RBV", string=True, kind="omitted")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.time_scale_signal = None

    def _exposure_s(self) -> float:
        raise NotImplementedError

    def _wall_timeout(self) -> float:
        scale = float(self.time_scale_signal.get()) if self.time_scale_signal is not None else 1.0
        return PUT_TIMEOUT_S + 2.0 * self._exposure_s() * scale

    def _put_and_check(self, signal: EpicsSignal, check) -> DeviceStatus:
        """Put 1 to ``signal`` with put-completion; the status fails unless ``check()`` is empty."""
        status = DeviceStatus(self, timeout=self._wall_timeout())

        def completed(*args, **kwargs):
            try:
                problem = check()
                if problem:
                    raise RuntimeError(problem)
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        signal.put(1, use_complete=True, callback=completed)
        return status

    def describe(self):
        """Data keys; waveform readings are ``dtype "array"`` with ``shape [n]`` and ``dtype_numpy "<f8"``."""
        res = super().describe()
        for key in res.values():
            if key.get("dtype") == "array":
                key.setdefault("dtype_numpy", np.dtype(np.float64).str)
        return res

    def trigger(self) -> DeviceStatus:
        """Take one measurement; completes when the IOC has published it."""
        before = int(self.acquire_count.get(use_monitor=False))

        def check():
            if int(self.acquire_count.get(use_monitor=False)) <= before:
                return f"{self.name} recorded nothing: {self.status_message.get(use_monitor=False)}"
            return None

        return self._put_and_check(self.acquire, check)


class FlowCellSpectrometer(_FlowCellInstrument):
    """UV-Vis spectrometer on the optical flow cell (``{prefix}`` e.g. ``MC:REACTOR:UVVIS:``).

    Readings: ``{name}_absorbance`` (decadic absorbance, 1 mm path) and
    ``{name}_wavelength`` (nm), both arrays of the same length, and the spectrum number.
    ``stage()`` records a dark and a reference spectrum if the IOC has no valid ones.
    """

    absorbance = Cpt(EpicsSignalRO, "Absorbance_RBV", kind="hinted", auto_monitor=False,
                     doc="absorbance spectrum (decadic)")
    wavelength = Cpt(EpicsSignalRO, "Wavelength_RBV", kind="normal", auto_monitor=False, doc="wavelength axis (nm)")
    integration_time = Cpt(EpicsSignal, "IntegrationTime_RBV", write_pv="IntegrationTime", kind="config",
                           auto_monitor=True, doc="integration time (simulated s)")
    path_length = Cpt(EpicsSignalRO, "PathLength_RBV", kind="config", doc="optical path (cm)")
    reference_counts = Cpt(EpicsSignalRO, "ReferenceCounts_RBV", kind="config", doc="reference counts per pixel")
    take_dark = Cpt(EpicsSignal, "TakeDark", kind="omitted", put_complete=True)
    take_reference = Cpt(EpicsSignal, "TakeReference", kind="omitted", put_complete=True)
    dark_valid = Cpt(EpicsSignalRO, "DarkValid_RBV", kind="omitted")
    reference_valid = Cpt(EpicsSignalRO, "ReferenceValid_RBV", kind="omitted")

    def _exposure_s(self) -> float:
        return float(self.integration_time.get())

    def take_dark_and_reference(self, timeout: float | None = None) -> None:
        """Record the dark and the reference spectrum (blocking), unless both are valid."""
        for take, valid in ((self.take_dark, self.dark_valid), (self.take_reference, self.reference_valid)):
            if int(valid.get(use_monitor=False)) != 1:
                status = self._put_and_check(
                    take, lambda v=valid: None if int(v.get(use_monitor=False)) == 1 else
                    f"{self.name} could not record {take.attr_name}: {self.status_message.get(use_monitor=False)}")
                status.wait(timeout or self._wall_timeout())

    def stage(self):
        staged = super().stage()
        try:
            self.take_dark_and_reference()
        except Exception:
            super().unstage()
            raise
        return staged


class FlowCellSaxs(_FlowCellInstrument):
    """SAXS detector on the X-ray flow cell (``{prefix}`` e.g. ``MC:REACTOR:SAXS:``).

    Readings: ``{name}_intensity`` and ``{name}_sigma`` (cm⁻¹) on ``{name}_q`` (nm⁻¹), arrays
    of the same length, and the curve number.
    """

    intensity = Cpt(EpicsSignalRO, "Intensity_RBV", kind="hinted", auto_monitor=False, doc="I(q) (cm⁻¹)")
    sigma = Cpt(EpicsSignalRO, "Sigma_RBV", kind="normal", auto_monitor=False, doc="σ of I(q) (cm⁻¹)")
    q = Cpt(EpicsSignalRO, "Q_RBV", kind="normal", auto_monitor=False, doc="scattering vector (nm⁻¹)")
    acquire_time = Cpt(EpicsSignal, "AcquireTime_RBV", write_pv="AcquireTime", kind="config", auto_monitor=True,
                       doc="exposure (simulated s)")

    def _exposure_s(self) -> float:
        return float(self.acquire_time.get())


class FlowReactor(Device):
    """The continuous-flow reactor with its flow-cell instruments (``{prefix}`` = ``MC:REACTOR:``).

    Components: ``nucleation`` and ``growth`` (:class:`Heater`, °C), ``pumps``
    (:class:`PumpPair`: ``reaction_time`` in s, ``cd`` and ``se`` in mL/min), ``flush``
    (:class:`FlushCounter`), ``uvvis`` (:class:`FlowCellSpectrometer`), ``saxs``
    (:class:`FlowCellSaxs`); configuration: volumes (mL). The simulator-only parts are in
    :class:`SimFlowReactor`.

    Example
    -------
    >>> reactor = FlowReactor("MC:REACTOR:", name="reactor")
    >>> reactor.wait_for_connection(timeout=10)
    >>> reactor.pumps.start().wait(5)
    >>> reactor.pumps.reaction_time.set(4.5).wait(5)      # 1.67 mL/min from each pump
    >>> reactor.nucleation.set(280).wait(600)            # waits for thermal settling
    """

    nucleation = Cpt(Heater, "NUC:", doc="nucleation chamber temperature (°C)")
    growth = Cpt(Heater, "GROW:", doc="growth oven temperature (°C)")
    pumps = Cpt(PumpPair, "", doc="precursor pumps and the reaction time they set")
    flush = Cpt(FlushCounter, "", doc="volume pumped through the reactor")
    uvvis = Cpt(FlowCellSpectrometer, "UVVIS:", doc="UV-Vis spectrometer")
    saxs = Cpt(FlowCellSaxs, "SAXS:", doc="SAXS detector")
    nucleation_volume = Cpt(EpicsSignalRO, "NucVolume_RBV", kind="config", doc="nucleation chamber volume (mL)")
    growth_volume = Cpt(EpicsSignalRO, "GrowthVolume_RBV", kind="config", doc="growth oven volume (mL)")
    reaction_time = Cpt(EpicsSignalRO, "ReactionTime_RBV", kind="normal", auto_monitor=True,
                        doc="reaction time from the actual flows (s)")
    cell_flushed = Cpt(EpicsSignalRO, "FlushedVolume_RBV", kind="normal", auto_monitor=True,
                       doc="volume pumped since the reactor conditions last changed (mL)")

    @property
    def volume_ml(self) -> float:
        """Total reactor volume (mL)."""
        return float(self.pumps.volume.get())


class SimFlowReactor(FlowReactor):
    """:class:`FlowReactor` on the simulated IOC (``{prefix}`` = ``MC:REACTOR:``).

    Adds the simulator-only parts: ``time_scale`` (wall-clock seconds per simulated
    second; flush and acquisition timeouts are scaled with it), ``sim_time``, ``sim_seed``,
    :class:`SimHeater` controllers (``time_constant``) and :meth:`run_simulation_fast`.
    """

    nucleation = Cpt(SimHeater, "NUC:", doc="nucleation chamber temperature (°C)")
    growth = Cpt(SimHeater, "GROW:", doc="growth oven temperature (°C)")
    time_scale = Cpt(EpicsSignal, "TimeScale", kind="config", auto_monitor=True,
                     doc="wall-clock seconds per simulated second")
    sim_time = Cpt(EpicsSignalRO, "SimTime_RBV", kind="omitted", auto_monitor=True, doc="simulated time (s)")
    sim_seed = Cpt(EpicsSignalRO, "SimSeed_RBV", kind="config", doc="seed of the measurement noise")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        for part in (self.flush, self.uvvis, self.saxs):
            part.time_scale_signal = self.time_scale

    def run_simulation_fast(self, time_scale: float) -> dict:
        """Run the simulated reactor at ``time_scale`` wall-clock s per simulated s, with quick heaters.

        Heaters then ramp at up to 600 °C/min with a 2 s time constant and settle for 10 s
        (simulated). Returns the previous settings: pass them to :meth:`restore_settings`.
        """
        heaters = (self.nucleation, self.growth)
        saved = {sig: sig.get() for h in heaters for sig in (h.ramp_rate, h.time_constant, h.settle_time_s)}
        saved[self.time_scale] = self.time_scale.get()
        self.time_scale.set(time_scale).wait(5)
        for h in heaters:
            h.ramp_rate.set(600.0).wait(5)
            h.time_constant.set(2.0).wait(5)
            h.settle_time_s.set(10.0).wait(5)
        return saved

    @staticmethod
    def restore_settings(saved: dict) -> None:
        """Put back the settings :meth:`run_simulation_fast` returned."""
        for sig, value in saved.items():
            sig.set(value).wait(5)


__all__ = [
    "FlowCellSaxs", "FlowCellSpectrometer", "FlowReactor", "FlushCounter", "Heater", "Pump", "PumpPair",
    "SimFlowReactor", "SimHeater",
]
