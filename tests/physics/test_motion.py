"""Trapezoidal motion profile of the simulated piezo stage."""

import pytest

from mc_beamline.physics.motion import move_duration, move_progress


def test_trapezoid_cruises_between_the_ramps():
    # 100 µm at 200 µm/s with 0.1 s ramps: 20 µm of ramps, 0.5 s cruise + 0.1 s
    assert move_duration(100.0, 200.0, 0.1) == pytest.approx(0.6)
    assert move_progress(0.05, 100.0, 200.0, 0.1) == pytest.approx(0.5 * 2000.0 * 0.05 ** 2)
    assert move_progress(0.3, 100.0, 200.0, 0.1) == pytest.approx(10.0 + 200.0 * 0.2)
    assert move_progress(0.55, 100.0, 200.0, 0.1) == pytest.approx(100.0 - 0.5 * 2000.0 * 0.05 ** 2)
    assert move_progress(1.0, 100.0, 200.0, 0.1) == 100.0


def test_short_move_is_triangular_and_no_ramp_is_constant_velocity():
    total = move_duration(5.0, 200.0, 0.1)  # shorter than the 20 µm of ramps
    assert total == pytest.approx(2.0 * (5.0 / 2000.0) ** 0.5)
    assert move_progress(total / 2.0, 5.0, 200.0, 0.1) == pytest.approx(2.5)
    assert move_duration(10.0, 200.0, 0.0) == pytest.approx(0.05)
    assert move_progress(0.025, 10.0, 200.0, 0.0) == pytest.approx(5.0)
    assert move_duration(0.0, 200.0, 0.1) == 0.0


def test_progress_is_continuous_and_monotonic():
    times = [i * 0.6 / 600 for i in range(601)]
    path = [move_progress(t, 100.0, 200.0, 0.1) for t in times]
    assert all(b >= a for a, b in zip(path, path[1:]))
    assert max(b - a for a, b in zip(path, path[1:])) <= 200.0 * 0.001 + 1e-9
