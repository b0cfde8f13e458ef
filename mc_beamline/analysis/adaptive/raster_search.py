"""Adaptive nanodiffraction raster: survey coarse, refine where the [110] zone and its domain boundaries are.

The fine grid is the full raster (``ny`` x ``nx`` points, row-major index ``row · nx + col``).
The search measures in rounds:

0. ``survey``: every ``stride``-th row and column (9 x 13 of the seed's 35 x 51 points);
1. ``zone``: the unmeasured points of the ``stride`` x ``stride`` cell of every survey point
   that shows the zone (the fine points whose nearest survey point it is), and ``boundary``:
   the points between two neighbouring survey points whose zone status or orientation
   differ (a domain boundary runs there);
2. and on: ``grow``: the unmeasured 8-neighbours of every zone point of the previous round,
   so that each zone region is followed to its edge.

Points of a round are measured in snake order (row by row, alternating direction). After a
round the caller gives the round's statistics (:class:`RoundStatistics`: c/a, ΔΦ and the ψ
spread with their standard errors); the search stops when, between two refinement rounds,
each moved less than its standard error (``converged``), when no point is left to refine
(``mapped``), or when the point budget (``budget_fraction`` of the fine grid) is spent
(``budget``). :class:`RasterSearch` follows bluesky-adaptive's optimizer protocol (one
suggestion at a time, mappings keyed by ``"_id"``); :class:`RasterSearchFollower` re-derives
the decisions from frames analysed in the order they were measured (live analysis, replay).
The per-point outcome and the round statistics come from one place,
:func:`point_outcome` and :func:`round_statistics`, for the plan and the followers alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from mc_beamline.analysis.xcca.orientation import al_orientation_candidates
from mc_beamline.analysis.xcca.pipeline import FrameRecord, XccaAnalysis

ID_KEY = "_id"
"""Key that matches a suggestion with its outcome (bluesky-adaptive's convention)."""
INDEX_KEY = "grid_index"
"""Suggestion key: the point's row-major index on the fine grid."""
ROUND_END_KEY = "round_end"
"""Suggestion key: 1 on the last point of a round (its outcome carries the round statistics)."""
ZONE_KEY = "zone"
"""Outcome key: 1 where the frame shows the [110] zone (peaks on both rings), else 0."""
ORIENTATION_KEY = "orientation_deg"
"""Outcome key: AL orientation of the frame, degrees in [0, 180); NaN without the zone."""
STATISTICS_KEYS = ("c_over_a", "c_over_a_err", "disorder_fwhm_deg", "disorder_fwhm_deg_err",
                   "psi_std_deg", "psi_std_deg_err")
"""Outcome keys of the round statistics (NaN on points that do not end a round)."""
REASONS = ("survey", "zone", "boundary", "grow")
"""Why a point was chosen (see the module docstring)."""
STOP_REASONS = ("converged", "mapped", "budget")


class RasterSearchError(ValueError):
    """Unusable search parameters or outcomes; the message is one sentence."""


@dataclass(frozen=True)
class RasterSearchSpec:
    """Fine grid (rows, columns), survey stride (fine steps), point budget (fraction of the grid)
    and the orientation difference (degrees) that makes two survey points a domain boundary."""

    ny: int
    nx: int
    stride: int = 4
    budget_fraction: float = 0.4
    orientation_tolerance_deg: float = 3.0

    def __post_init__(self) -> None:
        for name in ("ny", "nx", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise RasterSearchError(f"{name} must be a positive whole number, got {value!r}.")
        if not (math.isfinite(self.budget_fraction) and 0 < self.budget_fraction <= 1):
            raise RasterSearchError(f"budget_fraction must lie in (0, 1], got {self.budget_fraction!r}.")
        if not (math.isfinite(self.orientation_tolerance_deg) and self.orientation_tolerance_deg > 0):
            raise RasterSearchError("orientation_tolerance_deg must be a positive number of degrees, "
                                    f"got {self.orientation_tolerance_deg!r}.")

    @property
    def n_points(self) -> int:
        """Points of the fine grid."""
        return int(self.ny) * int(self.nx)

    @property
    def budget(self) -> int:
        """Most points the search measures (at least the survey's)."""
        survey = len(range(0, self.ny, self.stride)) * len(range(0, self.nx, self.stride))
        return max(survey, int(self.budget_fraction * self.n_points))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RoundStatistics:
    """c/a, orientational disorder ΔΦ (degrees) and ψ spread (degrees), each with its standard
    error, of all frames measured so far; None where not determined."""

    c_over_a: float | None
    c_over_a_err: float | None
    disorder_fwhm_deg: float | None
    disorder_fwhm_deg_err: float | None
    psi_std_deg: float | None
    psi_std_deg_err: float | None

    @classmethod
    def from_outcome(cls, outcome: Mapping) -> "RoundStatistics":
        values = {}
        for key in STATISTICS_KEYS:
            v = outcome.get(key)
            values[key] = None if v is None or not math.isfinite(float(v)) else float(v)
        return cls(**values)

    def as_outcome(self) -> dict[str, float]:
        return {k: math.nan if v is None else float(v) for k, v in asdict(self).items()}

    def settled_since(self, earlier: "RoundStatistics") -> bool:
        """Whether c/a, ΔΦ and the ψ spread each moved less than their (current) standard error."""
        for name in ("c_over_a", "disorder_fwhm_deg", "psi_std_deg"):
            now, before, err = getattr(self, name), getattr(earlier, name), getattr(self, f"{name}_err")
            if now is None or before is None or err is None or not abs(now - before) < err:
                return False
        return True


NO_STATISTICS = RoundStatistics(None, None, None, None, None, None)


@dataclass(frozen=True)
class Point:
    """One measured point: order of measurement, fine-grid index, round, why, and what it showed."""

    order: int
    index: int
    round: int
    reason: str
    zone: bool
    orientation_deg: float | None


@dataclass(frozen=True)
class RasterSearchResult:
    """What the search measured and why; ``statistics`` after each round, in order."""

    spec: dict
    n_points: int
    fraction: float
    """Measured share of the fine grid."""
    stop_reason: str
    points: tuple[Point, ...]
    statistics: tuple[RoundStatistics, ...] = field(default=())

    def as_dict(self) -> dict:
        return asdict(self)


def point_outcome(record: FrameRecord) -> dict[str, float]:
    """``{"zone": 0|1, "orientation_deg": degrees in [0, 180) or NaN}`` of one analysed frame:
    the zone is peaks on both rings; the orientation is the best AL [110]-zone candidate."""
    if not record.candidate:
        return {ZONE_KEY: 0, ORIENTATION_KEY: math.nan}
    candidates = al_orientation_candidates(record.al_peaks[:, 0], record.al_peaks[:, 1])
    orientation = float(candidates[0].u_deg) % 180.0 if candidates else math.nan
    return {ZONE_KEY: 1, ORIENTATION_KEY: orientation}


def round_statistics(analysis: XccaAnalysis) -> RoundStatistics:
    """c/a, ΔΦ and ψ spread (with standard errors) of the frames analysed so far.

    The standard error of the ψ standard deviation s of n values is s / √(2(n − 1)).
    """
    result = analysis.result()
    sl, mis = result["superlattice"], result["misorientation_deg"]
    std, n = mis["std"], mis["n"]
    return RoundStatistics(sl["c_over_a"], sl["c_over_a_err"], result["orientational_disorder_fwhm_deg"],
                           result["orientational_disorder_fwhm_deg_err"], std,
                           None if std is None else std / math.sqrt(2.0 * (n - 1)))


def evaluate_point(suggestion: Mapping, record: FrameRecord, analysis: XccaAnalysis) -> dict:
    """The outcome of a measured suggestion whose frame ``analysis`` has just analysed
    (``record``): :func:`point_outcome`, with :func:`round_statistics` of ``analysis`` where
    the suggestion ends a round (NaN otherwise)."""
    stats = round_statistics(analysis) if suggestion[ROUND_END_KEY] else NO_STATISTICS
    return {ID_KEY: suggestion[ID_KEY], **point_outcome(record), **stats.as_outcome()}


class RasterSearch:
    """The adaptive raster as a bluesky-adaptive optimizer (one suggestion at a time)."""

    def __init__(self, spec: RasterSearchSpec):
        self.spec = spec
        self.points: list[Point] = []
        self.statistics: list[RoundStatistics] = []
        self._measured: dict[int, Point] = {}
        self._round = -1
        self._queue: list[tuple[int, str]] = []
        self._pending: tuple[int, str, bool] | None = None
        self._stop: str | None = None
        self._plan_round()

    # ------------------------------------------------------------------ grid
    def _rc(self, index: int) -> tuple[int, int]:
        return divmod(index, int(self.spec.nx))

    def _index(self, row: int, col: int) -> int:
        return row * int(self.spec.nx) + col

    def _snake(self, indices) -> list[int]:
        """Row by row, every other row (of those the points occupy) backwards."""
        rows = sorted({self._rc(i)[0] for i in indices})
        backwards = {row for k, row in enumerate(rows) if k % 2}
        return sorted(indices, key=lambda i: (self._rc(i)[0], -i if self._rc(i)[0] in backwards else i))

    def _survey_lines(self, n: int) -> list[int]:
        return list(range(0, n, self.spec.stride))

    def _cell(self, row: int, col: int) -> list[int]:
        """Fine points whose nearest survey point is (row, col) (ties go to the lower one)."""
        s, (ny, nx) = self.spec.stride, (int(self.spec.ny), int(self.spec.nx))
        last_r, last_c = self._survey_lines(ny)[-1], self._survey_lines(nx)[-1]
        rows = range(max(0, row - s // 2), ny if row == last_r else min(ny, row + (s + 1) // 2))
        cols = range(max(0, col - s // 2), nx if col == last_c else min(nx, col + (s + 1) // 2))
        return [self._index(r, c) for r in rows for c in cols]

    def _differ(self, a: Point, b: Point) -> bool:
        if a.zone != b.zone:
            return True
        if not a.zone or a.orientation_deg is None or b.orientation_deg is None:
            return False
        d = abs((a.orientation_deg - b.orientation_deg + 90.0) % 180.0 - 90.0)
        return d > self.spec.orientation_tolerance_deg

    # ------------------------------------------------------------------ rounds
    def _plan_round(self) -> None:
        """Queue the next round, or set why the search is over."""
        self._round += 1
        chosen: dict[int, str] = {}
        if self._round == 0:
            chosen = {self._index(r, c): "survey" for r in self._survey_lines(int(self.spec.ny))
                      for c in self._survey_lines(int(self.spec.nx))}
        elif self._round == 1:
            s = self.spec.stride
            survey = {(p.index): p for p in self.points if p.reason == "survey"}
            for p in survey.values():
                r, c = self._rc(p.index)
                if p.zone:
                    chosen.update({i: "zone" for i in self._cell(r, c) if i not in self._measured})
                for nr, nc in ((r + s, c), (r, c + s)):
                    q = survey.get(self._index(nr, nc)) if nr < self.spec.ny and nc < self.spec.nx else None
                    if q is not None and self._differ(p, q):
                        between = ([self._index(k, c) for k in range(r + 1, nr)] if nr != r
                                   else [self._index(r, k) for k in range(c + 1, nc)])
                        chosen.update({i: "boundary" for i in between if i not in self._measured and i not in chosen})
        else:
            for p in self.points:
                if p.round != self._round - 1 or not p.zone:
                    continue
                r, c = self._rc(p.index)
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        nr, nc = r + dr, c + dc
                        if 0 <= nr < self.spec.ny and 0 <= nc < self.spec.nx:
                            i = self._index(nr, nc)
                            if i not in self._measured:
                                chosen[i] = "grow"
        left = self.spec.budget - len(self.points)
        self._queue = [(i, chosen[i]) for i in self._snake(chosen)][:left]
        if not self._queue:
            self._stop = "budget" if left <= 0 else "mapped"

    def _settled(self) -> bool:
        """Whether the last two refinement rounds (1 and on) agree within the standard errors."""
        return len(self.statistics) >= 3 and self.statistics[-1].settled_since(self.statistics[-2])

    # ------------------------------------------------------------------ optimizer protocol
    def suggest(self, num_points: int | None = None) -> list[dict]:
        """The next point ``[{"_id", "grid_index", "round_end"}]``; [] when the search is over."""
        if num_points not in (None, 1):
            raise RasterSearchError(f"The raster search suggests one point at a time, not {num_points}.")
        if self._pending is not None:
            raise RasterSearchError("The previous suggestion has not been measured yet.")
        if self._stop is not None:
            return []
        index, reason = self._queue.pop(0)
        self._pending = (index, reason, not self._queue)
        return [{ID_KEY: f"p{len(self.points)}", INDEX_KEY: index, ROUND_END_KEY: int(not self._queue)}]

    def ingest(self, points: Sequence[Mapping]) -> None:
        """Take the outcome ``{"_id", "zone", "orientation_deg", <statistics>}`` of the pending
        suggestion; the statistics are read on the point that ends a round."""
        for outcome in points:
            if self._pending is None or outcome.get(ID_KEY) != f"p{len(self.points)}":
                raise RasterSearchError(f"Outcome {outcome.get(ID_KEY)!r} does not answer the pending suggestion.")
            index, reason, round_end = self._pending
            orientation = float(outcome.get(ORIENTATION_KEY, math.nan))
            point = Point(len(self.points), index, self._round, reason, bool(outcome[ZONE_KEY]),
                          orientation if math.isfinite(orientation) else None)
            self.points.append(point)
            self._measured[index] = point
            self._pending = None
            if round_end:
                self.statistics.append(RoundStatistics.from_outcome(outcome))
                if self._settled():
                    self._stop = "converged"
                else:
                    self._plan_round()

    def should_stop(self) -> tuple[bool, str | None]:
        return (True, self._stop) if self._stop is not None else (False, None)

    def get_best_points(self) -> list[tuple[str, dict, dict]]:
        """The measured points that show the zone: (``_id``, suggestion, outcome)."""
        return [(f"p{p.order}", {INDEX_KEY: p.index}, {ZONE_KEY: 1, ORIENTATION_KEY: p.orientation_deg})
                for p in self.points if p.zone]

    def result(self) -> RasterSearchResult:
        """Every decision so far and why the search stopped (``"not finished"`` while it goes)."""
        n = len(self.points)
        return RasterSearchResult(self.spec.as_dict(), n, n / self.spec.n_points, self._stop or "not finished",
                                  tuple(self.points), tuple(self.statistics))


class RasterSearchFollower:
    """Re-derives a search's decisions from its frames, analysed in the order they were measured.

    Feed :meth:`add` each frame's raster index and record right after ``analysis.add_frame``;
    it checks that the index is the one the search chose and gives the search the same
    outcome (and, at a round's end, the same statistics of ``analysis``) as the plan did.
    """

    def __init__(self, spec: RasterSearchSpec, analysis: XccaAnalysis):
        self.search = RasterSearch(spec)
        self.analysis = analysis

    def add(self, index: int, record: FrameRecord) -> None:
        """Take the frame measured next (fine-grid ``index``); raises :class:`RasterSearchError`
        where the search would have chosen another point or stopped."""
        (suggestion,) = self.search.suggest(1) or [None]
        if suggestion is None or suggestion[INDEX_KEY] != int(index):
            chose = "to stop" if suggestion is None else f"point {suggestion[INDEX_KEY]}"
            raise RasterSearchError(f"Point {len(self.search.points)} was measured at grid index {index} "
                                    f"but the search chooses {chose} there.")
        self.search.ingest([evaluate_point(suggestion, record, self.analysis)])


__all__ = ["ID_KEY", "INDEX_KEY", "NO_STATISTICS", "ORIENTATION_KEY", "REASONS", "ROUND_END_KEY", "STATISTICS_KEYS",
           "STOP_REASONS", "ZONE_KEY", "Point", "RasterSearch", "RasterSearchError", "RasterSearchFollower",
           "RasterSearchResult", "RasterSearchSpec", "RoundStatistics", "evaluate_point", "point_outcome",
           "round_statistics"]
