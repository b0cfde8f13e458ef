"""Adaptive flow series: bisection on T_nuc for the window in which an MSC family persists (seed 002).

At one reaction time (s), the plan lets the live UV-Vis analysis choose the next nucleation
temperature (°C): :class:`~mc_beamline.analysis.adaptive.window_search.WindowSearch` first
looks for a condition that shows the family (CdSe-437 by default), then bisects the lower and
the upper edge of the window until each is known within ``tolerance_c``, or the budget of
conditions is spent. The oven runs at ``growth_temperature_c``, or at T_nuc where the
nucleation chamber is colder (the oven is never hotter than the chamber).

The loop is bluesky-adaptive's :func:`~bluesky_adaptive.plans.optimize_in_run`: one Bluesky run
whose ``primary`` stream holds every condition exactly as :func:`~mc_beamline.plans.flow_series`
records it (set, settle, flush, spectrum and SAXS, via the same
:func:`~mc_beamline.plans.flow_series.measure_condition`), and whose ``optimization`` stream
holds each decision: the suggestion (``nucleation_temperature_c``, ``reason``) and its outcome
(``present``, ``nc_present``, 0 or 1). The start document's ``mc_beamline.window_search``
holds the search parameters, so the live flow analysis (and a replay of the stored run)
re-derives every decision from the stored spectra.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from bluesky_adaptive.protocols import OptimizationProblem

from mc_beamline.analysis.adaptive.flow_window import spectrum_outcome
from mc_beamline.analysis.adaptive.window_search import (
    ID_KEY,
    PRESENT_KEY,
    SECONDARY_KEY,
    TEMPERATURE_KEY,
    WindowSearch,
    WindowSearchError,
    WindowSearchSpec,
)
from mc_beamline.analysis.uvvis.spectrum import analyse_spectrum
from mc_beamline.materials.cdse import MSC_FAMILY_NM
from mc_beamline.plans.flow_series import (
    DEFAULT_TEMPERATURE_BAND_C,
    DEFAULT_TEMPERATURE_RESUME_S,
    MIN_FLUSH_VOLUMES,
    FlowRun,
    FlowSeriesSpec,
    measure_condition,
    prepare_flow_run,
    with_pumps_running,
)
from mc_beamline.plans.optimization import optimize_in_one_run
from mc_beamline.plans.validation import PlanArgumentError, require_finite

MAX_ADAPTIVE_CONDITIONS = 100
"""Largest condition budget the plan accepts."""


class _SpectrumEvaluation:
    """bluesky-adaptive evaluation function: each measured condition's spectrum → (family, NCs) found.

    The acquisition plan hands over each condition's reading; the spectrum is analysed with
    the same function, on the same wavelength axis (nm), as the live flow analysis.
    """

    def __init__(self, run: FlowRun, family: str):
        self.family = family
        self.wavelength_nm = np.asarray(run.plan_md["mc_beamline"]["wavelength_nm"], dtype=float)
        self.absorbance_key = run.plan_md["mc_beamline"]["keys"]["absorbance"]
        self.readings: dict[str, dict] = {}

    def __call__(self, uid: Sequence[str], suggestions: Sequence[Mapping]) -> list[dict]:
        outcomes = []
        for suggestion in suggestions:
            reading = self.readings.pop(suggestion[ID_KEY])
            absorbance = np.asarray(reading[self.absorbance_key]["value"], dtype=float)
            present, nc_present = spectrum_outcome(analyse_spectrum(self.wavelength_nm, absorbance), self.family)
            outcomes.append({ID_KEY: suggestion[ID_KEY], PRESENT_KEY: int(present), SECONDARY_KEY: int(nc_present)})
        return outcomes


def adaptive_flow_series(
    reactor,
    *,
    reaction_time_s: float = 14.0,
    growth_temperature_c: float = 260.0,
    low_c: float = 190.0,
    high_c: float = 350.0,
    tolerance_c: float = 5.0,
    max_conditions: int = 8,
    family: str = "CdSe-437",
    flush_volumes: float = MIN_FLUSH_VOLUMES,
    cd_fraction: float = 0.5,
    temperature_band_c: float = DEFAULT_TEMPERATURE_BAND_C,
    temperature_resume_s: float = DEFAULT_TEMPERATURE_RESUME_S,
    integration_time_s: float | None = None,
    saxs_exposure_s: float | None = None,
    sample: str = "CdSe from Cd oleate + TOP-Se in octadecene",
    md: dict | None = None,
):
    """Find the T_nuc window (°C) in which ``family`` persists at ``reaction_time_s`` (s), in one run.

    Parameters
    ----------
    reactor : the flow reactor (:class:`mc_beamline.devices.flow_reactor.FlowReactor`).
    reaction_time_s : reaction time of every condition, s (reachable by the pumps).
    growth_temperature_c : growth-oven temperature, °C; the oven runs at T_nuc where that is lower.
    low_c, high_c : nucleation temperatures searched, °C (20–400, low_c < high_c).
    tolerance_c : each edge is located within ± this, °C (> 0).
    max_conditions : at most this many conditions are measured (1–100).
    family : the MSC family whose window is searched (e.g. ``"CdSe-437"``).
    flush_volumes, cd_fraction, temperature_band_c, temperature_resume_s, integration_time_s,
    saxs_exposure_s, sample, md : as in :func:`~mc_beamline.plans.flow_series`.

    Every argument is checked before anything moves; a bad one raises
    :class:`~mc_beamline.plans.PlanArgumentError` with one sentence. The derived run of the
    live flow analysis holds the MSC result of every condition and, under ``window_search``,
    the decisions and both edges (°C ± °C).
    """
    if family not in MSC_FAMILY_NM:
        raise PlanArgumentError(f"family must be one of {', '.join(MSC_FAMILY_NM)}, got {family!r}; nothing was moved.")
    budget = require_finite("max_conditions", max_conditions)
    if int(budget) != budget or not 1 <= budget <= MAX_ADAPTIVE_CONDITIONS:
        raise PlanArgumentError(f"max_conditions must be a whole number from 1 to {MAX_ADAPTIVE_CONDITIONS}, "
                                f"got {max_conditions!r}; nothing was moved.")
    try:
        search_spec = WindowSearchSpec(require_finite("low_c", low_c, " °C"), require_finite("high_c", high_c, " °C"),
                                       require_finite("tolerance_c", tolerance_c, " °C"), int(budget))
    except WindowSearchError as exc:
        raise PlanArgumentError(f"{str(exc).rstrip('.')}; nothing was moved.") from None
    growth = require_finite("growth_temperature_c", growth_temperature_c, " °C")
    spec = FlowSeriesSpec.build(
        (search_spec.low_c, search_spec.high_c), (growth,), (reaction_time_s,),
        flush_volumes=flush_volumes, cd_fraction=cd_fraction, allow_growth_above_nucleation=True,
        temperature_band_c=temperature_band_c, temperature_resume_s=temperature_resume_s)
    t_reaction = spec.reaction_times_s[0]
    run = yield from prepare_flow_run(
        reactor, spec, integration_time_s=integration_time_s, saxs_exposure_s=saxs_exposure_s, sample=sample,
        plan_name="adaptive_flow_series", num_points=None, md=None,
        plan_args={"reaction_time_s": t_reaction, "growth_temperature_c": growth, "low_c": search_spec.low_c,
                   "high_c": search_spec.high_c, "tolerance_c": search_spec.tolerance_c,
                   "max_conditions": search_spec.max_conditions, "family": family})
    run.plan_md["mc_beamline"].update({
        "conditions": [],  # chosen while the run goes: see the ``optimization`` stream
        "window_search": {**search_spec.as_dict(), "family": family, "reaction_time_s": t_reaction,
                          "growth_temperature_c": growth},
    })
    run.plan_md.update(md or {})
    evaluation = _SpectrumEvaluation(run, family)
    measured: list[tuple[float, float, float]] = []

    def acquire(suggestions, actuators, sensors=None, md=None):
        for suggestion in suggestions:
            t_nuc = float(suggestion[TEMPERATURE_KEY])
            condition = (t_nuc, min(t_nuc, growth), t_reaction)
            reading = yield from measure_condition(reactor, run, condition, measured[-1] if measured else None)
            measured.append(condition)
            evaluation.readings[suggestion[ID_KEY]] = reading
        return tuple(s[ID_KEY] for s in suggestions)

    problem = OptimizationProblem(optimizer=WindowSearch(search_spec), actuators=[reactor.nucleation],
                                  sensors=[reactor.uvvis], evaluation_function=evaluation, acquisition_plan=acquire)

    search = optimize_in_one_run(problem, search_spec.max_conditions, run.plan_md)
    return (yield from with_pumps_running(reactor, search))


__all__ = ["MAX_ADAPTIVE_CONDITIONS", "adaptive_flow_series"]
