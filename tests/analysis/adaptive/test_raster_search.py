"""The adaptive raster's decisions on a synthetic sample (no frames): survey, zone cells,
domain boundaries, growth to the zone's edge, the budget and the convergence rule."""

from __future__ import annotations

import math

import pytest

from mc_beamline.analysis.adaptive.raster_search import (
    ID_KEY,
    INDEX_KEY,
    ORIENTATION_KEY,
    ROUND_END_KEY,
    ZONE_KEY,
    RasterSearch,
    RasterSearchError,
    RasterSearchFollower,
    RasterSearchSpec,
    RoundStatistics,
)

NY, NX = 35, 51


def grain(row: int, col: int) -> float | None:
    """Synthetic sample: AL orientation (degrees) of two grains, None outside them."""
    if 8 <= row <= 15 and 10 <= col <= 22:
        return 30.0
    if 20 <= row <= 27 and 30 <= col <= 44:
        return 75.0
    return None


def run(search: RasterSearch, stats=lambda round_no: RoundStatistics(1.2, 0.001, 10.0, 0.1, 2.5, 0.1)):
    """Measure the synthetic sample until the search stops; the statistics of each round from ``stats``."""
    rounds = 0
    while True:
        stop, _ = search.should_stop()
        if stop:
            return search.result()
        (s,) = search.suggest(1)
        u = grain(*divmod(s[INDEX_KEY], NX))
        outcome = {ID_KEY: s[ID_KEY], ZONE_KEY: int(u is not None), ORIENTATION_KEY: math.nan if u is None else u}
        if s[ROUND_END_KEY]:
            outcome.update(stats(rounds).as_outcome())
            rounds += 1
        search.ingest([outcome])


def test_survey_is_every_fourth_row_and_column_in_snake_order():
    search = RasterSearch(RasterSearchSpec(NY, NX))
    survey = []
    while True:
        (s,) = search.suggest(1)
        survey.append(s[INDEX_KEY])
        search.ingest([{ID_KEY: s[ID_KEY], ZONE_KEY: 0, ORIENTATION_KEY: math.nan,
                        **RoundStatistics(None, None, None, None, None, None).as_outcome()}])
        if s[ROUND_END_KEY]:
            break
    rows_cols = [divmod(i, NX) for i in survey]
    assert len(survey) == 9 * 13
    assert {r for r, _ in rows_cols} == set(range(0, NY, 4)) and {c for _, c in rows_cols} == set(range(0, NX, 4))
    assert [c for r, c in rows_cols[13:26]] == list(range(48, -1, -4))  # second row runs backwards
    assert search.should_stop() == (True, "mapped")  # no zone anywhere: nothing to refine


def test_refinement_maps_both_grains_to_their_edges_within_the_budget():
    result = run(RasterSearch(RasterSearchSpec(NY, NX)), stats=lambda k: RoundStatistics(1.2 + 0.01 * k, 0.001,
                                                                                         10.0, 0.1, 2.5, 0.1))
    measured = {p.index for p in result.points}
    zone = {r * NX + c for r in range(NY) for c in range(NX) if grain(r, c) is not None}
    assert zone <= measured  # every zone point found
    assert result.stop_reason == "mapped" and result.n_points <= int(0.4 * NY * NX)
    assert len(measured) == result.n_points  # no point twice
    assert {p.reason for p in result.points} == {"survey", "zone", "boundary", "grow"}
    between = [p for p in result.points if p.reason == "boundary"]
    assert all(divmod(p.index, NX)[0] % 4 == 0 or divmod(p.index, NX)[1] % 4 == 0 for p in between)


def test_stops_when_two_refinement_rounds_agree_within_their_errors():
    result = run(RasterSearch(RasterSearchSpec(NY, NX)))  # the same statistics every round
    assert result.stop_reason == "converged"
    assert len(result.statistics) == 3 and {p.round for p in result.points} == {0, 1, 2}


def test_the_budget_ends_the_search():
    result = run(RasterSearch(RasterSearchSpec(NY, NX, budget_fraction=0.1)))
    assert result.stop_reason == "budget" and result.n_points == int(0.1 * NY * NX)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 0}, "stride"), ({"budget_fraction": 1.5}, "budget_fraction"), ({"ny": 2.5}, "ny"),
    ({"orientation_tolerance_deg": -1.0}, "orientation_tolerance_deg")])
def test_bad_parameters_are_refused_in_one_sentence(kwargs, message):
    with pytest.raises(RasterSearchError, match=message):
        RasterSearchSpec(**{"ny": NY, "nx": NX, **kwargs})


def test_an_outcome_for_another_point_is_refused():
    search = RasterSearch(RasterSearchSpec(NY, NX))
    search.suggest(1)
    with pytest.raises(RasterSearchError, match="pending"):
        search.ingest([{ID_KEY: "p7", ZONE_KEY: 0}])


def test_a_follower_refuses_a_frame_the_search_would_not_have_chosen():
    """The replay check: the first frame must be the survey's first point (grid index 0)."""
    follower = RasterSearchFollower(RasterSearchSpec(NY, NX), analysis=None)  # refused before any analysis
    with pytest.raises(RasterSearchError, match="Point 0 was measured at grid index 5 but the search chooses point 0"):
        follower.add(5, record=None)
