"""A fly-scan row: gates at the pixel centres, inside the constant-velocity part, encoder latched."""

import pytest

from mc_beamline.physics.fly_motion import RUN_UP_MARGIN_S, FlyRowProfile


def seed_row(step=0.4, accel=0.001):
    # 51 pixels of 0.4 µm at 10 ms: 40 µm/s, the seed raster's fast axis
    return FlyRowProfile(first_center_um=-10.0, step_um=step, n_pixels=51, gate_s=0.01,
                         velocity_um_s=40.0, accel_time_s=accel)


def test_gates_cover_each_pixel_at_constant_velocity():
    row = seed_row()
    gates = row.gates()
    assert len(gates) == 51
    for i, gate in enumerate(gates):
        center = -10.0 + 0.4 * i
        # the gate travels the 0.4 µm pixel; the servo tick delays it by < 0.1 ms (< 4 nm)
        assert gate.x_close_um - gate.x_open_um == pytest.approx(0.4, abs=2e-4)
        assert gate.x_center_um == pytest.approx(center, abs=0.005)
        assert gate.x_open_um >= center - 0.2 - 1e-4
        assert gate.t_open_s > row.accel_time_s  # the ramp is over
        assert gate.t_close_s < row.duration_s - row.accel_time_s
    # the row takes 51 exposures plus run-up and run-down
    assert row.duration_s == pytest.approx(0.51 + 2 * (RUN_UP_MARGIN_S + row.accel_time_s), rel=1e-9)


def test_reverse_row_and_turnarounds_outside_the_map():
    row = FlyRowProfile(first_center_um=10.0, step_um=-0.4, n_pixels=51, gate_s=0.01, velocity_um_s=40.0,
                        accel_time_s=0.1)
    assert row.start_um > 10.0 + 0.2 and row.end_um < -10.0 - 0.2
    assert row.start_um - 10.2 == pytest.approx(40.0 * (0.05 + RUN_UP_MARGIN_S))
    gates = row.gates()
    assert gates[0].x_open_um > gates[0].x_close_um
    assert gates[-1].x_center_um == pytest.approx(-10.0, abs=0.005)
    assert row.position(0.0) == row.start_um and row.position(row.duration_s) == pytest.approx(row.end_um)


def test_encoder_is_quantised_and_refusals():
    gate = seed_row().gates(resolution_um=0.01)[3]
    assert gate.x_open_um == pytest.approx(round(gate.x_open_um / 0.01) * 0.01)
    with pytest.raises(ValueError, match="more than"):
        FlyRowProfile(0.0, 0.4, 5, gate_s=0.02, velocity_um_s=40.0, accel_time_s=0.0)
    with pytest.raises(ValueError):
        FlyRowProfile(0.0, 0.0, 5, gate_s=0.01, velocity_um_s=40.0, accel_time_s=0.0)
