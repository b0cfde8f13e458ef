"""The assembly cell's flocculant addition, sample orientations and SAXS frames."""

import math

import numpy as np
import pytest

from mc_beamline.physics.assembly_cell import (
    CAMERA_SHAPE,
    Q_NM,
    CellSimulator,
    CellState,
    SyringeAddition,
    sample_orientation_deg,
)
from mc_beamline.physics.flocculation import Flocculation, concentration_mm


def test_addition_dispenses_at_the_rate_and_ends_with_the_planned_volume():
    addition = SyringeAddition(500.0, 500.0)
    assert addition.flocculation() is None and addition.elapsed_s(10.0) == -1.0
    assert addition.frame_elapsed_s(10.0, 2.0) == -1.0
    addition.start(10.0, 2.0, 50.0)
    assert addition.end_s == pytest.approx(35.0)
    addition.advance(20.0)
    assert addition.dispensing and addition.dispensed_ul == pytest.approx(20.0)
    assert addition.concentration_mm() == pytest.approx(concentration_mm(20.0, 500.0, 500.0))
    assert addition.flocculation() == Flocculation(500.0, 500.0, 50.0, 2.0)  # planned volume while dispensing
    assert addition.elapsed_s(20.0) == pytest.approx(10.0)
    assert addition.frame_elapsed_s(20.0, 2.0) == pytest.approx(11.0)
    addition.advance(40.0)
    assert not addition.dispensing and addition.dispensed_ul == 50.0


def test_stopped_addition_keeps_the_volume_added():
    addition = SyringeAddition()
    addition.start(0.0, 1.0, 100.0)
    addition.stop(30.0)
    assert not addition.dispensing
    assert addition.dispensed_ul == pytest.approx(30.0) and addition.volume_ul == pytest.approx(30.0)
    assert addition.flocculation().volume_ul == pytest.approx(30.0)
    addition.advance(200.0)  # nothing more is added
    assert addition.dispensed_ul == pytest.approx(30.0)


def test_orientation_is_drawn_once_per_sample():
    assert sample_orientation_deg(4, 0) == sample_orientation_deg(4, 0)
    assert sample_orientation_deg(4, 0) != sample_orientation_deg(4, 1)
    assert -180.0 <= sample_orientation_deg(4, 1) <= 180.0


def test_frame_of_the_dilute_colloid_matches_its_curve():
    sim = CellSimulator()
    state = CellState("colloid")
    curve, image = sim.measure(state, 1.0, seed=4, counter=1)
    assert image.shape == CAMERA_SHAPE and image.dtype == np.int32
    assert curve.q_nm.shape == Q_NM.shape
    clean = sim.expected_curve(state)
    assert np.median(np.abs(curve.intensity - clean) / curve.sigma) < 2.0
    binary = sim.expected_curve(CellState("binary", flocculation=Flocculation(volume_ul=10.0), elapsed_s=1e3))
    assert np.all(np.isfinite(binary)) and not math.isclose(binary.max(), clean.max())
