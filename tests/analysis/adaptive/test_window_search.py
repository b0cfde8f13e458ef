"""The window bisection on exact present/absent answers: edges, stopping, budget and re-derivation."""

from __future__ import annotations

import pytest

from mc_beamline.analysis.adaptive.window_search import (
    WindowSearch,
    WindowSearchError,
    WindowSearchSpec,
    rederive_window_search,
)


def run(spec: WindowSearchSpec, present, nc=lambda t: True):
    search = WindowSearch(spec)
    measured = []
    while not search.should_stop()[0]:
        (s,) = search.suggest(1)
        t = s["nucleation_temperature_c"]
        measured.append((t, present(t), nc(t)))
        search.ingest([{"_id": s["_id"], "present": int(present(t)), "nc_present": int(nc(t))}])
    return search.result(), measured


def test_finds_both_edges_of_the_cdse437_window_in_seven_conditions():
    # the simulator's window at 14 s: CdSe-437 from 268 to 302 °C
    result, measured = run(WindowSearchSpec(190.0, 350.0, 5.0, 8), lambda t: 268.0 <= t <= 302.0)
    assert [t for t, *_ in measured] == [270.0, 230.0, 250.0, 260.0, 310.0, 290.0, 300.0]
    assert result.lower.temperature_c == 265.0 and result.lower.temperature_c_err == 5.0
    assert result.upper.temperature_c == 305.0 and result.upper.temperature_c_err == 5.0
    assert abs(result.lower.temperature_c - 267.5) <= 5 and abs(result.upper.temperature_c - 302.5) <= 5
    assert result.stop_reason == "both edges within ±5 °C" and result.n_conditions == 7
    assert [d.reason for d in result.decisions] == ["find", "lower", "lower", "lower", "upper", "upper", "upper"]


def test_a_window_off_the_midpoint_is_found_by_halving_the_widest_gap():
    result, measured = run(WindowSearchSpec(190.0, 350.0, 5.0, 20), lambda t: 320.0 <= t <= 335.0)
    assert [t for t, *_ in measured][:3] == [270.0, 230.0, 310.0]  # equal gaps: the lower first
    assert abs(result.lower.temperature_c - 320.0) <= 5 and abs(result.upper.temperature_c - 335.0) <= 5


def test_a_window_reaching_past_the_range_has_an_open_edge():
    result, measured = run(WindowSearchSpec(190.0, 350.0, 5.0, 20), lambda t: t >= 300.0)
    assert measured[-1][0] == 350.0 and measured[-1][1]  # the range limit was measured once
    assert result.upper.temperature_c is None and result.upper.inside_c == 350.0
    assert abs(result.lower.temperature_c - 300.0) <= 5


def test_no_window_and_budget_stop_with_their_reason():
    result, measured = run(WindowSearchSpec(190.0, 350.0, 5.0, 40), lambda t: False)
    assert result.lower.temperature_c is None and result.stop_reason.startswith("no condition between 190")
    result, measured = run(WindowSearchSpec(190.0, 350.0, 5.0, 3), lambda t: 268.0 <= t <= 302.0)
    assert len(measured) == 3 and result.stop_reason == "budget of 3 conditions spent"


def test_nc_onset_is_bracketed_by_the_measured_conditions():
    result, _ = run(WindowSearchSpec(190.0, 350.0, 5.0, 8), lambda t: 268.0 <= t <= 302.0, nc=lambda t: t >= 255.0)
    assert result.nc_first_seen_c == 260.0 and result.nc_absent_below_c == 250.0


def test_rederivation_reproduces_every_decision_and_refuses_foreign_data():
    spec = WindowSearchSpec(190.0, 350.0, 5.0, 8)
    live, measured = run(spec, lambda t: 268.0 <= t <= 302.0)
    assert rederive_window_search(spec, measured) == live
    with pytest.raises(WindowSearchError, match="Condition 1 was measured at 240 °C but the search chooses 230 °C"):
        rederive_window_search(spec, [measured[0], (240.0, False, True)])


@pytest.mark.parametrize("kwargs, message", [
    (dict(low_c=350.0, high_c=190.0), "must run upwards"),
    (dict(low_c=190.0, high_c=350.0, tolerance_c=0.0), "tolerance_c must be positive"),
    (dict(low_c=190.0, high_c=350.0, max_conditions=0), "max_conditions must be a positive whole number"),
    (dict(low_c=float("nan"), high_c=350.0), "low_c must be a finite number"),
])
def test_bad_parameters_end_in_one_sentence(kwargs, message):
    with pytest.raises(WindowSearchError, match=message):
        WindowSearchSpec(**kwargs)
