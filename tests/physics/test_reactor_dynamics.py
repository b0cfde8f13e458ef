"""Heater response, residence-time distribution and flow-cell contents of the flow reactor."""

import math

import numpy as np
import pytest

from mc_beamline.physics import saxs_models
from mc_beamline.physics.flow_reactor import (
    DEFAULT_REACTOR,
    ReactorConditions,
    simulate,
)
from mc_beamline.physics.reactor_dynamics import (
    FLOW_STEP,
    TEMPERATURE_STEP_C,
    FlowHistory,
    Label,
    ReactorModel,
    first_order_step,
    fraction_older,
)


def test_first_order_step_is_rate_limited_then_exponential():
    # 100 °C below the set point at 1 °C/s with tau = 10 s: linear for 90 s, then e-folding
    assert first_order_step(20.0, 120.0, 45.0, 10.0, 1.0) == pytest.approx(65.0)
    assert first_order_step(20.0, 120.0, 90.0, 10.0, 1.0) == pytest.approx(110.0)
    assert first_order_step(20.0, 120.0, 100.0, 10.0, 1.0) == pytest.approx(120.0 - 10.0 / math.e)
    # exact composition: two half steps equal one step
    half = first_order_step(first_order_step(300.0, 200.0, 50.0, 10.0, 1.0), 200.0, 50.0, 10.0, 1.0)
    assert half == pytest.approx(first_order_step(300.0, 200.0, 100.0, 10.0, 1.0))


def test_residence_time_distribution_leaves_under_a_thousandth_after_three_volumes():
    assert fraction_older(0.0) == 1.0
    assert fraction_older(1.0) == pytest.approx(0.4405, abs=1e-4)
    assert fraction_older(3.0) < 1e-3
    history = FlowHistory(0.25, Label(25.0, 25.0, 0.5, 0.5))
    history.advance(1.0, Label(25.0, 25.0, 0.5, 0.5))
    history.advance(0.25, Label(280.0, 270.0, 1.0, 1.0))  # one reactor volume of new fluid
    weights = {label.nucleation_c: w for label, w in history.mixture()}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[25.0] == pytest.approx(0.4405, abs=1e-3)
    history.advance(0.5, Label(280.0, 270.0, 1.0, 1.0))
    assert history.volume_since_change_ml == pytest.approx(0.75)
    assert dict((lb.nucleation_c, w) for lb, w in history.mixture()).get(25.0, 0.0) < 1e-3


def test_a_label_follows_small_drifts_and_splits_on_steps():
    base = Label(200.0, 230.0, 1.0, 1.0)
    assert base.close_to(Label(200.0 + 0.9 * TEMPERATURE_STEP_C, 230.0, 1.0, 1.0 + 0.9 * FLOW_STEP))
    assert not base.close_to(Label(200.0 + 1.1 * TEMPERATURE_STEP_C, 230.0, 1.0, 1.0))
    assert not base.close_to(Label(200.0, 230.0, 1.0 + 1.1 * FLOW_STEP, 1.0))
    history = FlowHistory(0.25, base)
    history.advance(0.1, Label(200.1, 230.0, 1.0, 1.0))  # drift: the label follows
    assert history.current == Label(200.1, 230.0, 1.0, 1.0)
    assert history.volume_since_change_ml == math.inf


def test_reactor_model_of_one_label_is_the_steady_state():
    q = saxs_models.default_q_nm(50)
    label = Label(240.0, 240.0, 1.0, 1.0)
    model = ReactorModel(DEFAULT_REACTOR, 20.0, 20.0)
    state = simulate(ReactorConditions(nucleation_temperature_c=240.0, growth_temperature_c=240.0,
                                       cd_flow_ml_min=1.0, se_flow_ml_min=1.0, cd_stock_mm=20.0, se_stock_mm=20.0))
    np.testing.assert_allclose(model.saxs([(label, 1.0)], q), saxs_models.reaction_intensity(state, q))
    assert model.state(label) is model.state(label)  # cached
