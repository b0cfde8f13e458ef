"""The flow_series plan on the real simulated reactor, stored in a real Tiled server."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from event_model import DocumentNames, schema_validators

from mc_beamline.physics import absorption, saxs_models
from mc_beamline.physics.flow_reactor import ReactorConditions, simulate
from mc_beamline.plans import PlanArgumentError, flow_series
from mc_beamline.storage import read_stream_array, tiled_writer

CONDITIONS = [(280.0, 270.0, 1.5), (280.0, 270.0, 4.5), (300.0, 270.0, 1.5), (300.0, 270.0, 4.5)]


@pytest.fixture(scope="module")
def stored_series(reactor, tiled):
    """A 2 x 1 x 2 series (T_nuc 280, 300 °C; T_growth 270 °C; 1.5, 4.5 s) written to Tiled."""
    from bluesky import RunEngine

    RE = RunEngine({})
    RE.subscribe(tiled_writer(tiled))
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    (uid,) = RE(flow_series(reactor, [280, 300], [270], [1.5, 4.5], saxs_exposure_s=0.5,
                            md={"operator": "test"}))
    return uid, docs


def _by_name(docs, name):
    return [doc for n, doc in docs if n == name]


def test_series_emits_one_valid_event_per_condition(stored_series):
    _, docs = stored_series
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    assert Counter(n for n, _ in docs) == {"start": 1, "descriptor": 1, "event": 4, "stop": 1}
    assert _by_name(docs, "stop")[0]["exit_status"] == "success"
    descriptor = _by_name(docs, "descriptor")[0]["data_keys"]
    assert descriptor["reactor_uvvis_absorbance"]["shape"] == [401]
    assert descriptor["reactor_saxs_intensity"]["shape"] == [500]
    assert descriptor["reactor_saxs_q"]["shape"] == [500]


def test_events_carry_set_points_readbacks_reaction_time_and_flushed_volume(stored_series, reactor):
    _, docs = stored_series
    volume = reactor.volume_ml
    for event, (t_nuc, t_growth, t_reaction) in zip(_by_name(docs, "event"), CONDITIONS):
        data = event["data"]
        assert data["reactor_nucleation_setpoint"] == t_nuc
        assert data["reactor_growth_setpoint"] == t_growth
        assert abs(data["reactor_nucleation"] - t_nuc) <= 0.5 and abs(data["reactor_growth"] - t_growth) <= 0.5
        assert data["reactor_pumps_reaction_time_setpoint"] == pytest.approx(t_reaction)
        assert data["reactor_pumps_reaction_time"] == pytest.approx(t_reaction)
        assert data["reactor_reaction_time"] == pytest.approx(t_reaction)  # from the actual flows
        q = 60.0 * volume / t_reaction
        assert data["reactor_pumps_cd"] == pytest.approx(q / 2)
        assert data["reactor_pumps_se_flow"] == pytest.approx(q / 2)
        assert data["reactor_flush_target"] == pytest.approx(3.0 * volume)
        assert data["reactor_flush_flushed"] >= 3.0 * volume
        assert data["reactor_cell_flushed"] >= 3.0 * volume  # nothing changed since the flush began


def test_start_metadata_describe_the_flow_experiment(stored_series, reactor):
    _, docs = stored_series
    start = _by_name(docs, "start")[0]
    assert start["plan_name"] == "flow_series" and start["operator"] == "test" and start["num_points"] == 4
    md = start["mc_beamline"]
    assert md["experiment"] == "flow" and md["shape"] == [2, 1, 2] and md["flush_volumes"] == 3.0
    assert [(c["nucleation_temperature_c"], c["growth_temperature_c"], c["reaction_time_s"])
            for c in md["conditions"]] == CONDITIONS
    assert md["reactor_volume_ml"] == pytest.approx(0.25) and md["saxs_exposure_s"] == 0.5
    assert md["pump_limits_ml_min"] == {"cd": [0.05, 10.0], "se": [0.05, 10.0]}
    assert len(md["wavelength_nm"]) == 401 and md["wavelength_nm"][0] == 300.0 and md["wavelength_nm"][-1] == 700.0
    np.testing.assert_allclose(md["q_nm"], saxs_models.default_q_nm(500))
    assert md["keys"]["absorbance"] == "reactor_uvvis_absorbance"


def test_arrays_read_back_from_tiled_equal_the_events(stored_series, tiled):
    uid, docs = stored_series
    assert tiled[uid].metadata["stop"]["num_events"] == {"primary": 4}
    events = _by_name(docs, "event")
    for key, n in (("reactor_uvvis_absorbance", 401), ("reactor_uvvis_wavelength", 401),
                   ("reactor_saxs_intensity", 500), ("reactor_saxs_sigma", 500), ("reactor_saxs_q", 500)):
        stored = read_stream_array(tiled, uid, key)
        assert stored.shape == (4, n)
        np.testing.assert_array_equal(stored, np.array([e["data"][key] for e in events]))
    np.testing.assert_array_equal(read_stream_array(tiled, uid, "reactor_nucleation_setpoint"), [280, 280, 300, 300])


def test_every_stored_spectrum_and_curve_is_the_model_of_its_condition(stored_series, tiled, reactor):
    uid, _ = stored_series
    wavelength = read_stream_array(tiled, uid, "reactor_uvvis_wavelength")[0]
    spectra = read_stream_array(tiled, uid, "reactor_uvvis_absorbance")
    q = read_stream_array(tiled, uid, "reactor_saxs_q")[0]
    curves = read_stream_array(tiled, uid, "reactor_saxs_intensity")
    sigmas = read_stream_array(tiled, uid, "reactor_saxs_sigma")
    reference = reactor.uvvis.reference_counts.get()
    for i, (t_nuc, t_growth, t_reaction) in enumerate(CONDITIONS):
        state = simulate(ReactorConditions.at_reaction_time(t_nuc, t_growth, t_reaction))
        clean = absorption.absorbance(state.population, wavelength, path_cm=0.1)
        sigma = math.log10(math.e) * np.sqrt((10.0 ** clean + 1.0) / reference)
        assert np.mean(((spectra[i] - clean) / sigma) ** 2) == pytest.approx(1.0, abs=0.3)
        clean_i = saxs_models.reaction_intensity(state, q)
        assert np.mean(((curves[i] - clean_i) / sigmas[i]) ** 2) == pytest.approx(1.0, abs=0.3)


BAD_ARGUMENTS = [
    (([450], [270], [4.5]), {},
     r"^The nucleation temperature 450 °C is outside the reactor's range 20–400 °C; nothing was moved\.$"),
    (([280], [10], [4.5]), {},
     r"^The growth temperature 10 °C is outside the reactor's range 20–400 °C; nothing was moved\.$"),
    (([280, 250], [260], [4.5]), {},
     r"^The growth temperature 260 °C is above the nucleation temperature 250 °C .*; nothing was moved\.$"),
    (([280], [270], [4.5, 0]), {},
     r"^The reaction time 0 s would need a zero or negative pump flow; .*nothing was moved\.$"),
    (([280], [270], [-2]), {}, r"^The reaction time -2 s would need a zero or negative pump flow;"),
    (([280], [270], [0.5]), {},
     r"^The reaction time 0\.5 s needs 15 mL/min from the Cd pump, above its maximum of 10 mL/min "
     r"\(this reactor of 0\.25 mL reaches 0\.75–150 s at cd_fraction 0\.5\); nothing was moved\.$"),
    (([280], [270], [400]), {}, r"^The reaction time 400 s needs 0\.0187 mL/min from the Cd pump, below its minimum"),
    (([280], [270], [4.5]), {"cd_fraction": 1.0},
     r"^cd_fraction 1 would give the Se pump a zero or negative flow; .*nothing was moved\.$"),
    (([280], [270], [4.5]), {"flush_volumes": 2},
     r"^flush_volumes must be at least 3 reactor volumes .* got 2; nothing was moved\.$"),
    (([], [270], [4.5]), {}, r"^nucleation_temperatures_c must list at least one value in °C\.$"),
    (([float("nan")], [270], [4.5]), {}, r"^nucleation_temperatures_c entry must be finite, got nan °C\.$"),
]


@pytest.mark.parametrize("args, kwargs, message", BAD_ARGUMENTS,
                         ids=["hot-nucleation", "cold-growth", "growth-above-nucleation", "zero-time",
                              "negative-time", "too-fast", "too-slow", "no-se-flow", "short-flush",
                              "empty", "nan"])
def test_bad_arguments_are_refused_before_any_document_or_movement(reactor, RE, args, kwargs, message):
    pumps = reactor.pumps

    def snapshot():
        return (reactor.nucleation.setpoint.get(use_monitor=False), reactor.growth.setpoint.get(use_monitor=False),
                pumps.cd.setpoint.get(use_monitor=False), pumps.se.setpoint.get(use_monitor=False),
                pumps.cd.running.get(use_monitor=False), pumps.cd_fraction.get(),
                reactor.uvvis.acquire_count.get(use_monitor=False))

    before = snapshot()
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(PlanArgumentError, match=message):
        RE(flow_series(reactor, *args, **kwargs))
    assert docs == []
    assert snapshot() == before


def test_growth_above_nucleation_runs_when_allowed_explicitly():
    from mc_beamline.plans.flow_series import FlowSeriesSpec

    spec = FlowSeriesSpec.build([190, 200], [230], [1.5], allow_growth_above_nucleation=True)
    assert spec.conditions() == [(190.0, 230.0, 1.5), (200.0, 230.0, 1.5)]


def test_queue_wrapper_has_typed_parameters_for_the_queue_server():
    from bluesky_queueserver.manager.profile_ops import _process_plan

    from mc_beamline.queue_server.plans import QUEUE_PLANS

    described = _process_plan(QUEUE_PLANS["flow_series"], existing_devices={}, existing_plans={})
    params = {p["name"]: p for p in described["parameters"]}
    assert params["reactor"]["annotation"]["devices"] == {"Reactors": ["reactor"]}
    assert params["nucleation_temperatures_c"]["annotation"]["type"] == "typing.List[float]"
    assert params["reaction_times_s"]["annotation"]["type"] == "typing.List[float]"
    assert float(params["flush_volumes"]["min"]) == 3.0


def test_the_pumps_are_stopped_when_the_series_ends(stored_series, reactor):
    for pump in (reactor.pumps.cd, reactor.pumps.se):
        assert pump.running.get(use_monitor=False) == 0
        assert pump.flow.get(use_monitor=False) == 0
