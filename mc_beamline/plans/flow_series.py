"""Flow-synthesis series over nucleation temperature x growth temperature x reaction time (seed 002).

For every condition the plan sets the heaters and the pump rates, waits until both
temperatures have settled, pumps at least ``flush_volumes`` reactor volumes through the
reactor (so the flow cells hold what the new conditions make), then records one UV-Vis
spectrum and one SAXS curve. One event per condition carries the set points, readbacks,
the reaction time, the flushed volume and the arrays (absorbance on its wavelength axis,
I(q) and σ on their q axis).

Conditions run with the nucleation temperature outermost and the reaction time innermost
(changing a pump rate is the quickest change); a heater is only moved when its set point
changes. The plan starts both pumps and stops them when it ends (also when it fails or is
aborted): an unattended queue never leaves precursor flowing after the series.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.suspenders import SuspendWhenOutsideBand

from mc_beamline.plans.readiness import wait_for_devices
from mc_beamline.plans.validation import PlanArgumentError, require_finite

TEMPERATURE_RANGE_C = (20.0, 400.0)
"""Temperatures the plan accepts for both heaters, °C."""
MIN_FLUSH_VOLUMES = 3.0
"""Smallest flush after a change, in reactor volumes."""
MAX_CONDITIONS = 10_000
DEFAULT_TEMPERATURE_BAND_C = 2.0
"""While a condition is flushed and measured, a heater further than this from its set point suspends the run, °C."""
DEFAULT_TEMPERATURE_RESUME_S = 5.0
"""Wall-clock time a heater must be back in its band before the run resumes, s."""
DEVICE_WAIT_S = 30.0
"""How long the plan waits for the reactor to answer before it fails, s."""


def _values(name: str, values: Sequence[float], unit: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        values = [values]
    out = tuple(require_finite(f"{name} entry", v, unit) for v in values)
    if not out:
        raise PlanArgumentError(f"{name} must list at least one value in{unit}.")
    return out


@dataclass(frozen=True)
class FlowSeriesSpec:
    """A validated series: temperatures in °C, reaction times in s, ``cd_fraction`` of the flow.

    Everything that does not depend on the reactor is checked here (before the plan
    touches a device); :meth:`check_pumps` checks the reaction times against the pumps.
    """

    nucleation_temperatures_c: tuple[float, ...]
    growth_temperatures_c: tuple[float, ...]
    reaction_times_s: tuple[float, ...]
    flush_volumes: float = MIN_FLUSH_VOLUMES
    cd_fraction: float = 0.5
    allow_growth_above_nucleation: bool = False
    temperature_band_c: float = DEFAULT_TEMPERATURE_BAND_C
    temperature_resume_s: float = DEFAULT_TEMPERATURE_RESUME_S

    @classmethod
    def build(cls, nucleation_temperatures_c, growth_temperatures_c, reaction_times_s, *,
              flush_volumes: float = MIN_FLUSH_VOLUMES, cd_fraction: float = 0.5,
              allow_growth_above_nucleation: bool = False,
              temperature_band_c: float = DEFAULT_TEMPERATURE_BAND_C,
              temperature_resume_s: float = DEFAULT_TEMPERATURE_RESUME_S) -> "FlowSeriesSpec":
        """Validate the arguments; raise :class:`PlanArgumentError` (one sentence) otherwise."""
        nuc = _values("nucleation_temperatures_c", nucleation_temperatures_c, " °C")
        growth = _values("growth_temperatures_c", growth_temperatures_c, " °C")
        times = _values("reaction_times_s", reaction_times_s, " s")
        lo, hi = TEMPERATURE_RANGE_C
        for label, temps in (("nucleation", nuc), ("growth", growth)):
            for t in temps:
                if not lo <= t <= hi:
                    raise PlanArgumentError(
                        f"The {label} temperature {t:g} °C is outside the reactor's range {lo:g}–{hi:g} °C; "
                        "nothing was moved.")
        if not allow_growth_above_nucleation:
            for tn, tg in itertools.product(nuc, growth):
                if tg > tn:
                    raise PlanArgumentError(
                        f"The growth temperature {tg:g} °C is above the nucleation temperature {tn:g} °C "
                        "(the oven must not be hotter than the nucleation chamber; pass "
                        "allow_growth_above_nucleation=True to run such a series); nothing was moved.")
        for t in times:
            if t <= 0:
                raise PlanArgumentError(
                    f"The reaction time {t:g} s would need a zero or negative pump flow; reaction times "
                    "must be positive; nothing was moved.")
        cd_fraction = require_finite("cd_fraction", cd_fraction)
        if not 0.0 < cd_fraction < 1.0:
            pump = "Se" if cd_fraction >= 1.0 else "Cd"
            raise PlanArgumentError(
                f"cd_fraction {cd_fraction:g} would give the {pump} pump a zero or negative flow; it must lie "
                "strictly between 0 and 1; nothing was moved.")
        flush_volumes = require_finite("flush_volumes", flush_volumes, " reactor volumes")
        if flush_volumes < MIN_FLUSH_VOLUMES:
            raise PlanArgumentError(
                f"flush_volumes must be at least {MIN_FLUSH_VOLUMES:g} reactor volumes so that the flow cells "
                f"hold the new product, got {flush_volumes:g}; nothing was moved.")
        band = require_finite("temperature_band_c", temperature_band_c, " °C")
        if band <= 0:
            raise PlanArgumentError(f"temperature_band_c must be positive, got {band:g} °C; nothing was moved.")
        resume = require_finite("temperature_resume_s", temperature_resume_s, " s")
        if resume < 0:
            raise PlanArgumentError(f"temperature_resume_s must not be negative, got {resume:g} s; nothing was moved.")
        n = len(nuc) * len(growth) * len(times)
        if n > MAX_CONDITIONS:
            raise PlanArgumentError(f"A series of {n} conditions is more than {MAX_CONDITIONS}; split it.")
        return cls(nuc, growth, times, flush_volumes, cd_fraction, bool(allow_growth_above_nucleation), band, resume)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.nucleation_temperatures_c), len(self.growth_temperatures_c), len(self.reaction_times_s))

    def conditions(self) -> list[tuple[float, float, float]]:
        """(T_nuc °C, T_growth °C, reaction time s) in the order they run."""
        return list(itertools.product(self.nucleation_temperatures_c, self.growth_temperatures_c,
                                      self.reaction_times_s))

    def check_pumps(self, volume_ml: float, cd_limits: tuple[float, float], se_limits: tuple[float, float]) -> None:
        """Refuse reaction times the pumps cannot reach (rates in mL/min, volume in mL)."""
        f = self.cd_fraction
        q_max = min(cd_limits[1] / f, se_limits[1] / (1.0 - f))
        q_min = max(cd_limits[0] / f, se_limits[0] / (1.0 - f))
        t_min, t_max = 60.0 * volume_ml / q_max, 60.0 * volume_ml / q_min
        for t in self.reaction_times_s:
            q = 60.0 * volume_ml / t
            for pump, share, (lo, hi) in (("Cd", f, cd_limits), ("Se", 1.0 - f, se_limits)):
                rate = q * share
                if rate > hi or rate < lo:
                    side = f"above its maximum of {hi:g}" if rate > hi else f"below its minimum of {lo:g}"
                    raise PlanArgumentError(
                        f"The reaction time {t:g} s needs {rate:.3g} mL/min from the {pump} pump, {side} mL/min "
                        f"(this reactor of {volume_ml:g} mL reaches {t_min:.3g}–{t_max:.3g} s at "
                        f"cd_fraction {f:g}); nothing was moved.")

    def metadata(self) -> dict[str, Any]:
        return {
            "nucleation_temperatures_c": list(self.nucleation_temperatures_c),
            "growth_temperatures_c": list(self.growth_temperatures_c),
            "reaction_times_s": list(self.reaction_times_s),
            "shape": list(self.shape),
            "flush_volumes": float(self.flush_volumes),
            "cd_fraction": float(self.cd_fraction),
            "temperature_band_c": float(self.temperature_band_c),
            "temperature_resume_s": float(self.temperature_resume_s),
            "conditions": [
                {"nucleation_temperature_c": tn, "growth_temperature_c": tg, "reaction_time_s": t}
                for tn, tg, t in self.conditions()
            ],
        }


def temperature_band_suspender(heater, setpoint_c: float, band_c: float, resume_s: float) -> SuspendWhenOutsideBand:
    """Suspender that holds the run while ``heater`` reads outside ``setpoint_c`` ± ``band_c`` (°C).

    The run resumes ``resume_s`` seconds (wall clock) after the temperature is back in the band.
    """
    return SuspendWhenOutsideBand(
        heater.readback, setpoint_c - band_c, setpoint_c + band_c, sleep=resume_s,
        tripped_message=f"{heater.name} left {setpoint_c:g} ± {band_c:g} °C; the measurement waits until "
                        f"it is back for {resume_s:g} s, then flushes the reactor again",
    )


def _read_float(signal):
    value = yield from bps.rd(signal)
    return float(value)


@dataclass(frozen=True)
class FlowRun:
    """A prepared flow run: its start metadata, what each condition reads and the flush (mL)."""

    spec: FlowSeriesSpec
    plan_md: dict
    readers: tuple
    flush_ml: float


def _check_exposures(integration_time_s: float | None, saxs_exposure_s: float | None) -> None:
    for name, value in (("integration_time_s", integration_time_s), ("saxs_exposure_s", saxs_exposure_s)):
        if value is not None:
            value = require_finite(name, value, " s")
            if value <= 0:
                raise PlanArgumentError(f"{name} must be positive, got {value:g} s; nothing was moved.")


def prepare_flow_run(reactor, spec: FlowSeriesSpec, *, integration_time_s: float | None,
                     saxs_exposure_s: float | None, sample: str, plan_name: str, plan_args: dict,
                     num_points: int | None, md: dict | None):
    """Check ``spec`` against the reactor, apply the settings and return the :class:`FlowRun` (a plan).

    Reads volumes (mL) and pump limits (mL/min) from the IOC and refuses unreachable reaction
    times before anything moves; then sets the Cd fraction and the exposures (s).
    """
    _check_exposures(integration_time_s, saxs_exposure_s)
    yield from wait_for_devices(reactor, timeout_s=DEVICE_WAIT_S)
    pumps = reactor.pumps
    volume = yield from _read_float(pumps.volume)
    cd_limits = ((yield from _read_float(pumps.cd.rate_min)), (yield from _read_float(pumps.cd.rate_max)))
    se_limits = ((yield from _read_float(pumps.se.rate_min)), (yield from _read_float(pumps.se.rate_max)))
    if not (math.isfinite(volume) and volume > 0):
        raise PlanArgumentError(f"{reactor.name} reports a reactor volume of {volume!r} mL; is its IOC configured?")
    spec.check_pumps(volume, cd_limits, se_limits)

    wavelength = yield from bps.rd(reactor.uvvis.wavelength)
    q = yield from bps.rd(reactor.saxs.q)
    nuc_volume = yield from _read_float(reactor.nucleation_volume)
    growth_volume = yield from _read_float(reactor.growth_volume)

    # Everything is valid: from here on the plan changes the instrument.
    yield from bps.mv(pumps.cd_fraction, spec.cd_fraction)
    if integration_time_s is not None:
        yield from bps.mv(reactor.uvvis.integration_time, float(integration_time_s))
    if saxs_exposure_s is not None:
        yield from bps.mv(reactor.saxs.acquire_time, float(saxs_exposure_s))
    integration = yield from _read_float(reactor.uvvis.integration_time)
    exposure = yield from _read_float(reactor.saxs.acquire_time)

    uvvis, saxs = reactor.uvvis, reactor.saxs
    plan_md = {
        "plan_name": plan_name,
        "sample": sample,
        "detectors": [uvvis.name, saxs.name],
        "motors": [reactor.nucleation.name, reactor.growth.name, pumps.reaction_time.name],
        **({"num_points": num_points, "num_intervals": num_points - 1} if num_points is not None else {}),
        "plan_args": {**plan_args, "flush_volumes": spec.flush_volumes, "cd_fraction": spec.cd_fraction},
        "hints": {"dimensions": [([reactor.nucleation.name], "primary"), ([reactor.growth.name], "primary"),
                                 ([pumps.reaction_time.name], "primary")]},
        "mc_beamline": {
            "experiment": "flow",
            **spec.metadata(),
            "reactor_volume_ml": volume,
            "nucleation_volume_ml": nuc_volume,
            "growth_volume_ml": growth_volume,
            "pump_limits_ml_min": {"cd": list(cd_limits), "se": list(se_limits)},
            "integration_time_s": integration,
            "saxs_exposure_s": exposure,
            "wavelength_nm": [float(v) for v in wavelength],
            "q_nm": [float(v) for v in q],
            "keys": {
                "absorbance": uvvis.absorbance.name, "wavelength": uvvis.wavelength.name,
                "saxs_intensity": saxs.intensity.name, "saxs_sigma": saxs.sigma.name, "saxs_q": saxs.q.name,
                "nucleation_temperature": reactor.nucleation.name,
                "nucleation_setpoint": reactor.nucleation.setpoint.name,
                "growth_temperature": reactor.growth.name, "growth_setpoint": reactor.growth.setpoint.name,
                "reaction_time": pumps.reaction_time.name,
                "reaction_time_setpoint": pumps.reaction_time.setpoint.name,
                "flushed_ml": reactor.flush.flushed.name,
            },
        },
    }
    plan_md.update(md or {})
    readers = (uvvis, saxs, reactor.nucleation, reactor.growth, pumps, reactor.flush,
               reactor.reaction_time, reactor.cell_flushed)
    return FlowRun(spec, plan_md, readers, spec.flush_volumes * volume)


def measure_condition(reactor, run: FlowRun, condition: tuple[float, float, float],
                      previous: tuple[float, float, float] | None):
    """Set, settle, flush and record one condition (T_nuc °C, T_growth °C, reaction time s); a plan
    returning the reading of its ``primary`` event. ``previous``: the condition before (None: first);
    a heater is only moved when its set point changes."""
    t_nuc, t_growth, t_reaction = condition
    moves: list = [reactor.pumps.reaction_time, t_reaction]
    if previous is None or t_nuc != previous[0]:
        moves += [reactor.nucleation, t_nuc]
    if previous is None or t_growth != previous[1]:
        moves += [reactor.growth, t_growth]
    yield from bps.mv(*moves)  # heaters complete only once settled
    guards = [temperature_band_suspender(heater, setpoint, run.spec.temperature_band_c,
                                         run.spec.temperature_resume_s)
              for heater, setpoint in ((reactor.nucleation, t_nuc), (reactor.growth, t_growth))]
    for guard in guards:
        yield from bps.install_suspender(guard)
    # A temperature excursion from here on suspends the run; on resume it rewinds to this
    # checkpoint and flushes again, so the product of the excursion is never measured.
    yield from bps.checkpoint()
    yield from bps.mv(reactor.flush, run.flush_ml)
    reading = yield from bps.trigger_and_read(list(run.readers))
    yield from bps.checkpoint()  # the condition is recorded: never measured twice
    for guard in guards:
        yield from bps.remove_suspender(guard)
    return reading


def with_pumps_running(reactor, plan):
    """Stage the detectors, start both pumps, run ``plan``; stop the pumps when it ends, fails or is aborted."""
    pumps = reactor.pumps

    @bpp.stage_decorator([reactor.uvvis, reactor.saxs])
    def body():
        yield from bps.mv(pumps.cd.running, 1, pumps.se.running, 1)
        return (yield from plan)

    def stop_pumps():
        yield from bps.mv(pumps.cd.running, 0, pumps.se.running, 0)

    return (yield from bpp.finalize_wrapper(body(), stop_pumps()))


def measure_conditions(reactor, run: FlowRun, conditions: Sequence[tuple[float, float, float]]):
    """One run of ``run`` through ``conditions`` (T_nuc °C, T_growth °C, reaction time s) in
    order, each set, settled, flushed and recorded by :func:`measure_condition`, with the
    pumps running throughout (:func:`with_pumps_running`); a plan."""

    @bpp.run_decorator(md=run.plan_md)
    def series():
        previous = None
        for condition in conditions:
            yield from measure_condition(reactor, run, condition, previous)
            previous = condition

    return (yield from with_pumps_running(reactor, series()))


def flow_series(
    reactor,
    nucleation_temperatures_c: Sequence[float],
    growth_temperatures_c: Sequence[float],
    reaction_times_s: Sequence[float],
    *,
    flush_volumes: float = MIN_FLUSH_VOLUMES,
    cd_fraction: float = 0.5,
    allow_growth_above_nucleation: bool = False,
    temperature_band_c: float = DEFAULT_TEMPERATURE_BAND_C,
    temperature_resume_s: float = DEFAULT_TEMPERATURE_RESUME_S,
    integration_time_s: float | None = None,
    saxs_exposure_s: float | None = None,
    sample: str = "CdSe from Cd oleate + TOP-Se in octadecene",
    md: dict | None = None,
):
    """Run the reactor through T_nuc x T_growth x reaction time, one spectrum and SAXS curve each.

    Parameters
    ----------
    reactor : the flow reactor (:class:`mc_beamline.devices.flow_reactor.FlowReactor`).
    nucleation_temperatures_c : nucleation-chamber temperatures, °C (20–400).
    growth_temperatures_c : growth-oven temperatures, °C (20–400; not above any nucleation
        temperature of the series unless ``allow_growth_above_nucleation``).
    reaction_times_s : reaction times, s (> 0 and reachable by the pumps).
    flush_volumes : reactor volumes pumped after every change before measuring (≥ 3).
    cd_fraction : share of the total flow from the Cd pump (0 < f < 1).
    allow_growth_above_nucleation : accept T_growth > T_nuc (the paper's SAXS series ran
        T_growth = 230 °C after T_nuc = 190–220 °C).
    temperature_band_c : while a condition is flushed and measured, a heater reading further
        than this from its set point (°C) suspends the run; it resumes ``temperature_resume_s``
        (wall-clock s) after the temperature is back, flushes again and then measures.
    integration_time_s : UV-Vis integration time, s (default: leave the setting).
    saxs_exposure_s : SAXS exposure, s (default: leave the setting).
    sample : sample description for the metadata.
    md : extra start-document metadata.

    Every argument, and every reaction time against the pumps' rate limits read from the
    IOC, is checked before the run opens; a bad one raises
    :class:`~mc_beamline.plans.PlanArgumentError` with one sentence and nothing moves.
    The start document's ``md["mc_beamline"]`` holds ``experiment: "flow"``, the grid, the
    planned conditions in order, reactor volumes (mL), pump limits (mL/min), the
    wavelength axis (nm), the q axis (nm⁻¹) and the data keys.
    """
    spec = FlowSeriesSpec.build(
        nucleation_temperatures_c, growth_temperatures_c, reaction_times_s, flush_volumes=flush_volumes,
        cd_fraction=cd_fraction, allow_growth_above_nucleation=allow_growth_above_nucleation,
        temperature_band_c=temperature_band_c, temperature_resume_s=temperature_resume_s)
    conditions = spec.conditions()
    run = yield from prepare_flow_run(
        reactor, spec, integration_time_s=integration_time_s, saxs_exposure_s=saxs_exposure_s, sample=sample,
        plan_name="flow_series", num_points=len(conditions), md=md,
        plan_args={"nucleation_temperatures_c": list(spec.nucleation_temperatures_c),
                   "growth_temperatures_c": list(spec.growth_temperatures_c),
                   "reaction_times_s": list(spec.reaction_times_s)})

    return (yield from measure_conditions(reactor, run, conditions))


__all__ = ["FlowRun", "FlowSeriesSpec", "flow_series", "measure_condition", "measure_conditions", "prepare_flow_run",
           "with_pumps_running",
           "temperature_band_suspender", "TEMPERATURE_RANGE_C", "MIN_FLUSH_VOLUMES", "DEFAULT_TEMPERATURE_BAND_C",
           "DEFAULT_TEMPERATURE_RESUME_S"]
