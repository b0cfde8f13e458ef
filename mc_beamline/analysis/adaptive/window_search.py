"""Bisection for the edges of a temperature window in which a property is present.

Used by the adaptive flow series: the property is "CdSe-437 is in the UV-Vis spectrum" at a
fixed reaction time, the variable is the nucleation temperature T_nuc (°C). The search

1. probes the midpoint of the widest unmeasured interval of [low_c, high_c] until one
   measured condition shows the property (``reason`` ``"find"``);
2. bisects the bracket (last condition without it, first with it) of the lower edge until it
   is at most ``2 * tolerance_c`` wide (``"lower"``), then the upper edge (``"upper"``);
   where a bracket ends at an unmeasured range limit, that limit is measured once
   (``"confirm-lower"`` / ``"confirm-upper"``): with the property there, the window reaches
   past the range and that edge is open;
3. stops when both edges are resolved, when no interval wider than ``2 * tolerance_c`` is
   left without the property (no window in range), or after ``max_conditions`` conditions.

Each edge is reported as the midpoint of its final bracket ± half its width (°C), so an edge
within ``tolerance_c`` needs a bracket of at most ``2 * tolerance_c``. :class:`WindowSearch`
follows bluesky-adaptive's optimizer protocol (``suggest``, ``ingest``, ``should_stop``,
``get_best_points``); suggestions and outcomes are plain mappings keyed by ``"_id"``.
:func:`rederive_window_search` replays the decisions from the measured outcomes alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

ID_KEY = "_id"
"""Key that matches a suggestion with its outcome (bluesky-adaptive's convention)."""
TEMPERATURE_KEY = "nucleation_temperature_c"
"""Suggestion key of the temperature to measure, °C."""
PRESENT_KEY = "present"
"""Outcome key: 1 where the property was found, 0 where not."""
SECONDARY_KEY = "nc_present"
"""Outcome key: 1 where NCs were found, 0 where not (recorded, not used to decide)."""
REASONS = ("find", "lower", "upper", "confirm-lower", "confirm-upper")
"""Why a condition was chosen (see the module docstring)."""


class WindowSearchError(ValueError):
    """Unusable search parameters or outcomes; the message is one sentence."""


@dataclass(frozen=True)
class WindowSearchSpec:
    """Range (°C), edge tolerance (°C) and condition budget of a window search."""

    low_c: float
    high_c: float
    tolerance_c: float = 5.0
    max_conditions: int = 8

    def __post_init__(self) -> None:
        for name in ("low_c", "high_c", "tolerance_c"):
            if not math.isfinite(getattr(self, name)):
                raise WindowSearchError(f"{name} must be a finite number of °C, got {getattr(self, name)!r}.")
        if self.high_c <= self.low_c:
            raise WindowSearchError(
                f"The search range must run upwards, got low_c {self.low_c:g} °C and high_c {self.high_c:g} °C.")
        if self.tolerance_c <= 0:
            raise WindowSearchError(f"tolerance_c must be positive, got {self.tolerance_c:g} °C.")
        if int(self.max_conditions) != self.max_conditions or self.max_conditions < 1:
            raise WindowSearchError(f"max_conditions must be a positive whole number, got {self.max_conditions!r}.")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """One measured condition: where (°C), why, and what it showed."""

    index: int
    """Order of measurement, from 0."""
    temperature_c: float
    reason: str
    """One of :data:`REASONS`."""
    present: bool | None = None
    """The property at this temperature (None until measured)."""
    nc_present: bool | None = None


@dataclass(frozen=True)
class Edge:
    """One edge of the window: the midpoint of its bracket ± half its width (°C)."""

    temperature_c: float | None
    """None where the window reaches past the range limit (open edge) or nothing was found."""
    temperature_c_err: float | None
    outside_c: float | None
    """Measured temperature without the property that bounds the bracket (None: not measured)."""
    inside_c: float | None
    """Measured temperature with the property that bounds the bracket."""


@dataclass(frozen=True)
class WindowSearchResult:
    """What the search found; temperatures in °C."""

    lower: Edge
    upper: Edge
    nc_first_seen_c: float | None
    """Lowest measured temperature with NCs (None: none seen)."""
    nc_absent_below_c: float | None
    """Highest measured temperature below ``nc_first_seen_c`` without NCs (None: none measured)."""
    n_conditions: int
    stop_reason: str
    decisions: tuple[Decision, ...]

    def as_dict(self) -> dict:
        return asdict(self)


class WindowSearch:
    """The window search as a bluesky-adaptive optimizer (one suggestion at a time)."""

    def __init__(self, spec: WindowSearchSpec):
        self.spec = spec
        self.decisions: list[Decision] = []
        self._pending: Decision | None = None

    # ------------------------------------------------------------------ state
    def _measured(self) -> list[Decision]:
        return sorted(self.decisions, key=lambda d: d.temperature_c)

    def _is_measured(self, t: float) -> Decision | None:
        return next((d for d in self.decisions if d.temperature_c == t), None)

    def _window(self) -> tuple[float, float] | None:
        """(lowest, highest) temperature of the run of present conditions around the first one found."""
        first = next((d for d in self.decisions if d.present), None)
        if first is None:
            return None
        measured = self._measured()
        i = measured.index(first)
        lo = hi = i
        while lo > 0 and measured[lo - 1].present:
            lo -= 1
        while hi < len(measured) - 1 and measured[hi + 1].present:
            hi += 1
        return measured[lo].temperature_c, measured[hi].temperature_c

    def _brackets(self) -> dict[str, tuple[float, float, bool]]:
        """Per edge: (outside, inside, outside measured) temperatures, °C."""
        window = self._window()
        assert window is not None
        below = [d.temperature_c for d in self.decisions if not d.present and d.temperature_c < window[0]]
        above = [d.temperature_c for d in self.decisions if not d.present and d.temperature_c > window[1]]
        return {"lower": (max(below), window[0], True) if below else (self.spec.low_c, window[0], False),
                "upper": (min(above), window[1], True) if above else (self.spec.high_c, window[1], False)}

    def _next(self) -> tuple[float, str] | str:
        """The next (temperature °C, reason), or why the search is over."""
        width = 2.0 * self.spec.tolerance_c
        if len(self.decisions) >= self.spec.max_conditions:
            return f"budget of {self.spec.max_conditions} conditions spent"
        if self._window() is None:
            points = [self.spec.low_c] + [d.temperature_c for d in self._measured()] + [self.spec.high_c]
            gaps = [(b - a, a, b) for a, b in zip(points, points[1:]) if b - a > width]
            if not gaps:
                return f"no condition between {self.spec.low_c:g} and {self.spec.high_c:g} °C shows the property"
            _, a, b = max(gaps, key=lambda g: (g[0], -g[1]))
            return 0.5 * (a + b), "find"
        for edge, (outside, inside, measured) in self._brackets().items():
            if abs(inside - outside) > width:
                return 0.5 * (outside + inside), edge
            if not measured and outside != inside:
                return outside, f"confirm-{edge}"
        return f"both edges within ±{self.spec.tolerance_c:g} °C"

    # ------------------------------------------------------------------ optimizer protocol
    def suggest(self, num_points: int | None = None) -> list[dict]:
        """The next condition, ``[{"_id", "nucleation_temperature_c", "reason"}]``; [] when the search is over."""
        if num_points not in (None, 1):
            raise WindowSearchError(f"A bisection suggests one condition at a time, not {num_points}.")
        if self._pending is not None:
            raise WindowSearchError("The previous suggestion has not been measured yet.")
        step = self._next()
        if isinstance(step, str):
            return []
        t, reason = step
        self._pending = Decision(len(self.decisions), float(t), reason)
        return [{ID_KEY: f"c{self._pending.index}", TEMPERATURE_KEY: self._pending.temperature_c, "reason": reason}]

    def ingest(self, points: Sequence[Mapping]) -> None:
        """Take the outcome ``{"_id", "present", "nc_present"}`` of the pending suggestion."""
        for point in points:
            pending = self._pending
            if pending is None or point.get(ID_KEY) != f"c{pending.index}":
                raise WindowSearchError(f"Outcome {point.get(ID_KEY)!r} does not answer the pending suggestion.")
            decision = Decision(pending.index, pending.temperature_c, pending.reason, bool(point[PRESENT_KEY]),
                                bool(point.get(SECONDARY_KEY, False)))
            self.decisions.append(decision)
            self._pending = None

    def should_stop(self) -> tuple[bool, str | None]:
        step = self._next()
        return (True, step) if isinstance(step, str) else (False, None)

    def get_best_points(self) -> list[tuple[str, dict, dict]]:
        """The measured conditions inside the window: (``_id``, suggestion, outcome)."""
        return [(f"c{d.index}", {TEMPERATURE_KEY: d.temperature_c, "reason": d.reason},
                 {PRESENT_KEY: 1, SECONDARY_KEY: int(bool(d.nc_present))}) for d in self.decisions if d.present]

    # ------------------------------------------------------------------ result
    def _edge(self, name: str) -> Edge:
        if self._window() is None:
            return Edge(None, None, None, None)
        outside, inside, measured = self._brackets()[name]
        if not measured and outside == inside:  # present at the range limit: the window reaches past it
            return Edge(None, None, None, inside)
        if not measured:  # budget ran out before the range limit was confirmed
            return Edge(0.5 * (outside + inside), 0.5 * abs(inside - outside), None, inside)
        return Edge(0.5 * (outside + inside), 0.5 * abs(inside - outside), outside, inside)

    def result(self) -> WindowSearchResult:
        """Edges, NC onset and every decision so far."""
        measured = self._measured()
        nc = [d.temperature_c for d in measured if d.nc_present]
        first_nc = nc[0] if nc else None
        below = [d.temperature_c for d in measured if first_nc is not None and d.temperature_c < first_nc]
        stop = self._next()
        return WindowSearchResult(self._edge("lower"), self._edge("upper"), first_nc, max(below, default=None),
                                  len(self.decisions), stop if isinstance(stop, str) else "not finished",
                                  tuple(self.decisions))


def rederive_window_search(spec: WindowSearchSpec, measured: Sequence[tuple[float, bool, bool]]) -> WindowSearchResult:
    """Re-derive the decisions of a search from its measurements alone.

    ``measured``: (temperature °C, property present, NCs present) per condition in the order
    measured. Raises :class:`WindowSearchError` where a stored condition is not the one the
    search would have chosen (the data do not come from this search).
    """
    search = WindowSearch(spec)
    for i, (t, present, nc_present) in enumerate(measured):
        (suggestion,) = search.suggest(1) or [None]
        if suggestion is None or suggestion[TEMPERATURE_KEY] != float(t):
            chose = "to stop" if suggestion is None else f"{suggestion[TEMPERATURE_KEY]:g} °C"
            raise WindowSearchError(f"Condition {i} was measured at {t:g} °C but the search chooses {chose} there.")
        search.ingest([{ID_KEY: suggestion[ID_KEY], PRESENT_KEY: present, SECONDARY_KEY: nc_present}])
    return search.result()


__all__ = ["Decision", "Edge", "ID_KEY", "PRESENT_KEY", "REASONS", "SECONDARY_KEY", "TEMPERATURE_KEY",
           "WindowSearch", "WindowSearchError", "WindowSearchResult", "WindowSearchSpec", "rederive_window_search"]
