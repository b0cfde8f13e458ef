"""Time-dependent behaviour of the continuous-flow reactor around its steady state (seed 002).

:mod:`mc_beamline.physics.flow_reactor` gives the steady-state product of fixed reactor
conditions; this module adds what happens while the conditions change:

* Heaters: the temperature follows its set point as a first-order lag whose rate is
  capped (:func:`first_order_step`, exact between updates). Temperatures in °C, times in
  s, rates in °C/s.
* Residence-time distribution: ``TANKS_IN_SERIES`` ideal mixers in series, in units of
  reactor volumes (:func:`fraction_older`): after one reactor volume 44 % of the old
  contents remain, after two 3 %, after three 0.09 %.
* Flow-cell contents (:class:`FlowHistory`): each fluid element is labelled
  (:class:`Label`) with the reactor conditions (temperatures, pump flows) in force while
  it entered the reactor and carries the steady-state product of those conditions. The
  flow cells see a mixture of the elements that entered earlier, weighted by the
  residence-time distribution. A new label starts when a temperature moves by more than
  ``TEMPERATURE_STEP_C`` or a flow by more than ``FLOW_STEP`` (relative) from the values at
  which the current label started; the current label follows the latest readbacks until
  then. Volumes in mL, flows in mL/min.
* Measured signals (:class:`ReactorModel`): absorbance and SAXS intensity are linear in
  the concentrations, so the flow cells' curves are the weighted sums of the curves of
  each labelled element.

Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from mc_beamline.physics import absorption, saxs_models
from mc_beamline.physics.flow_reactor import (
    FlowReactor,
    ReactorConditions,
    ReactorState,
    simulate,
)

TANKS_IN_SERIES = 5
"""Ideal mixers in series that model the reactor's residence-time distribution."""
TEMPERATURE_STEP_C = 0.2
"""A temperature change larger than this starts a new fluid label, °C."""
FLOW_STEP = 0.005
"""A relative flow change larger than this starts a new fluid label (0.5 %)."""
HISTORY_VOLUMES = 12.0
"""Fluid that entered more than this many reactor volumes ago is forgotten (weight < 1e-18)."""
MIN_WEIGHT = 1e-6
"""Labels of smaller weight are left out of a measured mixture (the rest renormalised)."""
PATH_CM = 0.1
"""Optical path of the UV-Vis flow cell, cm."""


def first_order_step(temperature: float, setpoint: float, dt: float, tau: float, max_rate: float) -> float:
    """Temperature (°C) after ``dt`` s of a first-order lag (``tau`` s) capped at ``max_rate`` °C/s.

    Exact: the rate-limited (linear) part runs while |SP − T| > max_rate·tau, the
    exponential approach after it. ``max_rate`` ≤ 0 or infinite: no cap.
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
        """True if no temperature differs by more than ``TEMPERATURE_STEP_C`` and no flow by
        more than ``FLOW_STEP`` (relative) from ``other``'s."""
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
        """Label of the fluid entering now."""
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
    """Steady-state products per label (cached) and the signals of the flow-cell mixture.

    Parameters
    ----------
    reactor : chamber and oven volumes.
    cd_stock_mm, se_stock_mm : precursor concentrations in the pump reservoirs, mM.
    cache_size : number of labels whose product is kept.
    """

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
        """Noise-free decadic absorbance of the flow-cell contents (``PATH_CM`` path)."""
        return sum(w * absorption.absorbance(self.state(label).population, wavelength_nm, path_cm=PATH_CM)
                   for label, w in mixture)

    def saxs(self, mixture: list[tuple[Label, float]], q_nm: np.ndarray) -> np.ndarray:
        """Noise-free I(q) of the flow-cell contents on ``q_nm`` (nm⁻¹), cm⁻¹."""
        return sum(w * saxs_models.reaction_intensity(self.state(label), q_nm) for label, w in mixture)


__all__ = [
    "FLOW_STEP", "HISTORY_VOLUMES", "MIN_WEIGHT", "PATH_CM", "TANKS_IN_SERIES", "TEMPERATURE_STEP_C",
    "FlowHistory", "Label", "ReactorModel", "first_order_step", "fraction_older",
]
