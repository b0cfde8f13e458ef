"""The adaptive flow series on the real simulated reactor, stored in a real Tiled server.

At 14 s the bisection on T_nuc locates both edges of the CdSe-437 window within ±5 °C of
the simulator's truth in at most 8 conditions (the 190–350 °C grid in 10 °C steps takes 17);
the decisions recorded by the plan (``optimization`` stream), those the live analysis
re-derives (derived run) and those a replay from Tiled re-derives are the same.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mc_beamline.callbacks.live_flow import LiveFlow, flow_router
from mc_beamline.callbacks.replay import replay, stored_results
from mc_beamline.commands.demo import flow_window_truth
from mc_beamline.plans import PlanArgumentError
from mc_beamline.plans.adaptive_flow import adaptive_flow_series
from mc_beamline.storage import tiled_writer


@pytest.fixture(scope="module")
def adaptive_run(reactor, tiled):
    from bluesky import RunEngine

    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    runs: list[LiveFlow] = []
    RE.subscribe(flow_router(publish=tiled_writer(tiled), on_run=runs.append))
    (uid,) = RE(adaptive_flow_series(reactor, reaction_time_s=14.0, md={"operator": "test"}))
    (live,) = runs
    assert live.wait(120)
    return uid, live


def test_both_edges_of_the_cdse437_window_within_5_c_in_at_most_8_conditions(adaptive_run, tiled):
    uid, live = adaptive_run
    assert live.errors == []
    search = live.result["window_search"]
    truth_lower, truth_upper = flow_window_truth("CdSe-437", 14.0, 260.0, 190.0, 350.0)
    assert search["n_conditions"] <= 8
    assert tiled[uid].metadata["stop"]["num_events"]["primary"] == search["n_conditions"]
    assert abs(search["lower"]["temperature_c"] - truth_lower) <= 5.0, (search["lower"], truth_lower)
    assert abs(search["upper"]["temperature_c"] - truth_upper) <= 5.0, (search["upper"], truth_upper)
    assert search["lower"]["temperature_c_err"] <= 5.0 and search["upper"]["temperature_c_err"] <= 5.0
    assert search["stop_reason"] == "both edges within ±5 °C"
    # every condition measured is in the MSC result, with the oven at min(T_nuc, 260 °C)
    conditions = [entry["condition"] for entry in live.result["spectra"]]
    assert [c["nucleation_temperature_c"] for c in conditions] == [d["temperature_c"] for d in search["decisions"]]
    assert all(c["growth_temperature_c"] == min(c["nucleation_temperature_c"], 260.0) and c["reaction_time_s"] == 14.0
               for c in conditions)


def test_the_run_records_each_decision_in_its_optimization_stream(adaptive_run, tiled):
    uid, live = adaptive_run
    start = tiled[uid].metadata["start"]
    assert start["plan_name"] == "adaptive_flow_series" and start["adaptive_engine"] == "optimize_in_run"
    assert start["operator"] == "test" and start["mc_beamline"]["experiment"] == "flow"
    assert start["mc_beamline"]["window_search"]["family"] == "CdSe-437"
    stream = tiled[uid]["optimization"]
    decisions = live.result["window_search"]["decisions"]
    np.testing.assert_array_equal(stream["nucleation_temperature_c"].read(), [d["temperature_c"] for d in decisions])
    assert list(stream["reason"].read()) == [d["reason"] for d in decisions]
    np.testing.assert_array_equal(stream["present"].read(), [int(d["present"]) for d in decisions])
    np.testing.assert_array_equal(stream["nc_present"].read(), [int(d["nc_present"]) for d in decisions])


def test_replay_from_tiled_reproduces_every_decision(adaptive_run, tiled):
    uid, live = adaptive_run
    stored = stored_results(tiled, uid)
    assert stored == live.result
    assert replay(tiled, uid)["window_search"] == stored["window_search"]


def test_results_and_replay_commands_write_the_same_decisions(adaptive_run, sim_ioc, tmp_path):
    uid, live = adaptive_run
    outputs = {}
    for command in ("results", "replay"):
        proc = subprocess.run([sys.executable, "-m", "mc_beamline.cli", command, uid, "--data-dir",
                               str(sim_ioc.data_dir), "--out", f"{command}.json"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs[command] = (tmp_path / f"{command}.json").read_text()
    assert outputs["results"] == outputs["replay"]
    assert json.loads(outputs["replay"])["window_search"] == live.result["window_search"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(low_c=350.0, high_c=190.0), "The search range must run upwards"),
    (dict(tolerance_c=-1.0), "tolerance_c must be positive"),
    (dict(max_conditions=0), "max_conditions must be a whole number from 1 to 100"),
    (dict(family="CdSe-999"), "family must be one of"),
    (dict(reaction_time_s=0.0), "reaction time 0 s would need a zero or negative pump flow"),
    (dict(high_c=500.0), "outside the reactor's range"),
])
def test_bad_arguments_are_refused_before_anything_moves(reactor, kwargs, message):
    with pytest.raises(PlanArgumentError, match=message):
        list(adaptive_flow_series(reactor, **kwargs))
