"""One fly-scan row of a positioning axis: run-up, gated exposures, encoder capture.

The axis moves at constant ``velocity`` across the row; a position-compare output opens one
detector gate of ``gate_s`` seconds per map pixel, centred on the pixel, and the controller
latches the encoder at each gate's opening and closing edge. The move is the trapezoidal
profile of :mod:`mc_beamline.physics.motion` from :attr:`FlyRowProfile.start_um` to
:attr:`FlyRowProfile.end_um`: the run-up (acceleration, plus a margin) and run-down lie
outside the map, so every gate sees the constant velocity.

Positions in µm, velocities in µm/s, times in s. Pure Python, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mc_beamline.physics.motion import move_duration, move_progress

SERVO_PERIOD_S = 1e-4
"""Update period of the controller's position compare (10 kHz): a gate opens at the first
servo tick after the axis has crossed its compare position."""
RUN_UP_MARGIN_S = 0.005
"""Constant-velocity travel (as time) before the first and after the last gate, s."""


@dataclass(frozen=True)
class Gate:
    """One gated exposure of a row, as the controller recorded it."""

    index: int
    """Pixel number within the row, in travel order (from 0)."""
    t_open_s: float
    """When the gate opened, s after the start of the row's move."""
    duration_s: float
    """How long the gate stayed open (the exposure), s."""
    x_open_um: float
    """Encoder position latched when the gate opened, µm."""
    x_close_um: float
    """Encoder position latched when the gate closed, µm."""

    @property
    def x_center_um(self) -> float:
        """Mean beam position during the exposure (constant velocity), µm."""
        return 0.5 * (self.x_open_um + self.x_close_um)

    @property
    def t_close_s(self) -> float:
        return self.t_open_s + self.duration_s


@dataclass(frozen=True)
class FlyRowProfile:
    """A row of ``n_pixels`` gates centred on ``first_center_um + i * step_um``.

    Parameters
    ----------
    first_center_um : centre of the first pixel in travel order, µm.
    step_um : distance between pixel centres, µm; its sign is the direction of travel.
    n_pixels : gates in the row (≥ 1).
    gate_s : exposure per pixel, s (> 0); ``gate_s * velocity_um_s`` may not exceed ``|step_um|``.
    velocity_um_s : constant velocity across the row, µm/s (> 0).
    accel_time_s : time to reach the velocity from rest, s (≥ 0).
    """

    first_center_um: float
    step_um: float
    n_pixels: int
    gate_s: float
    velocity_um_s: float
    accel_time_s: float

    def __post_init__(self):
        if not (math.isfinite(self.first_center_um) and math.isfinite(self.step_um) and self.step_um != 0):
            raise ValueError(f"A row needs a finite first centre and a non-zero step, got "
                             f"{self.first_center_um} and {self.step_um} µm.")
        if int(self.n_pixels) < 1:
            raise ValueError(f"A row needs at least one pixel, got {self.n_pixels}.")
        if not (self.gate_s > 0 and self.velocity_um_s > 0 and self.accel_time_s >= 0):
            raise ValueError("Gate time and velocity must be positive and the acceleration time not negative.")
        if self.gate_s * self.velocity_um_s > abs(self.step_um) * (1 + 1e-9):
            raise ValueError(f"Gates of {self.gate_s:g} s at {self.velocity_um_s:g} µm/s travel "
                             f"{self.gate_s * self.velocity_um_s:g} µm, more than the {abs(self.step_um):g} µm step.")

    @property
    def direction(self) -> float:
        return 1.0 if self.step_um > 0 else -1.0

    @property
    def run_up_um(self) -> float:
        """Travel from rest to the first gate's opening edge (and from the last gate's closing edge to rest), µm."""
        return self.velocity_um_s * (0.5 * self.accel_time_s + RUN_UP_MARGIN_S)

    @property
    def _half_gate_um(self) -> float:
        return 0.5 * self.gate_s * self.velocity_um_s

    @property
    def last_center_um(self) -> float:
        return self.first_center_um + (self.n_pixels - 1) * self.step_um

    @property
    def start_um(self) -> float:
        """Where the axis rests before the row (the turnaround, outside the map), µm."""
        return self.first_center_um - self.direction * (self._half_gate_um + self.run_up_um)

    @property
    def end_um(self) -> float:
        """Where the axis comes to rest after the row, µm."""
        return self.last_center_um + self.direction * (self._half_gate_um + self.run_up_um)

    @property
    def distance_um(self) -> float:
        return abs(self.end_um - self.start_um)

    @property
    def duration_s(self) -> float:
        """Duration of the row's move from :attr:`start_um` to :attr:`end_um`, s."""
        return move_duration(self.distance_um, self.velocity_um_s, self.accel_time_s)

    def position(self, t_s: float) -> float:
        """Axis position ``t_s`` seconds after the start of the row's move, µm."""
        travelled = move_progress(max(t_s, 0.0), self.distance_um, self.velocity_um_s, self.accel_time_s)
        return self.start_um + self.direction * travelled

    def _cruise_time(self, travelled_um: float) -> float:
        """When the axis has travelled ``travelled_um`` (inside the constant-velocity part), s."""
        return self.accel_time_s + (travelled_um - 0.5 * self.velocity_um_s * self.accel_time_s) / self.velocity_um_s

    def gates(self, resolution_um: float = 1e-4, servo_s: float = SERVO_PERIOD_S) -> list[Gate]:
        """The row's gates: each opens at the first servo tick after the axis crossed its
        compare position (pixel centre minus half the gate's travel) and stays open ``gate_s``;
        the latched positions are rounded to the encoder ``resolution_um``."""

        def encoder(t: float) -> float:
            x = self.position(t)
            return round(x / resolution_um) * resolution_um if resolution_um > 0 else x

        gates = []
        for i in range(int(self.n_pixels)):
            compare = self.first_center_um + i * self.step_um - self.direction * self._half_gate_um
            t_cross = self._cruise_time(abs(compare - self.start_um))
            t_open = math.ceil(t_cross / servo_s - 1e-9) * servo_s if servo_s > 0 else t_cross
            gates.append(Gate(i, t_open, self.gate_s, encoder(t_open), encoder(t_open + self.gate_s)))
        return gates


__all__ = ["FlyRowProfile", "Gate", "RUN_UP_MARGIN_S", "SERVO_PERIOD_S"]
